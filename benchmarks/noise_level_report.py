"""Tables and the small-multiples figure of the noise-level study, from its JSON records.

Reads benchmarks/results/noise_level_study/*.json (written by
benchmarks/noise_level_study.py) and benchmarks/zoo/weights/*.json (the zoo's
training records); writes benchmarks/results/noise_level_study.md,
the zoo table inside docs/zoo.md (between its markers) and
docs/_static/noise_level_study.png. No extraction, no training::

    python benchmarks/noise_level_report.py
"""

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from noise_level_study import (  # noqa: E402
    MODELS, PREVIOUS_DEFAULT, RESULTS, ZOO, analyse, curve, distinct_indices)

FIGURE = ROOT / "docs" / "_static" / "noise_level_study.png"
SCAN_DOC = ROOT / "docs" / "scan.md"
SCAN_START, SCAN_END = "<!-- zoo-scan-table-start -->", "<!-- zoo-scan-table-end -->"
#: how each set is named in the tables
SET_NAMES = {"dev": "dev", "heldout": "held-out", "fresh": "fresh"}
REPORT = ROOT / "benchmarks" / "results" / "noise_level_study.md"
ZOO_DOC = ROOT / "docs" / "zoo.md"
START, END = "<!-- zoo-table-start -->", "<!-- zoo-table-end -->"


def zoo_records():
    """Training record of every zoo model (the shipped one from its weights' metadata)."""
    from skicr.models import load_pretrained

    _, shipped = load_pretrained("digits", return_metadata=True)
    rows = {"digits_shipped": {
        "data": "digits", "architecture": "SmallUNet", "parameterization": "edm",
        "attention": False, "n_parameters": shipped["n_parameters"], "steps": shipped["steps"],
        "batch_size": shipped["batch_size"], "train_loss_last100": shipped["train_loss_last100"],
        "ema_eval_loss": shipped["ema_eval_loss"], "train_seconds": shipped["train_seconds"],
        "config": "channels (32, 64), mid 96", "command": shipped["command"]}}
    for path in sorted(ZOO.glob("*.json")):
        record = json.loads(path.read_text())
        rows[record["name"]] = record
    return rows


def _config(name):
    from skicr.models import load_checkpoint

    module = load_checkpoint(MODELS[name]["file"]).module
    config = dict(getattr(module, "config", {}))
    if "channels" in config:
        return f"channels {tuple(config['channels'])}, mid {config['mid_channels']}"
    if "patch_size" in config:
        return f"patch {config['patch_size']}, width {config['width']}, depth {config['depth']}"
    return (f"blocks {tuple(config['block_out_channels'])}, "
            f"{'+'.join(b.replace('Block2D', '') for b in config['down_block_types'])}")


def write_zoo_table():
    # two tables of the same rows: one of twelve columns is wider than the docs' content column
    rows = zoo_records()
    models = ["| model | set | data | architecture | configuration | parameters |", "|---" * 6 + "|"]
    training = ["| model | parameterisation | attention | steps (batch) | final train loss | "
                "EMA eval loss | CPU seconds |", "|---" * 7 + "|"]
    for name, spec in MODELS.items():
        r = rows.get(name)
        if r is None:
            models.append(f"| `{name}` | {SET_NAMES[spec['split']]} | {spec['data']} | "
                          "not trained | | |")
            training.append(f"| `{name}` | | | | | | |")
            continue
        config = r.get("config") if name == "digits_shipped" else _config(name)
        models.append(
            f"| `{name}` | {SET_NAMES[spec['split']]} | {r['data']} | {r['architecture']} | "
            f"{config} | "
            f"{r['n_parameters']:,} |")
        training.append(
            f"| `{name}` | {r['parameterization']} | {'yes' if r['attention'] else 'no'} | "
            f"{r['steps']} ({r['batch_size']}) | {r['train_loss_last100']:.4f} | "
            f"{r['ema_eval_loss']:.4f} | {r['train_seconds']:.0f} |")
    lines = models + [""] + training
    if ZOO_DOC.is_file():
        text = ZOO_DOC.read_text()
        head, rest = text.split(START, 1)
        tail = rest.split(END, 1)[1]
        ZOO_DOC.write_text(head + START + "\n" + "\n".join(lines) + "\n" + END + tail)
    return lines


def _summary_row(key, s):
    if s is None:
        return "- | - | - | -"
    return (f"{100 * s['within_1pt']:.0f}% | {s['mean_loss']:.2f} | {s['worst_loss']:.2f} | "
            f"{s['n_unwarned_over_3']}")


def model_table(result, records, key, split):
    lines = ["| model | data | param. | chosen sigma | probe-peak sigma | steps apart | "
             "acc. at choice | best acc. | loss (points, paired SE) | Spearman | decision |",
             "|---" * 11 + "|"]
    for name, rec in records.items():
        if rec["split"] != split:
            continue
        o = result["per_model"][name][key]
        rho = "-" if o["spearman"] is None else f"{o['spearman']:.2f}"
        lines.append(
            f"| `{name}` | {rec['data']} | {rec['parameterization']} | {o['chosen_sigma']:.3g} | "
            f"{o['peak_sigma']:.3g} | {o['steps_apart']} | {o['acc_chosen']:.3f} | "
            f"{o['acc_best']:.3f} | {o['loss_points']:.2f} ({o['loss_se_points']:.2f}) | "
            f"{rho} | {o['decision']} |")
    return lines


def write_figure(result, records):
    """Small multiples, one panel per model: probe accuracy (mean and SE over folds, left axis)
    and the round-2 candidate's and the previous default's criterion (right axis) against
    sigma, with the candidate's choice and the probe peak marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    candidate = tuple(result["round2"]["candidate"] or result["winner"])
    names = [n for n in MODELS if n in records]
    n_cols = 5
    n_rows = int(np.ceil(len(names) / n_cols))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.2 * n_cols, 2.9 * n_rows),
                             squeeze=False, constrained_layout=True)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    criteria = [(candidate[0], "C3")]
    if PREVIOUS_DEFAULT[0] != candidate[0]:
        criteria.append((PREVIOUS_DEFAULT[0], "C2"))
    for ax, name in zip(axes.flat, names):
        rec = records[name]
        keep = distinct_indices(rec)
        sigmas = np.asarray(rec["sigmas"])[keep]
        acc = curve(rec, "probe_accuracy", keep)
        se = acc.std(axis=1, ddof=1) / np.sqrt(acc.shape[1])
        ax.errorbar(sigmas, acc.mean(axis=1), yerr=se, color="C0", marker="o", ms=3)
        ax.set_xscale("log")
        ax.set_title(f"{name} ({SET_NAMES[rec['split']]})", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_ylabel("probe accuracy", fontsize=7, color="C0")
        twin = ax.twinx()
        for crit, colour in criteria:
            twin.plot(sigmas, curve(rec, crit, keep).mean(axis=1), color=colour, marker=".",
                      lw=1)
        twin.tick_params(labelsize=7)
        outcome = result["per_model"][name]["/".join(candidate)]
        ax.axvline(outcome["chosen_sigma"], color="C3", ls="--", lw=1)
        ax.axvline(outcome["peak_sigma"], color="C0", ls=":", lw=1)
        ax.set_xlabel(f"sigma  (verdict: {outcome['decision']})", fontsize=7)
    handles = [plt.Line2D([], [], color="C0", marker="o", label="probe accuracy (mean, SE)")]
    handles += [plt.Line2D([], [], color=c, marker=".", label=f"{k} (right axis)")
                for k, c in criteria]
    handles += [plt.Line2D([], [], color="C3", ls="--",
                           label=f"chosen: {candidate[0]} / {candidate[1]}"),
                plt.Line2D([], [], color="C0", ls=":", label="probe peak")]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8,
               bbox_to_anchor=(0.5, -0.05))
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURE, dpi=100, bbox_inches="tight")
    plt.close(fig)


def scan_tables(result, records):
    """The per-model tables of docs/scan.md: every model under the round-2 candidate, then
    the previous default (narrow tables: the docs' content column is narrow)."""
    candidate = "/".join(result["round2"]["candidate"])
    previous = "/".join(PREVIOUS_DEFAULT)
    head = ["| model | set | chosen sigma | probe peak | accuracy chosen / best | "
            "loss, points (SE) | verdict |", "|---" * 7 + "|"]
    old = ["| model | chosen sigma | loss, points (SE) | verdict |", "|---" * 4 + "|"]
    for name in MODELS:
        if name not in records:
            continue
        o = result["per_model"][name][candidate]
        head.append(f"| `{name}` | {SET_NAMES[records[name]['split']]} | "
                    f"{o['chosen_sigma']:.3g} | {o['peak_sigma']:.3g} | {o['acc_chosen']:.3f} / "
                    f"{o['acc_best']:.3f} | {o['loss_points']:.2f} ({o['loss_se_points']:.2f}) | "
                    f"{o['decision']} |")
        p = result["per_model"][name][previous]
        old.append(f"| `{name}` | {p['chosen_sigma']:.3g} | {p['loss_points']:.2f} "
                   f"({p['loss_se_points']:.2f}) | {p['decision']} |")
    return head, old


def write_scan_tables(result, records):
    """Replace the tables between the markers of docs/scan.md (if the markers are there)."""
    if not SCAN_DOC.is_file():
        return
    text = SCAN_DOC.read_text()
    if SCAN_START not in text:
        return
    head, old = scan_tables(result, records)
    candidate = " / ".join(f"`{k}`" for k in result["round2"]["candidate"])
    previous = " / ".join(f"`{k}`" for k in PREVIOUS_DEFAULT)
    body = ([f"Under {candidate}:", ""] + head
            + ["", f"Under the previous default, {previous}:", ""] + old)
    before, rest = text.split(SCAN_START, 1)
    after = rest.split(SCAN_END, 1)[1]
    SCAN_DOC.write_text(before + SCAN_START + "\n" + "\n".join(body) + "\n" + SCAN_END + after)


def round2_lines(result, records):
    r2 = result["round2"]
    if not r2["candidate"]:
        return []
    cand = tuple(r2["candidate"])
    key = "/".join(cand)
    lines = ["", "## Round 2: development = the nine round-1 models, fresh held-out set", "",
             f"Candidate (ranked first over the {r2['n_development']} round-1 models, "
             f"pre-registered ordering): `{cand[0]}` with rule `{cand[1]}`. Previous default: "
             f"`{PREVIOUS_DEFAULT[0]}` / `{PREVIOUS_DEFAULT[1]}`. Fresh models measured: "
             f"{r2['n_fresh']}.", ""]
    if r2["adopt"] is not None:
        lines += [f"- Pre-registered decision rule (no worse than the previous default on the "
                  f"fresh set on within-1-point share, unwarned losses > 3, mean loss): "
                  f"**{'adopt' if r2['adopt'] else 'keep the previous default'}**.",
                  f"- Goal on the fresh set (>= 80% within 1 point, no unwarned loss > 3): "
                  f"**{'met' if r2['goal_met'] else 'not met'}**.", ""]
    lines += ["| criterion | rule | 9 round-1 models: within 1 pt | mean loss | worst | "
              "unwarned > 3 | fresh: within 1 pt | mean loss | worst | unwarned > 3 |",
              "|---" * 10 + "|"]
    for row in r2["table"]:
        lines.append(f"| `{row['criterion']}` | {row['rule']} | "
                     f"{_summary_row(None, row['development'])} | "
                     f"{_summary_row(None, row['fresh'])} |")
    if r2["n_fresh"]:
        lines += ["", f"### fresh: candidate `{cand[0]}` / `{cand[1]}`", ""]
        lines += model_table(result, records, key, "fresh")
        lines += ["", f"### fresh: previous default `{PREVIOUS_DEFAULT[0]}` / "
                      f"`{PREVIOUS_DEFAULT[1]}`", ""]
        lines += model_table(result, records, "/".join(PREVIOUS_DEFAULT), "fresh")
    return lines


def write_report(result, records):
    zoo = write_zoo_table()
    winner = tuple(result["winner"]) if result["winner"] else None
    lines = ["# Noise-level study: results", "",
             "Protocol: docs/noise_level_study.md (committed before these results). "
             "Generated by `python benchmarks/noise_level_report.py` from "
             "benchmarks/results/noise_level_study/*.json.", "", "## The zoo", ""] + zoo
    lines += ["", "## Round 1: every (criterion, rule) on both halves", "",
              "Within 1 pt: share of models whose probe accuracy at the choice is within 1 point "
              "of the grid's best; mean / worst loss in points; unwarned > 3: models more than 3 "
              "points below with an `interior` decision.", "",
              "| criterion | rule | dev within 1 pt | dev mean loss | dev worst | dev unwarned > 3 | "
              "held-out within 1 pt | held-out mean loss | held-out worst | held-out unwarned > 3 |",
              "|---" * 10 + "|"]
    for row in result["table"]:
        lines.append(f"| `{row['criterion']}` | {row['rule']} | {_summary_row(None, row['dev'])} | "
                     f"{_summary_row(None, row['heldout'])} |")
    if winner:
        key = "/".join(winner)
        lines += ["", f"## Round 1: chosen on the development half: `{winner[0]}` with rule `{winner[1]}`", ""]
        for split in ("dev", "heldout"):
            lines += [f"### {split}", ""] + model_table(result, records, key, split) + [""]
        if key != "icr_heldout/argmin":
            lines += ["## The previous default (`icr_heldout` / argmin), for comparison", ""]
            for split in ("dev", "heldout"):
                lines += [f"### {split}", ""] + model_table(result, records, "icr_heldout/argmin",
                                                            split) + [""]
    lines += round2_lines(result, records) + [""]
    lines += ["## Raw pixels vs the best feature (same probe, same folds)", "",
              "| model | raw pixels | best noisy-view feature (sigma) |", "|---|---|---|"]
    for name, rec in records.items():
        keep = distinct_indices(rec)
        acc = curve(rec, "probe_accuracy", keep).mean(axis=1)
        best = int(np.argmax(acc))
        lines.append(f"| `{name}` | {np.mean(rec['raw_pixel_probe']):.3f} | {acc[best]:.3f} "
                     f"({np.asarray(rec['sigmas'])[keep][best]:.3g}) |")
    REPORT.write_text("\n".join(lines) + "\n")
    if winner:
        write_figure(result, records)
    if result["round2"]["candidate"]:
        write_scan_tables(result, records)
    print("\n".join(lines))


if __name__ == "__main__":
    write_report(*analyse(RESULTS))
