"""Thread settings: each command's default run against explicit thread counts, idle and contended.

For each workload (a reduced ``skicr scan``, a reduced ``skicr track``, and a
decomposer fit on a small and on a large matrix) the script runs, each in a
fresh process so that nothing carries over:

* ``default``: the environment without ``OMP_NUM_THREADS``,
  ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS`` (what a user gets);
* ``threads=k`` for k = 1 .. cores: those three variables set to k, which fixes
  torch's intra-op threads and the BLAS pool (numpy, scipy) together;

once on the cores as they are ("idle") and once beside ``--competitors`` CPU-bound
processes that the script starts itself (pure-Python busy loops, each ending
by itself after ``--competitor-limit`` seconds at the latest, and stopped as soon
as the measurement is over). Wall times, the ratio of ``default`` to the best
explicit setting, and the load average at the start are written to
``benchmarks/results/threads.md``. No timing is asserted.

Each setting runs ``--repeats`` times (rounds interleaved over the settings) and
keeps its best time, so that one slow run does not decide a row.

Run: ``python benchmarks/bench_threads.py`` (``--quick``: smaller workloads; ``--only
fit`` reruns some workloads and keeps the other rows of the last run, each row with the time
it was measured).
On a shared machine "idle" means "without this script's competitors": the
load average column says what else was running.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

# in-process timing of a decomposer fit, so that imports do not count
FIT = """
import sys, time
import numpy as np
from skicr import InvariantResidualDecomposer
n, v, d = map(int, sys.argv[1:4])
rng = np.random.default_rng(0)
views = rng.standard_normal((n, 1, d)) + 0.7 * rng.standard_normal((n, v, d))
InvariantResidualDecomposer().fit(views[:64])  # warm-up: imports, first BLAS call
# best of at least 3 fits and of about 2 s of fits (a small fit takes milliseconds)
best, spent, count = float("inf"), 0.0, 0
while count < 3 or (spent < 2.0 and count < 200):
    start = time.perf_counter()
    InvariantResidualDecomposer().fit(views)
    seconds = time.perf_counter() - start
    best, spent, count = min(best, seconds), spent + seconds, count + 1
print("SECONDS", best)
"""

COMPETITOR = """
import sys, time
deadline = time.monotonic() + float(sys.argv[1])
x = 0
while time.monotonic() < deadline:
    for _ in range(100000):
        x += 1
"""


def workloads(quick):
    scan = ["--n-images", "150" if quick else "400", "--sigmas", "0.05,0.5" if quick else "0.02:1:4",
            "--cv", "3" if quick else "5", "--quiet"]
    track = ["--steps", "20" if quick else "120", "--eval-every", "10" if quick else "60",
             "--icr-images", "64" if quick else "256", "--samples", "8" if quick else "32", "--quiet"]
    cli = shutil.which("skicr")
    if cli is None:
        raise SystemExit("the skicr command is not on PATH: pip install -e . first")
    return {
        "scan": ([cli, "scan", *scan], "out"),
        "track": ([cli, "track", *track], "out"),
        "fit small (N=2000, V=4, d=64)": ([sys.executable, "-c", FIT, "2000", "4", "64"], None),
        "fit large (N=10000, V=4, d=512)": ([sys.executable, "-c", FIT, "10000", "4", "512"], None),
    }


def environment(threads):
    env = {key: value for key, value in os.environ.items() if key not in THREAD_VARIABLES}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if threads is not None:
        env.update({key: str(threads) for key in THREAD_VARIABLES})
    return env


def run_once(command, out_flag, threads):
    with tempfile.TemporaryDirectory() as folder:
        full = [*command, "--out", os.path.join(folder, "out")] if out_flag else command
        start = time.perf_counter()
        done = subprocess.run(full, env=environment(threads), capture_output=True, text=True, cwd=folder)
        seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(full[:4])} failed:\n{done.stderr[-2000:]}")
    for line in done.stdout.splitlines():
        if line.startswith("SECONDS"):
            return float(line.split()[1])
    return seconds


class Competitors:
    """``n`` CPU-bound processes, each ending by itself after ``limit`` seconds."""

    def __init__(self, n, limit):
        self.n, self.limit, self.processes = n, limit, []

    def __enter__(self):
        self.processes = [subprocess.Popen([sys.executable, "-c", COMPETITOR, str(self.limit)])
                          for _ in range(self.n)]
        time.sleep(0.5)  # let them reach the loop
        return self

    def __exit__(self, *exc):
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(timeout=30)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--competitors", type=int, default=2)
    parser.add_argument("--competitor-limit", type=float, default=900.0,
                        help="seconds after which a competitor stops by itself")
    parser.add_argument("--only", help="comma-separated workload name prefixes")
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds over all settings, interleaved; each setting keeps its best time "
                             "(one run per setting is within run-to-run noise of the 1.2x goal)")
    parser.add_argument("--out", default=str(HERE / "results" / "threads.md"))
    args = parser.parse_args()
    cores = os.cpu_count()
    settings = [None, *range(1, cores + 1)]
    chosen = workloads(args.quick)
    if args.only:
        prefixes = args.only.split(",")
        chosen = {k: v for k, v in chosen.items() if any(k.startswith(p) for p in prefixes)}
    results = []
    for name, (command, out_flag) in chosen.items():
        for condition in ("idle", "contended"):
            load = os.getloadavg()[0]
            times = {threads: float("inf") for threads in settings}
            for _ in range(args.repeats):
                for threads in settings:
                    if condition == "idle":
                        seconds = run_once(command, out_flag, threads)
                    else:
                        with Competitors(args.competitors, args.competitor_limit):
                            seconds = run_once(command, out_flag, threads)
                    times[threads] = min(times[threads], seconds)
            best = min(t for k, t in times.items() if k is not None)
            best_threads = min((t, k) for k, t in times.items() if k is not None)[1]
            row = {"workload": name, "condition": condition, "load_at_start": load,
                   "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                   "seconds": {("default" if k is None else f"threads={k}"): t for k, t in times.items()},
                   "best_threads": best_threads, "default_over_best": times[None] / best}
            results.append(row)
            print(json.dumps(row), flush=True)
    previous = Path(args.out).with_suffix(".json")
    if args.only and previous.is_file():
        # --only reruns some workloads: the other rows stay as last measured (with their time)
        rerun = {row["workload"] for row in results}
        kept = [row for row in json.loads(previous.read_text()) if row["workload"] not in rerun]
        results = kept + results
        order = list(workloads(args.quick))
        results.sort(key=lambda row: (order.index(row["workload"]) if row["workload"] in order
                                      else len(order), row["condition"] != "idle"))
    header = ["default", *(f"threads={k}" for k in range(1, cores + 1))]
    lines = [
        f"Machine: {cores} cores; command: `python benchmarks/bench_threads.py{' --quick' if args.quick else ''}`; "
        f"contended = beside {args.competitors} CPU-bound processes started by the script; "
        f"best of {args.repeats} interleaved rounds per setting.",
        "`default` = no thread variables set; `threads=k` = OMP/OPENBLAS/MKL_NUM_THREADS=k "
        "(torch intra-op threads and the BLAS pool).",
        "",
        "| workload | condition | measured at | load at start | " + " | ".join(header)
        + " | best | default / best |",
        "|---|---|---|---:|" + "---:|" * len(header) + "---:|---:|",
    ]
    for row in results:
        cells = " | ".join(f"{row['seconds'][h]:.3g} s" for h in header)
        lines.append(f"| {row['workload']} | {row['condition']} | {row.get('measured_at', '-')} | "
                     f"{row['load_at_start']:.1f} | {cells} | "
                     f"{row['best_threads']} | {row['default_over_best']:.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).write_text(text)
    Path(args.out).with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
