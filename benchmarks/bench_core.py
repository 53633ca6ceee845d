"""Numerical-core benchmarks: ratios measured side by side in one run.

Run: ``python benchmarks/bench_core.py [--quick]``. Prints a markdown table
(and writes it to benchmarks/results/core.md). No timing is asserted.

1. decomposer fit vs sklearn LinearDiscriminantAnalysis(solver="eigen") with
   each image its own class (N=10000, V=4, d=512): goal >= 100x faster;
2. decomposer fit vs one float64 ``X.T @ X`` on the same rows (the floor):
   goal <= 2x;
3. ICR-only (trace identity) vs full generalized ``eigh`` at d=2048: goal >= 2.5x;
4. streaming fit of N=200000, V=4, d=256 in chunks: peak memory <= 64 MiB
   above baseline, flat in N.
"""

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from scipy import linalg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_time, machine, synthetic_views, write_results_table  # noqa: E402

from skicr import InvariantResidualDecomposer  # noqa: E402
from skicr.metrics import mean_invariant_snr  # noqa: E402


def bench_vs_lda(n_images, n_views, d, rows):
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    views = synthetic_views(n_images, n_views, d)
    X, labels = views.reshape(-1, d), np.repeat(np.arange(n_images), n_views)
    t_ours, _ = best_time(lambda: InvariantResidualDecomposer().fit(views), repeat=3)
    start = time.perf_counter()
    LinearDiscriminantAnalysis(solver="eigen").fit(X, labels)
    t_lda = time.perf_counter() - start
    rows.append(("fit vs LDA(solver='eigen'), images as classes",
                 f"N={n_images}, V={n_views}, d={d}", f"{t_ours:.2f} s", f"{t_lda:.1f} s",
                 f"{t_lda / t_ours:.0f}x faster", ">= 100x"))


def bench_vs_gram(n_images, n_views, d, rows):
    views = synthetic_views(n_images, n_views, d)
    X = views.reshape(-1, d)
    t_gram, _ = best_time(lambda: X.T @ X, repeat=5)
    t_ours, _ = best_time(lambda: InvariantResidualDecomposer().fit(views), repeat=5)
    rows.append(("fit vs one float64 X.T @ X (floor)", f"N={n_images}, V={n_views}, d={d}",
                 f"{t_ours:.3f} s", f"{t_gram:.3f} s", f"{t_ours / t_gram:.2f}x the floor", "<= 2x"))


def bench_trace_vs_eigh(d, rows):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2 * d, d))
    b = rng.standard_normal((2 * d, d))
    cov_s, cov_xi = a.T @ a / (2 * d), b.T @ b / (2 * d)
    t_trace, fast = best_time(lambda: mean_invariant_snr(cov_s, cov_xi, 1e-3), repeat=3)
    t_eigh, eigenvalues = best_time(lambda: linalg.eigh(cov_s, cov_xi + 1e-3 * np.eye(d), eigvals_only=True), repeat=3)
    assert abs(fast - eigenvalues.mean()) <= 1e-8 * abs(fast)  # same number, not a timing assert
    rows.append(("ICR-only (trace identity) vs eigh(a, b, eigvals_only)", f"d={d}",
                 f"{t_trace:.3f} s", f"{t_eigh:.3f} s", f"{t_eigh / t_trace:.1f}x faster", ">= 2.5x"))


def streaming_peak(n_images, n_views, d, chunk):
    dec = InvariantResidualDecomposer()
    tracemalloc.start()
    baseline = tracemalloc.get_traced_memory()[0]
    for start in range(0, n_images, chunk):
        dec.partial_fit(synthetic_views(min(chunk, n_images - start), n_views, d, seed=start))
    peak = tracemalloc.get_traced_memory()[1] - baseline
    tracemalloc.stop()
    return peak / 2**20, dec.icr_


def bench_streaming(sizes, n_views, d, chunk, rows):
    peaks = [streaming_peak(n, n_views, d, chunk)[0] for n in sizes]
    rows.append(("streaming partial_fit, peak traced memory above baseline",
                 f"N={'/'.join(map(str, sizes))}, V={n_views}, d={d}, chunks of {chunk}",
                 " / ".join(f"{p:.1f} MiB" for p in peaks), "-",
                 f"flat: max/min {max(peaks) / min(peaks):.2f}", "<= 64 MiB, flat in N"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    args = parser.parse_args()
    rows = []
    if args.quick:
        bench_vs_lda(1000, 4, 128, rows)
        bench_vs_gram(2000, 4, 256, rows)
        bench_trace_vs_eigh(512, rows)
        bench_streaming([4000, 8000], 4, 64, 1000, rows)
    else:
        bench_vs_lda(10000, 4, 512, rows)
        bench_vs_gram(10000, 4, 512, rows)
        bench_trace_vs_eigh(2048, rows)
        bench_streaming([50000, 100000, 200000], 4, 256, 2000, rows)
    header = [
        f"Machine: {machine()}",
        f"Command: `python benchmarks/bench_core.py{' --quick' if args.quick else ''}`",
    ]
    write_results_table(header, rows, "core.md", quick=args.quick)


if __name__ == "__main__":
    main()
