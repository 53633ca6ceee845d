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
import sys
import time
from pathlib import Path

import numpy as np
from scipy import linalg
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import alternate, machine, synthetic_views  # noqa: E402

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
    views = synthetic_views(n_images, n_views, d)
    X = views.reshape(-1, d)
    with threadpool_limits(limits=threads, user_api="blas"):
        t_gram, t_fit = alternate(
            [lambda: X.T @ X, lambda: InvariantResidualDecomposer().fit(views)], repeat,
        )
        t_lda = None
        if with_lda:
            from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

            labels = np.repeat(np.arange(n_images), n_views)
            start = time.perf_counter()
            LinearDiscriminantAnalysis(solver="eigen").fit(X, labels)
            t_lda = time.perf_counter() - start
        fitted = InvariantResidualDecomposer().fit(views)
    eigenvalues, icr = exact_path(views)
    eig_error = float(np.max(np.abs(fitted.eigenvalues_ - eigenvalues)) / np.max(eigenvalues))
    icr_error = abs(fitted.icr_ / icr - 1.0)
    return t_gram, t_fit, t_lda, eig_error, icr_error


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    parser.add_argument("--no-lda", action="store_true", help="skip sklearn's LDA (minutes under load)")
    args = parser.parse_args()
    n_images, n_views, d = (2000, 4, 256) if args.quick else (10000, 4, 512)
    rows = []
    for threads in (1, 2):
        t_gram, t_fit, t_lda, eig_error, icr_error = measure(
            n_images, n_views, d, threads, repeat=3 if args.quick else 7,
            with_lda=not args.no_lda and threads == 1,
        )
        size = f"N={n_images}, V={n_views}, d={d}, {threads} BLAS thread{'s' if threads > 1 else ''}"
        rows.append(("fit vs one float64 X.T @ X (floor)", size, f"{t_fit:.3f} s", f"{t_gram:.3f} s",
                     f"{t_fit / t_gram:.2f}x the floor", "<= 1.5x"))
        if t_lda is not None:
            rows.append(("fit vs LDA(solver='eigen'), images as classes", size, f"{t_fit:.3f} s",
                         f"{t_lda:.1f} s", f"{t_lda / t_fit:.0f}x faster", ">= 100x"))
        rows.append(("agreement with the exact two-pass path", size,
                     f"eigenvalues {eig_error:.1e}, ICR {icr_error:.1e}", "-", "relative", "<= 1e-12"))
    lines = [
        f"Machine: {machine()}",
        f"Command: `python benchmarks/bench_fit.py{' --quick' if args.quick else ''}`"
        " (the fit and the GEMM timed alternately, best of 7; BLAS threads set per row)",
        "",
        "| benchmark | size | skicr | reference | ratio | goal |",
        "|---|---|---|---|---|---|",
    ] + ["| " + " | ".join(row) + " |" for row in rows]
    text = "\n".join(lines)
    print(text)
    if not args.quick:
        Path(__file__).with_name("results").joinpath("fit.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
