"""The pyplot import and saving a figure (plots are optional: matplotlib is an extra)."""

import os
import sys
from pathlib import Path

__all__ = ["pyplot", "cli_pyplot", "save_figure"]

_MISSING = "pip install 'skicr[plot]' (or pip install matplotlib)"


def pyplot():
    """Import matplotlib.pyplot, or explain how to get it.

    Returns
    -------
    plt : module
        ``matplotlib.pyplot``.
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"skicr's plots need matplotlib, which is not installed: {_MISSING}.") from exc
    return plt


def cli_pyplot(what):
    """pyplot on the non-interactive Agg backend for a command, or None with a note on stderr.

    Parameters
    ----------
    what : str
        The file that will not be written without matplotlib (``scan.png``).

    Returns
    -------
    plt : module or None
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"note: matplotlib is not installed, {what} not written ({_MISSING}).", file=sys.stderr)
        return None
    return plt


def save_figure(figure, path, *, dpi=120, bbox_tight=False):
    """Save and close a figure.

    Parameters
    ----------
    figure : matplotlib.figure.Figure
        The figure.
    path : str or os.PathLike
        Where to write it.
    dpi : int, default=120
        Resolution.
    bbox_tight : bool, default=False
        Crop to the drawn content (figures with colour bars and outside
        legends that ``tight_layout`` cannot fit); else ``tight_layout`` first.
    """
    import matplotlib.pyplot as plt

    path = Path(path)
    # through a temporary name with the same suffix (it names the format), then one
    # rename: an interrupt never leaves half an image under the real name
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    image_format = path.suffix.lstrip(".") or "png"
    try:
        if bbox_tight:
            figure.savefig(tmp, dpi=dpi, bbox_inches="tight", format=image_format)
        else:
            figure.tight_layout()
            figure.savefig(tmp, dpi=dpi, format=image_format)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        plt.close(figure)
