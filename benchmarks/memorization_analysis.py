"""Detector comparison on the stored trajectories of ``memorization_study.py`` (no training).

Every detector of ``skicr.monitoring._detectors`` is replayed on each stored run one evaluation
at a time (``first_alarm``: at each evaluation it sees only the evaluations up to it). Events:

- *first memorized sample*: the first evaluation whose memorization ratio is > 0;
- a limited-data run is a *success* for a detector when its first alarm comes at an evaluation
  strictly before the first memorized sample (lead = first memorized sample - alarm, in steps);
- any alarm in a full-data run is a *false alarm*.

``--half development`` searches each detector's parameter grid (``GRIDS`` x ``WARMUPS``) on the
development runs and writes the chosen settings to ``chosen.json``; ``--half report`` applies
those settings, unchanged, to the report runs. Both write tables (markdown) and JSON next to the
trajectories, and the small-multiples figures to ``docs/_static/``.

    python benchmarks/memorization_analysis.py --half development
    python benchmarks/memorization_analysis.py --half report
"""

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "memorization"
STATIC = ROOT / "docs" / "_static"
# the earlier single-seed 3000-step full-digits run (benchmarks/track_experiment.py): already
# seen before this study, so it joins the development half as a second false-alarm check
EARLIER_FULL = ROOT / "benchmarks" / "results" / "track" / "track_full.csv"

WARMUPS = (0, 100, 200, 300)


def _grid(**axes):
    keys = list(axes)
    return [dict(zip(keys, values)) for values in itertools.product(*axes.values())]


GRIDS = {
    "turning_point": _grid(min_rise=[0.01, 0.02, 0.05], alpha=[0.05, 0.2]),
    "cusum": _grid(drift=[0.0, 0.002, 0.005, 0.01], threshold=[0.01, 0.02, 0.03, 0.05, 0.08]),
    "page_hinkley": _grid(delta=[0.0, 0.002, 0.005], threshold=[0.01, 0.02, 0.05],
                          min_rise=[0.01, 0.02]),
    "mann_kendall": _grid(window=[4, 6, 8], alpha=[0.05, 0.1], min_rise=[0.01, 0.02]),
    "expansion_split": _grid(window=[2, 4, 6], margin=[0.0, 0.05, 0.1, 0.2]),
    "heldout_gap": _grid(threshold=[0.01, 0.02, 0.03, 0.05], direction=["opens", "closes"],
                         smooth=[1, 3]),
}
NEEDS = {"expansion_split": ("trace_s", "trace_xi"), "heldout_gap": ("heldout_icr",)}


def is_full(name):
    return name.startswith("full") or name == "earlier_full"


def first_memorized(frame):
    """Step of the first evaluation with a memorized sample, or None."""
    hit = frame.loc[frame["memorization_ratio"] > 0, "step"]
    return None if hit.empty else int(hit.iloc[0])


def memorization_at(frame, step):
    if step is None:
        return None
    row = frame.loc[frame["step"] == step, "memorization_ratio"]
    return None if row.empty else float(row.iloc[0])


def replay(detector, params, warmup, name, frame):
    """One detector setting on one run: alarm, checkpoint, and the outcome."""
    from skicr.monitoring._detectors import first_alarm

    if any(column not in frame for column in NEEDS.get(detector, ())):
        return None
    alarm = first_alarm(detector, frame, warmup_step=warmup, **params)
    onset = first_memorized(frame)
    fired = None if alarm is None else int(alarm.step)
    checkpoint = None if alarm is None else alarm.checkpoint
    row = {"run": name, "full": is_full(name), "first_memorized": onset, "alarm": fired,
           "checkpoint": checkpoint, "checkpoint_memorization": memorization_at(frame, checkpoint),
           "alarm_memorization": memorization_at(frame, fired), "last_step": int(frame["step"].max())}
    if row["full"]:
        row["false_alarm"] = fired is not None
    elif onset is not None:
        row["success"] = fired is not None and fired < onset
        row["lead"] = None if fired is None else onset - fired
    return row


def score(rows):
    """Successes, false alarms and leads of one setting over runs."""
    limited = [r for r in rows if not r["full"] and r["first_memorized"] is not None]
    full = [r for r in rows if r["full"]]
    leads = [r["lead"] for r in limited if r["success"]]
    alarms = [r["alarm"] for r in limited if r["alarm"] is not None]
    return {
        "successes": sum(r["success"] for r in limited), "limited_runs": len(limited),
        "false_alarms": sum(r["false_alarm"] for r in full), "full_runs": len(full),
        "median_lead": float(np.median(leads)) if leads else None,
        "median_alarm": float(np.median(alarms)) if alarms else np.inf,
    }


def choose(frames):
    """The pre-registered choice, on the development runs only.

    Per detector: among settings with no false alarm on the development full-data runs, the most
    successes; ties go to the latest median alarm (the most conservative setting).
    """
    chosen, table = {}, []
    for detector, grid in GRIDS.items():
        best = None
        for params, warmup in itertools.product(grid, WARMUPS):
            rows = [r for name, frame in frames.items()
                    if (r := replay(detector, params, warmup, name, frame)) is not None]
            s = score(rows)
            table.append({"detector": detector, "warmup": warmup, **params, **s})
            if s["false_alarms"]:
                continue
            key = (s["successes"], s["median_alarm"])
            if best is None or key > best[0]:
                best = (key, {"params": params, "warmup": warmup, "development": s})
        chosen[detector] = None if best is None else best[1]
    return chosen, pd.DataFrame(table)


def detector_rows(chosen, frames):
    rows = []
    for detector, setting in chosen.items():
        if setting is None:
            continue
        for name, frame in frames.items():
            row = replay(detector, setting["params"], setting["warmup"], name, frame)
            if row is not None:
                rows.append({"detector": detector, **row})
    return pd.DataFrame(rows)


def setting_text(setting):
    params = ", ".join(f"{k}={v}" for k, v in setting["params"].items())
    return f"{params}, warm-up {setting['warmup']}"


def comparison_table(chosen, rows):
    lines = ["| detector | setting (chosen on development) | fired before the first memorized "
             "sample | median lead (steps) | false alarms (full data) | memorization ratio at "
             "the recommended checkpoint (median, max) |", "|---|---|---|---|---|---|"]
    for detector, setting in chosen.items():
        if setting is None:
            lines.append(f"| {detector} | no setting without a development false alarm | - | - "
                         "| - | - |")
            continue
        part = rows[rows["detector"] == detector].to_dict("records")
        s = score(part)
        ckpt = [r["checkpoint_memorization"] for r in part
                if not r["full"] and pd.notna(r["alarm"]) and pd.notna(r["checkpoint_memorization"])]
        lead = "-" if s["median_lead"] is None else f"{s['median_lead']:.0f}"
        ckpt_text = "-" if not ckpt else f"{np.median(ckpt):.3f}, {np.max(ckpt):.3f}"
        lines.append(f"| {detector} | {setting_text(setting)} | {s['successes']} / "
                     f"{s['limited_runs']} | {lead} | {s['false_alarms']} / {s['full_runs']} | "
                     f"{ckpt_text} |")
    return "\n".join(lines)


def runs_table(rows):
    lines = ["| detector | run | first memorized sample | alarm | lead | checkpoint (its "
             "memorization ratio) |", "|---|---|---|---|---|---|"]
    for r in rows.to_dict("records"):
        alarm = "-" if r["alarm"] is None or pd.isna(r["alarm"]) else f"{r['alarm']:.0f}"
        onset = ("never" if r["first_memorized"] is None or pd.isna(r["first_memorized"])
                 else f"{r['first_memorized']:.0f}")
        lead = r.get("lead")
        lead = "-" if lead is None or pd.isna(lead) else f"{lead:+.0f}"
        ckpt = ("-" if r["checkpoint"] is None or pd.isna(r["checkpoint"]) else
                f"{r['checkpoint']:.0f} ({r['checkpoint_memorization']:.3f})")
        lines.append(f"| {r['detector']} | {r['run']} | {onset} | {alarm} | {lead} | {ckpt} |")
    return "\n".join(lines)


def _size_order(size):
    """Rows of the figures: digits by size, the full digits, then the shapes runs."""
    shapes = size.startswith("shapes_")
    size = size.removeprefix("shapes_")
    return (shapes, np.inf if size == "full" else int(size[1:]))


def figure_trajectories(frames, path, alarms=None, title=""):
    """Small multiples: one panel per run (rows: training-set size, columns: seeds)."""
    import matplotlib.pyplot as plt

    names = [n for n in frames if n != "earlier_full"]
    sizes = sorted({n.split("_seed")[0] for n in names}, key=_size_order)
    seeds = sorted({int(n.split("_seed")[1]) for n in names})
    fig, axes = plt.subplots(len(sizes), len(seeds), figsize=(3.3 * len(seeds),
                                                             2.4 * len(sizes)),
                             squeeze=False)
    # one ICR scale for every panel; tick labels on the first panel of each row (a row's
    # first seeds may be missing, so sharey's "first column only" would hide them)
    values = np.concatenate([frames[n][column].to_numpy(dtype=float)
                             for n in names for column in ("icr", "heldout_icr")])
    values = values[np.isfinite(values)]
    pad = 0.05 * (values.max() - values.min()) if values.size else 0.05
    limits = (values.min() - pad, values.max() + pad) if values.size else (0, 1)
    legend_ax = None
    for i, size in enumerate(sizes):
        first_in_row = True
        for j, seed in enumerate(seeds):
            ax = axes[i, j]
            name = f"{size}_seed{seed}"
            if name not in frames:
                ax.set_axis_off()
                continue
            frame = frames[name]
            ax.set_ylim(*limits)
            if first_in_row:
                ax.set_ylabel("ICR")
                first_in_row = False
            else:
                ax.set_yticklabels([])
            if legend_ax is None:
                legend_ax = ax
            ax.plot(frame["step"], frame["icr"], "o-", ms=2, color="tab:blue", label="ICR, train")
            ax.plot(frame["step"], frame["heldout_icr"], "x--", ms=3, color="tab:green",
                    alpha=0.8, label="ICR, held-out")
            twin = ax.twinx()
            twin.fill_between(frame["step"], frame["memorization_ratio"], color="tab:red",
                              alpha=0.2, step="mid")
            twin.set_ylim(0, 1)
            if j < len(seeds) - 1:
                twin.set_yticklabels([])
            else:
                twin.set_ylabel("memorized", color="tab:red")
            onset = first_memorized(frame)
            if onset is not None:
                ax.axvline(onset, color="tab:red", lw=1)
            if alarms is not None and name in alarms and alarms[name] is not None:
                ax.axvline(alarms[name], color="black", ls=":", lw=1.2)
            ax.set_title(name.replace("_", ", "), fontsize="small")
            ax.grid(alpha=0.3)
            if i == len(sizes) - 1:
                ax.set_xlabel("step")
    if legend_ax is not None:
        legend_ax.legend(fontsize="x-small", loc="upper right")
    if title:
        fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def figure_traces(frames, path):
    """Small multiples of tr Sigma_s and tr Sigma_xi (training images)."""
    import matplotlib.pyplot as plt

    names = [n for n in frames if n != "earlier_full"]
    n_cols = min(len(names), 6)
    n_rows = int(np.ceil(len(names) / n_cols))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.4 * n_cols, 2.6 * n_rows),
                             squeeze=False, sharey=True)
    for ax in axes.flat[len(names):]:
        ax.set_axis_off()
    for ax, name in zip(axes.flat, names):
        frame = frames[name]
        ax.plot(frame["step"], frame["trace_s"], "-", color="tab:blue", label=r"tr $\Sigma_s$")
        ax.plot(frame["step"], frame["trace_xi"], "--", color="tab:orange",
                label=r"tr $\Sigma_\xi$")
        onset = first_memorized(frame)
        if onset is not None:
            ax.axvline(onset, color="tab:red", lw=1)
        ax.set_yscale("log")
        ax.set_title(name.replace("_", ", "), fontsize="small")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize="x-small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def load(names, out=OUT):
    frames = {}
    for name in names:
        path = Path(out) / f"{name}.csv"
        if path.is_file():
            frames[name] = pd.read_csv(path)
    return frames


def analyse(frames, quick=False, half="development", out=OUT):
    """Run the half's analysis; returns the markdown text (and writes files unless quick)."""
    if half == "development":
        dev = dict(frames)
        if not quick and EARLIER_FULL.is_file():
            dev["earlier_full"] = pd.read_csv(EARLIER_FULL)
        chosen, grid = choose(dev)
        rows = detector_rows(chosen, dev)
    else:
        chosen = json.loads((Path(out) / "chosen.json").read_text())["chosen"]
        rows = detector_rows(chosen, frames)
    text = (f"## {half} half: {len(frames)} runs ({', '.join(frames)})\n\n"
            + comparison_table(chosen, rows) + "\n\n" + runs_table(rows))
    if not quick:
        out = Path(out)
        if half == "development":
            (out / "chosen.json").write_text(json.dumps(
                {"chosen": chosen, "development_runs": list(dev)}, indent=2, default=str) + "\n")
            grid.to_csv(out / "development_grid.csv", index=False)
        rows.to_csv(out / f"detectors_{half}.csv", index=False)
        (out / f"detectors_{half}.md").write_text(text + "\n")
        import matplotlib

        matplotlib.use("Agg")
        best = _product_choice(chosen)
        alarms = None if best is None else {
            r["run"]: r["alarm"] for r in rows[rows["detector"] == best].to_dict("records")}
        figure_trajectories(frames, STATIC / f"memorization_{half}.png", alarms)
        figure_traces(frames, STATIC / f"memorization_traces_{half}.png")
    return text


def subsample(frame, interval):
    """The evaluations at multiples of ``interval`` steps (what a coarser monitor records)."""
    return frame[frame["step"] % interval == 0].reset_index(drop=True)


def revalidate(frames, chosen, interval, halves):
    """The frozen settings replayed on trajectories subsampled to every ``interval`` steps.

    A limited-data run's success is judged against its first memorized sample on the full
    trajectory (when the copies really appeared); ``coarse_first_memorized`` is the first one
    among the kept evaluations. ``halves`` maps run name -> half. Returns the per-run rows.
    """
    rows = []
    for detector, setting in chosen.items():
        if setting is None:
            continue
        for name, frame in frames.items():
            coarse = subsample(frame, interval)
            row = replay(detector, setting["params"], setting["warmup"], name, coarse)
            fine = replay(detector, setting["params"], setting["warmup"], name, frame)
            if row is None:
                continue
            onset = first_memorized(frame)
            row["coarse_first_memorized"] = row["first_memorized"]
            row["first_memorized"] = onset
            row["checkpoint_memorization"] = memorization_at(frame, row["checkpoint"])
            if not row["full"]:
                row.pop("success", None), row.pop("lead", None)
                if onset is not None:
                    row["success"] = row["alarm"] is not None and row["alarm"] < onset
                    row["lead"] = None if row["alarm"] is None else onset - row["alarm"]
            row["fine_alarm"] = fine["alarm"]
            rows.append({"detector": detector, "half": halves.get(name, "development"), **row})
    return pd.DataFrame(rows)


def revalidation_table(chosen, rows, interval):
    """Per detector and half: successes and false alarms at ``interval`` vs the stored grid."""
    lines = [f"| detector | half | before first memorized sample, every {interval} steps | "
             "on the stored grid (25-50 steps) | false alarms, every "
             f"{interval} steps | on the stored grid |", "|---|---|---|---|---|---|"]
    for detector in chosen:
        part = rows[rows["detector"] == detector]
        if part.empty:
            continue
        for half in ("development", "report", "all"):
            sub = part if half == "all" else part[part["half"] == half]
            recs = sub.to_dict("records")
            limited = [r for r in recs if not r["full"] and r["first_memorized"] is not None]
            full = [r for r in recs if r["full"]]
            fine_ok = sum(r["fine_alarm"] is not None and not pd.isna(r["fine_alarm"])
                          and r["fine_alarm"] < r["first_memorized"] for r in limited)
            fine_fa = sum(r["fine_alarm"] is not None and not pd.isna(r["fine_alarm"])
                          for r in full)
            coarse_ok = sum(bool(r["success"]) for r in limited)
            coarse_fa = sum(bool(r["false_alarm"]) for r in full)
            lines.append(f"| {detector} | {half} | {coarse_ok} / {len(limited)} | {fine_ok} / "
                         f"{len(limited)} | {coarse_fa} / {len(full)} | {fine_fa} / "
                         f"{len(full)} |")
    return "\n".join(lines)


def analyse_interval(frames, interval, halves, out=OUT):
    """The 100-step re-validation (docs/memorization_study.md): tables to
    ``detectors_interval{interval}.md`` / ``.csv``; returns the markdown."""
    chosen = json.loads((Path(out) / "chosen.json").read_text())["chosen"]
    rows = revalidate(frames, chosen, interval, halves)
    runs = rows.drop(columns=["half", "coarse_first_memorized", "fine_alarm"])
    text = (f"## Frozen settings replayed every {interval} steps: {len(frames)} runs\n\n"
            + revalidation_table(chosen, rows, interval) + "\n\n" + runs_table(runs))
    rows.to_csv(Path(out) / f"detectors_interval{interval}.csv", index=False)
    (Path(out) / f"detectors_interval{interval}.md").write_text(text + "\n")
    return text


def _product_choice(chosen):
    """The detector that becomes the early-stopping rule: most development successes, ties to
    the larger median lead."""
    ranked = [(s["development"]["successes"], s["development"]["median_lead"] or -np.inf, name)
              for name, s in chosen.items() if s is not None]
    return max(ranked)[2] if ranked else None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--half", choices=["development", "report"], default="development")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--interval", type=int, default=None,
                        help="replay the frozen settings on every run (both halves), the "
                             "trajectories subsampled to every INTERVAL steps")
    args = parser.parse_args(argv)
    from memorization_study import SPLIT

    if args.interval is not None:
        halves = {name: half for half, names in SPLIT.items() for name in names}
        frames = load(SPLIT["development"] + SPLIT["report"], args.out)
        if EARLIER_FULL.is_file():
            frames["earlier_full"] = pd.read_csv(EARLIER_FULL)
        print(analyse_interval(frames, args.interval, halves, args.out))
        return
    frames = load(SPLIT[args.half], args.out)
    print(analyse(frames, half=args.half, out=args.out))
    if args.half == "development":
        chosen = json.loads((Path(args.out) / "chosen.json").read_text())["chosen"]
        print(f"\nearly-stopping rule (most development successes): {_product_choice(chosen)}")


if __name__ == "__main__":
    main()
