"""The pre-registered noise-level study (docs/noise_level_study.md): does a label-free
criterion choose a sigma whose probe accuracy is close to the grid's best, on
denoisers nobody tuned it to?

For each zoo model (benchmarks/zoo/, split into a development and a held-out
half), at every sigma of the scan's default grid, the views are extracted ONCE
(default augmentation + noise, 4 views, the model's default layer; full
feature maps kept so mean pooling and flatten pooling come from the same
pass). Every candidate criterion and the probe are then computed on the same
5 stratified folds. Results per model go to
benchmarks/results/noise_level_study/<model>.json; the analysis (selection
rules, the choice on the development half, the held-out report) reads only
those files::

    python benchmarks/noise_level_study.py --split dev        # extract + score dev models
    python benchmarks/noise_level_study.py --split heldout    # then the held-out ones
    python benchmarks/noise_level_study.py --analyse          # tables + figure from the JSON
    python benchmarks/noise_level_study.py --quick            # smoke test (tiny, to /tmp)
"""

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "benchmarks" / "zoo" / "weights"
RESULTS = ROOT / "benchmarks" / "results" / "noise_level_study"
SIGMAS = np.geomspace(0.005, 5.0, 12)  # the default grid of `skicr scan` (0.005:5:12)
N_IMAGES = 400
N_VIEWS = 4
N_FOLDS = 5
SEED = 0
SHAPES_SIZE = 24

#: the zoo and its pre-registered split (docs/noise_level_study.md)
MODELS = {
    # development half
    "digits_shipped": dict(file=ROOT / "skicr" / "models" / "weights" / "digits.pt",
                           data="digits", split="dev"),
    "digits_ddpm_attn": dict(file=ZOO / "digits_ddpm_attn.pt", data="digits", split="dev"),
    "shapes_dit_flow": dict(file=ZOO / "shapes_dit_flow.pt", data="shapes", split="dev"),
    "shapes_unet": dict(file=ZOO / "shapes_unet.pt", data="shapes", split="dev"),
    "shapes_unet_early": dict(file=ZOO / "shapes_unet_early.pt", data="shapes", split="dev"),
    # held-out half
    "digits_unet_s": dict(file=ZOO / "digits_unet_s.pt", data="digits", split="heldout"),
    "digits_unet_s_early": dict(file=ZOO / "digits_unet_s_early.pt", data="digits",
                                split="heldout"),
    "digits_dit_flow": dict(file=ZOO / "digits_dit_flow.pt", data="digits", split="heldout"),
    "shapes_ddpm": dict(file=ZOO / "shapes_ddpm.pt", data="shapes", split="heldout"),
    "shapes_unet_flow": dict(file=ZOO / "shapes_unet_flow.pt", data="shapes", split="fresh"),
    # round 2 (docs/noise_level_study.md, "Round 2"): the nine models above are its
    # development set; these, trained after the round-2 protocol was committed, its fresh
    # held-out set (shapes_unet_flow, never trained in round 1, moves here)
    "digits_ddpm": dict(file=ZOO / "digits_ddpm.pt", data="digits", split="fresh"),
    "digits_unet_m": dict(file=ZOO / "digits_unet_m.pt", data="digits", split="fresh"),
    "shapes_dit_p2": dict(file=ZOO / "shapes_dit_p2.pt", data="shapes", split="fresh"),
}
#: the default of NoiseLevelSelector / skicr scan before round 2 (held-out ICR, tau 1e-3, best)
PREVIOUS_DEFAULT = ("icr_heldout", "argmin")

#: label-free criteria: name -> (pooling, lower_is_better)
CRITERIA = {
    "icr_heldout": ("mean", True),          # the current default of NoiseLevelSelector
    "icr_heldout_tau1e-2": ("mean", True),
    "icr_heldout_tau1e-4": ("mean", True),
    "icr_heldout_bc": ("mean", True),       # bias-corrected Sigma_s
    "icr_insample": ("mean", True),         # on each test fold's images alone
    "icr_insample_bc": ("mean", True),
    "icr_flatten_dual": ("flatten", True),  # every feature-map value, dual (Gram) form
    "lidar": ("mean", False),
    "rankme": ("mean", False),
    "rankme_flatten": ("flatten", False),
}
RULES = ("argmin", "one_se_low", "one_se_high", "knee")


# ----------------------------------------------------------------- data and models
def load_data(name, n_images, seed=SEED):
    """``n_images`` images (a seeded random subset) and labels of a dataset."""
    from skicr.datasets import load_digits_images, make_shapes_images

    if name == "digits":
        images, y = load_digits_images()
    else:
        images, y = make_shapes_images(n_images=3000, image_size=SHAPES_SIZE, random_state=0)
    rows = np.sort(np.random.default_rng(seed).permutation(len(y))[:n_images])
    return images[rows], y[rows]


def load_model(name):
    """The zoo model ``name``: its entry of MODELS, its backbone and the checkpoint's metadata.

    The one loader of the zoo studies (this one and benchmarks/layer_study.py).
    """
    from skicr.models import load_checkpoint

    spec = MODELS[name]
    backbone, metadata = load_checkpoint(spec["file"], return_metadata=True)
    return spec, backbone, metadata


def study_models(models=None, split=None):
    """The zoo models a study's command line names, those whose weights are on disk.

    ``models``: comma-separated names; else every model of ``split`` (``"all"``:
    every split); else none. A model without weights is skipped with a note.
    """
    if models:
        names = models.split(",")
    elif split:
        names = [n for n, s in MODELS.items() if split in ("all", s["split"])]
    else:
        names = []
    for name in names:
        if not MODELS[name]["file"].is_file():
            print(f"skip {name}: no weights at {MODELS[name]['file']}", flush=True)
            continue
        yield name


def study_extractor(backbone, sigma, seed, *, pooling, layer=None):
    """The zoo studies' views of a model at one sigma: N_VIEWS default-augmented views, seeded."""
    from skicr import FeatureExtractor

    return FeatureExtractor(backbone, layer=layer, sigma=float(sigma), n_views=N_VIEWS,
                            augment="default", pooling=pooling, batch_size=200, random_state=seed)


def extract_views(backbone, images, sigma, seed):
    """Full feature maps of the default layer, flattened: (n, V, D), plus the map shape."""
    captured = {}

    def flatten(features):
        captured["shape"] = tuple(features.shape[1:])
        return features.flatten(1)

    extractor = study_extractor(backbone, sigma, seed, pooling=flatten)
    views = extractor.fit(images).transform_views(images)
    return np.asarray(views, dtype=np.float32), captured["shape"]


def mean_pool(views, shape):
    """Spatial mean of (C, h, w) maps or token mean of (tokens, width) tokens: (n, V, C)."""
    n, n_views, _ = views.shape
    if len(shape) == 3:
        return views.reshape(n, n_views, shape[0], -1).mean(axis=-1)
    if len(shape) == 2:
        return views.reshape(n, n_views, shape[0], shape[1]).mean(axis=2)
    return views


# ----------------------------------------------------------------- scoring one sigma
def score_sigma(mean_views, flat_views, y, folds):
    """Every criterion and the probe on every fold: {name: [value per fold]}."""
    from skicr import InvariantResidualDecomposer
    from skicr.recipes import make_probe
    from skicr.metrics import icr_score, lidar, rankme
    from sklearn.base import clone

    mean_views = mean_views.astype(np.float64)
    out = {name: [] for name in list(CRITERIA) + ["probe_accuracy"]}
    probe = make_probe()
    first_view = mean_views[:, 0, :]
    for train, test in folds:
        for name, kwargs in [("icr_heldout", {}), ("icr_heldout_tau1e-2", {"tau": 1e-2}),
                             ("icr_heldout_tau1e-4", {"tau": 1e-4}),
                             ("icr_heldout_bc", {"bias_correction": True})]:
            dec = InvariantResidualDecomposer(**kwargs).fit(mean_views[train])
            out[name].append(-float(dec.score(mean_views[test])))
        out["icr_insample"].append(float(icr_score(mean_views[test])))
        out["icr_insample_bc"].append(float(icr_score(mean_views[test], bias_correction=True)))
        out["icr_flatten_dual"].append(float(icr_score(flat_views[test], method="dual")))
        out["lidar"].append(float(lidar(mean_views[test])))
        out["rankme"].append(float(rankme(mean_views[test])))
        out["rankme_flatten"].append(float(rankme(flat_views[test])))
        fitted = clone(probe).fit(first_view[train], y[train])
        out["probe_accuracy"].append(float(np.mean(fitted.predict(first_view[test]) == y[test])))
    return out


def vp_timesteps(backbone, sigmas):
    """Timestep of each sigma for VP backbones (None for the others)."""
    if not hasattr(backbone, "timestep"):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [int(backbone.timestep(float(s), warn=False)) for s in sigmas]


def run_model(name, *, n_images=N_IMAGES, sigmas=SIGMAS, out_dir=RESULTS):
    """Extract and score one model over the grid; writes <out_dir>/<name>.json."""
    spec, backbone, metadata = load_model(name)
    images, y = load_data(spec["data"], n_images)
    folds = [(tr, te) for tr, te in StratifiedKFold(N_FOLDS, shuffle=True, random_state=SEED)
             .split(np.zeros(len(y)), y)]
    record = {
        "model": name, "split": spec["split"], "data": spec["data"],
        "parameterization": metadata["parameterization"],
        "architecture": metadata["architecture"], "layer": None, "n_images": len(y),
        "n_views": N_VIEWS, "n_folds": N_FOLDS, "sigmas": [float(s) for s in sigmas],
        "vp_timesteps": vp_timesteps(backbone, sigmas), "per_sigma": [],
        "raw_pixel_probe": None,
    }
    start = time.perf_counter()
    for i, sigma in enumerate(sigmas):
        t0 = time.perf_counter()
        views, shape = extract_views(backbone, images, sigma, seed=SEED + i)
        t1 = time.perf_counter()
        scores = score_sigma(mean_pool(views, shape), views, y, folds)
        record["per_sigma"].append({"sigma": float(sigma), "map_shape": list(shape),
                                    "extract_seconds": t1 - t0,
                                    "score_seconds": time.perf_counter() - t1, **scores})
        print(f"{name} sigma={sigma:.4g} acc={np.mean(scores['probe_accuracy']):.3f} "
              f"icr={np.mean(scores['icr_heldout']):.4f} ({t1 - t0:.0f}s + "
              f"{time.perf_counter() - t1:.0f}s)", flush=True)
    record["layer"] = str(backbone.default_layer)
    record["seconds"] = time.perf_counter() - start
    # raw pixels through the same probe on the same folds (what the features must beat)
    from sklearn.base import clone
    from skicr.recipes import make_probe

    flat = images.reshape(len(y), -1).astype(np.float64)
    record["raw_pixel_probe"] = [
        float(np.mean(clone(make_probe()).fit(flat[tr], y[tr]).predict(flat[te]) == y[te]))
        for tr, te in folds
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(record, indent=1))
    return record


# ----------------------------------------------------------------- analysis
def distinct_indices(record):
    """Grid indices scored as distinct: for VP models, the first sigma of each timestep."""
    steps = record.get("vp_timesteps")
    if not steps:
        return list(range(len(record["sigmas"])))
    seen, keep = set(), []
    for i, t in enumerate(steps):
        if t not in seen:
            seen.add(t)
            keep.append(i)
    return keep


def curve(record, key, keep):
    """(n_sigmas_kept, n_folds) array of one quantity."""
    return np.array([record["per_sigma"][i][key] for i in keep], dtype=float)


def paired_se(folds, ref):
    """Standard error over folds of each row's difference to row ``ref``."""
    diff = folds - folds[ref]
    return diff.std(axis=1, ddof=1) / np.sqrt(folds.shape[1])


def choose(values, rule):
    """Grid index chosen by ``rule`` from a (n_sigmas, n_folds) curve, lower is better."""
    mean = values.mean(axis=1)
    best = int(np.argmin(mean))
    if rule == "argmin":
        return best
    se = paired_se(values, best)
    within = np.flatnonzero(mean - mean[best] <= se)
    if rule == "one_se_low":
        return int(within.min())
    if rule == "one_se_high":
        return int(within.max())
    if rule == "knee":
        # the last point before the curve rises away from its minimum: on the part
        # from the minimum to the grid's end, the point furthest below the chord
        if best == len(mean) - 1:
            return best
        seg = mean[best:]
        x = np.linspace(0.0, 1.0, seg.size)
        chord = seg[0] + (seg[-1] - seg[0]) * x
        return best + int(np.argmax(chord - seg))
    raise ValueError(rule)


def decision(values):
    """"grid_edge" / "flat" / "interior" for the optimum of a lower-is-better curve."""
    mean = values.mean(axis=1)
    best = int(np.argmin(mean))
    if best in (0, len(mean) - 1):
        return "grid_edge"
    se = paired_se(values, best)
    advantage = np.array([mean[best - 1] - mean[best], mean[best + 1] - mean[best]])
    if np.any(advantage < se[[best - 1, best + 1]]):
        return "flat"
    return "interior"


def evaluate(record, criterion, rule):
    """Per-model outcome of one (criterion, rule)."""
    keep = distinct_indices(record)
    sigmas = np.asarray(record["sigmas"])[keep]
    acc = curve(record, "probe_accuracy", keep)
    values = curve(record, criterion, keep)
    if not CRITERIA[criterion][1]:
        values = -values
    chosen = choose(values, rule)
    peak = int(np.argmax(acc.mean(axis=1)))
    gap = acc[peak] - acc[chosen]
    rho = spearmanr(-values.mean(axis=1), acc.mean(axis=1)).statistic
    return {
        "chosen_sigma": float(sigmas[chosen]), "peak_sigma": float(sigmas[peak]),
        "steps_apart": abs(chosen - peak),
        "acc_chosen": float(acc[chosen].mean()), "acc_best": float(acc[peak].mean()),
        "loss_points": float(100 * gap.mean()),
        "loss_se_points": float(100 * gap.std(ddof=1) / np.sqrt(gap.size)),
        "spearman": None if not np.isfinite(rho) else float(rho),
        "decision": decision(values), "n_distinct_sigmas": len(keep),
    }


def summarize(outcomes):
    """Fraction within 1 point, worst loss, unwarned losses > 3 points."""
    losses = np.array([o["loss_points"] for o in outcomes])
    unwarned = [o for o in outcomes if o["loss_points"] > 3 and o["decision"] == "interior"]
    return {"within_1pt": float(np.mean(losses <= 1.0)), "mean_loss": float(losses.mean()),
            "worst_loss": float(losses.max()), "n_unwarned_over_3": len(unwarned),
            "n_models": len(outcomes)}


def analyse(out_dir=RESULTS, report=None):
    """Choose the (criterion, rule) on the dev half; report it on the held-out half."""
    records = {p.stem: json.loads(p.read_text()) for p in sorted(out_dir.glob("*.json"))}
    dev = [r for r in records.values() if r["split"] == "dev"]
    held = [r for r in records.values() if r["split"] == "heldout"]
    table = {}
    for criterion in CRITERIA:
        for rule in RULES:
            table[(criterion, rule)] = {
                "dev": summarize([evaluate(r, criterion, rule) for r in dev]) if dev else None,
                "heldout": summarize([evaluate(r, criterion, rule) for r in held]) if held else None,
            }
    # pre-registered choice: most dev models within 1 point, then the smallest mean loss,
    # then no unwarned loss > 3 points; the held-out numbers play no part
    ranked = sorted(
        (k for k in table if table[k]["dev"] is not None),
        key=lambda k: (-table[k]["dev"]["within_1pt"], table[k]["dev"]["n_unwarned_over_3"],
                       table[k]["dev"]["mean_loss"]),
    )
    winner = ranked[0] if ranked else None
    result = {"winner": list(winner) if winner else None,
              "round2": analyse_round2(records),
              "table": [{"criterion": c, "rule": r, **v} for (c, r), v in table.items()],
              "per_model": {name: {f"{c}/{r}": evaluate(rec, c, r)
                                   for c in CRITERIA for r in RULES}
                            for name, rec in records.items()}}
    (out_dir.parent / "noise_level_study_summary.json").write_text(json.dumps(result, indent=1))
    return result, records


def _rank_key(summary):
    """The pre-registered ranking (both rounds): most models within 1 point, then fewest
    unwarned losses over 3 points, then the smallest mean loss."""
    return (-summary["within_1pt"], summary["n_unwarned_over_3"], summary["mean_loss"])


def analyse_round2(records):
    """Round 2: choose on the nine round-1 models, test on the fresh ones.

    The candidate is the (criterion, rule) ranked first by :func:`_rank_key` over every
    record of round 1 (``split`` "dev" or "heldout"); ties go to the order of ``CRITERIA``
    and ``RULES``. It replaces the previous default only if, on the fresh models, it is no
    worse on each of the three keys: share within 1 point (>=), unwarned losses over
    3 points (<=) and mean loss (<=) (the decision rule pre-registered in
    docs/noise_level_study.md before any fresh model was trained).
    """
    development = [r for r in records.values() if r["split"] in ("dev", "heldout")]
    fresh = [r for r in records.values() if r["split"] == "fresh"]
    table = {}
    for criterion in CRITERIA:
        for rule in RULES:
            table[(criterion, rule)] = {
                "development": summarize([evaluate(r, criterion, rule) for r in development])
                if development else None,
                "fresh": summarize([evaluate(r, criterion, rule) for r in fresh])
                if fresh else None,
            }
    candidate = min(table, key=lambda k: _rank_key(table[k]["development"])) \
        if development else None
    adopt = None
    if fresh and candidate is not None:
        new, old = table[candidate]["fresh"], table[PREVIOUS_DEFAULT]["fresh"]
        adopt = bool(new["within_1pt"] >= old["within_1pt"]
                     and new["n_unwarned_over_3"] <= old["n_unwarned_over_3"]
                     and new["mean_loss"] <= old["mean_loss"] + 1e-9)
    goal = None
    if fresh and candidate is not None:
        s = table[candidate]["fresh"]
        goal = bool(s["within_1pt"] >= 0.8 and s["n_unwarned_over_3"] == 0)
    return {"candidate": list(candidate) if candidate else None,
            "previous_default": list(PREVIOUS_DEFAULT), "adopt": adopt, "goal_met": goal,
            "n_development": len(development), "n_fresh": len(fresh),
            "table": [{"criterion": c, "rule": r, **v} for (c, r), v in table.items()]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=["dev", "heldout", "fresh", "all"], default=None)
    parser.add_argument("--models", default=None, help="comma-separated model names")
    parser.add_argument("--analyse", action="store_true")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 2 small models' first sigmas, 60 images, to /tmp")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        if args.quick:
            out = Path("/tmp/noise_level_study_quick")
            for name in ("digits_shipped", "digits_unet_s_early", "shapes_unet_early"):
                if MODELS[name]["file"].is_file():
                    run_model(name, n_images=60, sigmas=SIGMAS[::5], out_dir=out)
            result, _ = analyse(out)
            print("quick winner on dev:", result["winner"])
            return 0
        for name in study_models(args.models, args.split):
            run_model(name)
        if args.analyse:
            from noise_level_report import write_report  # benchmarks/noise_level_report.py

            write_report(*analyse())
    return 0


if __name__ == "__main__":
    sys.exit(main())
