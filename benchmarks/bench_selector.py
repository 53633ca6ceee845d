"""NoiseLevelSelector: cost of cross-validation (cv=5) against no split (cv=1).

The backbone runs once per sigma whatever ``cv`` is; the folds only re-fit the
decomposer. This benchmark measures, on the same data and the same grid, the
wall time of a scan with ``cv=5`` (held-out ICR) and with ``cv=1`` (in-sample
ICR) and their ratio (goal: at most 1.2x), with a breakdown of where the time
goes (backbone vs decomposer). It also times the probe (``skicr scan``'s
logistic regression) on the same folds.

    python benchmarks/bench_selector.py                 # skicr scan's defaults
    python benchmarks/bench_selector.py --pooling flatten  # d = 1536 features

Writes nothing; copy the printed table into benchmarks/results/selector.md.
"""

import argparse
import platform
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits


def scan(extractor, sigmas, images, y, cv, probe, seed):
    from skicr import NoiseLevelSelector

    selector = NoiseLevelSelector(
        extractor, sigmas, cv=cv, probe=probe, refit=False, random_state=seed
    )
    start = time.perf_counter()
    selector.fit(images, y if probe is not None else None)
    seconds = time.perf_counter() - start
    results = selector.cv_results_
    n_splits = selector.n_splits_
    breakdown = {
        "total": seconds,
        "backbone": float(results["extract_time"].sum()),
        "decomposer fit": float(results["mean_fit_time"].sum() * n_splits),
        "decomposer score": float(results["mean_score_time"].sum() * n_splits),
        "probe": float(results.get("mean_probe_time", np.zeros(1)).sum() * n_splits),
    }
    return selector, breakdown


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=1797)
    parser.add_argument("--n-sigmas", type=int, default=12)
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--pooling", default="mean")
    parser.add_argument("--layer", default="mid")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--blas-threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    # as skicr scan does: one BLAS thread (BLAS threads fight torch's on 2 cores)
    threadpool_limits(limits=args.blas_threads, user_api="blas")

    from skicr import FeatureExtractor
    from skicr.recipes import SCAN_DEFAULTS, make_probe, parse_sigmas
    from skicr.datasets import load_digits_images
    from skicr.models import load_pretrained

    images, y = load_digits_images(return_y=True)
    if args.n_images < len(images):
        keep = np.sort(np.random.default_rng(args.seed).choice(len(images), args.n_images,
                                                                replace=False))
        images, y = images[keep], y[keep]
    low, high, _ = SCAN_DEFAULTS["sigmas"].split(":")
    sigmas = parse_sigmas(f"{low}:{high}:{args.n_sigmas}")
    extractor = FeatureExtractor(
        load_pretrained("digits"), layer=args.layer, n_views=args.views, pooling=args.pooling,
        batch_size=SCAN_DEFAULTS["batch_size"], random_state=args.seed,
    )
    extractor.fit(images[:2])  # warm-up: load, first forward
    print(f"# {platform.processor() or platform.machine()}, torch threads={args.threads}, "
          f"BLAS threads={args.blas_threads}, "
          f"{len(images)} digits, {args.n_sigmas} sigmas, layer {args.layer} ({args.pooling}, "
          f"d={extractor.n_features_out_}), {args.views} views")

    runs = {}
    for name, cv, probe in [
        ("cv=1", 1, None),
        ("cv=5", 5, None),
        ("cv=5 + probe", 5, make_probe()),
    ]:
        selector, breakdown = scan(extractor, sigmas, images, y, cv, probe, args.seed)
        runs[name] = breakdown
        print(f"{name:>13}: {breakdown['total']:7.1f} s, best sigma {selector.best_sigma_:.4g}")

    base = runs["cv=1"]["total"]
    keys = ["total", "backbone", "decomposer fit", "decomposer score", "probe"]
    print()
    print("| run | " + " | ".join(f"{k} (s)" for k in keys) + " | ratio to cv=1 |")
    print("|---|" + "---|" * (len(keys) + 1))
    for name, breakdown in runs.items():
        cells = " | ".join(f"{breakdown[k]:.1f}" for k in keys)
        print(f"| {name} | {cells} | {breakdown['total'] / base:.2f}x |")


if __name__ == "__main__":
    main()
