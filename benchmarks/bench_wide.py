"""Wide features end to end: the scan's held-out ICR through the dual form.

Two measurements, side by side in one run:

1. ``skicr scan --pooling flatten`` at d = 8192 (the shipped denoiser's
   ``down.0``: 32 channels x 16 x 16), 200 digits, 2 sigmas, 5 folds, no
   probe, as :class:`~skicr.NoiseLevelSelector` runs it, against the
   reference cost: the same extraction plus ``icr_score(method="dual")`` on
   the same views times the number of folds (goal: at most 3x).
2. d = 65536 (a random-init diffusers ``UNet2DModel`` whose first block has
   256 channels at 16 x 16), 1000 images, 1 sigma, 3 folds: it completes,
   with its wall time and peak resident memory.

Run: ``python benchmarks/bench_wide.py`` (``--skip-large`` for part 1 only).
Writes ``benchmarks/results/wide.md``. No timing is asserted.
"""

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402


def _peak_rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _reference(extractor, images, sigmas, n_splits):
    """Extraction at every sigma plus ``icr_score(method="dual")`` once per fold: the goal's yardstick."""
    from sklearn.base import clone

    from skicr.metrics import icr_score

    extract = icr = 0.0
    for sigma in sigmas:
        start = time.perf_counter()
        views = clone(extractor).set_params(sigma=sigma).fit(images).transform_views(images)
        extract += time.perf_counter() - start
        start = time.perf_counter()
        icr_score(views, method="dual")
        icr += (time.perf_counter() - start) * n_splits
    return extract, icr, int(views.shape[2])


def scan_against_reference(extractor, images, sigmas, cv):
    """The scan, bracketed by two runs of the reference (their mean is the yardstick).

    Timing the reference before and after the scan keeps a drift of the machine's load
    from deciding the ratio.
    """
    from skicr import NoiseLevelSelector

    before = _reference(extractor, images, sigmas, cv)
    selector = NoiseLevelSelector(extractor, sigmas, cv=cv, probe=None, refit=False, random_state=0)
    start = time.perf_counter()
    selector.fit(images)
    scan_seconds = time.perf_counter() - start
    after = _reference(extractor, images, sigmas, cv)
    results = selector.cv_results_
    n_splits = selector.n_splits_
    fits = float(results["mean_fit_time"].sum() * n_splits)
    scores = float(results["mean_score_time"].sum() * n_splits)
    extract = float(results["extract_time"].sum())
    return {
        "d": before[2],
        "scan": scan_seconds, "scan_extract": extract, "scan_fit": fits, "scan_score": scores,
        "scan_scoring": fits + scores,
        "scan_other": scan_seconds - extract - fits - scores,
        "reference_extract": (before[0] + after[0]) / 2, "reference_icr": (before[1] + after[1]) / 2,
        "reference_spread": abs((before[0] + before[1]) - (after[0] + after[1])),
        "n_splits": n_splits, "solver": "dual",
        "best_sigma": float(selector.best_sigma_),
        "heldout_icr": [float(v) for v in results["mean_icr"]],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-large", action="store_true")
    args = parser.parse_args()
    import torch

    from skicr import FeatureExtractor
    from skicr.datasets import load_digits_images
    from skicr.models import load_pretrained

    torch.set_num_threads(1)
    images, _ = load_digits_images()
    images = images[:200]
    extractor = FeatureExtractor(load_pretrained("digits"), layer="down.0", pooling="flatten",
                                 n_views=4, random_state=0)
    small = scan_against_reference(extractor, images, [0.1, 0.5], cv=5)
    ratio = small["scan"] / (small["reference_extract"] + small["reference_icr"])
    scoring_ratio = small["scan_scoring"] / small["reference_icr"]
    lines = [
        f"Machine: {machine()}; 1 torch thread; load average {os.getloadavg()[0]:.1f} at the end.",
        "Command: `python benchmarks/bench_wide.py`",
        "",
        f"`--pooling flatten` at d = {small['d']} (layer `down.0`), 200 digits x 4 views, 2 sigmas, "
        f"{small['n_splits']} folds, no probe:",
        "",
        "| | wall time |",
        "|---|---:|",
        f"| NoiseLevelSelector (the scan): total | {small['scan']:.1f} s |",
        f"| of which extraction | {small['scan_extract']:.1f} s |",
        f"| of which decomposer fits | {small['scan_fit']:.1f} s |",
        f"| of which held-out ICR scores | {small['scan_score']:.1f} s |",
        f"| of which the other label-free criteria and bookkeeping | {small['scan_other']:.1f} s |",
        f"| reference: extraction (mean of the runs before and after the scan) | {small['reference_extract']:.1f} s |",
        f"| reference: `icr_score(method=\"dual\")` x {small['n_splits']} folds (same) | {small['reference_icr']:.1f} s |",
        f"| reference: before - after | {small['reference_spread']:.1f} s |",
        "",
        f"Scan / reference (extraction + dual ICR x folds): **{ratio:.2f}x** (goal: at most 3x); "
        f"fits and scores alone / dual ICR x folds: {scoring_ratio:.2f}x. "
        f"Held-out ICR per sigma: {', '.join(f'{v:.4f}' for v in small['heldout_icr'])}.",
    ]
    print("\n".join(lines), flush=True)
    if not args.skip_large:
        from diffusers import UNet2DModel

        from skicr.extraction import UNet2DBackbone

        torch.manual_seed(0)
        unet = UNet2DModel(sample_size=16, in_channels=1, out_channels=1, block_out_channels=(256, 256),
                           down_block_types=("DownBlock2D", "DownBlock2D"),
                           up_block_types=("UpBlock2D", "UpBlock2D"), layers_per_block=1,
                           norm_num_groups=32)
        rng = np.random.default_rng(0)
        wide_images = rng.random((1000, 1, 16, 16), dtype=np.float32)
        wide = FeatureExtractor(UNet2DBackbone(unet), layer="down_blocks.0.resnets.0", pooling="flatten",
                                n_views=4, random_state=0, batch_size=32)
        from skicr import NoiseLevelSelector

        selector = NoiseLevelSelector(wide, [0.3], cv=3, probe=None, refit=False, random_state=0)
        start = time.perf_counter()
        selector.fit(wide_images)
        seconds = time.perf_counter() - start
        results = selector.cv_results_
        lines += [
            "",
            f"d = 65536 (random-init `UNet2DModel`, `down_blocks.0.resnets.0`: 256 channels x 16 x 16), "
            f"1000 images x 4 views, 1 sigma, 3 folds: completed in {seconds:.0f} s "
            f"(extraction {float(results['extract_time'].sum()):.0f} s, fits "
            f"{float(results['mean_fit_time'].sum() * 3):.0f} s, held-out scores "
            f"{float(results['mean_score_time'].sum() * 3):.0f} s), held-out ICR "
            f"{float(results['mean_icr'][0]):.4f}, peak resident memory {_peak_rss_gib():.1f} GiB "
            f"(the float32 views alone: 1.0 GiB; a d x d float64 matrix: 32 GiB).",
        ]
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    Path(__file__).with_name("results").joinpath("wide.md").write_text(text)


if __name__ == "__main__":
    main()
