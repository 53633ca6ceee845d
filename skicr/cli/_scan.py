"""``skicr scan``: choose the noise level (and layer) without labels."""

import pickle
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from .._utils.plotting import cli_pyplot, save_figure
from .._utils.validation import check_layer_list
from ..model_selection import LAYER_SEARCH_DEFAULTS
from ..recipes import SCAN_DEFAULTS, augment_presets, make_probe, parse_sigmas
from ._common import (
    CLIError,
    ReportWriter,
    apply_thread_default,
    argument_type,
    check_device,
    check_out_dir,
    default_out_dir,
    float_option,
    int_at_least,
    n_jobs_option,
    parse_layers,
    run_interruptibly,
)

__all__ = ["add_scan_parser", "run_scan", "load_backbone", "load_scan_data", "load_scan_stream",
           "open_scan_dataset"]


def load_backbone(model, device=None, *, arch=None, vae=None, class_label=None):
    """The backbone for ``--model``: the shipped denoiser, a weights or release file, a folder.

    Parameters
    ----------
    model : str or None
        None for the shipped ``digits`` denoiser; a path to a ``.pt`` weights
        file written by ``skicr.models.save_denoiser``; an NVlabs EDM pickle
        (``edm-*.pkl``, read without running its code); a DiT / SiT release
        state dict (``SiT-XL-2-256x256.pt``); or a local diffusers directory
        (a ``UNet2DModel`` folder with ``config.json``, or a pipeline folder
        with a ``unet/`` subfolder).
    device : str or None
        Where to put the network.
    arch : str or None, default=None
        ``--arch``: the DiT / SiT config (``SiT-XL/2``), read from the file
        name when None.
    vae : str or None, default=None
        ``--vae``: a local diffusers ``AutoencoderKL`` folder (DiT / SiT on pixels).
    class_label : int or None, default=None
        ``--class-label``: the class to condition on.

    Returns
    -------
    backbone : torch.nn.Module or skicr.extraction.Backbone
        The network (eval mode), or its adapter.
    description : str
        What was loaded, for the report.
    """
    from skicr import models
    from skicr.extraction import load_backbone as load_any_backbone

    if model is None:
        if arch is not None or vae is not None or class_label is not None:
            raise CLIError("--arch, --vae and --class-label need --model.")
        return models.load_pretrained("digits", device=device), "skicr digits (shipped)"
    path = Path(model)
    if not path.exists():
        raise CLIError(f"--model {model!r}: no such file or directory.")
    options = dict(arch=arch, vae=vae, class_label=class_label)
    if path.is_file():
        plain = all(value is None for value in options.values())
        if plain and path.suffix != ".pkl":
            try:
                return models.load_denoiser(path, device=device), f"weights file {path}"
            except (ValueError, OSError):
                pass  # not skicr's own format: a release file?
        try:
            backbone = load_any_backbone(path, device=device, **options)
        except (ValueError, TypeError, OSError, pickle.UnpicklingError) as exc:
            raise CLIError(f"--model {model!r}: {_one_line(exc)}") from None
        return backbone, f"{type(backbone.module).__name__} from {path}"
    if arch is not None:
        raise CLIError("--arch applies to DiT / SiT release files, not to folders.")
    try:
        backbone = load_any_backbone(path, device=device, vae=vae, class_label=class_label)
        return backbone, f"diffusers model {path}"
    except ImportError:
        raise CLIError(
            f"--model {model!r} is a folder, read as a diffusers model, but diffusers is "
            "not installed: pip install 'skicr[diffusers]'."
        ) from None
    except Exception as exc:  # diffusers raises many types for broken folders
        raise CLIError(f"--model {model!r}: not a loadable diffusers model folder: "
                       f"{_one_line(exc)}") from None


def _one_line(exc):
    return " ".join(str(exc).split())


def load_scan_data(images, labels, n_images, seed):
    """Images (and labels) for ``skicr scan``.

    Parameters
    ----------
    images : str or None
        None for sklearn's digits (with labels); a flat folder of PNG/JPEG
        images, a class-per-folder tree (labels from the folder names), a
        ``.npy`` / ``.npz`` array or a Hugging Face dataset (``save_to_disk``
        folder, ``.parquet`` / ``.arrow``).
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
        if _is_flat_folder_or_npy(path):
            try:
                x = datasets.load_images(path)
            except (ValueError, OSError) as exc:
                raise CLIError(f"--images {images!r}: {exc}") from None
            y = None
        else:
            # a class tree, .npz or Hugging Face dataset: decode only the images used
            dataset = open_scan_dataset(images)
            rows = _subset(len(dataset), n_images, seed)
            n_images = None
            items = [dataset[int(i)] for i in rows]
            with_labels = getattr(dataset, "targets", None) is not None
            x = np.stack([(item[0] if with_labels else item).numpy() for item in items])
            y = np.asarray([item[1] for item in items]) if with_labels else None
        description = f"images from {path}"
        if labels is not None:
            y = _load_labels(labels, len(x))
    keep = _subset(len(x), n_images, seed)
    if keep.size < len(x):
        x = x[keep]
        y = None if y is None else y[keep]
    return x, y, description


def _subset(n_total, n_images, seed):
    """The sorted image numbers of the random subset of ``n_images`` (all when None or more)."""
    if n_images is None or n_images >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).choice(n_total, n_images, replace=False))


def _is_flat_folder_or_npy(path):
    """Read by :func:`skicr.datasets.load_images` (the scan's original inputs)."""
    from skicr.datasets import IMAGE_EXTENSIONS

    if path.is_file():
        return path.suffix.lower() == ".npy"
    return any(p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS for p in path.iterdir())


def open_scan_dataset(images):
    """``--images`` as a dataset read one image at a time (the streaming scan's input)."""
    from skicr.datasets import open_image_dataset

    path = Path(images)
    if not path.exists():
        raise CLIError(f"--images {images!r}: no such file or directory.")
    try:
        return open_image_dataset(path)
    except ImportError as exc:
        raise CLIError(f"--images {images!r}: {exc}") from None
    except (ValueError, OSError) as exc:
        raise CLIError(f"--images {images!r}: {_one_line(exc)}") from None


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


def add_scan_parser(subparsers):
    """Add the ``scan`` subcommand to ``subparsers``; its ``func`` is :func:`run_scan`."""
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
                        help="a weights file (.pt from skicr.models.save_denoiser), an NVlabs "
                             "EDM pickle (edm-*.pkl, read without running its code), a DiT / "
                             "SiT release file (SiT-XL-2-256x256.pt) or a local diffusers "
                             "UNet2DModel folder; default: the shipped digits denoiser")
    parser.add_argument("--arch", default=None,
                        help="DiT / SiT release config of --model: SiT-XL/2, DiT-B/4, ... (sizes "
                             "S, B, L, XL; patches 2, 4, 8), or SiT / DiT to read the sizes from "
                             "the file; default: read from the file name")
    parser.add_argument("--vae", default=None,
                        help="a local diffusers AutoencoderKL folder (e.g. sd-vae-ft-ema) that "
                             "encodes the images for a DiT / SiT --model; default: the images "
                             "are latents")
    parser.add_argument("--class-label", type=int, default=None,
                        help="class to condition on (default: the null class of DiT / SiT; "
                             "required for class-conditional EDM pickles)")
    parser.add_argument("--images", default=None,
                        help="a folder of PNG/JPEG images, a class-per-folder tree (labels from "
                             "the folder names, for the probe), a .npy / .npz array (n, H, W) or "
                             "(n, C, H, W), or a Hugging Face dataset (save_to_disk folder, "
                             ".parquet, .arrow); default: sklearn's digits")
    parser.add_argument("--labels", default=None,
                        help="labels of --images (.npy or text, one int per image) for the probe")
    parser.add_argument("--n-images", type=int_at_least(4), default=None,
                        help="use a random subset of this many images when there are more "
                             f"(default: {d['n_images']}; with --stream: all)")
    parser.add_argument("--sigmas", type=argument_type(parse_sigmas), default=d["sigmas"],
                        help="noise levels: a list 0.05,0.1,0.2 or min:max:num, log-spaced "
                             "(default: %(default)s); all positive")
    parser.add_argument("--layer", default=d["layer"],
                        help="the module whose output is measured (default: the model's "
                             "bottleneck, 'mid' for skicr's denoiser, 'mid_block' for diffusers)")
    parser.add_argument("--layers", type=parse_layers, default=None,
                        help="search layers and sigmas together: comma-separated layer names "
                             "(down.0,down.1,mid,up.0,up.1), all read from one forward pass per "
                             "sigma; reports the best (layer, sigma) and draws the ICR surface "
                             "as a heat map (instead of --layer)")
    parser.add_argument("--layer-scoring", default=None,
                        choices=["auto", "icr", "icr_insample", "lidar", "rankme", "icr_top",
                                 "icr_pca", "invariant_rank", "invariant_dims", "probe", "joint"],
                        help="with --layers: give each layer its own sigma (by --scoring and "
                             "--rule) and compare the layers at those sigmas by this criterion; "
                             "probe: by the probe's accuracy (needs labels; see "
                             "--labels-per-class); joint: the best --scoring cell over all "
                             "layers and sigmas. Default: auto, as NoiseLevelSelector: "
                             f"{LAYER_SEARCH_DEFAULTS['layer_scoring']}, the layer study's "
                             "label-free choice, which it found unreliable (docs/layer_study.md)")
    parser.add_argument("--labels-per-class", type=int_at_least(1), default=None,
                        help="few-labels mode: the probe uses only this many labelled images "
                             "per class (a seeded draw; label -1 in --labels marks an unlabelled "
                             "image); with --layers --layer-scoring probe the layer is chosen "
                             "from these labels and sigma without labels")
    parser.add_argument("--pooling", default=d["pooling"], choices=["mean", "flatten", "auto"],
                        help="how a feature map becomes one vector per view: spatial mean, "
                             "or every value (high dimension) (default: %(default)s)")
    parser.add_argument("--augment", default=d["augment"],
                        choices=["none", "weak", "default", "strong"],
                        help="augmentation of each view before the noise: random affine maps, "
                             "weak (scale 0.85-1, +-7.5 deg), default (scale 0.6-1, +-15 deg), "
                             "strong (scale 0.5-1, +-30 deg, shift 10%%); none: noise only "
                             "(default: %(default)s)")
    parser.add_argument("--views", type=int_at_least(2), default=d["views"],
                        help="views (augmentation + noise) per image (default: %(default)s)")
    parser.add_argument("--scoring", default=d["scoring"],
                        choices=["icr", "icr_insample", "lidar", "rankme", "icr_top", "icr_pca",
                                 "invariant_rank", "invariant_dims"],
                        help="the label-free criterion that chooses sigma: held-out ICR, "
                             "in-sample ICR, LiDAR or RankMe (the last four: criteria meant for "
                             "comparing layers, docs/layer_study.md); all are measured on the "
                             "same folds (default: %(default)s, see docs/scan.md)")
    parser.add_argument("--rule", default=None,
                        choices=["best", "one_se_low", "one_se_high", "knee"],
                        help="how the criterion's curve picks sigma: its optimum, the smallest "
                             "or largest sigma within one fold standard error of it, or the knee "
                             f"(default: {d['rule']}; with --layers, within each layer: "
                             f"{LAYER_SEARCH_DEFAULTS['selection_rule']}, the layer study's "
                             "choice)")
    parser.add_argument("--tau", default=d["tau"],
                        type=float_option(lambda v: 0 <= v < float("inf"),
                                          "a finite number >= 0"),
                        help="ridge of the decomposer, relative to tr(Sigma_xi)/d (default: "
                             "%(default)s; 1e-3 with --rule best is the previous default)")
    parser.add_argument("--cv", type=int_at_least(1), default=d["cv"],
                        help="folds over images for the held-out ICR and the probe; 1: in-sample "
                             "ICR, no probe (default: %(default)s)")
    parser.add_argument("--no-probe", action="store_true",
                        help="skip the linear probe (label-free only)")
    parser.add_argument("--threads", type=int_at_least(1), default=None,
                        help="torch and BLAS CPU threads (default: 1 for a network under 5M "
                             "parameters, such as the shipped denoiser, all cores for larger "
                             "ones, unless OMP_NUM_THREADS is set; see docs/scaling.md)")
    parser.add_argument("--device", default=None,
                        help="torch device: cpu, cuda, cuda:0, mps (default: the CPU)")
    parser.add_argument("--image-channels", type=int, choices=[1, 3], default=None,
                        help="convert the images to 1 (grey, luminance) or 3 (RGB, the grey "
                             "channel repeated) channels, for a model trained on the other kind "
                             "(default: as they are)")
    parser.add_argument("--seed", type=int_at_least(0), default=d["seed"],
                        help="seed of the image subset, the views and the folds "
                             "(default: %(default)s)")
    parser.add_argument("--batch-size", type=int_at_least(1), default=d["batch_size"],
                        help="images per forward pass (default: %(default)s)")
    parser.add_argument("--n-jobs", type=n_jobs_option, default=None,
                        help="sigmas evaluated in parallel (joblib: -1 all cores; default: one "
                             "at a time)")
    parser.add_argument("--stream", action="store_true",
                        help="stream the images once per sigma (per-fold statistics, memory that "
                             "does not grow with the images; see docs/scaling.md) instead of "
                             "holding them in memory; automatic under torchrun with several "
                             "processes")
    parser.add_argument("--num-workers", type=int_at_least(0), default=0,
                        help="with --stream: DataLoader processes that decode the images "
                             "(default: %(default)s)")
    parser.add_argument("--checkpoint", default=None,
                        help="with --stream: a folder for per-sigma checkpoints; rerunning the "
                             "same command with it resumes an interrupted scan")
    parser.add_argument("--out", default=None,
                        help="output folder (created); default ./scan-YYYYmmdd-HHMMSS")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_scan)
    return parser


#: what each verdict of NoiseLevelSelector.decision_ means, and what to try
_DECISION_SENTENCES = {
    "interior": (
        "The {criterion} has a clear optimum inside the grid: sigma = {sigma:.4g} stands out "
        "from its neighbouring sigmas by more than the fold-to-fold noise."
    ),
    "grid_edge": (
        "Warning: the {criterion} is best at the {end} end of the grid (sigma = {sigma:.4g}): "
        "the scan found no optimum inside the grid, so this sigma is not a measured semantic "
        "window. Try a grid that reaches further {direction} (--sigmas), another layer "
        "(--layer, --layers), or stronger views (--augment strong)."
    ),
    "flat": (
        "Warning: the {criterion} curve is flat around sigma = {sigma:.4g}: its advantage over "
        "a neighbouring sigma is smaller than the fold-to-fold noise, so neighbouring sigmas "
        "are as good by this measure and the choice means little. Try more images "
        "(--n-images) or views (--views), another layer (--layer, --layers), or stronger "
        "views (--augment strong)."
    ),
}
_CRITERION_NAMES = {"icr": "held-out ICR", "icr_insample": "in-sample ICR", "lidar": "LiDAR",
                    "rankme": "RankMe", "probe": "probe accuracy",
                    "icr_top": "held-out ICR of the top directions",
                    "icr_pca": "held-out ICR at a common width",
                    "invariant_rank": "effective rank of the invariant part",
                    "invariant_dims": "number of invariant dimensions"}


def layer_choice_sentence(selector):
    """The printed sentence on a joint (layer, sigma) choice: the library's message, and the
    options that check a label-free layer.

    Parameters
    ----------
    selector : NoiseLevelSelector
        Fitted with ``layers``: its ``layer_choice_`` (the ``layer_choice`` field of
        ``scan.json``) is said as it is.

    Returns
    -------
    sentence : str
    """
    report = selector.layer_choice_
    message = report["message"]
    if report["settled"]:
        return f"Note: {message}"
    k = report["study"]["few_labels"]["k"]
    return (f"Warning: {message} On the command line: --labels FILE --layer-scoring probe "
            f"--labels-per-class {k}.")


def decision_sentence(selector):
    """The plain-language verdict of a fitted NoiseLevelSelector: what it means, what to try.

    Parameters
    ----------
    selector : NoiseLevelSelector
        Fitted.

    Returns
    -------
    sentence : str
    """
    scoring = selector.scoring if isinstance(selector.scoring, str) else "score"
    sigmas = selector.cv_results_["sigma"]
    if "layer" in selector.cv_results_:
        sigmas = sigmas[selector.cv_results_["layer"] == selector.best_layer_]
    low_end = selector.best_sigma_ <= sigmas.min()
    return _DECISION_SENTENCES[selector.decision_].format(
        criterion=_CRITERION_NAMES.get(scoring, scoring), sigma=selector.best_sigma_,
        end="low" if low_end else "high", direction="down" if low_end else "up",
    )


def spearman_neg_icr_accuracy(cv_results):
    """Spearman correlation between -ICR and probe accuracy across the grid (None without probe)."""
    if "mean_probe_accuracy" not in cv_results:
        return None
    from scipy.stats import spearmanr

    if min(np.ptp(-cv_results["mean_icr"]), np.ptp(cv_results["mean_probe_accuracy"])) == 0:
        return None  # one grid point or a constant column: undefined (said in the report)
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
            marks.append("<- chosen")
        if i == best_accuracy:
            marks.append("<- best probe")
        lines.append(row + ("  " + ", ".join(marks) if marks else ""))
    return "\n".join(lines)


def _start_distributed(device):
    """Under ``torchrun`` with several processes: the process group (gloo on CPU, NCCL on CUDA).

    Returns (rank, world size, device, whether this call created the group).
    """
    import os

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return 0, 1, device, False
    import torch
    import torch.distributed as dist

    created = False
    if not dist.is_initialized():
        if device is not None and str(device).startswith("cuda"):
            local_rank = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local_rank)
            device = f"cuda:{local_rank}"
            dist.init_process_group("nccl")
        else:
            dist.init_process_group("gloo")
        created = True
    return dist.get_rank(), dist.get_world_size(), device, created


def _is_rank0():
    import os

    return int(os.environ.get("RANK", "0")) == 0


def _rank0_out_dir(args, rank, world_size):
    """``--out`` (or a new default folder), chosen by rank 0 and the same on every rank."""
    out = None
    if rank == 0:
        out = check_out_dir(Path(args.out) if args.out is not None else default_out_dir("scan"))
    if world_size > 1:
        import torch.distributed as dist

        shared = [out]
        dist.broadcast_object_list(shared, src=0)
        out = shared[0]
    return out


def load_scan_stream(images, labels, n_images, seed):
    """The dataset (read one image at a time) and labels for ``skicr scan --stream``.

    Parameters
    ----------
    images : str or None
        As for :func:`load_scan_data`; None for sklearn's digits.
    labels : str or None
        A ``.npy`` or text file of one label per image.
    n_images : int or None
        A random subset of this many images (seeded by ``seed``); None: all.
    seed : int
        Seed of the subset.

    Returns
    -------
    dataset : torch.utils.data.Dataset
    y : ndarray or None
    description : str
    """
    from torch.utils.data import Subset

    from skicr import datasets

    if images is None:
        if labels is not None:
            raise CLIError("--labels needs --images (the digits come with their labels).")
        x, y = datasets.load_digits_images(return_y=True)
        dataset, description = datasets.ArrayImageDataset(x, labels=y), "sklearn digits"
    else:
        dataset = open_scan_dataset(images)
        description = f"images from {Path(images)}"
    y = getattr(dataset, "targets", None)
    if labels is not None:
        y = _load_labels(labels, len(dataset))
    rows = _subset(len(dataset), n_images, seed)
    if rows.size < len(dataset):
        dataset = Subset(dataset, rows.tolist())
        y = None if y is None else np.asarray(y)[rows]
    return dataset, y, description


class _ChannelsDataset:
    """Items of a dataset with their images converted to ``channels`` (``--image-channels``)."""

    def __init__(self, dataset, channels):
        self.dataset, self.channels = dataset, channels

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        import torch

        item = self.dataset[index]
        image = item[0] if isinstance(item, (tuple, list)) else item
        converted = torch.from_numpy(np.ascontiguousarray(
            _convert_channels(np.asarray(image)[None], "nchw", self.channels)[0]))
        return (converted, *item[1:]) if isinstance(item, (tuple, list)) else converted


def _first_images(dataset):
    """The first two images of a dataset, stacked: the checks run on them."""
    items = [dataset[i] for i in range(min(2, len(dataset)))]
    return np.stack([np.asarray(item[0] if isinstance(item, (tuple, list)) else item)
                     for item in items])


def _resolve_layer_defaults(args):
    """``--rule`` and ``--layer-scoring`` left unset: the layer study's procedure with
    ``--layers`` (skicr.model_selection.LAYER_SEARCH_DEFAULTS, the library's default too), the
    single-layer default otherwise."""
    if args.rule is None:
        args.rule = (SCAN_DEFAULTS["rule"] if args.layers is None
                     else LAYER_SEARCH_DEFAULTS["selection_rule"])
    if args.layer_scoring is None and args.layers is not None:
        args.layer_scoring = "auto"  # resolved by NoiseLevelSelector, as in the library


def run_scan(args):
    """Run ``skicr scan`` with parsed arguments; returns the exit code."""
    started = time.perf_counter()
    _resolve_layer_defaults(args)
    device = check_device(args.device)
    rank, world_size, device, created = _start_distributed(device)
    try:
        return _run_scan(args, started, device, rank, world_size)
    finally:
        if created:
            import torch.distributed as dist

            dist.destroy_process_group()


def _run_scan(args, started, device, rank, world_size):
    stream = args.stream or world_size > 1
    if not stream and (args.num_workers or args.checkpoint is not None):
        raise CLIError("--num-workers and --checkpoint need --stream.")
    if stream and args.layers is not None:
        raise CLIError("--layers (a joint layer x sigma search) needs the images in memory; "
                       "give one --layer with --stream (or under torchrun).")
    if stream and args.scoring not in ("icr", "icr_insample", "lidar", "rankme"):
        raise CLIError(f"--scoring {args.scoring} is measured by the in-memory scan only; with "
                       "--stream (or under torchrun) use icr, icr_insample, lidar or rankme.")
    if stream and getattr(args, "labels_per_class", None) is not None:
        raise CLIError("--labels-per-class (the few-labels probe) needs the images in memory; "
                       "drop --stream.")
    if stream and args.n_jobs is not None:
        raise CLIError("--n-jobs evaluates sigmas in parallel in memory; with --stream, scale "
                       "out with torchrun instead.")
    out = _rank0_out_dir(args, rank, world_size)
    if args.layers is not None and args.layer is not None:
        raise CLIError("give --layer (one layer) or --layers (a joint search), not both.")
    quiet = args.quiet or rank != 0
    if rank != 0:
        args.quiet = True

    if stream:
        data, y, data_description = load_scan_stream(args.images, args.labels, args.n_images,
                                                     args.seed)
    else:
        n_images = SCAN_DEFAULTS["n_images"] if args.n_images is None else args.n_images
        data, y, data_description = load_scan_data(args.images, args.labels, n_images, args.seed)
    backbone, model_description = load_backbone(args.model, device, arch=args.arch,
                                                vae=args.vae, class_label=args.class_label)
    if stream:
        first = _check_channels(_first_images(data), backbone, args.image_channels)
        if args.image_channels is not None and first.shape[1] != _first_images(data).shape[1]:
            data = _ChannelsDataset(data, args.image_channels)
        images = first
    else:
        images = data = _check_channels(data, backbone, args.image_channels)
    if rank == 0:
        _note_training_size(images, backbone)

    selector, layer, use_probe = _make_selector(args, images, y, backbone, device, stream=stream)
    where = f"layer {layer!r}" if args.layers is None else f"layers {', '.join(layer)}"
    mode = ""
    if stream:
        mode = ", streamed" + (f" by {world_size} processes" if world_size > 1 else "")
    if rank == 0:
        print(f"skicr scan: {model_description}, {where} ({args.pooling}), "
              f"{len(data)} {data_description}{mode}, {args.views} views, "
              f"{len(args.sigmas)} sigmas, cv={args.cv}", file=sys.stderr)
    from threadpoolctl import threadpool_limits

    apply_thread_default(args.threads, getattr(backbone, "module", backbone))
    # pooled features are narrow (d = channels): one BLAS thread for the probe
    # and the decomposer, whose threads only contend with torch's for the cores
    # (up to 100x slower on 2 cores); flattened maps are wide and keep the
    # process's BLAS threads (skicr._utils.threads)
    narrow = args.pooling != "flatten" and args.threads is None

    def scan():
        import warnings

        from skicr.model_selection import (
            LayerChoiceWarning,
            NoiseLevelDecisionWarning,
            NoiseLevelGridWarning,
        )

        blas = threadpool_limits(limits=1, user_api="blas") if narrow else nullcontext()
        with blas, warnings.catch_warnings():
            # said below as plain sentences (and written to scan.json)
            warnings.simplefilter("ignore", NoiseLevelDecisionWarning)
            warnings.simplefilter("ignore", NoiseLevelGridWarning)
            warnings.simplefilter("ignore", LayerChoiceWarning)
            return selector.fit(data, y if use_probe else None)

    try:
        run_interruptibly(scan, label="skicr scan", heartbeat=not quiet)
    except (ValueError, TypeError, KeyError) as exc:
        # bad layer/pooling names, images the model cannot take, ...
        raise CLIError(f"{exc}", code=1) from None
    if rank != 0:
        return 0  # every rank holds the same results; rank 0 reports them

    results = selector.cv_results_
    rho = spearman_neg_icr_accuracy(results)
    undefined = _undefined_quantities(results, rho, use_probe)
    print(format_scan_table(results, selector.best_index_))
    kind = "held-out" if selector.n_splits_ > 1 else "in-sample"
    chosen = f"sigma = {selector.best_sigma_:.4g}"
    if args.layers is not None:
        chosen = f"layer {selector.best_layer_!r}, {chosen}"
    if args.scoring == "icr":
        # with a rule other than "best" the chosen sigma need not have the lowest ICR
        lowest = "lowest " if args.rule == "best" else ""
        summary = f"chosen {chosen} ({lowest}{kind} ICR = {-selector.best_score_:.4f}"
    else:
        summary = f"chosen {chosen} (by {args.scoring}: {abs(selector.best_score_):.4f}"
    summary += ")" if args.rule == "best" else f", rule {args.rule})"
    if use_probe:
        best_accuracy = int(np.argmax(results["mean_probe_accuracy"]))
        peak = f"sigma = {results['sigma'][best_accuracy]:.4g}"
        if args.layers is not None:
            peak = f"layer {results['layer'][best_accuracy]!r}, {peak}"
        correlation = (f"{rho:.3f}" if rho is not None
                       else f"undefined ({undefined['spearman_neg_icr_vs_accuracy']})")
        summary += f"; probe accuracy peaks at {peak}; Spearman(-ICR, accuracy) = {correlation}"
    print(summary)
    if selector.clamped_sigmas_:
        pairs = ", ".join(f"{a:g} -> {b:g}" for a, b in selector.clamped_sigmas_.items())
        print(f"note: the model's noise schedule cannot reach {len(selector.clamped_sigmas_)} "
              f"grid sigma(s) as distinct noise levels (same timestep as another grid sigma); "
              f"each was scored once, at the kept sigma: {pairs}.")
    print(decision_sentence(selector))
    if args.layers is not None:
        print(layer_choice_sentence(selector))

    writer = ReportWriter(out, "scan.json")
    try:
        _write_scan_outputs(writer, args, selector, rho, undefined, model_description,
                            data_description, layer=layer, n_images=len(data),
                            started=started, stream=stream, world_size=world_size)
    finally:
        writer.discard()
    print(f"wrote {out / 'scan.csv'}, " + ", ".join(writer.files[1:] + ["scan.json"]))
    return 0


def _undefined_quantities(results, rho, use_probe):
    """Name -> why, for each reported quantity the grid cannot define."""
    if not use_probe or rho is not None:
        return {}
    n_points = len(results["sigma"])
    if n_points < 2:
        why = "one grid point: a rank correlation needs at least two"
    elif np.ptp(results["mean_probe_accuracy"]) == 0:
        why = "the probe accuracy is the same at every grid point"
    else:
        why = "the ICR is the same at every grid point"
    return {"spearman_neg_icr_vs_accuracy": why}


def _check_channels(images, backbone, channels):
    """The images with the channel count the model takes: converted on request, else a clear error."""
    from skicr.extraction import as_backbone

    from .._utils.images import check_images

    try:
        batches = check_images(images)
    except (ValueError, TypeError) as exc:
        raise CLIError(f"--images: {exc}") from None
    have = batches.n_channels
    expected = as_backbone(backbone).in_channels
    if channels is not None and channels != have:
        images = _convert_channels(images, batches.layout, channels)
        have = channels
    if expected is not None and have != expected:
        kind = {1: "grey", 3: "RGB"}
        raise CLIError(
            f"the model takes {expected}-channel images but the images, of shape "
            f"{tuple(np.shape(images))}, have {have} channel(s)"
            + (f"; add --image-channels {expected} to convert them "
               f"({kind.get(have, have)} to {kind[expected]})" if expected in kind and have in (1, 3)
               else "") + "."
        )
    return images


def _convert_channels(images, layout, channels):
    """Grey <-> RGB, as (n, C, H, W): grey repeated to RGB; RGB to grey by ITU-R 601 luminance."""
    images = np.asarray(images)
    if layout == "nhw":
        images = images[:, None]
    elif layout == "nhwc":
        images = images.transpose(0, 3, 1, 2)
    have = images.shape[1]
    if channels == 3 and have == 1:
        return np.repeat(images, 3, axis=1)
    if channels == 1 and have in (3, 4):  # an alpha channel is dropped
        luminance = np.tensordot(np.array([0.299, 0.587, 0.114]), images[:, :3].astype(np.float64),
                                 axes=(0, 1))[:, None]
        if images.dtype == np.uint8:
            return np.clip(np.rint(luminance), 0, 255).astype(np.uint8)
        return np.clip(luminance, 0, 1).astype(np.float32)
    raise CLIError(f"--image-channels {channels}: cannot convert {have}-channel images.")


def _training_size(backbone):
    """(H, W) the model records it was trained on, or None."""
    module = getattr(backbone, "module", backbone)
    config = getattr(module, "config", None)
    if config is None:
        return None
    size = None
    for key in ("image_size", "sample_size"):
        try:
            size = config[key]
        except (KeyError, TypeError):
            size = getattr(config, key, None)
        if size is not None:
            break
    if isinstance(size, int):
        return (size, size)
    if isinstance(size, (list, tuple)) and len(size) == 2:
        return tuple(int(s) for s in size)
    return None


def _note_training_size(images, backbone):
    from .._utils.images import check_images

    trained = _training_size(backbone)
    size = tuple(int(s) for s in check_images(images).image_size)
    if trained is not None and size != trained:
        print(f"note: the model was trained on {trained[0]}x{trained[1]} images; these are "
              f"{size[0]}x{size[1]}, so its features may mean less (resize them to match).",
              file=sys.stderr)


def _make_selector(args, images, y, backbone, device, stream=False):
    """The scan's selector, its layer(s) checked on two images; whether the probe runs."""
    from skicr import (FeatureExtractor, InvariantResidualDecomposer, NoiseLevelSelector,
                       StreamingNoiseLevelSelector)

    needs_labels = args.layer_scoring == "probe" or args.labels_per_class is not None
    if needs_labels and (y is None or args.no_probe):
        raise CLIError("--layer-scoring probe and --labels-per-class need --labels (and the "
                       "probe: drop --no-probe).")
    if args.layer_scoring is not None and args.layers is None:
        raise CLIError("--layer-scoring compares layers: give --layers as well.")
    use_probe = not args.no_probe and y is not None and (args.cv >= 2 or needs_labels)
    if not args.no_probe and y is not None and args.cv < 2 and not needs_labels and _is_rank0():
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
            layer = check_layer_list(extractor.backbone_, args.layers)
    except (ValueError, TypeError) as exc:
        raise CLIError(f"{exc}") from None
    if stream:
        # loader batches of the extractor's batch size: the network sees the chunks it sees
        # in memory, so the streamed scan equals the in-memory one
        selector = StreamingNoiseLevelSelector(
            extractor, args.sigmas, probe=make_probe() if use_probe else None,
            decomposer=InvariantResidualDecomposer(tau=args.tau),
            scoring=args.scoring, selection_rule=args.rule, cv=args.cv, random_state=args.seed,
            batch_size=args.batch_size, num_workers=args.num_workers,
            checkpoint=args.checkpoint, progress=not args.quiet,
        )
        return selector, layer, use_probe
    selector = NoiseLevelSelector(
        extractor,
        args.sigmas,
        layers=args.layers,
        probe=make_probe() if use_probe else None,
        decomposer=InvariantResidualDecomposer(tau=args.tau),
        scoring=args.scoring,
        layer_scoring=args.layer_scoring,
        n_labels_per_class=args.labels_per_class,
        selection_rule=args.rule,
        cv=args.cv,
        n_jobs=args.n_jobs,
        refit=False,
        random_state=args.seed,
        progress=not args.quiet,
    )
    return selector, layer, use_probe


def _describe_probe(selector):
    probe = selector.probe
    steps = getattr(probe, "steps", [(None, probe)])
    return {
        "model": " + ".join(repr(step) for _, step in steps),
        "features": selector.probe_features,
        "folds": selector.n_splits_,
    }


def _write_scan_outputs(writer, args, selector, rho, undefined, model_description,
                        data_description, layer, n_images, started, stream=False, world_size=1):
    import pandas as pd

    results = selector.cv_results_
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
            "image_channels": args.image_channels,
            "layer": layer if args.layers is None else None,
            "layers": args.layers,
            "pooling": args.pooling,
            "augment": args.augment,
            "views": args.views,
            "sigmas": [float(s) for s in results["sigma"]],
            "cv": args.cv,
            "tau": args.tau,
            "probe": _describe_probe(selector) if "mean_probe_accuracy" in results else None,
            "seed": args.seed,
            "device": args.device or "cpu",
            # streamed once per sigma from per-fold statistics (docs/scaling.md), by this many
            # processes
            "stream": bool(stream),
            "processes": int(world_size),
            "checkpoint": args.checkpoint if stream else None,
        },
        "choice": {
            "best_sigma": selector.best_sigma_,
            "best_index": selector.best_index_,
            "best_icr": -selector.best_score_,
            "probe_best_sigma": best_accuracy_sigma,
            **({} if args.layers is None else {"best_layer": selector.best_layer_,
                                               "probe_best_layer": best_accuracy_layer}),
            "spearman_neg_icr_vs_accuracy": rho,
            "scoring": args.scoring,
            # what --layer-scoring resolved to: "joint" or the criterion comparing the layers
            "layer_scoring": getattr(selector, "layer_scoring_", None),
            "n_labels_per_class": args.labels_per_class,
            "rule": args.rule,
            "decision": selector.decision_,
            "decision_message": decision_sentence(selector),
            "clamped_sigmas": {f"{a:g}": b for a, b in selector.clamped_sigmas_.items()},
        },
        # which part of a joint choice used labels, and how reliable the layer study found it
        # (the selector's own layer_choice_, as the library reports it)
        "layer_choice": selector.layer_choice_ if args.layers is not None else None,
        # quantities reported as null, and why (a one-sigma grid has no rank correlation)
        "undefined": undefined,
    }
    writer.start(report)  # scan.json says "complete": false until every file is in place

    table = {"layer": results["layer"]} if "layer" in results else {}
    table.update(sigma=results["sigma"], icr=results["mean_icr"], icr_std=results["std_icr"])
    if "mean_probe_accuracy" in results:
        table["probe_accuracy"] = results["mean_probe_accuracy"]
        table["probe_accuracy_std"] = results["std_probe_accuracy"]
    else:
        table["probe_accuracy"] = np.full(results["sigma"].shape, np.nan)  # documented: no probe
    table["chosen"] = np.arange(results["sigma"].size) == selector.best_index_
    table["extract_time"] = results["extract_time"]
    writer.text("scan.csv", pd.DataFrame(table).to_csv(index=False))

    if cli_pyplot("scan.png") is not None:
        ax = selector.plot()
        where = f"layer {layer}" if args.layers is None else "layer x sigma"
        ax.set_title(f"skicr scan: {model_description}, {where}", fontsize="medium")
        # the heat map's colour bar and legend: tight_layout cannot fit them on a small figure
        save_figure(ax.figure, writer.path("scan.png"), bbox_tight=args.layers is not None)
        writer.commit("scan.png")
    writer.finish({**report, "seconds": round(time.perf_counter() - started, 2)})
