"""Robustness study of the memorization warning: several training-set sizes, several seeds.

Trains the monitor's model (skicr's SmallUNet, channels (16, 32), bottleneck 48, batch 64, the
settings of ``skicr track`` and ``benchmarks/track_experiment.py``, but on the digits' native
8 x 8 pixels, a third of the cost of 16 x 16) on random subsets of sklearn's digits that memorize (32, 64 and 128 images) and on the full data (all digits but a held-out set
of 256), each with 3 seeds; the seed draws the held-out set, the subset, the initialisation, the
batches and the noise. Every ``EVERY[size]`` steps (and at step 0) it records, on the EMA network:

- ICR, tr(Sigma_s), tr(Sigma_xi) on the training images (all of them up to 256, else a random
  256), at sigma 0.2, bottleneck ``mid``, 4 views of affine + noise, fixed views;
- the same on as many held-out images (never trained on), so that the train - held-out gap
  compares equal sample sizes;
- the memorization ratio of 64 samples of EDM's Heun sampler (18 steps, fixed seed) against the
  training set (d1 / d2 < 1/3 on pixels).

Each run's trajectory is one CSV in ``benchmarks/results/memorization/`` (written after every
evaluation as ``*.partial.csv``, renamed when the run ends) plus a JSON of its settings, so the
detector analyses (``--part analyse``) rerun without training.

    python benchmarks/memorization_study.py --part train           # all 12 runs (about 2 hours
                                                                   # on a loaded CPU thread)
    python benchmarks/memorization_study.py --part train --runs n64_seed0 full_seed1
    python benchmarks/memorization_study.py --quick                # a smoke test of minutes
    python benchmarks/memorization_study.py --part analyse --half development

The split of the runs into a development half (detectors are chosen on it) and a report half
(numbers reported whatever they are) is fixed here (``SPLIT``) and pre-registered in
``docs/monitoring.md`` before the report half was analysed.
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "memorization"

NET = {"channels": (16, 32), "mid_channels": 48}
# the digits' own 8 x 8 pixels (not skicr track's 16 x 16 upsampling): a training step costs a
# third (0.064 vs 0.183 CPU-s measured side by side), which is what lets 12 runs fit the budget
IMAGE_SIZE = 8
BATCH_SIZE = 64
LR_WARMUP_STEPS = 200
SIGMA = 0.2
N_VIEWS = 4
N_SAMPLES = 64
SAMPLER_STEPS = 18
N_HELD_OUT = 256
MAX_MEASURED = 256
SEEDS = (0, 1, 2)
# training steps and evaluation interval per training-set size (None: the full data). At 8 x 8
# the small sets memorize within a few hundred steps (32 digits: 10 of 64 samples copied by step
# 300 in the first attempt, evaluated every 100 steps), so they are evaluated more often
STEPS = {32: 500, 64: 800, 128: 1200, None: 800, 256: 3000}
EVERY = {32: 25, 64: 50, 128: 50, None: 50, 256: 50}
# extension (session 2, pre-registered in docs/memorization_study.md before these runs were
# trained): 256 digits (the smaller sets memorize after about 450 epochs, i.e. about 1800 steps
# at 256 images; 3000 steps leave room) and one size of the project's shapes dataset
# (skicr.datasets.make_shapes_images, RGB, at 16 x 16 pixels), run names "shapes_n64_seed{k}"
SHAPES = {"n_images": 600, "image_size": 16, "size": 64, "steps": 1200, "every": 50}

# pre-registered split (docs/monitoring.md): detectors and thresholds are chosen on the
# development half only; the report half is analysed once, with the chosen settings
SPLIT = {
    "development": ["n32_seed0", "n32_seed1", "n64_seed0", "n128_seed0", "n128_seed1",
                    "full_seed0"],
    "report": ["n32_seed2", "n64_seed1", "n64_seed2", "n128_seed2", "full_seed1", "full_seed2",
               # extension (session 2): every new run is a report run; the settings stay frozen
               "n256_seed0", "n256_seed1", "n256_seed2",
               "shapes_n64_seed0", "shapes_n64_seed1", "shapes_n64_seed2"],
}
QUICK_RUNS = ["n16_seed0", "full_seed0"]


def run_name(size, seed):
    return f"{'full' if size is None else f'n{size}'}_seed{seed}"


def parse_run(name):
    """``"n64_seed1"`` -> (64, 1); ``"full_seed0"`` -> (None, 0); ``"shapes_n64_seed2"`` ->
    (64, 2)."""
    size, seed = name.removeprefix("shapes_").split("_seed")
    return (None if size == "full" else int(size[1:])), int(seed)


def dataset_of(name):
    """"shapes" for the runs on make_shapes_images, else "digits"."""
    return "shapes" if name.startswith("shapes_") else "digits"


def load_images(dataset):
    """The images a run's subsets are drawn from (float32 in [0, 1], (n, C, H, W))."""
    if dataset == "shapes":
        from skicr.datasets import make_shapes_images

        return make_shapes_images(n_images=SHAPES["n_images"], image_size=SHAPES["image_size"],
                                  random_state=0, return_y=False)
    from skicr.datasets import load_digits_images

    return load_digits_images(IMAGE_SIZE, return_y=False)


def all_runs():
    return [run_name(size, seed) for seed in SEEDS for size in STEPS]


def run_cost(name):
    """Training steps of a run (what its wall time scales with)."""
    if dataset_of(name) == "shapes":
        return SHAPES["steps"]
    return STEPS[parse_run(name)[0]]


def split_of(name):
    for half, names in SPLIT.items():
        if name in names:
            return half
    return None


def run_data(size, seed, images):
    """Training images, measured training images and held-out images of one run."""
    rng = np.random.default_rng(1000 + seed)
    order = rng.permutation(len(images))
    held_out, pool = order[:N_HELD_OUT], order[N_HELD_OUT:]
    train = pool if size is None else pool[:size]
    measured = train if len(train) <= MAX_MEASURED else rng.choice(train, MAX_MEASURED,
                                                                  replace=False)
    return (images[np.sort(train)], images[np.sort(measured)],
            images[np.sort(held_out[:len(measured)])])


def train_run(name, images, out, steps=None, every=None, n_samples=N_SAMPLES):
    """Train one run, writing its trajectory after every evaluation; returns the frame."""
    import torch

    from skicr.models import SmallUNet, train_denoiser
    from skicr.monitoring import ICRMonitor

    size, seed = parse_run(name)
    shapes = dataset_of(name) == "shapes"
    steps = (SHAPES["steps"] if shapes else STEPS[size]) if steps is None else steps
    every = (SHAPES["every"] if shapes else EVERY[size]) if every is None else every
    train, measured, held_out = run_data(size, seed, images)
    on_train = ICRMonitor(measured, sigma=SIGMA, n_views=N_VIEWS, random_state=seed,
                          n_samples=n_samples, sampler_steps=SAMPLER_STEPS, sampler_seed=seed,
                          training_images=train)
    on_held_out = ICRMonitor(held_out, sigma=SIGMA, n_views=N_VIEWS, random_state=seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = SmallUNet(in_channels=images.shape[1], image_size=images.shape[-1], **NET)
    partial = out / f"{name}.partial.csv"
    start = time.perf_counter()
    rows = []

    def callback(step, model):
        on_train(step, model)
        on_held_out(step, model)
        a, b = on_train.history_.iloc[-1], on_held_out.history_.iloc[-1]
        rows.append({
            "step": int(step), "icr": a["icr"], "trace_s": a["trace_s"],
            "trace_xi": a["trace_xi"], "mean_snr": a["mean_snr"],
            "invariant_share": a["invariant_share"],
            "memorization_ratio": a["memorization_ratio"], "nn_distance": a["nn_distance"],
            "heldout_icr": b["icr"], "heldout_trace_s": b["trace_s"],
            "heldout_trace_xi": b["trace_xi"], "eval_seconds": a["seconds"] + b["seconds"],
            "elapsed_seconds": time.perf_counter() - start,
        })
        pd.DataFrame(rows).to_csv(partial, index=False)
        print(f"  [{name}] step {step:5d}  ICR {a['icr']:.4f} (held-out {b['icr']:.4f})  "
              f"tr_s {a['trace_s']:.3f}  tr_xi {a['trace_xi']:.3f}  "
              f"mem {a['memorization_ratio']:.3f}  ({rows[-1]['elapsed_seconds']:.0f} s)",
              flush=True)

    callback(0, net.eval())
    train_denoiser(train, n_steps=steps, batch_size=BATCH_SIZE, seed=seed, net=net,
                   warmup_steps=min(LR_WARMUP_STEPS, steps // 10), callback=callback,
                   callback_every=every, progress=False)
    frame = pd.DataFrame(rows)
    frame.to_csv(out / f"{name}.csv", index=False)
    partial.unlink()
    meta = {
        "run": name, "split": split_of(name), "n_train": int(len(train)),
        "n_measured": int(len(measured)), "seed": seed, "steps": int(steps),
        "eval_every": int(every), "batch_size": BATCH_SIZE, "net": NET, "sigma": SIGMA,
        "n_views": N_VIEWS, "image_size": int(images.shape[-1]), "n_samples": n_samples,
        "dataset": dataset_of(name),
        "sampler_steps": SAMPLER_STEPS,
        "seconds": round(time.perf_counter() - start, 1),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)",
    }
    (out / f"{name}.json").write_text(json.dumps(meta, indent=2) + "\n")
    return frame


def load_runs(out, names):
    """The stored trajectories (finished runs only) of ``names``, by name."""
    frames = {}
    for name in names:
        path = out / f"{name}.csv"
        if path.is_file():
            frames[name] = pd.read_csv(path)
    return frames


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", nargs="+", choices=["train", "analyse"], default=["train"])
    parser.add_argument("--runs", nargs="+", default=None,
                        help="runs to train (default: all, development half first)")
    parser.add_argument("--half", choices=["development", "report"], default="development",
                        help="which half of the runs --part analyse reads")
    parser.add_argument("--skip-existing", action="store_true",
                        help="do not retrain runs whose CSV already exists")
    parser.add_argument("--quick", action="store_true",
                        help="two tiny runs (16 digits and the full data, 60 steps) in --out")
    parser.add_argument("--out", default=None,
                        help=f"results folder (default {OUT.relative_to(ROOT)}; "
                             "--quick: a temporary folder)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    if args.out is not None:
        out = Path(args.out)
    elif args.quick:
        import tempfile

        out = Path(tempfile.mkdtemp(prefix="memorization_quick_"))
    else:
        out = OUT
    out.mkdir(parents=True, exist_ok=True)
    images_of = {}

    if "train" in args.part:
        if args.quick:
            names = QUICK_RUNS
        elif args.runs:
            names = args.runs
        else:
            # development half first (the detectors are chosen on it while the report half
            # trains), cheapest runs first within each half
            names = (sorted(SPLIT["development"], key=run_cost)
                     + sorted(SPLIT["report"], key=run_cost))
        for name in names:
            parse_run(name)  # a bad name fails before any training
        for name in names:
            if args.skip_existing and (out / f"{name}.csv").is_file():
                print(f"{name}: exists, skipped", flush=True)
                continue
            dataset = dataset_of(name)
            if dataset not in images_of:
                images_of[dataset] = load_images(dataset)
            if args.quick:
                train_run(name, images_of[dataset], out, steps=60, every=20, n_samples=16)
            else:
                train_run(name, images_of[dataset], out)
        print(f"trajectories in {out}", flush=True)
    if "analyse" in args.part:
        from memorization_analysis import analyse

        names = QUICK_RUNS if args.quick else SPLIT[args.half]
        print(analyse(load_runs(out, names), quick=args.quick, half=args.half, out=out))


if __name__ == "__main__":
    main()
