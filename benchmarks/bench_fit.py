"""Decomposer fit at the GEMM floor (issue 15, goal 3): ratios measured side by side.

Run: ``python benchmarks/bench_fit.py [--quick]``. Writes
benchmarks/results/fit.md (then ``python benchmarks/collect.py``). No timing
is asserted; the agreement with the exact two-pass path is checked (it is a
number, not a time).

At N=10000 images, V=4 views, d=512 features, for one and for two BLAS threads:

* ``InvariantResidualDecomposer().fit`` against one float64 ``X.T @ X`` on
  the same ``(N V, d)`` rows (goal: within 1.5x), the two timed alternately,
  best of several, so that a busy machine slows both alike;
* against sklearn ``LinearDiscriminantAnalysis(solver="eigen")`` with each
  image its own class (goal: at least 100x faster), the same eigenproblem;
* the fit's eigenvalues and ICR against the exact path (image means and
  residuals formed explicitly, covariances by two-pass formulas, scipy's
  ``eigh``): goal 1e-12 relative agreement.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy import linalg
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import alternate, machine, synthetic_views, write_results_table  # noqa: E402

from skicr import InvariantResidualDecomposer  # noqa: E402


def exact_path(views, tau=1e-3):
    """Eigenvalues and ICR from explicit two-pass covariances (the reference)."""
    n, v, d = views.shape
    means = views.mean(axis=1)
    centred = means - means.mean(axis=0)
    residual = (views - means[:, None, :]).reshape(-1, d)
    cov_s = centred.T @ centred / (n - 1)
    cov_xi = residual.T @ residual / (n * (v - 1))
    ridge = tau * np.trace(cov_xi) / d
    eigenvalues = linalg.eigh(cov_s, cov_xi + ridge * np.eye(d), eigvals_only=True)[::-1]
    return eigenvalues, 1.0 / (1.0 + eigenvalues.mean())


def measure(n_images, n_views, d, threads, repeat, with_lda):
    """Wall (and, on one thread, CPU) seconds of the GEMM, the fit and LDA; agreement."""
    views = synthetic_views(n_images, n_views, d)
    X = views.reshape(-1, d)
    functions = [lambda: X.T @ X, lambda: InvariantResidualDecomposer().fit(views)]
    result = {}
    with threadpool_limits(limits=threads, user_api="blas"):
        result["gram"], result["fit"] = alternate(functions, repeat)
        if threads == 1:
            # one thread: the CPU seconds are the cost, whatever else the cores run
            result["gram_cpu"], result["fit_cpu"] = alternate(functions, repeat, clock=time.process_time)
        if with_lda:
            from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

            labels = np.repeat(np.arange(n_images), n_views)
            wall, cpu = time.perf_counter(), time.process_time()
            LinearDiscriminantAnalysis(solver="eigen").fit(X, labels)
            result["lda"], result["lda_cpu"] = time.perf_counter() - wall, time.process_time() - cpu
        fitted = InvariantResidualDecomposer().fit(views)
    eigenvalues, icr = exact_path(views)
    result["eig_error"] = float(np.max(np.abs(fitted.eigenvalues_ - eigenvalues)) / np.max(eigenvalues))
    result["icr_error"] = abs(fitted.icr_ / icr - 1.0)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    parser.add_argument("--no-lda", action="store_true", help="skip sklearn's LDA (minutes under load)")
    args = parser.parse_args()
    n_images, n_views, d = (2000, 4, 256) if args.quick else (10000, 4, 512)
    repeat = 3 if args.quick else 5
    load_start = os.getloadavg()[0]
    rows = []
    for threads in (1, 2):
        r = measure(n_images, n_views, d, threads, repeat, with_lda=not args.no_lda and threads == 1)
        size = f"N={n_images}, V={n_views}, d={d}, {threads} BLAS thread{'s' if threads > 1 else ''}"
        if threads == 1:
            rows.append(("fit vs one float64 X.T @ X (floor), CPU time", size, f"{r['fit_cpu']:.3f} s",
                         f"{r['gram_cpu']:.3f} s", f"{r['fit_cpu'] / r['gram_cpu']:.2f}x the floor",
                         "<= 1.5x"))
        rows.append(("fit vs one float64 X.T @ X (floor), wall time", size, f"{r['fit']:.3f} s",
                     f"{r['gram']:.3f} s", f"{r['fit'] / r['gram']:.2f}x the floor", "<= 1.5x"))
        if "lda" in r:
            rows.append(("fit vs LDA(solver='eigen'), images as classes, CPU time", size,
                         f"{r['fit_cpu']:.3f} s", f"{r['lda_cpu']:.1f} s",
                         f"{r['lda_cpu'] / r['fit_cpu']:.0f}x faster", ">= 100x"))
            rows.append(("fit vs LDA(solver='eigen'), images as classes, wall time", size,
                         f"{r['fit']:.3f} s", f"{r['lda']:.1f} s", f"{r['lda'] / r['fit']:.0f}x faster",
                         ">= 100x"))
        rows.append(("agreement with the exact two-pass path", size,
                     f"eigenvalues {r['eig_error']:.1e}, ICR {r['icr_error']:.1e}", "-", "relative",
                     "<= 1e-12"))
    header = [
        f"Machine: {machine()}; load average {load_start:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end (2 cores shared with other work)",
        f"Command: `python benchmarks/bench_fit.py{' --quick' if args.quick else ''}`"
        f" (the fit and the GEMM timed alternately, best of {repeat}; BLAS threads set per row; "
        "with 2 BLAS threads the GEMM uses both and the fit's statistics update runs on two "
        "threads of one BLAS thread each, skicr's rule below 1024 columns; LDA timed once)",
    ]
    write_results_table(header, rows, "fit.md", quick=args.quick)


if __name__ == "__main__":
    main()
