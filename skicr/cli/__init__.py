"""Command line interface: ``skicr <command> ...``.

Each command is an argparse subparser built by one ``add_<command>_parser``
function (in ``_scan.py``, ``_track.py``) that sets ``func`` (the function to
run, taking the parsed arguments and returning an exit code). To add a
command, write such a function in a module of its own and append it to
``_COMMANDS``. Shared helpers are in ``_common.py``; the commands' defaults
and the probe in :mod:`skicr.recipes`. Nothing here imports back into the
command modules' callers, so there is no import cycle.

Exit codes: 0 success; 2 bad arguments or unreadable input files (argparse's
convention); 1 an error while running.
"""

import argparse
import os
import sys
import warnings

from ..recipes import SCAN_DEFAULTS, TRACK_DEFAULTS, augment_presets, make_probe, parse_sigmas
from ._common import CLIError, join_dash_values, parse_layers, worker_running
from ._scan import add_scan_parser, run_scan
from ._track import add_track_parser, run_track

__all__ = ["main"]

# re-exported: the names ``skicr.cli`` offered before it became a package
_COMPAT = [SCAN_DEFAULTS, TRACK_DEFAULTS, augment_presets, make_probe, parse_sigmas, parse_layers,
           CLIError, run_scan, run_track]

#: builders of the subcommands, in the order ``skicr --help`` lists them
_COMMANDS = [add_scan_parser, add_track_parser]


def build_parser():
    """The ``skicr`` argument parser with one subparser per command.

    Returns
    -------
    parser : argparse.ArgumentParser
    """
    parser = argparse.ArgumentParser(
        prog="skicr",
        description="Label-free evaluation of diffusion-model representations (ICR).",
    )
    from skicr import __version__

    parser.add_argument("--version", action="version", version=f"skicr {__version__}")
    subparsers = parser.add_subparsers(dest="command", title="commands", required=True)
    for add_parser in _COMMANDS:
        add_parser(subparsers)
    return parser


def _warning_line(command):
    """``warnings.showwarning`` for the command line: one line, no file, line or source."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"skicr {command}: warning: {message}", file=sys.stderr if file is None else file)

    return show


def main(argv=None):
    """Run the ``skicr`` command line.

    Parameters
    ----------
    argv : list of str, default=None
        Arguments without the program name; None reads ``sys.argv[1:]``.

    Returns
    -------
    code : int
        The exit code (0 success, 1 runtime error, 2 bad arguments or files).
    """
    parser = build_parser()
    argv = join_dash_values(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)  # exits 2 with a usage message on bad arguments
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _warning_line(args.command)
            return args.func(args)
    except CLIError as exc:
        print(f"skicr {args.command}: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print(f"skicr {args.command}: interrupted", file=sys.stderr, flush=True)
        if worker_running():
            # the numeric work is inside a BLAS call that cannot be stopped: end the process
            # now rather than wait minutes for the call (nothing is left half-written)
            sys.stdout.flush()
            os._exit(130)
        return 130
