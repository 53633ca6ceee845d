"""Command line interface: ``skicr <command> ...``.

Each command is an argparse subparser built by one ``_add_<command>_parser``
function that sets ``func`` (the function to run, taking the parsed
arguments and returning an exit code). To add a command, write such a
function and append it to ``_COMMANDS``.

Exit codes: 0 success; 2 bad arguments or unreadable input files (argparse's
convention); 1 an error while running.
"""

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np

__all__ = ["main"]

#: defaults of ``skicr scan`` (their measured justification is in docs/scan.md)
SCAN_DEFAULTS = {
    "sigmas": "0.005:5:12",
    "layer": None,
    "pooling": "mean",
    "views": 4,
    "n_images": 2000,  # all 1797 digits; caps a user's folder
    "cv": 5,
    "seed": 0,
    "batch_size": 256,
    "augment": "default",
}


def augment_presets():
    """Named augmentation strengths of ``skicr scan --augment`` (as measured in docs/scan.md).

    Returns
    -------
    presets : dict
        name -> the ``augment`` argument of :class:`skicr.FeatureExtractor`.
    """
    from skicr.extraction import RandomAffine

    return {
        "none": None,  # noise-only views
        "weak": RandomAffine(scale=(0.85, 1.0), rotation=7.5),
        "default": "default",  # RandomAffine(scale=(0.6, 1.0), rotation=15)
        "strong": RandomAffine(scale=(0.5, 1.0), rotation=30.0, translation=0.1),
    }


class CLIError(Exception):
    """A user-facing error: printed as one line, exit code ``code``, no traceback."""

    def __init__(self, message, code=2):
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------- argument types


def parse_sigmas(text):
    """Parse ``--sigmas``: ``a,b,c`` (a list) or ``min:max:num`` (log-spaced).

    Parameters
    ----------
    text : str
        The option's value.

    Returns
    -------
    sigmas : ndarray of shape (n_sigmas,)
        Positive, distinct noise levels, in the given (or increasing) order.
    """
    text = text.strip()
    try:
        if ":" in text:
            parts = text.split(":")
            if len(parts) != 3:
                raise ValueError
            low, high, num = float(parts[0]), float(parts[1]), int(parts[2])
            if num < 1:
                raise argparse.ArgumentTypeError(f"the number of sigmas must be >= 1; got {num}.")
            if not (0 < low < high) and not (num == 1 and 0 < low == high):
                raise argparse.ArgumentTypeError(
                    f"min:max:num needs 0 < min < max; got {text!r}."
                )
            sigmas = np.geomspace(low, high, num)
        else:
            sigmas = np.asarray([float(s) for s in text.split(",") if s.strip()])
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of numbers (0.05,0.1,0.2) or min:max:num "
            f"(0.005:5:12); got {text!r}."
        ) from None
    if sigmas.size == 0:
        raise argparse.ArgumentTypeError("the sigma grid is empty.")
    if not np.all(np.isfinite(sigmas)) or np.any(sigmas <= 0):
        raise argparse.ArgumentTypeError(f"sigmas must be positive numbers; got {text!r}.")
    if np.unique(sigmas).size != sigmas.size:
        raise argparse.ArgumentTypeError(f"sigmas contains repeated values: {text!r}.")
    return sigmas


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
    if len(set(layers)) != len(layers):
        raise argparse.ArgumentTypeError(f"layers contains repeated names: {text!r}.")
    return layers


def _int_at_least(minimum):
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


# ---------------------------------------------------------------- loading inputs


def _check_device(device):
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


def load_backbone(model, device=None):
    """The backbone for ``--model``: the shipped denoiser, a weights file or a diffusers folder.

    Parameters
    ----------
    model : str or None
        None for the shipped ``digits`` denoiser; a path to a ``.pt`` weights
        file written by ``skicr.models.save_denoiser``; or a local diffusers
        directory (a ``UNet2DModel`` folder with ``config.json``, or a
        pipeline folder with a ``unet/`` subfolder).
    device : str or None
        Where to put the network.

    Returns
    -------
    backbone : torch.nn.Module or skicr.extraction.Backbone
        The network (eval mode), or the adapter of a diffusers folder.
    description : str
        What was loaded, for the report.
    """
    from skicr import models

    if model is None:
        return models.load_pretrained("digits", device=device), "skicr digits (shipped)"
    path = Path(model)
    if not path.exists():
        raise CLIError(f"--model {model!r}: no such file or directory.")
    if path.is_file():
        try:
            return models.load_denoiser(path, device=device), f"weights file {path}"
        except (ValueError, OSError) as exc:
            raise CLIError(f"--model {model!r}: {exc}") from None
    from skicr.extraction import load_backbone as load_diffusers_backbone

    try:
        return load_diffusers_backbone(path, device=device), f"diffusers model {path}"
    except ImportError:
        raise CLIError(
            f"--model {model!r} is a folder, read as a diffusers model, but diffusers is "
            "not installed: pip install 'skicr[diffusers]'."
        ) from None
    except Exception as exc:  # diffusers raises many types for broken folders
        raise CLIError(f"--model {model!r}: could not load a diffusers model: {exc}") from None


def load_scan_data(images, labels, n_images, seed):
    """Images (and labels) for ``skicr scan``.

    Parameters
    ----------
    images : str or None
        None for sklearn's digits (with labels); a folder of PNG/JPEG images
        or a ``.npy`` array.
    labels : str or None
        A ``.npy`` or text file of one integer label per image (own images
        only; enables the probe).
    n_images : int or None
        Use a random subset of this many images (seeded by ``seed``).
    seed : int
        Seed of the subset.

    Returns
    -------
    images : ndarray
    y : ndarray or None
    description : str
    """
    from skicr import datasets

    if images is None:
        if labels is not None:
            raise CLIError("--labels needs --images (the digits come with their labels).")
        x, y = datasets.load_digits_images(return_y=True)
        description = "sklearn digits"
    else:
        path = Path(images)
        if not path.exists():
            raise CLIError(f"--images {images!r}: no such file or directory.")
        try:
            x = datasets.load_images(path)
        except (ValueError, OSError) as exc:
            raise CLIError(f"--images {images!r}: {exc}") from None
        description = f"images from {path}"
        y = None
        if labels is not None:
            y = _load_labels(labels, len(x))
    n_total = len(x)
    if n_images is not None and n_images < n_total:
        keep = np.sort(np.random.default_rng(seed).choice(n_total, n_images, replace=False))
        x = x[keep]
        y = None if y is None else y[keep]
    return x, y, description


def _load_labels(path, n_images):
    path = Path(path)
    if not path.is_file():
        raise CLIError(f"--labels {str(path)!r}: no such file.")
    try:
        y = np.load(path) if path.suffix == ".npy" else np.loadtxt(path, dtype=np.int64)
    except (ValueError, OSError) as exc:
        raise CLIError(f"--labels {str(path)!r}: could not read labels: {exc}") from None
    y = np.asarray(y).ravel()
    if y.shape[0] != n_images:
        raise CLIError(
            f"--labels {str(path)!r} has {y.shape[0]} labels for {n_images} images."
        )
    return y


def _default_out_dir(prefix):
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path.cwd() / f"{prefix}-{stamp}"
    suffix = 1
    while out.exists():
        suffix += 1
        out = Path.cwd() / f"{prefix}-{stamp}-{suffix}"
    return out


# ---------------------------------------------------------------- scan


def _add_scan_parser(subparsers):
    parser = subparsers.add_parser(
        "scan",
        help="choose the noise level sigma without labels (ICR scan)",
        description=(
            "Scan a grid of noise levels: at each sigma, extract several views of every "
            "image (augmentation + noise) from one layer of a frozen denoiser, measure "
            "the held-out Invariant Contamination Ratio (ICR, lower is cleaner) and, when "
            "labels are known, a linear probe's accuracy for comparison. The chosen sigma "
            "minimises the ICR. With no arguments: sklearn's digits and skicr's shipped "
            "denoiser. With --layers, layers and sigmas are searched together (one "
            "forward pass per sigma reads them all) and scan.png is a heat map of the ICR "
            "over layers x sigma. Writes scan.csv, scan.json and scan.png to --out."
        ),
    )
    d = SCAN_DEFAULTS
    parser.add_argument("--model", default=None,
                        help="a weights file (.pt from skicr.models.save_denoiser) or a local "
                             "diffusers UNet2DModel folder; default: the shipped digits denoiser")
    parser.add_argument("--images", default=None,
                        help="a folder of PNG/JPEG images or a .npy array (n, H, W) or "
                             "(n, C, H, W); default: sklearn's digits")
    parser.add_argument("--labels", default=None,
                        help="labels of --images (.npy or text, one int per image) for the probe")
    parser.add_argument("--n-images", type=_int_at_least(4), default=d["n_images"],
                        help="use a random subset of this many images when there are more "
                             "(default: %(default)s)")
    parser.add_argument("--sigmas", type=parse_sigmas, default=d["sigmas"],
                        help="noise levels: a list 0.05,0.1,0.2 or min:max:num, log-spaced "
                             "(default: %(default)s)")
    parser.add_argument("--layer", default=d["layer"],
                        help="the module whose output is measured (default: the model's "
                             "bottleneck, 'mid' for skicr's denoiser, 'mid_block' for diffusers)")
    parser.add_argument("--layers", type=parse_layers, default=None,
                        help="search layers and sigmas together: comma-separated layer names "
                             "(down.0,down.1,mid,up.0,up.1), all read from one forward pass per "
                             "sigma; reports the best (layer, sigma) and draws the ICR surface "
                             "as a heat map (instead of --layer)")
    parser.add_argument("--pooling", default=d["pooling"], choices=["mean", "flatten", "auto"],
                        help="how a feature map becomes one vector per view: spatial mean, "
                             "or every value (high dimension) (default: %(default)s)")
    parser.add_argument("--augment", default=d["augment"],
                        choices=["none", "weak", "default", "strong"],
                        help="augmentation of each view before the noise: random affine maps, "
                             "weak (scale 0.85-1, +-7.5 deg), default (scale 0.6-1, +-15 deg), "
                             "strong (scale 0.5-1, +-30 deg, shift 10%%); none: noise only "
                             "(default: %(default)s)")
    parser.add_argument("--views", type=_int_at_least(2), default=d["views"],
                        help="views (augmentation + noise) per image (default: %(default)s)")
    parser.add_argument("--cv", type=_int_at_least(1), default=d["cv"],
                        help="folds over images for the held-out ICR and the probe; 1: in-sample "
                             "ICR, no probe (default: %(default)s)")
    parser.add_argument("--no-probe", action="store_true",
                        help="skip the linear probe (label-free only)")
    parser.add_argument("--device", default=None,
                        help="torch device: cpu, cuda, cuda:0, mps (default: the CPU)")
    parser.add_argument("--seed", type=int, default=d["seed"],
                        help="seed of the image subset, the views and the folds "
                             "(default: %(default)s)")
    parser.add_argument("--batch-size", type=_int_at_least(1), default=d["batch_size"],
                        help="images per forward pass (default: %(default)s)")
    parser.add_argument("--n-jobs", type=int, default=None,
                        help="sigmas evaluated in parallel (joblib; default: one at a time)")
    parser.add_argument("--out", default=None,
                        help="output folder (created); default ./scan-YYYYmmdd-HHMMSS")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_scan)
    return parser


def make_probe():
    """The probe of ``skicr scan``: standardised features, multinomial logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=300))


def spearman_neg_icr_accuracy(cv_results):
    """Spearman correlation between -ICR and probe accuracy across the grid (None without probe)."""
    if "mean_probe_accuracy" not in cv_results:
        return None
    from scipy.stats import spearmanr

    rho = spearmanr(-cv_results["mean_icr"], cv_results["mean_probe_accuracy"]).statistic
    return None if not np.isfinite(rho) else float(rho)


def format_scan_table(cv_results, best_index):
    """The printed table: sigma, ICR (+- std), probe accuracy (+- std), the choice marked.

    With a ``layer`` column (a joint layer x sigma search), one row per
    (layer, sigma), the layer first.
    """
    with_probe = "mean_probe_accuracy" in cv_results
    with_layer = "layer" in cv_results
    width = max((len(str(name)) for name in cv_results["layer"]), default=5) if with_layer else 0
    header = f"{'layer':<{width}}  " if with_layer else ""
    header += f"{'sigma':>9}  {'ICR':>15}"
    if with_probe:
        header += f"  {'probe accuracy':>15}"
    lines = [header, "-" * len(header)]
    best_accuracy = int(np.argmax(cv_results["mean_probe_accuracy"])) if with_probe else None
    for i, sigma in enumerate(cv_results["sigma"]):
        row = f"{cv_results['layer'][i]:<{width}}  " if with_layer else ""
        row += f"{sigma:>9.4g}  {cv_results['mean_icr'][i]:>7.4f} +- {cv_results['std_icr'][i]:.4f}"
        if with_probe:
            row += (f"  {cv_results['mean_probe_accuracy'][i]:>7.4f} +- "
                    f"{cv_results['std_probe_accuracy'][i]:.4f}")
        marks = []
        if i == best_index:
            marks.append("<- chosen (lowest ICR)")
        if i == best_accuracy:
            marks.append("<- best probe")
        lines.append(row + ("  " + ", ".join(marks) if marks else ""))
    return "\n".join(lines)


def run_scan(args):
    """Run ``skicr scan`` with parsed arguments; returns the exit code."""
    started = time.perf_counter()
    device = _check_device(args.device)
    out = Path(args.out) if args.out is not None else _default_out_dir("scan")
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {str(out)!r} exists and is not a folder.")

    images, y, data_description = load_scan_data(args.images, args.labels, args.n_images, args.seed)
    backbone, model_description = load_backbone(args.model, device)

    from skicr import FeatureExtractor, NoiseLevelSelector

    if args.layers is not None and args.layer is not None:
        raise CLIError("give --layer (one layer) or --layers (a joint search), not both.")
    use_probe = not args.no_probe and y is not None and args.cv >= 2
    if not args.no_probe and y is not None and args.cv < 2:
        print("note: --cv 1 measures no held-out probe accuracy; the probe is skipped.",
              file=sys.stderr)
    extractor = FeatureExtractor(
        backbone,
        layer=args.layers[0] if args.layers is not None else args.layer,
        n_views=args.views,
        pooling=args.pooling,
        augment=augment_presets()[args.augment],
        batch_size=args.batch_size,
        device=device,
        random_state=args.seed,
    )
    try:
        # resolves the layer and checks the images on one image: fail before the scan
        layer = extractor.fit(images[:2]).layer_
        if args.layers is not None:
            from skicr.extraction._extractor import _check_layer_list

            layer = _check_layer_list(extractor.backbone_, args.layers)
    except (ValueError, TypeError) as exc:
        raise CLIError(f"{exc}") from None
    selector = NoiseLevelSelector(
        extractor,
        args.sigmas,
        layers=args.layers,
        probe=make_probe() if use_probe else None,
        cv=args.cv,
        n_jobs=args.n_jobs,
        refit=False,
        random_state=args.seed,
        progress=not args.quiet,
    )
    where = f"layer {layer!r}" if args.layers is None else f"layers {', '.join(layer)}"
    print(f"skicr scan: {model_description}, {where} ({args.pooling}), "
          f"{len(images)} {data_description}, {args.views} views, "
          f"{len(args.sigmas)} sigmas, cv={args.cv}", file=sys.stderr)
    from threadpoolctl import threadpool_limits

    try:
        # the scan's matrices are small (d x d, d ~ 100; a probe per fold): BLAS
        # threads only contend with torch's for the cores, which made the probe
        # up to 100x slower on 2 cores; torch keeps its own threads
        with threadpool_limits(limits=1, user_api="blas"):
            selector.fit(images, y if use_probe else None)
    except (ValueError, TypeError, KeyError) as exc:
        # bad layer/pooling names, images the model cannot take, ...
        raise CLIError(f"{exc}", code=1) from None

    results = selector.cv_results_
    rho = spearman_neg_icr_accuracy(results)
    print(format_scan_table(results, selector.best_index_))
    kind = "held-out" if selector.n_splits_ > 1 else "in-sample"
    chosen = f"sigma = {selector.best_sigma_:.4g}"
    if args.layers is not None:
        chosen = f"layer {selector.best_layer_!r}, {chosen}"
    summary = f"chosen {chosen} (lowest {kind} ICR = {-selector.best_score_:.4f})"
    if use_probe:
        best_accuracy = int(np.argmax(results["mean_probe_accuracy"]))
        peak = f"sigma = {results['sigma'][best_accuracy]:.4g}"
        if args.layers is not None:
            peak = f"layer {results['layer'][best_accuracy]!r}, {peak}"
        summary += f"; probe accuracy peaks at {peak}; Spearman(-ICR, accuracy) = {rho:.3f}"
    print(summary)

    out.mkdir(parents=True, exist_ok=True)
    _write_scan_outputs(out, args, selector, rho, model_description, data_description,
                        layer=layer, n_images=len(images), seconds=time.perf_counter() - started)
    print(f"wrote {out / 'scan.csv'}, scan.json, scan.png")
    return 0


def _describe_probe(selector):
    probe = selector.probe
    steps = getattr(probe, "steps", [(None, probe)])
    return {
        "model": " + ".join(repr(step) for _, step in steps),
        "features": selector.probe_features,
        "folds": selector.n_splits_,
    }


def _write_scan_outputs(out, args, selector, rho, model_description, data_description,
                        layer, n_images, seconds):
    import pandas as pd

    results = selector.cv_results_
    table = {"layer": results["layer"]} if "layer" in results else {}
    table.update(sigma=results["sigma"], icr=results["mean_icr"], icr_std=results["std_icr"])
    if "mean_probe_accuracy" in results:
        table["probe_accuracy"] = results["mean_probe_accuracy"]
        table["probe_accuracy_std"] = results["std_probe_accuracy"]
    else:
        table["probe_accuracy"] = np.full(results["sigma"].shape, np.nan)  # documented: no probe
    table["chosen"] = np.arange(results["sigma"].size) == selector.best_index_
    table["extract_time"] = results["extract_time"]
    pd.DataFrame(table).to_csv(out / "scan.csv", index=False)

    best_accuracy_sigma = best_accuracy_layer = None
    if "mean_probe_accuracy" in results:
        peak = int(np.argmax(results["mean_probe_accuracy"]))
        best_accuracy_sigma = float(results["sigma"][peak])
        if "layer" in results:
            best_accuracy_layer = str(results["layer"][peak])
    report = {
        "command": "skicr scan",
        "settings": {
            "model": model_description,
            "images": data_description,
            "n_images": n_images,
            "layer": layer if args.layers is None else None,
            "layers": args.layers,
            "pooling": args.pooling,
            "augment": args.augment,
            "views": args.views,
            "sigmas": [float(s) for s in results["sigma"]],
            "cv": args.cv,
            "probe": _describe_probe(selector) if "mean_probe_accuracy" in results else None,
            "seed": args.seed,
            "device": args.device or "cpu",
        },
        "choice": {
            "best_sigma": selector.best_sigma_,
            "best_index": selector.best_index_,
            "best_icr": -selector.best_score_,
            "probe_best_sigma": best_accuracy_sigma,
            **({} if args.layers is None else {"best_layer": selector.best_layer_,
                                               "probe_best_layer": best_accuracy_layer}),
            "spearman_neg_icr_vs_accuracy": rho,
        },
        "seconds": round(seconds, 2),
    }
    (out / "scan.json").write_text(json.dumps(report, indent=2) + "\n")

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed, scan.png not written "
              "(pip install 'skicr[plot]').", file=sys.stderr)
        return
    ax = selector.plot()
    where = f"layer {layer}" if args.layers is None else "layer x sigma"
    ax.set_title(f"skicr scan: {model_description}, {where}", fontsize="medium")
    if args.layers is None:
        ax.figure.tight_layout()
        ax.figure.savefig(out / "scan.png", dpi=120)
    else:
        # the heat map's colour bar and legend: tight_layout cannot fit them on a small figure
        ax.figure.savefig(out / "scan.png", dpi=120, bbox_inches="tight")
    plt.close(ax.figure)


# ---------------------------------------------------------------- entry point

#: builders of the subcommands, in the order ``skicr --help`` lists them
def _add_track_parser(subparsers):
    # imported here: skicr.monitoring._cli imports this module for CLIError
    from skicr.monitoring._cli import register

    return register(subparsers)


_COMMANDS = [_add_scan_parser, _add_track_parser]


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
    args = parser.parse_args(argv)  # exits 2 with a usage message on bad arguments
    try:
        return args.func(args)
    except CLIError as exc:
        print(f"skicr {args.command}: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print(f"skicr {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
