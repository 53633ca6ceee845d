"""Primal (d x d) vs dual (Gram) ICR: crossover in d, and ICR at d = 65536.

Run: ``python benchmarks/bench_dual.py [--quick]``. Rows are fixed
(N * V = 4096: N = 1024 images, V = 4 views); d grows. Peak memory is the
tracemalloc peak of numpy allocations during the call. No timing is asserted.

At d = 65536 the dual form's Gram matrices are built in column chunks
(``skicr.metrics._dual.gram_blocks``); the script also measures, side by side
in the same run, the previous one-shot construction (all contrast rows and
means in float64 at once, then three products) on the same views.
"""

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, synthetic_views  # noqa: E402

from skicr.metrics import icr_score  # noqa: E402
from skicr.metrics._dual import gram_blocks  # noqa: E402
from skicr.metrics._statistics import residual_contrast_rows  # noqa: E402


def one_shot_gram_blocks(views):
    """The construction before chunking: float64 rows and means of all d columns."""
    rows = residual_contrast_rows(np.asarray(views, dtype=np.float64))
    means = views.mean(axis=1, dtype=np.float64)
    means -= means.mean(axis=0)
    return rows @ rows.T, rows @ means.T, means @ means.T


def measure_fn(fn):
    tracemalloc.start()
    start = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return seconds, peak, value


def measure(views, method):
    tracemalloc.start()
    start = time.perf_counter()
    value = icr_score(views, method=method)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return seconds, peak, value


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--memory-only", action="store_true",
                        help="only the before/after Gram construction at the largest d")
    args = parser.parse_args()
    n_images, n_views = (256, 4) if args.quick else (1024, 4)
    widths = [256, 1024, 2048] if args.quick else [512, 1024, 2048, 4096, 8192]
    lines = [
        f"Machine: {machine()}",
        f"Command: `python benchmarks/bench_dual.py{' --quick' if args.quick else ''}"
        f"{' --memory-only' if args.memory_only else ''}`",
        f"Rows: N={n_images} images x V={n_views} views = {n_images * n_views}",
    ]
    if not args.memory_only:
        lines += ["", "| d | primal time | primal peak | dual time | dual peak | dual/primal time | rel. diff |",
                  "|---|---|---|---|---|---|---|"]
    for d in [] if args.memory_only else widths:
        views = synthetic_views(n_images, n_views, d, dtype=np.float32)
        tp, mp, vp = measure(views, "primal")
        td, md, vd = measure(views, "dual")
        lines.append(f"| {d} | {tp:.2f} s | {mp:.0f} MiB | {td:.2f} s | {md:.0f} MiB | "
                     f"{td / tp:.2f} | {abs(vd - vp) / vp:.1e} |")
        print(lines[-1], flush=True)
    big = 4096 if args.quick else 65536
    views = synthetic_views(n_images, n_views, big, dtype=np.float32)
    if not args.memory_only:
        td, md, vd = measure(views, "auto")
        print(f"auto at d={big}: {td:.1f} s, {md:.0f} MiB", flush=True)
        lines += ["", f"d = {big} ({'256 channels x 16 x 16' if big == 65536 else 'quick'}), "
                  f"auto (dual): {td:.1f} s, peak {md:.0f} MiB above the {views.nbytes / 2**20:.0f} MiB "
                  f"float32 input, ICR = {vd:.4f}; a primal d x d float64 matrix alone would take "
                  f"{big * big * 8 / 2**30:.0f} GiB."]
    del views
    # before / after chunking, same views, same run
    views = synthetic_views(n_images, n_views, big, dtype=np.float32)
    t_old, m_old, old = measure_fn(lambda: one_shot_gram_blocks(views))
    del old
    print(f"one-shot Gram at d={big}: {t_old:.1f} s, peak {m_old:.0f} MiB", flush=True)
    t_new, m_new, new = measure_fn(lambda: gram_blocks(views))
    reference = one_shot_gram_blocks(views[:, :, :2048])
    agreement = max(float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
                    for a, b in zip(gram_blocks(views[:, :, :2048], chunk_bytes=1), reference))
    lines += ["", f"Gram construction at d = {big}, {n_images * n_views} rows (tracemalloc peak above the input):",
              "", "| construction | time | peak |", "|---|---|---|",
              f"| one-shot (before) | {t_old:.1f} s | {m_old:.0f} MiB |",
              f"| column chunks (now) | {t_new:.1f} s | {m_new:.0f} MiB |",
              "", f"Peak memory ratio before/after: {m_old / m_new:.1f}x; chunked vs one-shot Gram "
              f"(64-column chunks, first 2048 columns): max relative difference {agreement:.1e}."]
    text = "\n".join(lines)
    print(text)
    if not args.quick:
        name = "dual_memory.md" if args.memory_only else "dual.md"
        Path(__file__).with_name("results").joinpath(name).write_text(text + "\n")


if __name__ == "__main__":
    main()
