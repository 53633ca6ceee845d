"""Joint layer x sigma selection on the embedded default (docs/scan.md).

Runs :class:`skicr.NoiseLevelSelector` with ``layers=[...]`` on sklearn's
digits and skicr's shipped denoiser: per sigma, ONE backbone pass reads every
candidate layer (hooks on all, early exit after the deepest); the held-out
ICR (cv=5) and, on the same folds, a linear probe's accuracy on one augmented
noisy view are measured for every (layer, sigma) cell. The question: does
the label-free choice (the cell with the lowest held-out ICR) land where the
probe is best, over layers as well as over sigma?

Recorded: the ICR and probe-accuracy surfaces; the label-free best
(layer, sigma) and the probe optimum; the probe accuracy at the ICR choice
and its gap to the best (with the paired standard error over the folds);
per-layer Spearman(-ICR, accuracy) across sigma; the rank agreement over all
cells; the layer ranking (each layer's best ICR vs its best accuracy); and
the cost of one multi-layer pass against one pass per layer.

The probe is ``skicr scan``'s (``StandardScaler + LogisticRegression(C=0.1)``)
on ``probe_features="first_view"``: the features of one augmented, noisy
view, what a downstream user gets from one forward pass.

    python benchmarks/layer_sigma_study.py                 # ~3 min on 2 cores
    python benchmarks/layer_sigma_study.py --quick         # smoke test
    python benchmarks/layer_sigma_study.py --report-only   # tables + figure from the JSON

Results go to benchmarks/results/layer_sigma.json and .md, the figure to
docs/_static/layer_sigma_digits.png.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau, spearmanr
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
FIGURE = ROOT / "docs" / "_static" / "layer_sigma_digits.png"
LAYERS = ["down.0", "down.1", "mid", "up.0", "up.1"]
SIGMAS = np.geomspace(0.01, 2.0, 10)  # factor 1.8 per step
LOW_NOISE = 0.5  # below: before the collapse that every layer shares (as in scan_study.py)


def run_search(images, y, *, layers, sigmas, n_views, cv, seed):
    """The joint search; returns its cv_results_ (lists) and timings."""
    from skicr import FeatureExtractor, NoiseLevelSelector
    from skicr.recipes import make_probe
    from skicr.models import load_pretrained

    extractor = FeatureExtractor(load_pretrained("digits"), n_views=n_views, pooling="mean",
                                 batch_size=256)
    selector = NoiseLevelSelector(extractor, sigmas, layers=layers, probe=make_probe(),
                                  probe_features="first_view", cv=cv, refit=False,
                                  random_state=seed)
    start = time.perf_counter()
    selector.fit(images, y)
    seconds = time.perf_counter() - start
    results = {key: (value.tolist() if isinstance(value, np.ndarray) else value)
               for key, value in selector.cv_results_.items()}
    return {"cv_results": results, "seconds": seconds, "n_splits": selector.n_splits_,
            "best_layer": selector.best_layer_, "best_sigma": selector.best_sigma_}


def time_passes(images, *, layers, sigma, n_views, seed, repeat=2):
    """Seconds of one pass reading all layers vs one pass per layer, at one sigma."""
    from skicr import FeatureExtractor
    from skicr.models import load_pretrained

    net = load_pretrained("digits")

    def extractor(layer):
        return FeatureExtractor(net, layer=layer, sigma=sigma, n_views=n_views, pooling="mean",
                                batch_size=256, random_state=seed).fit(images[:2])

    joint = extractor(layers[0])
    singles = [extractor(layer) for layer in layers]
    best_joint, best_separate = np.inf, np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        joint.transform_layer_views(images, layers)
        best_joint = min(best_joint, time.perf_counter() - start)
        start = time.perf_counter()
        for single in singles:
            single.transform_views(images)
        best_separate = min(best_separate, time.perf_counter() - start)
    return {"joint": best_joint, "separate": best_separate}


def analyse(run):
    """The comparison numbers from the saved cv_results."""
    r = run["cv_results"]
    layer = np.asarray(r["layer"], dtype=object)
    sigma = np.asarray(r["sigma"], dtype=float)
    layers = list(dict.fromkeys(layer.tolist()))
    sigmas = np.unique(sigma)
    shape = (len(layers), sigmas.size)
    icr = np.asarray(r["mean_icr"]).reshape(shape)
    acc = np.asarray(r["mean_probe_accuracy"]).reshape(shape)
    k = run["n_splits"]
    acc_folds = np.stack([r[f"split{i}_probe_accuracy"] for i in range(k)], axis=1)
    acc_folds = acc_folds.reshape(*shape, k)

    icr_cell = np.unravel_index(np.argmin(icr), shape)
    acc_cell = np.unravel_index(np.argmax(acc), shape)
    paired = acc_folds[acc_cell] - acc_folds[icr_cell]
    gap_se = float(paired.std(ddof=1) / np.sqrt(k)) if k > 1 else float("nan")

    per_layer = {}
    for i, name in enumerate(layers):
        j_icr, j_acc = int(np.argmin(icr[i])), int(np.argmax(acc[i]))
        per_layer[name] = {
            "spearman": float(spearmanr(-icr[i], acc[i]).statistic),
            "sigma_min_icr": float(sigmas[j_icr]),
            "sigma_max_accuracy": float(sigmas[j_acc]),
            "steps_apart": abs(j_icr - j_acc),
            "min_icr": float(icr[i, j_icr]),
            "max_accuracy": float(acc[i, j_acc]),
            "accuracy_at_min_icr": float(acc[i, j_icr]),
        }
    low = sigmas <= LOW_NOISE
    best_icr_per_layer = icr.min(axis=1)
    best_acc_per_layer = acc.max(axis=1)
    # each sigma: does the ICR order the layers as the probe does?
    across_layers = [float(spearmanr(-icr[:, j], acc[:, j]).statistic)
                     for j in range(sigmas.size)]
    return {
        "layers": layers,
        "sigmas": sigmas.tolist(),
        "icr_choice": {"layer": layers[icr_cell[0]], "sigma": float(sigmas[icr_cell[1]]),
                       "icr": float(icr[icr_cell]), "accuracy": float(acc[icr_cell])},
        "probe_optimum": {"layer": layers[acc_cell[0]], "sigma": float(sigmas[acc_cell[1]]),
                          "icr": float(icr[acc_cell]), "accuracy": float(acc[acc_cell]),
                          "icr_rank": int(np.sum(icr < icr[acc_cell]) + 1)},
        "accuracy_rank_of_icr_choice": int(np.sum(acc > acc[icr_cell]) + 1),
        "gap": float(acc[acc_cell] - acc[icr_cell]),
        "gap_se": gap_se,
        "n_cells": int(icr.size),
        "spearman_all_cells": float(spearmanr(-icr.ravel(), acc.ravel()).statistic),
        "kendall_all_cells": float(kendalltau(-icr.ravel(), acc.ravel()).statistic),
        "n_cells_low": int(icr[:, low].size),
        "spearman_low_cells": float(spearmanr(-icr[:, low].ravel(),
                                              acc[:, low].ravel()).statistic),
        "per_layer": per_layer,
        "layer_ranking_spearman": float(spearmanr(-best_icr_per_layer,
                                                  best_acc_per_layer).statistic),
        "across_layers_spearman_by_sigma": across_layers,
        "icr": icr.tolist(),
        "accuracy": acc.tolist(),
    }


def table(rows, header):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def report(results):
    s, a = results["settings"], results["analysis"]
    run, passes = results["run"], results.get("passes")
    choice, optimum = a["icr_choice"], a["probe_optimum"]
    lines = [
        "# Joint layer x sigma selection (generated by benchmarks/layer_sigma_study.py)",
        "",
        f"{s['n_images']} digits (seed {s['seed']}), skicr's shipped denoiser, "
        f"layers {', '.join(s['layers'])} (spatial mean pooling), {len(s['sigmas'])} sigmas "
        f"{s['sigmas'][0]:g}..{s['sigmas'][-1]:g} (log-spaced), {s['n_views']} views, default "
        f"augmentation, held-out ICR with cv={s['cv']}; probe: StandardScaler + "
        f"LogisticRegression(C=0.1) on one augmented noisy view, same folds. "
        f"Machine: {s['machine']}; torch threads 1.",
        "",
        f"The whole search took {run['seconds']:.0f} s: {len(s['sigmas'])} backbone passes "
        f"(one per sigma, all {len(s['layers'])} layers read at once), "
        f"{a['n_cells']} cells x {run['n_splits']} folds of decomposer and probe fits.",
        "",
        "## The choice",
        "",
        table([
            ["label-free (lowest held-out ICR)", choice["layer"], f"{choice['sigma']:.3g}",
             f"{choice['icr']:.4f}", f"{choice['accuracy']:.4f}"],
            ["probe optimum (highest accuracy)", optimum["layer"], f"{optimum['sigma']:.3g}",
             f"{optimum['icr']:.4f}", f"{optimum['accuracy']:.4f}"],
        ], ["cell", "layer", "sigma", "held-out ICR", "probe accuracy"]),
        "",
        f"- Probe accuracy at the ICR choice: {choice['accuracy']:.4f}, against "
        f"{optimum['accuracy']:.4f} at the optimum: gap {a['gap']:.4f} "
        f"(paired se over the folds {a['gap_se']:.4f}); the ICR's cell ranks "
        f"{a['accuracy_rank_of_icr_choice']} of {a['n_cells']} by accuracy, the probe's "
        f"optimum ranks {optimum['icr_rank']} of {a['n_cells']} by ICR.",
        f"- Rank agreement over all {a['n_cells']} cells: Spearman(-ICR, accuracy) = "
        f"{a['spearman_all_cells']:.2f}, Kendall tau = {a['kendall_all_cells']:.2f}; over the "
        f"{a['n_cells_low']} cells with sigma <= {LOW_NOISE:g} (before the collapse every layer "
        f"shares): Spearman = {a['spearman_low_cells']:.2f}.",
        f"- Layer ranking (each layer's lowest ICR vs its highest accuracy, over sigma): "
        f"Spearman = {a['layer_ranking_spearman']:.2f}.",
    ]
    if passes is not None:
        lines.append(
            f"- One pass reading all {len(s['layers'])} layers at sigma={passes['sigma']:g}: "
            f"{passes['joint']:.2f} s; one pass per layer: {passes['separate']:.2f} s "
            f"({passes['separate'] / passes['joint']:.1f}x).")
    lines += ["", "## Per layer (across sigma)", ""]
    rows = []
    for name, p in a["per_layer"].items():
        rows.append([name, f"{p['sigma_min_icr']:.3g}", f"{p['sigma_max_accuracy']:.3g}",
                     str(p["steps_apart"]), f"{p['min_icr']:.4f}", f"{p['max_accuracy']:.4f}",
                     f"{p['accuracy_at_min_icr']:.4f}", f"{p['spearman']:.2f}"])
    lines += [table(rows, ["layer", "ICR min at", "probe peak at", "steps apart", "lowest ICR",
                           "best accuracy", "accuracy at ICR min", "Spearman(-ICR, acc)"]), ""]
    lines += ["Spearman(-ICR, accuracy) across the layers at each sigma: "
              + ", ".join(f"{sig:.3g}: {rho:.2f}" for sig, rho in
                          zip(a["sigmas"], a["across_layers_spearman_by_sigma"])) + ".", ""]

    header = ["layer"] + [f"{sig:.3g}" for sig in a["sigmas"]]
    lines += ["## Held-out ICR surface (mean over the folds)", "",
              table([[name] + [f"{v:.4f}" for v in row]
                     for name, row in zip(a["layers"], a["icr"])], header), "",
              "## Probe accuracy surface (mean over the folds)", "",
              table([[name] + [f"{v:.4f}" for v in row]
                     for name, row in zip(a["layers"], a["accuracy"])], header), ""]
    return "\n".join(lines)


def plot(results, path):
    """Two heat maps, one above the other (sized for the documentation's content
    column): held-out ICR and probe accuracy, both optima marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skicr.plotting import plot_icr_surface

    cv_results = results["run"]["cv_results"]
    n_layers = len(results["settings"]["layers"])
    plt.rcParams.update({"font.size": 12})
    fig, axes = plt.subplots(2, 1, figsize=(8.5, 2 * (2.2 + 0.55 * n_layers)),
                             layout="constrained")
    plot_icr_surface(cv_results, ax=axes[0], title="held-out ICR (cv=5)")
    plot_icr_surface(cv_results, value="probe_accuracy", ax=axes[1],
                     title="probe accuracy (one augmented view)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=1000)
    parser.add_argument("--layers", default=",".join(LAYERS))
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--cv", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="smoke test: 200 images, 4 sigmas")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite the report and figure from the saved JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)  # BLAS threads contend with torch's on 2 cores

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _common import machine

    tag = "-quick" if args.quick else ""
    json_path = RESULTS / f"layer_sigma{tag}.json"
    if args.report_only:
        results = json.loads(json_path.read_text())
    else:
        from skicr.datasets import load_digits_images

        images, y = load_digits_images(return_y=True)
        n_images = 200 if args.quick else args.n_images
        if n_images < len(images):
            keep = np.sort(np.random.default_rng(args.seed).choice(len(images), n_images,
                                                                   replace=False))
            images, y = images[keep], y[keep]
        layers = args.layers.split(",")
        sigmas = SIGMAS[::3] if args.quick else SIGMAS
        settings = {"n_images": len(images), "layers": layers, "sigmas": sigmas.tolist(),
                    "n_views": args.views, "cv": args.cv, "seed": args.seed,
                    "machine": machine(), "torch": torch.__version__}
        print(f"joint search: {len(images)} images, {len(layers)} layers, "
              f"{sigmas.size} sigmas", flush=True)
        run = run_search(images, y, layers=layers, sigmas=sigmas, n_views=args.views,
                         cv=args.cv, seed=args.seed)
        print(f"  {run['seconds']:.0f} s; best ({run['best_layer']}, {run['best_sigma']:.3g})",
              flush=True)
        passes_sigma = float(sigmas[len(sigmas) // 2])
        passes = time_passes(images, layers=layers, sigma=passes_sigma, n_views=args.views,
                             seed=args.seed)
        passes["sigma"] = passes_sigma
        results = {"settings": settings, "run": run, "passes": passes}
    results["analysis"] = analyse(results["run"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    text = report(results)
    (RESULTS / f"layer_sigma{tag}.md").write_text(text + "\n")
    figure = FIGURE if not args.quick else FIGURE.with_name("layer_sigma_digits-quick.png")
    plot(results, figure)
    print(text)
    print(f"wrote {json_path}, {RESULTS / f'layer_sigma{tag}.md'}, {figure}")


if __name__ == "__main__":
    main()
