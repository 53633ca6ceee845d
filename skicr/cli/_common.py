"""Helpers every ``skicr`` command shares: the user-facing error, argument types, devices, folders."""

import argparse
import json
import os
import re
import sys
from datetime import datetime
from pathlib import Path

from .._utils.interrupts import interruptible, worker_running
from .._utils.serialization import atomic_write_text, check_output_dir
from .._utils.validation import check_layer_names, check_torch_device

__all__ = [
    "CLIError",
    "argument_type",
    "check_device",
    "check_out_dir",
    "join_dash_values",
    "n_jobs_option",
    "run_interruptibly",
    "ReportWriter",
    "default_out_dir",
    "float_option",
    "int_at_least",
    "parse_layers",
]


class CLIError(Exception):
    """A user-facing error: printed as one line, exit code ``code``, no traceback."""

    def __init__(self, message, code=2):
        super().__init__(message)
        self.code = code


def argument_type(parse):
    """An argparse ``type`` from a parser that raises ValueError with a clear message.

    argparse shows the message of an ``ArgumentTypeError`` but replaces a
    ValueError's by "invalid value"; this keeps the message.
    """
    def convert(text):
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__
    return convert


def parse_layers(text):
    """Parse ``--layers``: comma-separated layer names, ``down.1,mid,up.0``.

    Parameters
    ----------
    text : str
        The option's value.

    Returns
    -------
    layers : list of str
        Distinct, non-empty names in the given order.
    """
    layers = [name.strip() for name in text.split(",")]
    if not layers or any(not name for name in layers):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated layer names (down.1,mid,up.0); got {text!r}."
        )
    try:
        return check_layer_names(layers)
    except ValueError as exc:  # repeated names
        raise argparse.ArgumentTypeError(str(exc)) from None


def int_at_least(minimum):
    """An argparse ``type``: an int >= ``minimum``."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer; got {text!r}.") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}; got {value}.")
        return value

    parse.__name__ = f"int>={minimum}"
    return parse


def float_option(accept, requirement):
    """An argparse type: a float for which ``accept(value)`` holds, else ``must be {requirement}``."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number; got {text!r}.") from None
        if not accept(value):  # NaN fails every comparison, so it is refused too
            raise argparse.ArgumentTypeError(f"must be {requirement}; got {text!r}.")
        return value

    parse.__name__ = requirement
    return parse


def check_device(device):
    """Validate ``--device`` before any work, so a typo fails fast."""
    if device is None:
        return None
    try:
        check_torch_device(device, "--device")
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    return device


def check_out_dir(out):
    """``--out`` as a Path, checked for writing before any work (nothing is created)."""
    try:
        return check_output_dir(out, "--out")
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def default_out_dir(prefix):
    """A new folder name ``./<prefix>-YYYYmmdd-HHMMSS`` (suffixed when it exists)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path.cwd() / f"{prefix}-{stamp}"
    suffix = 1
    while out.exists():
        suffix += 1
        out = Path.cwd() / f"{prefix}-{stamp}-{suffix}"
    return out


#: options whose value may start with "-" (a negative number is refused by the option's own
#: check, with a clear message, instead of argparse reading it as another option)
DASH_VALUE_OPTIONS = ("--sigmas", "--sigma", "--seed", "--n-jobs", "--lr", "--ema-decay",
                      "--min-rise")
_NUMBER_START = re.compile(r"^-[0-9.]")


def join_dash_values(argv, options=DASH_VALUE_OPTIONS):
    """Rewrite ``--opt -1:1:5`` as ``--opt=-1:1:5`` so that argparse passes the value on.

    argparse takes ``-1:1:5`` for an option (only plain negative numbers such
    as ``-1`` count as values) and says "expected one argument"; joined, the
    option's type check sees the value and can say what is wrong with it.
    """
    argv = list(argv)
    out, i = [], 0
    while i < len(argv):
        token = argv[i]
        if token in options and i + 1 < len(argv) and _NUMBER_START.match(argv[i + 1]):
            out.append(f"{token}={argv[i + 1]}")
            i += 2
            continue
        out.append(token)
        i += 1
    return out


def n_jobs_option(text):
    """An argparse ``type`` for ``--n-jobs``: joblib's convention, a nonzero integer."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer; got {text!r}.") from None
    if value == 0:
        raise argparse.ArgumentTypeError(
            "must be a nonzero integer (1: one at a time, 2: two in parallel, -1: all cores); got 0."
        )
    return value


n_jobs_option.__name__ = "n_jobs"

#: seconds between "still working" lines while a long phase prints nothing
HEARTBEAT_SECONDS = 60.0


def run_interruptibly(work, *, label, heartbeat=True):
    """Run ``work()`` in a worker thread, so that Ctrl-C is handled at once.

    A long BLAS or LAPACK call (an eigendecomposition of a wide layer) holds
    the main thread for minutes without checking for signals; waiting on a
    worker instead (:func:`skicr._utils.interrupts.interruptible`), the main
    thread receives KeyboardInterrupt within a tenth of a second. The worker
    cannot be stopped inside the call: :func:`skicr.cli.main` ends the
    process after reporting the interrupt.

    Parameters
    ----------
    work : callable
        Takes no arguments.
    label : str
        The command, for the "still working" lines (``skicr scan``).
    heartbeat : bool, default=True
        Print a line to stderr every :data:`HEARTBEAT_SECONDS` while it runs.

    Returns
    -------
    result : object
        What ``work`` returned; its exception is raised here.
    """
    printed = [0]

    def still_working(elapsed):
        if heartbeat and elapsed >= (printed[0] + 1) * HEARTBEAT_SECONDS:
            printed[0] = int(elapsed // HEARTBEAT_SECONDS)
            so_far = f"{elapsed:.0f} s" if elapsed < 120 else f"{elapsed / 60:.0f} min"
            print(f"{label}: still working, {so_far} so far (Ctrl-C stops)",
                  file=sys.stderr, flush=True)

    return interruptible(work, on_wait=still_working)


class ReportWriter:
    """A command's output files, written so that an interrupt never leaves a complete-looking set.

    ``start()`` writes the JSON report with ``"complete": false`` first; each
    file is then written to a temporary name and renamed into place; ``finish``
    rewrites the report with ``"complete": true`` and the list of files. A
    reader trusts a folder whose report says complete.

    Parameters
    ----------
    out : Path
        The output folder (created by ``start``).
    report_name : str
        ``scan.json``.
    """

    def __init__(self, out, report_name):
        self.out = Path(out)
        self.report_name = report_name
        self.files = []

    def start(self, report=None):
        """Create the folder and mark the report incomplete."""
        self.out.mkdir(parents=True, exist_ok=True)
        self._write_report({**(report or {}), "complete": False})

    def path(self, name):
        """A temporary path to write ``name`` to; :meth:`commit` moves it into place."""
        return self.out / f".{name}.tmp{os.getpid()}{Path(name).suffix}"

    def commit(self, name):
        """Move the temporary file of ``name`` into place."""
        os.replace(self.path(name), self.out / name)
        self.files.append(name)

    def text(self, name, text):
        """Write a text file atomically."""
        atomic_write_text(text, self.out / name)
        self.files.append(name)

    def finish(self, report):
        """Write the report, complete, listing the files written."""
        self._write_report({**report, "files": [*self.files, self.report_name],
                            "complete": True})

    def discard(self):
        """Remove temporary files left by an interrupted write."""
        for leftover in self.out.glob(f".*.tmp{os.getpid()}*"):
            leftover.unlink(missing_ok=True)

    def _write_report(self, report):
        atomic_write_text(json.dumps(report, indent=2) + "\n", self.out / self.report_name)


_THREAD_LIMITS = []  # keeps the BLAS limits of the running command in force


def apply_thread_default(threads, module):
    """Set the command's torch and BLAS threads: ``--threads``, else the default for ``module``.

    The default (``skicr._utils.threads``): one thread for a small network,
    all cores for a large one; nothing is changed when ``threads`` is None
    and the user fixed the threads through the environment.

    Parameters
    ----------
    threads : int or None
        ``--threads``.
    module : torch.nn.Module or None
        The network the command runs.

    Returns
    -------
    threads : int or None
        The count set, None when left alone.
    """
    from .._utils.threads import network_threads, set_process_threads, user_chose_threads

    if threads is None:
        if user_chose_threads():
            return None
        threads = network_threads(module)
    _THREAD_LIMITS.append(set_process_threads(threads))
    return threads
