"""GPU check: extraction throughput, the NCCL all-reduce, CPU/GPU feature equality.

One script a developer with an accelerator runs (about a minute on one recent
GPU, well under five):

1. **Throughput.** A SiT-B/2-sized transformer (12 blocks, width 768, 12
   heads, patch 2) on 32x32x4 latents, the latent grid of 256x256 images,
   random init, bfloat16 autocast: :class:`skicr.FeatureExtractor` (all views
   of a batch in one pass, early exit at the middle block) against the naive
   loop (full forward pass, one view at a time, per-image augmentation, a
   forward hook), both on the device, images per second side by side.
2. **All-reduce.** A world-size-1 ``torch.distributed`` process group (NCCL on
   CUDA, gloo on the CPU) and ``GroupedViewStatistics.all_reduce`` of the
   layer's statistics: the reduced statistics must equal the local ones and
   give the same ICR (it checks the packing, the device the buffer travels on
   and the re-centring; with one rank the sum is the identity).
3. **Equality.** The same images' features on the CPU (float32) and on the
   device, in float32 (TF32 off) and under bfloat16 autocast, compared as
   ``max |a - b| / max |b|`` against stated tolerances.

The transformer is diffusers' ``DiTTransformer2DModel`` at DiT-B/2's size
(SiT-B/2 has the same blocks and width; SiT differs in its training path and
time input, not in its cost). It is read through :class:`DiTBackbone`.

Run: ``python benchmarks/gpu_check.py`` (CUDA when available) or
``python benchmarks/gpu_check.py --cpu`` (smaller sizes, well under a minute;
CI runs it through ``tests/test_gpu_check.py``). Results go to
``benchmarks/results/gpu_check.md`` (GPU) or ``gpu_check_cpu.md`` (CPU), with a
JSON twin; ``benchmarks/collect.py`` puts them into ``docs/benchmarks.md``.
The exit status is 1 when a check fails. No timing is asserted.
"""

import argparse
import copy
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from skicr import FeatureExtractor
from skicr.extraction import DiTBackbone, RandomAffine
from skicr.metrics import GroupedViewStatistics, icr_score

RESULTS = Path(__file__).resolve().parent / "results"

# (transformer size, images, views, images per forward) per variant
SIZES = {
    "gpu": dict(num_layers=12, num_attention_heads=12, attention_head_dim=64, sample_size=32,
                n_images=1024, n_views=4, batch_size=64, n_equal=32, repeats=3),
    "cpu": dict(num_layers=4, num_attention_heads=2, attention_head_dim=32, sample_size=16,
                n_images=12, n_views=4, batch_size=8, n_equal=6, repeats=2),
}
# max |a - b| / max |b| between CPU float32 features and the device's
TOLERANCE = {"float32": 1e-4, "bfloat16": 5e-2}
SIGMA = 0.5


def sit_b_sized(num_layers, num_attention_heads, attention_head_dim, sample_size, seed=0):
    """A random-init transformer with SiT-B/2's blocks (DiT-B/2 in diffusers' classes)."""
    from diffusers import DiTTransformer2DModel

    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = DiTTransformer2DModel(
            num_attention_heads=num_attention_heads,
            attention_head_dim=attention_head_dim,
            in_channels=4,
            out_channels=8,
            num_layers=num_layers,
            sample_size=sample_size,
            patch_size=2,
            num_embeds_ada_norm=1000,
        )
        # adaLN-zero layers start at zero (blocks would be the identity): randomise them
        with torch.no_grad():
            for block in model.transformer_blocks:
                torch.nn.init.normal_(block.norm1.linear.weight, std=0.02)
    finally:
        torch.random.set_rng_state(state)
    return model


# ------------------------------------------------------------------ the naive loop
def _augment_one(image, rng):
    """torchvision-style: one random affine per call, one image at a time."""
    scale = rng.uniform(0.6, 1.0)
    angle = math.radians(rng.uniform(-15, 15))
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    theta = torch.tensor([[[cos, sin, 0.0], [-sin, cos, 0.0]]], dtype=image.dtype, device=image.device)
    grid = F.affine_grid(theta, [1, *image.shape], align_corners=False)
    return F.grid_sample(image[None], grid, align_corners=False)[0]


def naive_extract(backbone, layer, images, n_views, batch_size, device, bfloat16, seed=0):
    """Full forward pass, one view at a time, a forward hook, per-image augmentation."""
    rng = np.random.default_rng(seed)
    generator = torch.Generator(device=device).manual_seed(seed)
    store = {}
    handle = backbone.get_layer(layer).register_forward_hook(lambda m, a, out: store.__setitem__("h", out))
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bfloat16)
    features = []
    try:
        with torch.no_grad(), autocast:
            for _ in range(n_views):
                per_view = []
                for start in range(0, len(images), batch_size):
                    batch = images[start:start + batch_size].to(device)
                    batch = torch.stack([_augment_one(image, rng) for image in batch])
                    noisy = batch * 2 - 1 + SIGMA * torch.randn(batch.shape, generator=generator, device=device)
                    backbone.forward(noisy, SIGMA)
                    per_view.append(store["h"].float().mean(dim=1).cpu())
                features.append(torch.cat(per_view))
    finally:
        handle.remove()
    return torch.stack(features, dim=1)


def _synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device):
    _synchronize(device)
    start = time.perf_counter()
    result = fn()
    _synchronize(device)
    return time.perf_counter() - start, result


# ------------------------------------------------------------------ the three checks
def check_throughput(module, images, size, device, bfloat16):
    backbone = DiTBackbone(module)
    layer = backbone.default_layer
    precision = "bfloat16" if bfloat16 else "float32"
    extractor = FeatureExtractor(
        backbone, sigma=SIGMA, n_views=size["n_views"], batch_size=max(size["batch_size"] // size["n_views"], 1),
        augment=RandomAffine(), random_state=0, device=device, precision=precision,
    ).fit(images[:2])
    runs = {
        "naive loop": lambda: naive_extract(backbone, layer, images, size["n_views"], size["batch_size"],
                                            device, bfloat16),
        "FeatureExtractor": lambda: extractor.transform_views(images),
    }
    # warm-up: allocator, kernels, autotuning
    naive_extract(backbone, layer, images[: size["batch_size"]], 1, size["batch_size"], device, bfloat16)
    extractor.transform_views(images[: size["batch_size"]])
    best = {name: float("inf") for name in runs}
    for _ in range(size["repeats"]):  # interleaved: load drifts on shared machines
        for name, fn in runs.items():
            best[name] = min(best[name], _timed(fn, device)[0])
    rates = {name: len(images) / seconds for name, seconds in best.items()}
    return {
        "layer": layer,
        "rows_per_forward": size["batch_size"],
        "images_per_s": rates,
        "speedup": rates["FeatureExtractor"] / rates["naive loop"],
    }


def check_all_reduce(module, images, size, device):
    backend = "nccl" if device.type == "cuda" else "gloo"
    extractor = FeatureExtractor(
        DiTBackbone(module), sigma=SIGMA, n_views=size["n_views"], batch_size=size["batch_size"],
        random_state=0, device=device,
    ).fit(images[:2])
    views = extractor.transform_views(images).astype(np.float64)
    local = GroupedViewStatistics()
    local.update(views)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    with tempfile.TemporaryDirectory() as folder:
        dist.init_process_group(backend, init_method=f"file://{os.path.join(folder, 'store')}",
                                rank=0, world_size=1)
        try:
            reduced = local.copy()
            seconds, _ = _timed(lambda: reduced.all_reduce(), device)
        finally:
            dist.destroy_process_group()
    pairs = [(reduced.mean, local.mean), (reduced.covariance_means(), local.covariance_means()),
             (reduced.covariance_residual(), local.covariance_residual())]
    difference = max(float(np.max(np.abs(a - b)) / np.max(np.abs(b))) for a, b in pairs)
    icr_local = float(icr_score(views, method="primal"))
    icr_reduced = float(_icr_from_statistics(reduced))
    return {
        "backend": backend,
        "n_features": int(views.shape[2]),
        "seconds": seconds,
        "max_relative_difference": difference,
        "icr_local": icr_local,
        "icr_reduced": icr_reduced,
        "ok": bool(reduced.n_images == local.n_images and difference < 1e-10
                   and abs(icr_reduced - icr_local) <= 1e-10 * icr_local),
    }


def _icr_from_statistics(statistics):
    from skicr import InvariantResidualDecomposer

    return InvariantResidualDecomposer().fit_statistics(statistics).icr_


def check_equality(module, images, size, device):
    def features(on, precision):
        extractor = FeatureExtractor(
            DiTBackbone(copy.deepcopy(module)), sigma=SIGMA, n_views=size["n_views"],
            batch_size=size["batch_size"], random_state=0, device=on, precision=precision,
        ).fit(images[:2])
        return extractor.transform_views(images)

    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        reference = features(torch.device("cpu"), "float32")
        out = {}
        for precision in ("float32", "bfloat16"):
            got = features(device, precision)
            error = float(np.max(np.abs(got - reference)) / np.max(np.abs(reference)))
            out[precision] = {"max_relative_difference": error, "tolerance": TOLERANCE[precision],
                              "ok": error <= TOLERANCE[precision]}
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    return out


# ------------------------------------------------------------------ report
def report(results):
    size, thr, red, eq = results["size"], results["throughput"], results["all_reduce"], results["equality"]
    variant = results["variant"]
    lines = [
        f"# GPU check ({variant} variant)",
        "",
        f"Machine: {results['device_name']}; torch {results['torch']}; {results['threads']} CPU thread(s).",
        f"Command: `python benchmarks/gpu_check.py{' --cpu' if variant == 'cpu' else ''}` "
        f"({results['seconds']:.0f} s in all).",
        f"Transformer: {size['num_layers']} blocks, width {size['num_attention_heads'] * size['attention_head_dim']}, "
        f"patch 2 on {size['sample_size']}x{size['sample_size']}x4 latents, "
        f"{results['parameters'] / 1e6:.1f}M parameters, random init"
        + (" (SiT-B/2's size)." if variant == "gpu" else " (reduced size)."),
        "",
        f"Throughput: {size['n_images']} images x {size['n_views']} views, sigma {SIGMA}, layer `{thr['layer']}`, "
        f"{thr['rows_per_forward']} rows per forward pass on both sides, "
        f"{'bfloat16 autocast' if results['bfloat16'] else 'float32'}, best of {size['repeats']} interleaved runs.",
        "",
        "| method | images/s | speed-up |",
        "|---|---:|---:|",
    ]
    for name, rate in thr["images_per_s"].items():
        lines.append(f"| {name} | {rate:.1f} | {rate / thr['images_per_s']['naive loop']:.2f}x |")
    lines += [
        "",
        f"All-reduce ({red['backend']}, world size 1, d = {red['n_features']}): {red['seconds'] * 1e3:.1f} ms; "
        f"reduced vs local statistics max relative difference {red['max_relative_difference']:.1e}, "
        f"ICR {red['icr_reduced']:.6f} vs {red['icr_local']:.6f}: {'ok' if red['ok'] else 'FAILED'}.",
        "",
        f"Equality with CPU float32 features ({size['n_equal']} images, max |a - b| / max |b|):",
        "",
        "| device precision | difference | tolerance | |",
        "|---|---:|---:|---|",
    ]
    for precision, row in eq.items():
        lines.append(f"| {precision} | {row['max_relative_difference']:.1e} | {row['tolerance']:.0e} | "
                     f"{'ok' if row['ok'] else 'FAILED'} |")
    if variant == "cpu":
        lines += ["", "CPU variant: the \"device\" is the CPU itself, so float32 equality is exact by "
                  "construction and the bfloat16 row measures CPU autocast; it keeps the script from rotting. "
                  "The GPU numbers come from `python benchmarks/gpu_check.py` on a CUDA machine."]
    return "\n".join(lines) + "\n"


def run(variant="auto", out=None, threads=None):
    """Run the three checks; write ``out`` (.md) and its .json twin; return the results."""
    started = time.perf_counter()
    if variant == "auto":
        variant = "gpu" if torch.cuda.is_available() else "cpu"
    if variant == "gpu" and not torch.cuda.is_available():
        raise SystemExit("--gpu needs CUDA; run with --cpu for the CPU variant.")
    if threads is not None:
        torch.set_num_threads(threads)
    device = torch.device("cuda" if variant == "gpu" else "cpu")
    size = SIZES[variant]
    bfloat16 = device.type == "cuda"
    module = sit_b_sized(size["num_layers"], size["num_attention_heads"], size["attention_head_dim"],
                         size["sample_size"])
    generator = torch.Generator().manual_seed(0)
    latents = torch.rand((size["n_images"], 4, size["sample_size"], size["sample_size"]), generator=generator)
    results = {
        "variant": variant,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
        else f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "size": size,
        "bfloat16": bfloat16,
        "parameters": sum(p.numel() for p in module.parameters()),
        "equality": check_equality(module, latents[: size["n_equal"]], size, device),
        "all_reduce": check_all_reduce(module, latents[: size["n_equal"]], size, device),
        "throughput": check_throughput(module.to(device), latents, size, device, bfloat16),
    }
    results["seconds"] = time.perf_counter() - started
    results["ok"] = results["all_reduce"]["ok"] and all(row["ok"] for row in results["equality"].values())
    out = Path(out) if out is not None else RESULTS / ("gpu_check.md" if variant == "gpu" else "gpu_check_cpu.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report(results))
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--cpu", dest="variant", action="store_const", const="cpu",
                       help="the CPU variant (smaller sizes); the default when CUDA is absent")
    group.add_argument("--gpu", dest="variant", action="store_const", const="gpu")
    parser.add_argument("--out", help="results file (.md; a .json twin is written beside it)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    results = run(args.variant or "auto", args.out, args.threads)
    print(report(results))
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
