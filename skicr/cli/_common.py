"""Helpers every ``skicr`` command shares: the user-facing error, argument types, devices, folders."""

import argparse
from datetime import datetime
from pathlib import Path

from .._utils.validation import check_layer_names

__all__ = [
    "CLIError",
    "argument_type",
    "check_device",
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
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise CLIError(f"unknown --device {device!r} (try cpu, cuda, cuda:0, mps).") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise CLIError(f"--device {device!r}: CUDA is not available on this machine.")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise CLIError(f"--device {device!r}: MPS is not available on this machine.")
    return device


def default_out_dir(prefix):
    """A new folder name ``./<prefix>-YYYYmmdd-HHMMSS`` (suffixed when it exists)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path.cwd() / f"{prefix}-{stamp}"
    suffix = 1
    while out.exists():
        suffix += 1
        out = Path.cwd() / f"{prefix}-{stamp}-{suffix}"
    return out
