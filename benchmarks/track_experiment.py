"""The seed paper's training experiment at digits scale: ICR across training, full vs limited data.

Trains skicr's small denoiser (SmallUNet, channels (16, 32), bottleneck 48) twice on sklearn's
digits at 16x16 and tracks, every few hundred steps, on the training images:

- ICR at a fixed noise level on fixed views (bottleneck ``mid``, spatial mean, 4 views of
  random affine augmentation + noise, seed 0), with tr(Sigma_s) and tr(Sigma_xi);
- the memorization ratio of 128 samples of EDM's Heun sampler (18 steps, fixed seed) against the
  training set (d1 / d2 < 1/3 on pixels);
- ICR at two other noise levels, and (limited data) ICR on 512 held-out digits.

Runs: ``full`` (all 1797 digits) and ``subset`` (a random 128, more steps). Then ``retrieval``:
with the shipped ``digits`` denoiser, nearest-neighbour retrieval by the invariant part s and
by the residual xi (the seed paper's Fig. 2); and ``detector``: false alarms and detections of
the turning-point test on synthetic trajectories. Not part of CI: about 20 minutes on 2 CPU
cores.

    python benchmarks/track_experiment.py                  # everything
    python benchmarks/track_experiment.py --part full subset   # the two training runs only
    python benchmarks/track_experiment.py --quick          # a smoke test of a minute

Writes CSV/JSON to --out (default benchmarks/results/track/) and figures to docs/_static/,
and prints the tables of benchmarks/results/monitoring.md.
"""

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "docs" / "_static"

NET = {"channels": (16, 32), "mid_channels": 48}
SIGMA = 0.2
OTHER_SIGMAS = (0.05, 0.5)
N_SAMPLES = 128
ONSET_LEVEL = 0.05
# as skicr track's defaults: the first few hundred steps are left out of the turning-point
# test, and a rise must reach 2% of the minimum to count
WARMUP = 300
MIN_RISE = 0.02


def make_monitors(train, held_out, seed):
    """The main monitor (with memorization) and the side monitors, by column prefix."""
    from skicr.monitoring import ICRMonitor

    measured = train if len(train) <= 512 else train[np.random.default_rng(seed).choice(
        len(train), 512, replace=False)]
    monitors = {"": ICRMonitor(measured, sigma=SIGMA, n_views=4, random_state=seed,
                               n_samples=N_SAMPLES, sampler_seed=seed, training_images=train)}
    for sigma in OTHER_SIGMAS:
        monitors[f"sigma{sigma:g}_"] = ICRMonitor(measured, sigma=sigma, n_views=4,
                                                  random_state=seed)
    if held_out is not None:
        monitors["heldout_"] = ICRMonitor(held_out, sigma=SIGMA, n_views=4, random_state=seed)
    return monitors


def run_training(name, train, held_out, steps, every, seed, batch_size=64):
    """Train once, evaluating every monitor every ``every`` steps; returns one merged frame."""
    from skicr.models import SmallUNet, train_denoiser

    monitors = make_monitors(train, held_out, seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = SmallUNet(**NET)

    start = time.perf_counter()

    def callback(step, model):
        for monitor in monitors.values():
            monitor(step, model)
        main = monitors[""].history_.iloc[-1]
        print(f"  [{name}] step {step:5d}  ICR {main['icr']:.4f}  tr_s {main['trace_s']:.3f}  "
              f"tr_xi {main['trace_xi']:.3f}  mem {main['memorization_ratio']:.3f}  "
              f"({time.perf_counter() - start:.0f} s)", flush=True)

    callback(0, net.eval())
    result = train_denoiser(train, n_steps=steps, batch_size=batch_size, seed=seed, net=net,
                            callback=callback, callback_every=every, progress=False)
    frame = monitors[""].history_.drop(columns=["seconds"])
    for prefix, monitor in monitors.items():
        if prefix:
            side = monitor.history_
            for column in ("icr", "trace_s", "trace_xi"):
                frame[prefix + column] = side[column].to_numpy()
    seconds = time.perf_counter() - start
    return frame, monitors[""], result, seconds


def online_detection_step(frame, column):
    """First step at which the turning-point test, on the evaluations so far, fires.

    What early stopping would do during training: the test sees only the
    evaluations from WARMUP up to the current one.
    """
    from skicr.monitoring import detect_turning_point

    tested = frame[frame["step"] >= WARMUP]
    steps, values = tested["step"].to_numpy(), tested[column].to_numpy()
    for end in range(5, len(steps) + 1):
        if detect_turning_point(steps[:end], values[:end], min_rise=MIN_RISE).found:
            return int(steps[end - 1])
    return None


def expansion_split(frame, start_step):
    """Share of the trace growth after ``start_step`` that goes to Sigma_s (None if no growth)."""
    begin = frame[frame["step"] >= start_step].iloc[0]
    last = frame.iloc[-1]
    grow_s, grow_xi = last["trace_s"] - begin["trace_s"], last["trace_xi"] - begin["trace_xi"]
    return {"from_step": int(begin["step"]), "share_at_start": float(begin["invariant_share"]),
            "share_at_end": float(last["invariant_share"]),
            "growth_s": float(grow_s), "growth_xi": float(grow_xi),
            "share_of_growth": float(grow_s / (grow_s + grow_xi)) if grow_s + grow_xi > 0 else None}


def summarize(name, frame, seconds, n_train, steps):
    """Turning point, memorization onset, expansion split of one run, from its frame."""
    from skicr.monitoring import detect_turning_point

    tested = frame[frame["step"] >= WARMUP]
    turning = detect_turning_point(tested["step"].to_numpy(), tested["icr"].to_numpy(),
                                   min_rise=MIN_RISE)
    reached = frame.loc[frame["memorization_ratio"] >= ONSET_LEVEL, "step"]
    onset = None if reached.empty else int(reached.iloc[0])
    first = frame.loc[frame["memorization_ratio"] > 0, "step"]
    detection = online_detection_step(frame, "icr")
    last = frame.iloc[-1]
    summary = {
        "run": name,
        "n_train": int(n_train),
        "steps": int(steps),
        "seconds": round(seconds, 1),
        "icr_at_warmup": float(tested["icr"].iloc[0]),
        "icr_min": float(tested["icr"].min()),
        "icr_argmin_raw": int(tested.loc[tested["icr"].idxmin(), "step"]),
        "icr_last": float(last["icr"]),
        "turning_point": {
            "found": turning.found,
            "step": turning.step,
            "confidence": round(turning.confidence, 4),
            "step_interval": list(turning.step_interval),
            "rise": turning.rise,
            "relative_rise": turning.rise / float(turning.smoothed.min()),
            "noise": turning.noise,
        },
        "memorization_first_nonzero": None if first.empty else int(first.iloc[0]),
        f"memorization_onset_{ONSET_LEVEL}": onset,
        "memorization_last": float(last["memorization_ratio"]),
        "lead_steps": (onset - turning.step) if (onset is not None and turning.found) else None,
        "detection_step": detection,
        "detection_lead_steps": (onset - detection) if (onset is not None and detection) else None,
        "expansion_after_warmup": expansion_split(frame, WARMUP),
        "expansion_after_icr_minimum": expansion_split(
            frame, turning.step if turning.step is not None else WARMUP),
        "expansion_second_half": expansion_split(frame, steps // 2),
    }
    for prefix in [c[: -len("icr")] for c in frame.columns if c.endswith("_icr")]:
        side = detect_turning_point(tested["step"].to_numpy(), tested[prefix + "icr"].to_numpy(),
                                    min_rise=MIN_RISE)
        summary[prefix + "turning_point"] = {"found": side.found, "step": side.step,
                                             "confidence": round(side.confidence, 4),
                                             "detection_step": online_detection_step(
                                                 frame, prefix + "icr")}
        summary[prefix + "icr_first_last"] = [float(tested[prefix + "icr"].iloc[0]),
                                              float(tested[prefix + "icr"].iloc[-1])]
    return summary


def figure_run(frame, path, title):
    import matplotlib.pyplot as plt

    from skicr.monitoring import detect_turning_point, plot_training_trajectory

    tested = frame[frame["step"] >= WARMUP]
    turning = detect_turning_point(tested["step"].to_numpy(), tested["icr"].to_numpy(),
                                   min_rise=MIN_RISE)
    axes = plot_training_trajectory(frame, turning, title=title, start_step=WARMUP)
    axes[0].figure.tight_layout()
    axes[0].figure.savefig(path, dpi=130)
    plt.close(axes[0].figure)


def figure_comparison(frames, path):
    """Both runs on shared axes: ICR, memorization ratio, the covariance traces and
    the invariant share, in a 2 x 2 grid sized for the documentation's column."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(9, 7), sharex=True, layout="constrained")
    axes = axes.ravel()
    for (name, frame), color in zip(frames.items(), ("tab:blue", "tab:orange")):
        trained = frame[frame["step"] > 0]
        axes[0].plot(trained["step"], trained["icr"], "o-", ms=3, color=color, label=name)
        if "heldout_icr" in trained:
            axes[0].plot(trained["step"], trained["heldout_icr"], "x--", ms=4, color=color,
                         alpha=0.7, label=f"{name}, held-out images")
        axes[1].plot(trained["step"], trained["memorization_ratio"], "s-", ms=3, color=color,
                     label=name)
        axes[2].plot(trained["step"], trained["trace_s"], "o-", ms=3, color=color,
                     label=fr"{name}: tr$\Sigma_s$")
        axes[2].plot(trained["step"], trained["trace_xi"], "^:", ms=3, color=color,
                     label=fr"{name}: tr$\Sigma_\xi$")
        axes[3].plot(trained["step"], trained["invariant_share"], "o-", ms=3, color=color,
                     label=name)
    axes[0].set_ylabel(f"ICR (sigma={SIGMA}, mid, mean)")
    axes[1].set_ylabel("memorization ratio (d1/d2 < 1/3)")
    axes[2].set_ylabel("covariance trace")
    axes[2].set_yscale("log")
    axes[3].set_ylabel(r"invariant share tr$\Sigma_s$ / tr$\Sigma_h$")
    for ax, title in zip(axes, ["(a) ICR", "(b) memorization", "(c) where the spread grows",
                                "(d) invariant share"]):
        ax.set_title(title, fontsize="medium")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in axes[2:]:
        ax.set_xlabel("training step")
    fig.savefig(path, dpi=150)
    plt.close(fig)


def run_retrieval(seed, out, quick):
    """s vs xi retrieval with the shipped denoiser on all digits: views with the default
    augmentation and noise-only views, two poolings, three noise levels."""
    import matplotlib.pyplot as plt

    from skicr import FeatureExtractor
    from skicr.datasets import load_digits_images
    from skicr.models import load_pretrained
    from skicr.monitoring import plot_retrieval_examples, retrieval_accuracy

    images, labels = load_digits_images()
    if quick:
        images, labels = images[:300], labels[:300]
    net = load_pretrained("digits")
    queries = np.random.default_rng(seed).choice(len(images), 6, replace=False)
    rows = []
    for augment in ("default", None):
        views_name = "affine + noise" if augment else "noise only"
        for pooling in ("mean", "flatten"):
            for sigma in (0.05, 0.2, 0.5):
                views = FeatureExtractor(net, sigma=sigma, n_views=4, augment=augment,
                                         pooling=pooling, random_state=seed,
                                         batch_size=256).fit(images).transform_views(images)
                for k in (1, 10):
                    scores, neighbors = retrieval_accuracy(views, labels, n_neighbors=k,
                                                           return_neighbors=True)
                    rows.append({"views": views_name, "pooling": pooling, "sigma": sigma, "k": k,
                                 "d": views.shape[2], **scores})
                    print(f"  retrieval {views_name:14s} {pooling:7s} sigma={sigma:<4} k={k:<2}  "
                          f"by s {scores['invariant']:.3f}  by xi {scores['residual']:.3f}  "
                          f"(chance {scores['chance']:.3f})", flush=True)
                    if pooling == "mean" and sigma == SIGMA and k == 10:
                        fig = plot_retrieval_examples(
                            images, labels, neighbors, queries, n_show=5,
                            title=f"shipped digits denoiser, mid (mean), sigma={SIGMA}, views: "
                                  f"{views_name}; green = same digit as the query")
                        suffix = "" if augment else "_noise_only"
                        fig.savefig(STATIC / f"monitoring_retrieval{suffix}.png", dpi=110)
                        plt.close(fig)
    table = pd.DataFrame(rows)
    table.to_csv(out / "retrieval.csv", index=False)
    return table


def run_detector_calibration(n_seeds=400):
    """False alarms and detections of detect_turning_point on synthetic trajectories."""
    from skicr.monitoring import detect_turning_point

    steps = np.arange(0, 3000, 100)  # 30 evaluations
    cases = {
        "flat + noise (false alarms)": 0.3 + 0 * steps,
        "exponential decrease + noise": 0.2 + 0.5 * np.exp(-steps / 800),
        "decrease then plateau + noise": np.maximum(0.5 - 2e-4 * steps, 0.3),
        "U, minimum at 1800, rise +16%": 0.3 + 4e-8 * (steps - 1800) ** 2,
        "U, minimum at 1800, rise +4%": 0.3 + 1e-8 * (steps - 1800) ** 2,
    }
    lines = ["| trajectory (30 points, noise std 0.01) | found (alpha=0.05) | median step found |",
             "|---|---|---|"]
    for name, clean in cases.items():
        found, where = [], []
        for seed in range(n_seeds):
            noisy = clean + 0.01 * np.random.default_rng(seed).standard_normal(steps.size)
            result = detect_turning_point(steps, noisy, n_bootstrap=1000, random_state=seed)
            found.append(result.found)
            if result.found:
                where.append(result.step)
        lines.append(f"| {name} | {np.mean(found):.3f} | "
                     f"{np.median(where) if where and 'U' in name else '-'} |")
    return "\n".join(lines)


def markdown(summaries, retrieval):
    lines = [] if not summaries else [f"| run | images | steps | ICR at step {WARMUP} -> min (step) -> last "
             "| turning point (confidence, relative rise) | detected online at "
             "| memorization > 0 / >= 5% (last) | lead: onset - min / onset - detection |",
             "|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        tp = s["turning_point"]
        tp_text = (f"step {tp['step']} ({tp['confidence']:.3f}, +{100 * tp['relative_rise']:.1f}%), "
                   f"90% {tp['step_interval'][0]:.0f}-{tp['step_interval'][1]:.0f}"
                   if tp["found"] else
                   f"none (min at {tp['step']}, conf. {tp['confidence']:.2f}, "
                   f"+{100 * tp['relative_rise']:.1f}%)")
        lines.append(
            f"| {s['run']} | {s['n_train']} | {s['steps']} | {s['icr_at_warmup']:.3f} -> "
            f"{s['icr_min']:.3f} ({s['icr_argmin_raw']}) -> {s['icr_last']:.3f} | {tp_text} | "
            f"{s['detection_step']} | "
            f"{s['memorization_first_nonzero']} / {s[f'memorization_onset_{ONSET_LEVEL}']} "
            f"({s['memorization_last']:.3f}) | {s['lead_steps']} / {s['detection_lead_steps']} |")
    if summaries:
        lines += ["", "| run | phase | tr Sigma_s | tr Sigma_xi | invariant share | share of the "
                  "growth going to Sigma_s |", "|---|---|---|---|---|---|"]
    for s in summaries:
        for key, label in (("expansion_after_warmup", "after warm-up"),
                           ("expansion_after_icr_minimum", "after the ICR minimum"),
                           ("expansion_second_half", "second half")):
            e = s[key]
            share = "n/a" if e["share_of_growth"] is None else f"{e['share_of_growth']:.3f}"
            lines.append(f"| {s['run']} | {label} (from step {e['from_step']}) | "
                         f"+{e['growth_s']:.3f} | +{e['growth_xi']:.3f} | "
                         f"{e['share_at_start']:.3f} -> {e['share_at_end']:.3f} | {share} |")
    side = [(k, s) for s in summaries for k in s if k.endswith("_turning_point") and k != "turning_point"]
    if side:
        lines += ["", "| run | ICR variant | first -> last | turning point | detected online at |",
                  "|---|---|---|---|---|"]
        for key, s in side:
            prefix = key[: -len("turning_point")]
            tp = s[key]
            first, last = s[prefix + "icr_first_last"]
            lines.append(f"| {s['run']} | {prefix.rstrip('_')} | {first:.3f} -> {last:.3f} | "
                         + (f"step {tp['step']} ({tp['confidence']:.3f})" if tp["found"] else "none")
                         + f" | {tp['detection_step']} |")
    if retrieval is not None:
        lines += ["", "| views | pooling | d | sigma | k | by s | by xi | chance |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in retrieval.itertuples():
            lines.append(f"| {r.views} | {r.pooling} | {r.d} | {r.sigma} | {r.k} | "
                         f"{r.invariant:.3f} | {r.residual:.3f} | {r.chance:.3f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", nargs="+",
                        choices=["all", "full", "subset", "retrieval", "detector"],
                        default=["all"], help="what to run (several allowed)")
    parser.add_argument("--full-steps", type=int, default=3000)
    parser.add_argument("--subset", type=int, default=128)
    parser.add_argument("--subset-steps", type=int, default=4000)
    parser.add_argument("--full-every", type=int, default=150)
    parser.add_argument("--subset-every", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="a tiny run to check the script")
    parser.add_argument("--from-csv", action="store_true",
                        help="re-analyse the CSVs of an earlier run in --out (no training)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "track"))
    args = parser.parse_args(argv)
    if not 2 <= args.subset <= 256:
        parser.error("--subset must be in [2, 256] (the limited-data regime)")
    torch.set_num_threads(args.threads)
    import matplotlib

    matplotlib.use("Agg")
    from skicr.datasets import load_digits_images

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    STATIC.mkdir(parents=True, exist_ok=True)
    if args.quick:
        global WARMUP
        args.full_steps, args.subset_steps, args.full_every, args.subset_every = 40, 100, 20, 20
        WARMUP = 0
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s)")

    images, labels = load_digits_images()
    rng = np.random.default_rng(args.seed)
    subset_index = np.sort(rng.choice(len(images), args.subset, replace=False))
    rest = np.setdiff1d(np.arange(len(images)), subset_index)
    held_out = images[np.sort(rng.choice(rest, 512, replace=False))]

    runs = []
    parts = {"full", "subset", "retrieval", "detector"} if "all" in args.part else set(args.part)
    if "full" in parts:
        runs.append(("full", images, None, args.full_steps, args.full_every))
    if "subset" in parts:
        runs.append((f"subset{args.subset}", images[subset_index], held_out, args.subset_steps,
                     args.subset_every))
    summaries, frames = [], {}
    for name, train, held, steps, every in runs:
        if args.from_csv:  # re-analyse saved runs without training
            frame = pd.read_csv(out / f"track_{name}.csv")
            seconds = json.loads((out / f"track_{name}.json").read_text())["seconds"]
            steps = int(frame["step"].iloc[-1])
        else:
            frame, _, _, seconds = run_training(name, train, held, steps, every, args.seed)
            frame.to_csv(out / f"track_{name}.csv", index=False)
        frames[name] = frame
        summary = summarize(name, frame, seconds, len(train), steps)
        summaries.append(summary)
        (out / f"track_{name}.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
        figure_run(frame, STATIC / f"monitoring_{'full' if name == 'full' else 'subset'}.png",
                   f"{len(train)} digits, {steps} steps: ICR (sigma={SIGMA}) and memorization")
        print(json.dumps(summary, default=str), flush=True)
    if len(frames) == 2:
        figure_comparison(frames, STATIC / "monitoring_full_vs_subset.png")

    retrieval = None
    if "retrieval" in parts:
        retrieval = run_retrieval(args.seed, out, args.quick)
    print()
    print(markdown(summaries, retrieval))
    if "detector" in parts:
        print()
        print(run_detector_calibration(40 if args.quick else 400))


if __name__ == "__main__":
    main()
