"""Helpers shared by the benchmarks: timing, machine description, synthetic views."""

import os
import platform
import time

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
