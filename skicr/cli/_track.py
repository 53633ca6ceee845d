"""``skicr track``: train skicr's small denoiser on the digits and track ICR and memorization.

Exit codes follow :mod:`skicr.cli`: 0 success, 2 bad arguments, 1 an error
while running.
"""

import argparse
import sys
import time
from pathlib import Path
from typing import NamedTuple

from .._utils.plotting import cli_pyplot, save_figure
from .._utils.validation import check_sigma
from ..recipes import TRACK_DEFAULTS
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
)

__all__ = ["add_track_parser", "run_track"]

N_DIGITS = 1797
# the detectors' names (skicr.monitoring.DETECTORS), listed here so that the parser loads
# without importing the monitoring package
_RULES = ("cusum", "expansion_split", "heldout_gap", "mann_kendall", "page_hinkley",
          "turning_point")


def _error(message, code=2):
    return CLIError(message, code=code)


_positive_float = float_option(lambda v: 0 < v < float("inf"), "a finite number > 0")
_non_negative_float = float_option(lambda v: 0 <= v < float("inf"), "a finite number >= 0")
_unit_interval = float_option(lambda v: 0 <= v < 1, "in [0, 1)")


def add_track_parser(subparsers):
    """Add the ``track`` subcommand to an argparse ``subparsers`` object.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        From ``parser.add_subparsers()``.

    Returns
    -------
    parser : argparse.ArgumentParser
        The ``track`` parser; its ``func`` default is :func:`run_track`.
    """
    d = TRACK_DEFAULTS
    parser = subparsers.add_parser(
        "track",
        help="train the small denoiser on the digits and track ICR and memorization",
        description=(
            "Train skicr's small EDM denoiser on sklearn's digits (all of them, or a "
            "random --subset) and, every --eval-every steps, measure on the training "
            "images the Invariant Contamination Ratio (ICR, fixed noise level and fixed "
            "views), tr(Sigma_s), tr(Sigma_xi), and the memorization ratio of --samples "
            "images drawn with a fixed seed. With plenty of data ICR keeps falling; with "
            "little data it turns up before the samples start to copy training images. "
            "Writes track.csv, track.png and track.json to --out. The defaults cost about two "
            "CPU-minutes on one torch thread (the default for this small network: more threads "
            "only contend for shared cores; --threads overrides it); raise --steps (and lower "
            "--subset) to see memorization."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--subset", type=int_at_least(2), default=d["subset"],
                        help=f"train on a random subset of this many digits (of {N_DIGITS}); "
                             "default: all")
    parser.add_argument("--steps", type=int_at_least(1), default=d["steps"],
                        help="optimizer steps")
    parser.add_argument("--eval-every", type=int_at_least(1), default=d["eval_every"],
                        help="steps between evaluations (the untrained network is step 0)")
    parser.add_argument("--batch-size", type=int_at_least(1), default=d["batch_size"],
                        help="images per optimizer step")
    parser.add_argument("--lr", type=_positive_float, default=d["lr"], help="Adam learning rate")
    parser.add_argument("--ema-decay", type=_unit_interval, default=d["ema_decay"],
                        help="EMA decay of the weights (the EMA network is the one measured)")
    parser.add_argument("--channels", type=int_at_least(1), nargs=2, default=d["channels"],
                        metavar=("C0", "C1"), help="SmallUNet channels at full and half resolution")
    parser.add_argument("--mid-channels", type=int_at_least(1), default=d["mid_channels"],
                        help="SmallUNet bottleneck channels")
    parser.add_argument("--sigma", type=argument_type(check_sigma), default=d["sigma"],
                        help="noise level of the views ICR is measured on")
    parser.add_argument("--layer", default=d["layer"],
                        help="layer measured (default: the bottleneck 'mid')")
    parser.add_argument("--pooling", choices=["auto", "mean", "flatten"], default=d["pooling"],
                        help="how the layer's feature map becomes a vector")
    parser.add_argument("--views", type=int_at_least(2), default=d["views"],
                        help="views (augmentation + noise) per image")
    parser.add_argument("--icr-images", type=int_at_least(2), default=d["icr_images"],
                        help="training images ICR is measured on (a fixed random subset when "
                             "there are more)")
    parser.add_argument("--samples", type=int_at_least(0), default=d["samples"],
                        help="samples per evaluation for the memorization ratio (0: skip it)")
    parser.add_argument("--sampler-steps", type=int_at_least(2), default=d["sampler_steps"],
                        help="noise levels of EDM's Heun sampler")
    parser.add_argument("--warmup-steps", type=int_at_least(0), default=d["warmup_steps"],
                        help="evaluations before this step are recorded but left out of the "
                             "search for ICR's minimum (ICR of a fresh network moves up and "
                             "down at first); also the warm-up of --rule turning_point")
    parser.add_argument("--min-rise", type=_non_negative_float, default=d["min_rise"],
                        help="smallest rise of ICR above its minimum, relative to it, that "
                             "counts as a turning point (besides being significant)")
    parser.add_argument("--rule", choices=sorted(_RULES), default=None,
                        help="the memorization-warning rule of the verdict and of "
                             "--early-stop (default: the memorization study's choice, "
                             "heldout_gap, or expansion_split without held-out images); each "
                             "rule runs with the study's settings, turning_point with "
                             "--min-rise and --warmup-steps")
    parser.add_argument("--heldout-images", type=int_at_least(0), default=None,
                        help="digits never trained on whose ICR is measured too (default: as "
                             "many as --icr-images when --subset leaves digits out, else 0)")
    parser.add_argument("--early-stop", action="store_true",
                        help="stop training when the rule (--rule) fires")
    parser.add_argument("--save-checkpoints", action="store_true",
                        help="save the EMA weights of every evaluation in --out/checkpoints")
    parser.add_argument("--seed", type=int_at_least(0), default=d["seed"],
                        help="seed of the subset, the network, training, views and samples")
    parser.add_argument("--threads", type=int_at_least(1), default=None,
                        help="torch and BLAS CPU threads (default: 1 for the small network, "
                             "unless OMP_NUM_THREADS is set; see docs/scaling.md)")
    parser.add_argument("--device", default=None, help="torch device (cpu, cuda, cuda:0, mps)")
    parser.add_argument("--out", default=None,
                        help="output folder (created); default ./track-YYYYmmdd-HHMMSS")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, no per-step lines")
    parser.set_defaults(func=run_track)
    return parser


def _select_images(subset, icr_images, seed):
    """Training images (all digits or a seeded subset) and the ones ICR is measured on."""
    import numpy as np

    from skicr.datasets import load_digits_images

    images = load_digits_images(16, return_y=False)
    rng = np.random.default_rng(seed)
    if subset is not None:
        images = images[np.sort(rng.choice(len(images), subset, replace=False))]
    measured = images
    if icr_images < len(images):
        measured = images[np.sort(rng.choice(len(images), icr_images, replace=False))]
    return images, measured


def _select_heldout(subset, n_images, seed):
    """``n_images`` digits outside the seeded subset (None when there are none to take)."""
    import numpy as np

    from skicr.datasets import load_digits_images

    if subset is None or n_images == 0:
        return None
    images = load_digits_images(16, return_y=False)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(images), subset, replace=False))  # as _select_images
    rest = np.setdiff1d(np.arange(len(images)), chosen)
    picked = np.random.default_rng(seed + 1).choice(rest, min(n_images, len(rest)), replace=False)
    return images[np.sort(picked)]


def run_track(args):
    """Run ``skicr track`` with parsed arguments; returns the exit code.

    Parameters
    ----------
    args : argparse.Namespace
        From the parser built by :func:`add_track_parser`.

    Returns
    -------
    code : int
        0 on success. Bad arguments raise ``skicr.cli.CLIError`` (code 2).
    """
    started = time.perf_counter()
    device, out = _check_track_args(args)
    run = _set_up(args, device)
    print(run.banner, file=sys.stderr)

    from skicr.models import save_denoiser, train_denoiser

    checkpoints = out / "checkpoints"

    def callback(step, ema_net):
        if args.save_checkpoints:
            save_denoiser(ema_net, checkpoints / f"step{step:07d}.pt", metadata={"step": step})
        return run.monitor(step, ema_net)

    out.mkdir(parents=True, exist_ok=True)
    callback(0, run.net.eval())  # the untrained network: where ICR starts
    try:
        result = train_denoiser(run.images, n_steps=args.steps, batch_size=args.batch_size,
                                lr=args.lr, ema_decay=args.ema_decay, seed=args.seed, net=run.net,
                                callback=callback, callback_every=args.eval_every,
                                progress=not args.quiet, device=device)
    except FloatingPointError as exc:
        raise _error(f"training diverged: {exc}", code=1) from None

    monitor = run.monitor
    frame = monitor.to_frame()
    tested = int((frame["step"] >= args.warmup_steps).sum())
    turning = monitor.turning_point(start_step=args.warmup_steps) if tested >= 3 else None
    onset = monitor.memorization_onset()
    verdict = _verdict(monitor, args)
    print(_summary(frame, turning, onset, monitor.stopped_at_))
    print(verdict.sentence())
    report = _report(args, run, result, turning, onset, seconds=time.perf_counter() - started)
    report["verdict"] = verdict.to_dict()
    # track.json says "complete": false until every file is in place; each is renamed in
    writer = ReportWriter(out, "track.json")
    try:
        writer.start(report)
        writer.text("track.csv", frame.to_csv(index=False))
        if _save_figure(monitor, writer.path("track.png"),
                        f"skicr track: {len(run.images)} digits, layer {run.layer}, "
                        f"sigma {args.sigma:g}", args.warmup_steps if tested >= 3 else 0):
            writer.commit("track.png")
        writer.finish(report)
    finally:
        writer.discard()
    print(f"wrote {out / 'track.csv'}, " + ", ".join(writer.files[1:] + ["track.json"]))
    return 0


def _check_track_args(args):
    """The checked device and output folder; CLIError (exit 2) on bad combinations."""
    if args.subset is not None and args.subset > N_DIGITS:
        raise _error(f"--subset {args.subset} exceeds the {N_DIGITS} digits.")
    if args.heldout_images and args.subset is None:
        raise _error("--heldout-images needs --subset: without it every digit is trained on.")
    if args.rule == "heldout_gap" and (args.subset is None or args.heldout_images == 0):
        raise _error("--rule heldout_gap needs held-out digits: give --subset (and "
                     "--heldout-images > 0).")
    if args.eval_every > args.steps:
        raise _error(
            f"--eval-every {args.eval_every} exceeds --steps {args.steps}: there would be "
            "no evaluation during training."
        )
    device = check_device(args.device)
    out = check_out_dir(Path(args.out) if args.out is not None else default_out_dir("track"))
    return device, out


class _Run(NamedTuple):
    """What a run trains and measures."""

    images: object
    measured: object
    net: object
    layer: str
    monitor: object
    n_params: int
    banner: str


def _set_up(args, device):
    """The images, the fresh network, the layer (resolved now) and the monitor of a run."""
    import torch
    from sklearn.base import clone

    from skicr.extraction import FeatureExtractor
    from skicr.models import SmallUNet
    from skicr.monitoring import ICRMonitor

    images, measured = _select_images(args.subset, args.icr_images, args.seed)
    n_heldout = len(measured) if args.heldout_images is None else args.heldout_images
    heldout = _select_heldout(args.subset, n_heldout, args.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        net = SmallUNet(in_channels=1, channels=tuple(args.channels),
                        mid_channels=args.mid_channels, image_size=16)
    apply_thread_default(args.threads, net)
    if device is not None:
        net.to(device)
    extractor = FeatureExtractor(None, layer=args.layer, sigma=args.sigma, n_views=args.views,
                                 pooling=args.pooling, batch_size=256, device=device,
                                 random_state=args.seed)
    try:
        # resolve the layer on one image now, not after the first training steps
        layer = clone(extractor).set_params(backbone=net).fit(measured[:1]).layer_
    except (ValueError, TypeError, KeyError) as exc:
        raise _error(str(exc)) from None
    monitor = ICRMonitor(measured, extractor,
                         n_samples=args.samples, sampler_steps=args.sampler_steps,
                         sampler_seed=args.seed, training_images=images,
                         heldout_images=heldout,
                         early_stopping=(args.rule or True) if args.early_stop else False,
                         early_stopping_warmup=(args.warmup_steps if args.rule == "turning_point"
                                                else None),
                         turning_point_params={"min_rise": args.min_rise}, device=device,
                         verbose=not args.quiet)
    n_params = sum(p.numel() for p in net.parameters())
    what = f"a random subset of {len(images)}" if args.subset is not None else f"all {len(images)}"
    banner = (f"skicr track: SmallUNet ({n_params:,} parameters) on {what} digits, {args.steps} "
              f"steps of {args.batch_size}; ICR of layer {layer!r} at sigma={args.sigma:g} on "
              f"{len(measured)} images x {args.views} views every {args.eval_every} steps"
              + (f"; memorization ratio of {args.samples} samples" if args.samples else ""))
    return _Run(images, measured, net, layer, monitor, n_params, banner)


def _verdict(monitor, args):
    """The memorization verdict of the run: the monitor's rule, else --rule or the study's."""
    if monitor.early_stopping_rule is not None:
        return monitor.verdict()
    if args.rule == "turning_point":
        return monitor.verdict("turning_point", warmup_step=args.warmup_steps,
                               min_rise=args.min_rise)
    return monitor.verdict(args.rule)


def _report(args, run, result, turning, onset, seconds):
    """The content of track.json."""
    return {
        "command": "skicr track",
        "settings": {
            "n_training_images": int(len(run.images)),
            "subset": args.subset,
            "steps": args.steps,
            "steps_done": int(result.history["step"][-1]) if result.history["step"] else 0,
            "eval_every": args.eval_every,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "ema_decay": args.ema_decay,
            "channels": list(args.channels),
            "mid_channels": args.mid_channels,
            "n_parameters": int(run.n_params),
            "layer": run.layer,
            "pooling": args.pooling,
            "sigma": args.sigma,
            "views": args.views,
            "icr_images": int(len(run.measured)),
            "heldout_images": 0 if run.monitor.heldout_images is None
            else int(len(run.monitor.heldout_images)),
            "rule": run.monitor.early_stopping_rule or args.rule,
            "samples": args.samples,
            "sampler_steps": args.sampler_steps,
            "warmup_steps": args.warmup_steps,
            "min_rise": args.min_rise,
            "seed": args.seed,
            "device": args.device or "cpu",
        },
        "icr_minimum": None if turning is None else {
            "step": turning.step,
            "found": turning.found,
            "confidence": turning.confidence,
            "p_value": turning.p_value,
            "rise": turning.rise,
            "noise": turning.noise,
            "step_interval": list(turning.step_interval),
        },
        "memorization_onset_step": onset,
        "stopped_early": bool(result.history["stopped_early"]),
        "seconds": round(seconds, 2),
    }


def _summary(frame, turning, onset, stopped_at):
    """The lines printed at the end of a run."""
    last = frame.iloc[-1]
    lines = [f"{len(frame)} evaluations; last (step {int(last['step'])}): ICR {last['icr']:.4f}, "
             f"tr(Sigma_s) {last['trace_s']:.4g}, tr(Sigma_xi) {last['trace_xi']:.4g}"
             + (f", memorization ratio {last['memorization_ratio']:.3f}"
                if "memorization_ratio" in frame else "")]
    if turning is None:
        lines.append("too few evaluations after the warm-up to look for an ICR minimum.")
    elif turning.step is None:
        lines.append("ICR is still decreasing: no turning point.")
    elif turning.found:
        lines.append(f"ICR turned up: minimum at step {turning.step} (90% interval "
                     f"{turning.step_interval[0]:.0f}-{turning.step_interval[1]:.0f}), "
                     f"confidence {turning.confidence:.3f}"
                     + (f"; training stopped at step {stopped_at}" if stopped_at is not None
                        else ""))
    else:
        lines.append(f"ICR minimum at step {turning.step} but the rise after it "
                     f"({turning.rise:.4f}) is not significant or below --min-rise "
                     f"(confidence {turning.confidence:.3f}).")
    if "memorization_ratio" in frame:
        if onset is None:
            lines.append("memorization ratio stayed below 0.05.")
        else:
            lines.append(f"memorization ratio reached 0.05 at step {onset}"
                         + (f", {onset - turning.step} steps after the ICR minimum"
                            if turning is not None and turning.found and turning.step is not None
                            else ""))
    return "\n".join(lines)


def _save_figure(monitor, path, title, start_step):
    """Draw track.png to ``path``; False when matplotlib is missing."""
    if cli_pyplot("track.png") is None:
        return False
    axes = monitor.plot(title=title, start_step=start_step)
    save_figure(axes[0].figure, path)
    return True
