"""The layer study's analysis and report (docs/layer_study.md), from the stored JSON only.

Reads benchmarks/results/layer_study/<model>.json (written by
benchmarks/layer_study.py), evaluates every pre-registered candidate procedure
with :func:`skicr.model_selection.select_from_results` (the selector's own
choice), chooses the label-free default on the development half, writes
benchmarks/results/layer_study_choice.json, the report
benchmarks/results/layer_study.md and the heat maps docs/_static/layer_study_*.png::

    python benchmarks/layer_study_report.py            # report from the stored JSON
    python benchmarks/layer_study_report.py --choose   # dev only: write the choice file
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "layer_study"
REPORT = ROOT / "benchmarks" / "results" / "layer_study.md"
CHOICE = ROOT / "benchmarks" / "results" / "layer_study_choice.json"
FIGURES = ROOT / "docs" / "_static"
#: models drawn as heat maps in the report and docs/scan.md
HEATMAP_MODELS = ("digits_shipped", "shapes_dit_flow", "digits_unet_s")

#: the pre-registered criteria, in the protocol's order
CRITERIA = ("icr", "icr_insample", "icr_top", "icr_pca", "invariant_rank", "invariant_dims",
            "lidar", "rankme")
#: the pre-registered procedures: (name, scoring, selection_rule, layer_scoring) per criterion
PROCEDURES = ("joint", "per_layer_best", "per_layer_one_se_low")


def candidates():
    """Every pre-registered candidate: name -> selector parameters."""
    out = {}
    for criterion in CRITERIA:
        out[f"joint({criterion})"] = dict(scoring=criterion, selection_rule="best",
                                          layer_scoring=None)
        out[f"per_layer({criterion}, best)"] = dict(scoring="icr", selection_rule="best",
                                                    layer_scoring=criterion)
        out[f"per_layer({criterion}, one_se_low)"] = dict(scoring="icr",
                                                          selection_rule="one_se_low",
                                                          layer_scoring=criterion)
    # the protocol's order: criteria as in its table, the three procedures of each
    return out


def load_records(out_dir=RESULTS):
    records = {}
    for path in sorted(out_dir.glob("*.json")):
        record = json.loads(path.read_text())
        cv = record["cv_results"]
        for key, value in cv.items():
            cv[key] = np.asarray(value, dtype=object if key in ("layer", "param_layer",
                                                                "decision") else float)
        records[record["model"]] = record
    return records


def probe_folds(cv):
    n = 0
    while f"split{n}_probe_accuracy" in cv:
        n += 1
    return np.column_stack([cv[f"split{k}_probe_accuracy"] for k in range(n)])


def outcome(record, index):
    """Gap (points) between the probe optimum and row ``index``, with its paired SE."""
    cv = record["cv_results"]
    acc = probe_folds(cv)
    mean = acc.mean(axis=1)
    best = int(np.argmax(mean))
    gap = acc[best] - acc[index]
    return {
        "chosen_layer": str(cv["layer"][index]), "chosen_sigma": float(cv["sigma"][index]),
        "best_layer": str(cv["layer"][best]), "best_sigma": float(cv["sigma"][best]),
        "acc_chosen": float(mean[index]), "acc_best": float(mean[best]),
        "gap_points": float(100 * gap.mean()),
        "gap_se_points": float(100 * gap.std(ddof=1) / np.sqrt(gap.size)),
        "same_layer": str(cv["layer"][index]) == str(cv["layer"][best]),
    }


def evaluate(record, params):
    from skicr.model_selection import select_from_results

    index, decision = select_from_results(record["cv_results"], **params)
    return {**outcome(record, index), "decision": decision}


#: "within 2 points", with a tolerance for float rounding: fold accuracies are multiples of
#: 1/80, so a gap of exactly 2 points can come out as 2.0000000000000018
WITHIN = 2.0 + 1e-9


def summarize(outcomes):
    gaps = np.array([o["gap_points"] for o in outcomes])
    return {"within_2pt": float(np.mean(gaps <= WITHIN)), "n_within_2pt": int(np.sum(gaps <= WITHIN)),
            "mean_gap": float(gaps.mean()), "worst_gap": float(gaps.max()),
            "same_layer": int(sum(o["same_layer"] for o in outcomes)),
            "n_models": len(outcomes)}


def rank_candidates(table):
    """The pre-registered order of preference on the development half."""
    names = list(table)
    return sorted(names, key=lambda n: (-table[n]["within_2pt"], table[n]["mean_gap"],
                                        table[n]["worst_gap"], names.index(n)))


def choose(records):
    """The dev-only choice; writes the choice file (never reads a held-out record)."""
    dev = [r for r in records.values() if r["split"] == "dev"]
    table = {name: summarize([evaluate(r, params) for r in dev])
             for name, params in candidates().items()}
    ranked = rank_candidates(table)
    choice = {"winner": ranked[0], "params": candidates()[ranked[0]],
              "dev_models": sorted(r["model"] for r in dev), "dev_table": table,
              "few_labels_default": choose_few_labels(dev)}
    CHOICE.write_text(json.dumps(choice, indent=1) + "\n")
    return choice


# ----------------------------------------------------------------- few labels
def few_label_cv(record, accuracies, cells):
    """The record's cv_results with the probe columns replaced by k-label accuracies at
    ``cells`` ((layer, sigma) pairs; 0 elsewhere, never a candidate of the procedure)."""
    cv = dict(record["cv_results"])
    n_splits = len(accuracies[0])
    for k in range(n_splits):
        column = np.zeros(len(cv["sigma"]))
        for (layer, sigma), acc in zip(cells, accuracies):
            row = np.flatnonzero((cv["layer"] == layer) & np.isclose(cv["sigma"], sigma))[0]
            column[row] = acc[k]
        cv[f"split{k}_probe_accuracy"] = column
    k = n_splits
    while f"split{k}_probe_accuracy" in cv:
        del cv[f"split{k}_probe_accuracy"]
        k += 1
    return cv


def few_label_outcomes(record):
    """{procedure: {k: [outcome per seed]}} on the record's full-probe ground truth."""
    from skicr.model_selection import select_from_results

    few = record["few_labels"]
    cells = [tuple(cell) for cell in few["layer_cells"]]
    out = {"fewlabel_layer": {}, "fewlabel_joint": {}}
    for k, by_seed in few["layer"].items():
        out["fewlabel_layer"][int(k)] = []
        for accuracies in by_seed.values():
            cv = few_label_cv(record, accuracies, cells)
            # pre-registered: sigma by the held-out ICR's optimum (rule "best") per layer
            index, _ = select_from_results(cv, scoring="icr", selection_rule="best",
                                           layer_scoring="probe")
            out["fewlabel_layer"][int(k)].append(outcome(record, index))
    if "joint" not in few:
        return out
    out["fewlabel_joint"][int(few["joint_k"])] = fewlabel_joint_outcomes(record, few["joint"])
    return out


def fewlabel_joint_outcomes(record, by_seed):
    """fewlabel_joint: the k-labels probe's best cell over every (layer, sigma), per draw."""
    from skicr.model_selection import select_from_results

    all_cells = [(layer, sigma) for layer in record["layers"] for sigma in record["sigmas"]]
    out = []
    for accuracies in by_seed.values():
        cv = few_label_cv(record, accuracies, all_cells)
        index, _ = select_from_results(cv, scoring="probe", selection_rule="best",
                                       layer_scoring="joint")
        out.append(outcome(record, index))
    return out


POSTHOC_TAU = ROOT / "benchmarks" / "results" / "layer_study_posthoc_tau"


def posthoc_tau_section(records, choice):
    """POST-HOC (not pre-registered): the dev-chosen procedure and joint(icr) with the label-free
    columns rescored at the selector's current default ridge (benchmarks/layer_study.py
    --posthoc-tau), the probe columns as stored; writes layer_study_posthoc_tau.json."""
    rescored = {}
    for path in sorted(POSTHOC_TAU.glob("*.json")) if POSTHOC_TAU.is_dir() else []:
        data = json.loads(path.read_text())
        if data["model"] not in records:
            continue
        record = records[data["model"]]
        cv = {key: np.asarray(value, dtype=object if key in ("layer", "param_layer", "decision")
                              else float) for key, value in data["cv_results"].items()}
        for key, value in record["cv_results"].items():
            if "probe_accuracy" in key:
                cv[key] = value
        rescored[data["model"]] = ({**record, "cv_results": cv}, data["tau"])
    if not rescored:
        return []
    taus = sorted({tau for _, tau in rescored.values()})
    params = {"dev-chosen " + choice["winner"]: choice["params"],
              "joint(icr)": candidates()["joint(icr)"]}
    lines = [f"## Post-hoc (not pre-registered): the same procedures at tau = "
             f"{', '.join(f'{t:g}' for t in taus)}", "",
             "The study ran with the decomposer's ridge at tau = 1e-3, the default then; the "
             "selector's default is now 1e-2. The label-free columns are rescored at that ridge on "
             "the same cached views and folds, and the probe columns are the stored ones (the "
             "probe does not see the ridge). Not part of any pre-registered choice.", ""]
    rows, summary = [], {}
    for name, p in params.items():
        for half in ("dev", "heldout"):
            recs = [r for r, _ in rescored.values() if r["split"] == half]
            if not recs:
                continue
            now = summarize([evaluate(r, p) for r in recs])
            then = summarize([evaluate(records[r["model"]], p) for r in recs])
            summary[f"{half}/{name}"] = {"tau_now": now, "tau_1e-3": then}
            rows.append([f"`{name}`", half, now["n_models"],
                         f"{now['n_within_2pt']}/{now['n_models']}", f"{now['mean_gap']:.1f}",
                         f"{now['worst_gap']:.1f}",
                         f"{then['n_within_2pt']}/{then['n_models']}", f"{then['mean_gap']:.1f}",
                         f"{then['worst_gap']:.1f}"])
    lines += [table(rows, ["procedure", "half", "models", "within 2 (now)", "mean gap (now)",
                           "worst (now)", "within 2 (tau 1e-3)", "mean gap (tau 1e-3)",
                           "worst (tau 1e-3)"]), ""]
    per_model = []
    for name, (record, tau) in rescored.items():
        now = evaluate(record, choice["params"])
        then = evaluate(records[name], choice["params"])
        per_model.append([f"`{name}`", record["split"],
                          f"`{then['chosen_layer']}`, {then['chosen_sigma']:.3g}",
                          f"{then['gap_points']:.2f}",
                          f"`{now['chosen_layer']}`, {now['chosen_sigma']:.3g}",
                          f"{now['gap_points']:.2f} ({now['gap_se_points']:.2f})"])
    lines += ["The dev-chosen procedure per model:", "",
              table(per_model, ["model", "half", "choice at tau 1e-3", "gap", "choice now",
                                "gap (paired SE)"]), ""]
    (RESULTS.parent / "layer_study_posthoc_tau.json").write_text(json.dumps(
        {"note": "post-hoc, not pre-registered: label-free columns rescored at the current "
                 "default ridge", "taus": taus, **summary}, indent=1) + "\n")
    return lines


def posthoc_joint_section(records):
    """POST-HOC (not pre-registered): fewlabel_joint(k = 5) over the five draws of the
    fewlabel_layer curve (seeds 0-4: the same labelled images per seed), with the spread over
    draws and the paired difference to fewlabel_layer(5); writes layer_study_posthoc.json."""
    records = {n: r for n, r in records.items()
               if "joint_posthoc" in r.get("few_labels", {})}
    if not records:
        return []
    lines = ["## Post-hoc (not pre-registered): `fewlabel_joint(5)` over five draws", "",
             "Added after every pre-registered number above was reported, and not part of "
             "any pre-registered choice: the pre-registered `fewlabel_joint` has one draw "
             "(seed 0). Here the same procedure (`scoring=\"probe\", n_labels_per_class=5`) "
             "runs on the five draws (seeds 0-4) of `fewlabel_layer`, which use the same "
             "labelled images per seed, so the two are compared draw by draw. Spread: the "
             "standard deviation over the five draws of the set's mean gap, and its range.", ""]
    rows, summary, reproduced = [], {}, True
    for half in ("dev", "heldout", "all"):
        recs = [r for r in records.values() if half == "all" or r["split"] == half]
        if not recs:
            continue
        joint = {r["model"]: fewlabel_joint_outcomes(r, r["few_labels"]["joint_posthoc"])
                 for r in recs}
        layer = {r["model"]: few_label_outcomes(r)["fewlabel_layer"][5] for r in recs}
        for r in recs:
            pre = r["few_labels"].get("joint", {}).get("0")
            if pre is not None and pre != r["few_labels"]["joint_posthoc"]["0"]:
                reproduced = False
        gaps = np.array([[o["gap_points"] for o in joint[r["model"]]] for r in recs])  # model x draw
        layer_gaps = np.array([[o["gap_points"] for o in layer[r["model"]]] for r in recs])
        per_draw = gaps.mean(axis=0)
        diff = (gaps - layer_gaps).mean(axis=0)
        summary[half] = {
            "n_models": len(recs), "n_draws": int(gaps.shape[1]),
            "mean_gap": float(gaps.mean()), "sd_over_draws": float(per_draw.std(ddof=1)),
            "min_draw_mean_gap": float(per_draw.min()), "max_draw_mean_gap": float(per_draw.max()),
            "within_2pt": float(np.mean(gaps <= WITHIN)), "worst_gap": float(gaps.max()),
            "seed0_mean_gap": float(gaps[:, 0].mean()),
            "fewlabel_layer5_mean_gap": float(layer_gaps.mean()),
            "minus_fewlabel_layer5": float(diff.mean()),
            "minus_fewlabel_layer5_sd_over_draws": float(diff.std(ddof=1)),
        }
        h = summary[half]
        rows.append([half, h["n_models"], h["n_draws"], f"{h['mean_gap']:.1f}",
                     f"{h['sd_over_draws']:.1f} ({h['min_draw_mean_gap']:.1f} to "
                     f"{h['max_draw_mean_gap']:.1f})", f"{h['within_2pt']:.0%}",
                     f"{h['worst_gap']:.1f}", f"{h['seed0_mean_gap']:.1f}",
                     f"{h['fewlabel_layer5_mean_gap']:.1f}",
                     f"{h['minus_fewlabel_layer5']:+.1f} ({h['minus_fewlabel_layer5_sd_over_draws']:.1f})"])
    lines += [table(rows, ["set", "models", "draws", "mean gap", "SD over draws (range)",
                           "within 2", "worst gap", "seed 0 (pre-registered draw)",
                           "`fewlabel_layer(5)` mean gap", "joint - layer (SD over draws)"]),
              "", "Seed 0 recomputed equals the pre-registered draw: "
              + ("yes (every model)." if reproduced else "**no** (see the JSON)."), ""]
    per_model = []
    for name, r in records.items():
        gaps = [o["gap_points"] for o in fewlabel_joint_outcomes(r, r["few_labels"]["joint_posthoc"])]
        per_model.append([f"`{name}`", r["split"]] + [f"{g:.1f}" for g in gaps])
    lines += ["Gap (points) of `fewlabel_joint(5)` per model and draw:", "",
              table(per_model, ["model", "half"] + [f"seed {k}" for k in range(len(per_model[0]) - 2)]),
              ""]
    (RESULTS.parent / "layer_study_posthoc.json").write_text(json.dumps(
        {"note": "post-hoc, not pre-registered: fewlabel_joint(5) over five draws",
         "seed0_reproduces_preregistered_draw": reproduced,
         **{f"{half}/fewlabel_joint/5": v for half, v in summary.items()}}, indent=1) + "\n")
    return lines


def choose_few_labels(dev):
    """fewlabel_layer or fewlabel_joint: the smaller mean gap at k = 5 on dev."""
    gaps = {"fewlabel_layer": [], "fewlabel_joint": []}
    dev = [r for r in dev if "few_labels" in r]
    if not dev:
        return None  # decided when the few-labels probes of the dev models exist
    for record in dev:
        outcomes = few_label_outcomes(record)
        for name in gaps:
            gaps[name] += [o["gap_points"] for o in outcomes[name].get(5, [])]
    means = {name: float(np.mean(values)) for name, values in gaps.items() if values}
    return {"procedure": min(means, key=means.get), "dev_mean_gap_k5": means}


# ----------------------------------------------------------------- report
def table(rows, header):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def model_rows(records, params):
    rows = []
    for name, record in records.items():
        o = evaluate(record, params)
        rows.append([f"`{name}`", f"`{o['chosen_layer']}`, {o['chosen_sigma']:.3g}",
                     f"`{o['best_layer']}`, {o['best_sigma']:.3g}", f"{o['acc_chosen']:.3f}",
                     f"{o['acc_best']:.3f}",
                     f"{o['gap_points']:.2f} ({o['gap_se_points']:.2f})",
                     "yes" if o["gap_points"] <= WITHIN else "no", o["decision"]])
    return rows


MODEL_HEADER = ["model", "chosen (layer, sigma)", "probe optimum", "acc. at choice",
                "best acc.", "gap, points (paired SE)", "within 2", "decision"]


def correlations(record):
    """Per-model rank agreement: across sigma within layers, and across layers."""
    cv = record["cv_results"]
    layers = record["layers"]
    n_sigmas = len(record["sigmas"])
    acc = np.asarray(cv["mean_probe_accuracy"]).reshape(len(layers), n_sigmas)
    out = {}
    for criterion in CRITERIA:
        sign = -1.0 if criterion.startswith("icr") else 1.0
        values = sign * np.asarray(cv[f"mean_{criterion}"]).reshape(len(layers), n_sigmas)
        # across layers: each layer's best criterion value vs its best accuracy
        rho = spearmanr(values.max(axis=1), acc.max(axis=1)).statistic
        out[criterion] = None if not np.isfinite(rho) else float(rho)
    return out


def plot_heatmaps(record, params, path):
    """One model: the dev-chosen criterion and the probe accuracy over layer x sigma, stacked
    (sized for the documentation's content column); the chosen cell outlined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skicr.model_selection import select_from_results
    from skicr.plotting import plot_icr_surface

    cv = record["cv_results"]
    index, _ = select_from_results(cv, **params)
    criterion = params["layer_scoring"] or params["scoring"]
    n_layers = len(record["layers"])
    plt.rcParams.update({"font.size": 11})
    fig, axes = plt.subplots(2, 1, figsize=(8.5, 2 * (2.3 + 0.5 * n_layers)),
                             layout="constrained")
    plot_icr_surface(cv, best_index=index, value=criterion, ax=axes[0],
                     title=f"{record['model']}: {criterion} (the layer criterion)")
    plot_icr_surface(cv, best_index=index, value="probe_accuracy", ax=axes[1],
                     title=f"{record['model']}: probe accuracy (one augmented noisy view)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def write_report(out_dir=RESULTS):
    records = load_records(out_dir)
    if not CHOICE.is_file():
        raise SystemExit("no choice file: run with --choose once the dev records exist")
    choice = json.loads(CHOICE.read_text())
    dev = {n: r for n, r in records.items() if r["split"] == "dev"}
    held = {n: r for n, r in records.items() if r["split"] == "heldout"}
    winner, params = choice["winner"], choice["params"]
    lines = [
        "# Layer study: results",
        "",
        "Protocol: docs/layer_study.md (committed before any held-out number). Generated by "
        "`python benchmarks/layer_study_report.py` from benchmarks/results/layer_study/*.json; "
        "the label-free default was chosen on the development half alone "
        "(benchmarks/results/layer_study_choice.json, committed before the held-out models "
        "ran).",
        "",
        "Probe accuracy: the scan's probe on one augmented noisy view, 5 stratified folds of "
        "400 images; the probe optimum is the best of the model's layer x sigma cells; the "
        "gap is in points of accuracy (paired standard error over the folds).",
        "",
        "## Every candidate on both halves",
        "",
    ]
    rows = []
    for name, p in candidates().items():
        d = summarize([evaluate(r, p) for r in dev.values()]) if dev else None
        h = summarize([evaluate(r, p) for r in held.values()]) if held else None

        def cell(s):
            if s is None:
                return ["", "", "", ""]
            return [f"{s['n_within_2pt']}/{s['n_models']}", f"{s['mean_gap']:.1f}",
                    f"{s['worst_gap']:.1f}", f"{s['same_layer']}/{s['n_models']}"]

        rows.append([f"`{name}`" + (" **(chosen)**" if name == winner else "")] + cell(d)
                    + cell(h))
    lines += [table(rows, ["candidate", "dev within 2", "dev mean gap", "dev worst",
                           "dev best layer", "held-out within 2", "held-out mean gap",
                           "held-out worst", "held-out best layer"]), ""]
    lines += [f"## The dev-chosen candidate: `{winner}`", "",
              f"Selector parameters: `{params}`.", ""]
    for half, recs in (("development", dev), ("held-out", held)):
        if not recs:
            continue
        s = summarize([evaluate(r, params) for r in recs.values()])
        lines += [f"### {half}: {s['n_within_2pt']} of {s['n_models']} within 2 points "
                  f"(mean gap {s['mean_gap']:.1f}, worst {s['worst_gap']:.1f})", "",
                  table(model_rows(recs, params), MODEL_HEADER), ""]
    if held:
        s = summarize([evaluate(r, params) for r in held.values()])
        met = s["within_2pt"] >= 0.8
        lines += [f"**Goal** (held-out, within 2 points for >= 80% of models): "
                  f"{'met' if met else 'not met'} ({s['n_within_2pt']} of {s['n_models']}).", ""]
    base = candidates()["joint(icr)"]
    lines += ["## The current default, `joint(icr)` (lowest held-out ICR over all cells)", "",
              table(model_rows(records, base), MODEL_HEADER), ""]

    lines += ["## Across layers: does a criterion rank the layers as the probe does?", "",
              "Spearman correlation, over a model's layers, between each layer's best criterion "
              "value (over sigma, oriented so that higher is better) and its best probe "
              "accuracy.", ""]
    corr_rows = []
    for name, record in records.items():
        c = correlations(record)
        corr_rows.append([f"`{name}`"] + ["" if c[k] is None else f"{c[k]:.2f}"
                                          for k in CRITERIA])
    lines += [table(corr_rows, ["model"] + [f"`{c}`" for c in CRITERIA]), ""]

    reference = {half: summarize([evaluate(r, params) for r in recs.values()])
                 for half, recs in (("dev", dev), ("heldout", held)) if recs}
    lines += few_labels_section(records, choice, reference)
    lines += posthoc_joint_section(records)
    lines += posthoc_tau_section(records, choice)
    lines += ["## Cost", ""]
    cost_rows = [[f"`{n}`", len(r["layers"]), len(r["sigmas"]),
                  f"{sum(r['extract_seconds']):.0f}", f"{r['score_seconds']:.0f}",
                  " + ".join(f"{r[key]:.0f}" for key in ("few_seconds_layer", "few_seconds_joint")
                             if key in r)]
                 for n, r in records.items()]
    lines += [table(cost_rows, ["model", "layers", "sigmas", "extraction s (one pass per sigma)",
                                "selector s (all cells, 5 folds, probe)",
                                "few-labels probes s"]), "",
              "Seconds on the session's shared 2-core machine at nice 19 (one torch and one "
              "BLAS thread): indicative only.", ""]
    lines += ["## Heat maps", "",
              f"The dev-chosen criterion (`{params['layer_scoring'] or params['scoring']}`) and "
              "the probe accuracy over layer x sigma; red: the lowest held-out ICR (the old "
              "default), dashed magenta: the probe optimum, dotted white: the dev-chosen "
              "procedure's cell (where it is neither).", ""]
    for name in HEATMAP_MODELS:
        if name in records:
            figure = plot_heatmaps(records[name], params, FIGURES / f"layer_study_{name}.png")
            lines += [f"![{name}](../../docs/_static/{figure.name})", ""]
    REPORT.write_text("\n".join(lines) + "\n")
    print(REPORT.read_text())
    return records


def few_labels_section(records, choice, reference=None):
    records = {n: r for n, r in records.items() if "few_labels" in r}
    if not records:
        return ["## Few labels", "", "Not measured yet (no record has its few-labels probes).", ""]
    if choice.get("few_labels_default") is None:
        dev = [r for r in records.values() if r["split"] == "dev"]
        choice = {**choice, "few_labels_default": choose_few_labels(dev)}
    lines = ["## Few labels: accuracy of the chosen cell against k labelled images per class",
             "",
             "`fewlabel_layer(k)`: sigma by the held-out ICR within each layer (label-free), the "
             "layer by the k-labels probe (`NoiseLevelSelector(layer_scoring=\"probe\", "
             "n_labels_per_class=k)`), 5 draws per k. `fewlabel_joint(k)`: the k-labels probe "
             "over every cell (`scoring=\"probe\"`), k = 5, 1 draw. The accuracy of the chosen cell is "
             "the full 5-fold probe's (the study's ground truth); within 2: share of (model, "
             "draw) pairs within 2 points of the probe optimum.", "",
             f"Recommended procedure (dev, smaller mean gap at k = 5): "
             f"`{choice['few_labels_default']['procedure']}` "
             f"(dev mean gaps at k = 5: " + ", ".join(
                 f"{k} {v:.1f}" for k, v in choice["few_labels_default"]["dev_mean_gap_k5"].items())
             + ").", ""]
    rows, curve = [], {}
    for half in ("dev", "heldout", "all"):
        recs = [r for r in records.values() if half == "all" or r["split"] == half]
        if not recs:
            continue
        outcomes = [few_label_outcomes(r) for r in recs]
        for procedure in ("fewlabel_layer", "fewlabel_joint"):
            if any(not out[procedure] for out in outcomes):
                continue  # not measured on every model of this set
            ks = sorted(outcomes[0][procedure])
            for k in ks:
                pooled = [o for out in outcomes for o in out[procedure][k]]
                gaps = np.array([o["gap_points"] for o in pooled])
                acc = np.array([o["acc_chosen"] for o in pooled])
                rows.append([half, f"`{procedure}`", k, len(recs), len(pooled) // len(recs),
                             f"{acc.mean():.3f}", f"{gaps.mean():.1f}",
                             f"{np.median(gaps):.1f}", f"{gaps.max():.1f}",
                             f"{np.mean(gaps <= WITHIN):.0%}"])
                curve[(half, procedure, k)] = {"mean_gap": float(gaps.mean()),
                                               "within_2pt": float(np.mean(gaps <= WITHIN))}
    lines += [table(rows, ["set", "procedure", "k per class", "models", "draws",
                           "mean acc. of choice", "mean gap", "median gap", "worst gap",
                           "within 2"]), ""]
    per_model = []
    for name, record in records.items():
        out = few_label_outcomes(record)["fewlabel_layer"]
        per_model.append([f"`{name}`"] + [
            f"{np.mean([o['gap_points'] for o in out[k]]):.1f}" for k in sorted(out)])
    ks = sorted(few_label_outcomes(next(iter(records.values())))["fewlabel_layer"])
    lines += ["Mean gap (points) of `fewlabel_layer(k)` per model:", "",
              table(per_model, ["model"] + [f"k={k}" for k in ks]), ""]
    figure = plot_few_labels(curve, FIGURES / "layer_study_few_labels.png", reference,
                             choice["winner"])
    if figure is not None:
        lines += [f"![mean gap against k](../../docs/_static/{figure.name})", ""]
    (RESULTS.parent / "layer_study_few_labels.json").write_text(json.dumps(
        {f"{h}/{p}/{k}": v for (h, p, k), v in curve.items()}, indent=1) + "\n")
    return lines


def plot_few_labels(curve, path, reference=None, label_free_name=""):
    """Mean gap and share within 2 points of fewlabel_layer(k) against k, per half; dotted:
    the dev-chosen label-free procedure (no label at all) on the same half."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    halves = [h for h in ("dev", "heldout", "all") if (h, "fewlabel_layer", 5) in curve]
    if not halves:
        return None
    plt.rcParams.update({"font.size": 11})
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.4), layout="constrained")
    names = {"dev": "development (5)", "heldout": "held-out (4)", "all": "all nine"}
    for half, marker in zip(halves, "os^"):
        ks = sorted(k for h, p, k in curve if h == half and p == "fewlabel_layer")
        gap = [curve[(half, "fewlabel_layer", k)]["mean_gap"] for k in ks]
        share = [100 * curve[(half, "fewlabel_layer", k)]["within_2pt"] for k in ks]
        line, = axes[0].plot(ks, gap, marker=marker, label=names[half])
        axes[1].plot(ks, share, marker=marker, label=names[half])
        if reference and half in reference:
            axes[0].axhline(reference[half]["mean_gap"], color=line.get_color(), ls=":")
            axes[1].axhline(100 * reference[half]["within_2pt"], color=line.get_color(), ls=":")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xticks([1, 2, 5, 10, 20])
        ax.set_xticklabels(["1", "2", "5", "10", "20"])
        ax.minorticks_off()
        ax.set_xlabel("labelled images per class (k)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean gap to the probe optimum (points)")
    axes[1].set_ylabel("draws within 2 points (%)")
    axes[1].set_ylim(0, 105)
    axes[0].legend(fontsize="small", frameon=False)
    fig.suptitle("few labels: the layer by a k-labels probe, sigma label-free in each layer\n"
                 f"(dotted: no labels at all, {label_free_name})", fontsize="medium")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--choose", action="store_true",
                        help="choose on the development half and write the choice file")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    if args.choose:
        records = load_records()
        if any(r["split"] == "heldout" for r in records.values()):
            raise SystemExit("held-out records exist: the choice is made before they run")
        choice = choose(records)
        print(json.dumps({k: choice[k] for k in ("winner", "params", "few_labels_default")},
                         indent=1))
        return 0
    write_report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
