"""Helpers shared by the benchmarks: timing, machine description, synthetic views, results tables."""

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np


def best_time(fn, repeat=3):
    """Best wall time of ``repeat`` calls (seconds) and the last result."""
    best, result = np.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def alternate(functions, repeat, clock=None):
    """Best wall time (seconds) of each function, the functions called in turn.

    Each of ``functions`` is called once per round, ``repeat`` rounds: a busy
    machine slows all of them alike, so their ratio stays fair. ``clock``
    (default ``time.perf_counter``, wall time) may be ``time.process_time``:
    CPU seconds of this process, which a single-threaded computation costs
    whatever else the shared cores run.
    """
    best = [np.inf] * len(functions)
    for _ in range(repeat):
        for k, fn in enumerate(functions):
            now = clock or time.perf_counter
            start = now()
            fn()
            best[k] = min(best[k], now() - start)
    return best


def machine():
    """One line naming the machine the numbers came from."""
    try:
        from threadpoolctl import threadpool_info

        blas = ", ".join(f"{i['internal_api']} {i.get('version')} ({i.get('num_threads')} threads)"
                         for i in threadpool_info() if i["user_api"] == "blas")
    except Exception:  # pragma: no cover - informational only
        blas = "unknown BLAS"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {blas}"


def synthetic_views(n_images, n_views, n_features, seed=0, dtype=np.float64):
    """Invariant signal plus view noise, ``(n_images, n_views, n_features)``."""
    rng = np.random.default_rng(seed)
    signal = rng.standard_normal((n_images, 1, n_features), dtype=np.float32)
    noise = rng.standard_normal((n_images, n_views, n_features), dtype=np.float32)
    return (signal + 0.7 * noise).astype(dtype)


#: where the benchmarks write their latest numbers (collected into docs/benchmarks.md)
RESULTS = Path(__file__).resolve().with_name("results")


def write_results_table(header, rows, name, *, quick):
    """Print a benchmark's Markdown results table and, unless ``quick``, write it to ``results/name``.

    ``header`` are the lines above the table (machine, command); each of
    ``rows`` holds the cells benchmark, size, skicr, reference, ratio, goal.
    Returns the text.
    """
    lines = [
        *header,
        "",
        "| benchmark | size | skicr | reference | ratio | goal |",
        "|---|---|---|---|---|---|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]
    text = "\n".join(lines)
    print(text)
    if not quick:
        RESULTS.joinpath(name).write_text(text + "\n")
    return text


def memory_benchmark_arguments(description, memory_worker):
    """The command line of a benchmark that measures memory in fresh processes.

    ``--quick`` (small sizes, nothing written) and ``--memory-worker PATH N``,
    with which the benchmark's own subprocesses run one memory cell
    (``memory_worker(PATH, N)``); then None is returned and the caller stops.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--memory-worker", nargs=2, metavar=("PATH", "N"))
    args = parser.parse_args()
    if args.memory_worker:
        memory_worker(args.memory_worker[0], int(args.memory_worker[1]))
        return None
    return args


def report_heading(title, script, quick):
    """The first lines of a Markdown report: its title, the machine (with torch) and the command."""
    import torch

    return [
        f"# {title}",
        "",
        f"Machine: {machine()}, torch {torch.__version__}",
        f"Command: `python benchmarks/{script}{' --quick' if quick else ''}`",
    ]
