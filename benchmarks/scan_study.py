"""The scientific check behind ``skicr scan``'s defaults (docs/scan.md).

The seed paper's claim, on the embedded default (sklearn digits + skicr's
shipped denoiser): ICR is U-shaped in sigma, its minimum lies within one grid
step of the peak of a linear probe's accuracy, and the Spearman correlation
between -ICR and the probe accuracy across the grid is at least 0.7.

This script measures it for several feature designs, so the defaults of the
scan (layer, pooling, augmentation strength, views, tau, bias correction)
rest on measurements:

1. ``features``: layer (down.1, mid, up.0) x pooling (flatten, spatial mean),
   default augmentation, 4 views; in-sample ICR; probes on one augmented
   view and on one noisy view of the un-augmented image.
2. ``augment``: augmentation strength (none, weak, default, strong) at the
   bottleneck ``mid``.
3. ``estimator``: views (2, 4, 8), tau, bias correction at ``mid``.
4. ``selector``: the NoiseLevelSelector as ``skicr scan`` runs it (held-out
   ICR, cv=5, probe on one augmented view): three seeds, 600 images, and
   flattened features for comparison.

Every probe is ``StandardScaler + LogisticRegression(C=0.1)`` (the scan's
probe) evaluated on the same stratified folds at every sigma (10 in parts
1-3, the selector's 5 in part 4), so accuracy differences across sigma are
paired; ``se`` is the standard error of the paired difference to the best
sigma (a sigma whose accuracy is within 1 se of the best is "tied").

    python benchmarks/scan_study.py                  # everything (52 min on 2 cores)
    python benchmarks/scan_study.py --parts features --n-images 600
    python benchmarks/scan_study.py --quick          # smoke test
    python benchmarks/scan_study.py --report-only    # tables + figure from the JSON

Results go to benchmarks/results/scan_study.json and .md, the figure to
docs/_static/scan_digits.png.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from scipy.stats import spearmanr
from sklearn.model_selection import StratifiedKFold

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SIGMAS = np.geomspace(0.005, 5.0, 13)  # factor 1.78 per step
LOW_NOISE = 0.5  # "low-noise half" of the grid for the restricted Spearman
LAYERS = ["down.1", "mid", "up.0"]
from skicr.recipes import PROBE_C, make_probe  # noqa: E402  (the scan's probe, one home)


def augmentations():
    """The augmentation strengths of ``skicr scan --augment`` (none, weak, default, strong)."""
    from skicr.recipes import augment_presets

    return augment_presets()


def extract(net, images, *, layer, sigma, n_views, augment, seed):
    """Flattened feature maps: (n_images, n_views, C*h*w) float32, and the map's shape."""
    from skicr import FeatureExtractor

    captured = {}

    def flatten(features):
        captured["shape"] = tuple(features.shape[1:])
        return features.flatten(1)

    extractor = FeatureExtractor(
        net, layer=layer, sigma=float(sigma), n_views=n_views, augment=augment,
        pooling=flatten, batch_size=256, random_state=seed,
    )
    views = extractor.fit(images).transform_views(images)
    return views, captured["shape"]


def spatial_mean(views, map_shape):
    """Spatial mean pooling of flattened (C, h, w) maps: (n, V, C)."""
    n, n_views, _ = views.shape
    return views.reshape(n, n_views, map_shape[0], -1).mean(axis=-1)


def icr_values(views, variants):
    """In-sample ICR for each (tau, bias_correction), plus tr(Sigma_s), tr(Sigma_xi)."""
    from skicr.metrics import accumulate, decompose

    stats = accumulate(np.asarray(views, dtype=np.float64))
    out = {}
    for tau, bias in variants:
        result = decompose(stats, tau=tau, bias_correction=bias, spectrum=False)
        out[(tau, bias)] = result.icr
    result = decompose(stats, spectrum=False)
    out["trace_s"] = float(np.trace(result.covariance_s))
    out["trace_xi"] = float(np.trace(result.covariance_xi))
    return out


def probe_accuracy(features, y, folds, C=PROBE_C):
    """Per-fold accuracy of StandardScaler + LogisticRegression(C), the scan's probe."""
    accuracies = []
    features = np.asarray(features, dtype=np.float64)
    for train, test in folds:
        probe = make_probe(C)
        probe.fit(features[train], y[train])
        accuracies.append(float(np.mean(probe.predict(features[test]) == y[test])))
    return accuracies


def summarize(sigmas, icr, accuracy_folds=None, icr_folds=None):
    """The check's numbers for one curve.

    U-shaped: the minimum is interior and ``rise_low`` and ``rise_high`` (ICR
    at the ends minus the minimum) are both > 0.005; with per-fold ICRs
    (held-out), both rises must exceed twice their paired standard error.
    """
    icr = np.asarray(icr, dtype=float)
    best = int(np.argmin(icr))
    summary = {
        "argmin_icr": best,
        "sigma_min_icr": float(sigmas[best]),
        "rise_low": float(icr[0] - icr[best]),
        "rise_high": float(icr[-1] - icr[best]),
    }
    summary["u_shaped"] = bool(0 < best < len(icr) - 1 and summary["rise_low"] > 0.005
                               and summary["rise_high"] > 0.005)
    if icr_folds is not None:
        # rises measured fold by fold (same images at every sigma): mean and se
        folds = np.asarray(icr_folds, dtype=float)
        for end, key in ((0, "rise_low"), (-1, "rise_high")):
            rise = folds[end] - folds[best]
            summary[f"{key}_se"] = float(rise.std(ddof=1) / np.sqrt(rise.size))
        summary["u_shaped"] = bool(
            0 < best < len(icr) - 1
            and summary["rise_low"] > 2 * summary["rise_low_se"]
            and summary["rise_high"] > 2 * summary["rise_high_se"]
        )
    if accuracy_folds is not None:
        folds = np.asarray(accuracy_folds, dtype=float)  # (n_sigmas, n_folds)
        low = np.asarray(sigmas) <= LOW_NOISE
        accuracy = folds.mean(axis=1)
        peak = int(np.argmax(accuracy))
        diff = folds - folds[peak]
        se = diff.std(axis=1, ddof=1) / np.sqrt(folds.shape[1])
        tied = np.flatnonzero(accuracy >= accuracy[peak] - np.maximum(se, 1e-12))
        summary.update({
            "argmax_accuracy": peak,
            "sigma_max_accuracy": float(sigmas[peak]),
            "steps_apart": abs(best - peak),
            "within_one_step": bool(abs(best - peak) <= 1),
            "tied_with_peak": [int(i) for i in tied],
            "min_icr_tied_with_peak": bool(best in tied),
            "spearman": float(spearmanr(-icr, accuracy).statistic),
            # the whole grid includes the collapse at high noise, where both curves
            # move together trivially; the low-noise part is the hard half
            "spearman_low": float(spearmanr(-icr[low], accuracy[low]).statistic),
        })
    return summary


def fmt(x, digits=4):
    return f"{x:.{digits}f}"


def curve_table(sigmas, columns):
    """Markdown table: sigma then one column per curve."""
    names = list(columns)
    lines = ["| sigma | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for i, sigma in enumerate(sigmas):
        lines.append(f"| {sigma:.4g} | " + " | ".join(columns[k][i] for k in names) + " |")
    return "\n".join(lines)


def _rise(summary, key):
    text = f"{summary[key]:+.4f}"
    if f"{key}_se" in summary:
        text += f" (se {summary[key + '_se']:.4f})"
    return text


def summary_table(rows):
    """Markdown table of check summaries."""
    header = ("| curve | ICR min at | U-shaped | rises (low, high) | probe peak at | "
              "steps apart | min tied with peak | Spearman(-ICR, acc) | same, sigma <= 0.5 |")
    lines = [header, "|---|---|---|---|---|---|---|---|---|"]
    for name, s in rows.items():
        lines.append(
            f"| {name} | {s['sigma_min_icr']:.3g} | {'yes' if s['u_shaped'] else 'no'} | "
            f"{_rise(s, 'rise_low')}, {_rise(s, 'rise_high')} | "
            f"{s.get('sigma_max_accuracy', float('nan')):.3g} | {s.get('steps_apart', '-')} | "
            f"{'yes' if s.get('min_icr_tied_with_peak') else 'no'} | "
            f"{s.get('spearman', float('nan')):.2f} | {s.get('spearman_low', float('nan')):.2f} |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------- parts


def part_features(ctx):
    """Layer x pooling at the default augmentation, 4 views; two probes."""
    net, images, y, folds, sigmas, seed = (ctx[k] for k in
                                           ("net", "images", "y", "folds", "sigmas", "seed"))
    aug = augmentations()["default"]
    out = {}
    for layer in ctx["layers"]:
        for pooling in ("flatten", "mean"):
            out[(layer, pooling)] = {"icr": [], "trace_s": [], "trace_xi": [],
                                     "acc_view": [], "acc_clean": []}
        for sigma in sigmas:
            start = time.perf_counter()
            views, shape = extract(net, images, layer=layer, sigma=sigma, n_views=4,
                                   augment=aug, seed=seed)
            clean, _ = extract(net, images, layer=layer, sigma=sigma, n_views=1,
                               augment=None, seed=seed + 1)
            for pooling in ("flatten", "mean"):
                v = views if pooling == "flatten" else spatial_mean(views, shape)
                c = clean if pooling == "flatten" else spatial_mean(clean, shape)
                values = icr_values(v, [(1e-3, False)])
                record = out[(layer, pooling)]
                record["icr"].append(values[(1e-3, False)])
                record["trace_s"].append(values["trace_s"])
                record["trace_xi"].append(values["trace_xi"])
                record["acc_view"].append(probe_accuracy(v[:, 0], y, folds))
                record["acc_clean"].append(probe_accuracy(c[:, 0], y, folds))
            print(f"  features {layer} sigma={sigma:.4g} d={views.shape[2]} "
                  f"ICR flat={out[(layer, 'flatten')]['icr'][-1]:.4f} "
                  f"mean={out[(layer, 'mean')]['icr'][-1]:.4f} "
                  f"acc clean flat={np.mean(out[(layer, 'flatten')]['acc_clean'][-1]):.4f} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
    return {f"{layer}/{pooling}": record for (layer, pooling), record in out.items()}


def part_augment(ctx):
    """Augmentation strength at mid: ICR (flatten and mean), probe on one augmented view."""
    net, images, y, folds, sigmas, seed = (ctx[k] for k in
                                           ("net", "images", "y", "folds", "sigmas", "seed"))
    out = {}
    for name, aug in augmentations().items():
        for pooling in ("flatten", "mean"):
            out[f"{name}/{pooling}"] = {"icr": [], "acc_view": []}
        for sigma in sigmas:
            views, shape = extract(net, images, layer="mid", sigma=sigma, n_views=4,
                                   augment=aug, seed=seed)
            for pooling in ("flatten", "mean"):
                v = views if pooling == "flatten" else spatial_mean(views, shape)
                icr = icr_values(v, [(1e-3, False)])[(1e-3, False)]
                out[f"{name}/{pooling}"]["icr"].append(icr)
                out[f"{name}/{pooling}"]["acc_view"].append(probe_accuracy(v[:, 0], y, folds))
            print(f"  augment {name} sigma={sigma:.4g} "
                  f"ICR flat={out[f'{name}/flatten']['icr'][-1]:.4f} "
                  f"mean={out[f'{name}/mean']['icr'][-1]:.4f}", flush=True)
    return out


def part_estimator(ctx):
    """Views, tau and bias correction at mid (flatten and mean), default augmentation."""
    net, images, sigmas, seed = (ctx[k] for k in ("net", "images", "sigmas", "seed"))
    aug = augmentations()["default"]
    taus = [1e-4, 1e-3, 1e-2, 1e-1]
    variants = [(tau, bias) for tau in taus for bias in (False, True)]
    out = {}
    for sigma in sigmas:
        views, shape = extract(net, images, layer="mid", sigma=sigma, n_views=8, augment=aug,
                               seed=seed)
        for pooling in ("mean", "flatten"):
            pooled = views if pooling == "flatten" else spatial_mean(views, shape)
            for n_views in (2, 4, 8):
                values = icr_values(pooled[:, :n_views], variants)
                for tau, bias in variants:
                    key = (f"{pooling}/V={n_views}/tau={tau:g}/"
                           f"{'bias-corrected' if bias else 'plug-in'}")
                    out.setdefault(key, {"icr": []})["icr"].append(values[(tau, bias)])
        print(f"  estimator sigma={sigma:.4g} V=4 tau=1e-3: "
              f"mean {out['mean/V=4/tau=0.001/plug-in']['icr'][-1]:.4f} "
              f"flatten {out['flatten/V=4/tau=0.001/plug-in']['icr'][-1]:.4f}", flush=True)
    return out


def part_selector(ctx):
    """The NoiseLevelSelector as ``skicr scan`` runs it (held-out ICR, cv=5, probe).

    The scan's defaults with three seeds (views and folds), on a 600-image
    subset, and with flattened features for comparison.
    """
    from skicr import FeatureExtractor, NoiseLevelSelector
    from skicr.recipes import SCAN_DEFAULTS, make_probe, parse_sigmas

    net, images, y = ctx["net"], ctx["images"], ctx["y"]
    everything = np.arange(len(images))
    subset = np.sort(np.random.default_rng(0).choice(len(images), min(600, len(images)),
                                                     replace=False))
    pooling = SCAN_DEFAULTS["pooling"]
    other = "flatten" if pooling != "flatten" else "mean"
    runs = {  # name: (images kept, pooling, seed)
        f"{pooling}, seed 0": (everything, pooling, 0),
        f"{pooling}, seed 1": (everything, pooling, 1),
        f"{pooling}, seed 2": (everything, pooling, 2),
        f"{pooling}, 600 images, seed 0": (subset, pooling, 0),
        f"{other}, seed 0": (everything, other, 0),
    }
    if ctx["quick"]:
        runs = dict(list(runs.items())[:1])
    sigmas = parse_sigmas(SCAN_DEFAULTS["sigmas"]) if not ctx["quick"] else ctx["sigmas"]
    out = {}
    for name, (keep, run_pooling, seed) in runs.items():
        extractor = FeatureExtractor(
            net, layer=SCAN_DEFAULTS["layer"] or "mid", n_views=SCAN_DEFAULTS["views"],
            pooling=run_pooling, batch_size=SCAN_DEFAULTS["batch_size"], random_state=seed,
        )
        selector = NoiseLevelSelector(
            extractor, sigmas, probe=make_probe(), cv=SCAN_DEFAULTS["cv"], refit=False,
            random_state=seed,
        )
        start = time.perf_counter()
        selector.fit(images[keep], y[keep])
        results = selector.cv_results_
        splits = range(selector.n_splits_)
        out[name] = {
            "sigma": results["sigma"].tolist(),
            "icr": results["mean_icr"].tolist(),
            "icr_std": results["std_icr"].tolist(),
            "icr_folds": np.stack([results[f"split{k}_icr"] for k in splits], axis=1).tolist(),
            "acc_view": np.stack([results[f"split{k}_probe_accuracy"] for k in splits],
                                 axis=1).tolist(),
            "seconds": time.perf_counter() - start,
        }
        print(f"  selector {name}: best sigma {selector.best_sigma_:.4g} "
              f"({out[name]['seconds']:.0f} s)", flush=True)
    return out


PARTS = {
    "features": part_features,
    "augment": part_augment,
    "estimator": part_estimator,
    "selector": part_selector,
}


# ---------------------------------------------------------------- report


def report(results, sigmas):
    lines = []
    if "features" in results:
        lines.append("## 1. Layer and pooling (default augmentation, 4 views, in-sample ICR)\n")
        rows, columns = {}, {}
        for key, r in results["features"].items():
            rows[f"{key}, probe on clean view"] = summarize(sigmas, r["icr"], r["acc_clean"])
            rows[f"{key}, probe on augmented view"] = summarize(sigmas, r["icr"], r["acc_view"])
            columns[f"ICR {key}"] = [fmt(v) for v in r["icr"]]
        lines += [summary_table(rows), "", curve_table(sigmas, columns), ""]
        columns = {}
        for key, r in results["features"].items():
            columns[f"acc clean {key}"] = [fmt(a, 3) for a in np.mean(r["acc_clean"], axis=1)]
        lines += ["Probe accuracy, one noisy view of the un-augmented image "
                  "(mean over the folds):", "", curve_table(sigmas, columns), ""]
        columns = {}
        for key, r in results["features"].items():
            columns[f"tr S_s {key}"] = [f"{v:.3g}" for v in r["trace_s"]]
            columns[f"tr S_xi {key}"] = [f"{v:.3g}" for v in r["trace_xi"]]
        lines += ["Traces of the covariances:", "", curve_table(sigmas, columns), ""]
    def reference(pooling):
        features = results.get("features", {})
        record = features.get(f"mid/{pooling}")
        return None if record is None else record["acc_clean"]

    if "augment" in results:
        lines.append("## 2. Augmentation strength (mid, 4 views, in-sample ICR)\n")
        rows, columns = {}, {}
        for key, r in results["augment"].items():
            pooling = key.split("/")[1]
            rows[f"{key}, probe on clean view"] = summarize(sigmas, r["icr"], reference(pooling))
            rows[f"{key}, probe on augmented view"] = summarize(sigmas, r["icr"], r["acc_view"])
            columns[f"ICR {key}"] = [fmt(v) for v in r["icr"]]
        lines += ["The clean-view probe is part 1's (mid, same pooling).", "",
                  summary_table(rows), "", curve_table(sigmas, columns), ""]
    if "estimator" in results:
        lines.append("## 3. Views, tau, bias correction (mid, default augmentation, in-sample)\n")
        rows = {key: summarize(sigmas, r["icr"], reference(key.split("/")[0]))
                for key, r in results["estimator"].items()}
        lines += ["Compared with part 1's clean-view probe (mid, same pooling).", "",
                  summary_table(rows), ""]
    if "selector" in results:
        lines.append("## 4. NoiseLevelSelector as skicr scan runs it "
                     "(held-out ICR, cv=5, probe on one augmented view)\n")
        rows, tables = {}, []
        for name, r in results["selector"].items():
            s = np.asarray(r["sigma"])
            rows[name] = summarize(s, r["icr"], r["acc_view"], r.get("icr_folds"))
            acc = np.asarray(r["acc_view"])
            columns = {
                "held-out ICR": [f"{m:.4f} +- {d:.4f}" for m, d in zip(r["icr"], r["icr_std"])],
                "probe accuracy": [f"{m:.4f} +- {d:.4f}" for m, d in
                                   zip(acc.mean(axis=1), acc.std(axis=1))],
            }
            tables += [f"### {name} ({r['seconds']:.0f} s)", "", curve_table(s, columns), ""]
        lines += ["Rises are paired over the 5 folds (se of the per-fold rise); U-shaped "
                  "here means an interior minimum with both rises > 2 se.", "",
                  summary_table(rows), ""] + tables
    return "\n".join(lines)


def plot(results, sigmas, path):
    """Four panels: ICR and probe accuracy by layer/pooling (part 1), ICR by
    augmentation (part 2), and the scan's held-out ICR at low noise (part 4).
    Sized for the documentation's content column (about 750 px wide)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    plt.rcParams.update({"font.size": 11, "legend.fontsize": 9})
    fig, axes = plt.subplots(2, 2, figsize=(9.5, 8.5), layout="constrained")
    axes = axes.ravel()
    colors = {"down.1": "tab:green", "mid": "tab:blue", "up.0": "tab:red",
              "none": "tab:gray", "weak": "tab:olive", "default": "tab:blue",
              "strong": "tab:purple"}
    for key, r in results.get("features", {}).items():
        layer, pooling = key.split("/")
        style = {"color": colors[layer], "marker": "o", "ms": 3,
                 "linestyle": "-" if pooling == "mean" else "--", "label": key}
        axes[0].plot(sigmas, r["icr"], **style)
        axes[1].plot(sigmas, np.mean(r["acc_clean"], axis=1), **style)
    axes[0].set_ylabel("in-sample ICR (lower is cleaner)")
    axes[0].set_title("(a) ICR by layer / pooling")
    axes[1].set_ylabel("probe accuracy (one noisy view)")
    axes[1].set_title("(b) probe on the same features, 10 folds")
    axes[1].set_ylim(0.8, 1.0)
    for key, r in results.get("augment", {}).items():
        name, pooling = key.split("/")
        axes[2].plot(sigmas, r["icr"], color=colors[name], marker="o", ms=3,
                     linestyle="-" if pooling == "mean" else "--", label=key)
    axes[2].set_ylabel("in-sample ICR (mid)")
    axes[2].set_title("(c) ICR by augmentation strength")
    for ax in axes[:3]:
        ax.set_xscale("log")
        ax.set_xlabel("sigma (solid: mean pooling, dashed: flatten)")
        ax.grid(alpha=0.3)
    for ax in (axes[0], axes[2]):  # room above the curves for the legend
        low, high = ax.get_ylim()
        ax.set_ylim(low, high + 0.32 * (high - low))
        ax.legend(ncol=3, loc="upper center", columnspacing=1.0, handlelength=1.8)
    axes[1].legend(ncol=2, loc="lower left", handlelength=1.8)
    runs = {k: v for k, v in results.get("selector", {}).items() if "seed" in k and "600" not in k
            and "flatten" not in k}
    if runs:
        ax, twin = axes[3], axes[3].twinx()
        for i, (name, r) in enumerate(runs.items()):
            s = np.asarray(r["sigma"])
            low = s <= 0.5
            icr = np.asarray(r["icr"])[low]
            acc = np.asarray(r["acc_view"]).mean(axis=1)[low]
            ax.plot(s[low], icr, color="tab:blue", marker="o", ms=4, alpha=1 - 0.25 * i)
            twin.plot(s[low], acc, color="tab:orange", marker="s", ms=4, linestyle="--",
                      alpha=1 - 0.25 * i)
            ax.axvline(s[int(np.argmin(r["icr"]))], color="black", linestyle=":", lw=1)
        ax.set_xscale("log")
        ax.set_xlabel("sigma")
        ax.set_ylabel("held-out ICR (cv=5)", color="tab:blue")
        twin.set_ylabel("probe accuracy (one augmented view)", color="tab:orange")
        ax.set_title("(d) the scan's defaults, sigma <= 0.5")
        ax.grid(alpha=0.3)
        ax.legend([Line2D([], [], color="tab:blue", marker="o"),
                   Line2D([], [], color="tab:orange", marker="s", linestyle="--"),
                   Line2D([], [], color="black", linestyle=":")],
                  ["held-out ICR", "probe accuracy", "chosen sigma"],
                  title=f"{len(runs)} seeds (fading)", title_fontsize=9, loc="upper left")
    fig.savefig(path, dpi=150)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    parser.add_argument("--n-images", type=int, default=None, help="subset (default: all 1797)")
    parser.add_argument("--folds", type=int, default=10, help="stratified folds of the probes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="smoke test: 200 images, 4 sigmas")
    parser.add_argument("--tag", default="", help="suffix of the output files")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite the report and figure from the saved JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    # OpenBLAS threads spinning against other processes on a shared 2-core
    # machine made LogisticRegression 30x slower: pin BLAS too
    threadpool_limits(args.threads)

    from skicr.datasets import load_digits_images
    from skicr.models import load_pretrained

    images, y = load_digits_images(return_y=True)
    n_images = 200 if args.quick else args.n_images
    if n_images is not None and n_images < len(images):
        rng = np.random.default_rng(args.seed)
        keep = np.sort(rng.choice(len(images), n_images, replace=False))
        images, y = images[keep], y[keep]
    sigmas = SIGMAS[::4] if args.quick else SIGMAS
    folds = list(StratifiedKFold(args.folds, shuffle=True, random_state=args.seed).split(images, y))
    ctx = {"net": load_pretrained("digits"), "images": images, "y": y, "folds": folds,
           "sigmas": sigmas, "seed": args.seed, "quick": args.quick,
           "layers": ["mid"] if args.quick else LAYERS}

    tag = args.tag or ("-quick" if args.quick else "")
    json_path = RESULTS / f"scan_study{tag}.json"
    results = json.loads(json_path.read_text()) if json_path.exists() else {}
    results["settings"] = {"n_images": len(images), "folds": args.folds, "seed": args.seed,
                           "sigmas": sigmas.tolist(), "probe_C": PROBE_C,
                           "torch": torch.__version__}
    for part in [] if args.report_only else args.parts:
        print(f"part {part}", flush=True)
        start = time.perf_counter()
        results[part] = PARTS[part](ctx)
        results.setdefault("seconds", {})[part] = time.perf_counter() - start
        RESULTS.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=1))

    text = report(results, sigmas)
    (RESULTS / f"scan_study{tag}.md").write_text(
        f"# scan study (generated by benchmarks/scan_study.py)\n\n"
        f"{len(images)} digits, probe folds {args.folds}, seed {args.seed}\n\n{text}\n")
    print(text)
    plot(results, sigmas, ROOT / "docs" / "_static" / f"scan_digits{tag}.png")


if __name__ == "__main__":
    main()
