"""FeatureExtractor vs the naive extraction loop, images per second, side by side.

The naive loop is what a hand-written feature-extraction script typically
does: one view at a time, a forward hook on the layer, the full forward
pass, and a per-image Python loop for the augmentation. Both sides use the same network, the same
images, the same batch size (images per forward pass), the same
augmentation family and the same pooling.

The extractor is timed with the same number of rows (views) per forward pass
as the naive loop (same memory), and with the same number of images per
forward pass (its views batched together).

Models (random init: speed does not depend on the weights):
- skicr's own small denoiser (``SmallUNet``, EDM, 16x16 grayscale, layer ``mid``);
- a diffusers ``UNet2DModel`` with google/ddpm-cifar10-32's architecture
  (35.7M parameters, 32x32 RGB, layer ``mid_block``).

Run: ``python benchmarks/bench_extraction.py`` (about two minutes on a 2-core
CPU). ``--device cuda`` runs the same comparison on a GPU.
"""

import argparse
import math
import os
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F

from skicr import FeatureExtractor
from skicr.extraction import EDMBackbone, RandomAffine, UNet2DBackbone
from skicr.extraction._testing import TinyEDMNet, ddpm_cifar10_unet2d


def small_denoiser():
    try:
        from skicr.models import SmallUNet

        return SmallUNet(), "skicr SmallUNet (EDM)"
    except ImportError:  # before skicr.models exists
        return TinyEDMNet(width=32), "TinyEDMNet (EDM)"


# ------------------------------------------------------------------ the naive loop
def augment_one(image, rng):
    """torchvision-style: one random affine per call, one image at a time."""
    scale = rng.uniform(0.6, 1.0)
    angle = math.radians(rng.uniform(-15, 15))
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    theta = torch.tensor([[[cos, sin, 0.0], [-sin, cos, 0.0]]], dtype=image.dtype)
    grid = F.affine_grid(theta, [1, *image.shape], align_corners=False)
    return F.grid_sample(image[None], grid, align_corners=False)[0]


def naive_extract(module, call, layer, images, sigma, n_views, batch_size, device, seed=0):
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    store = {}
    handle = dict(module.named_modules())[layer].register_forward_hook(
        lambda m, a, out: store.__setitem__("h", out)
    )
    features = []
    try:
        with torch.no_grad():
            for _ in range(n_views):  # one view at a time
                view_features = []
                for start in range(0, len(images), batch_size):
                    batch = torch.from_numpy(images[start:start + batch_size])
                    batch = torch.stack([augment_one(img, rng) for img in batch])
                    noisy = batch * 2 - 1 + sigma * torch.randn(batch.shape, generator=generator)
                    call(module, noisy.to(device), sigma)  # full forward pass
                    view_features.append(store["h"].mean(dim=(2, 3)).cpu())
                features.append(torch.cat(view_features))
    finally:
        handle.remove()
    return torch.stack(features, dim=1).numpy()


# ------------------------------------------------------------------ timing
def timed(fn, device):
    """(wall seconds, CPU seconds of this process) of one call."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


def compare(name, module, backbone, layer, images, args, device):
    module.to(device).eval()
    sigma, n_views, batch_size = 0.3, args.n_views, args.batch_size
    # same rows (views) per forward pass as the naive loop: same memory
    same_rows = max(batch_size // n_views, 1)

    def extractor(images_per_forward, early_exit):
        return FeatureExtractor(
            backbone, layer=layer, sigma=sigma, n_views=n_views, batch_size=images_per_forward,
            augment=RandomAffine(), random_state=0, early_exit=early_exit,
        ).fit(images[:2])

    def naive(subset=images, views=n_views, rows=batch_size):
        return naive_extract(module, lambda m, x, s: backbone.forward(x, s), layer,
                             subset, sigma, views, rows, device)

    naive(images[: 2 * batch_size], 1)  # warm-up (allocator, kernels)
    extractor(same_rows, True).transform(images[: 2 * batch_size])

    runs = [
        ("naive loop", batch_size, 1, naive),
        ("naive loop", batch_size * n_views, 1, lambda: naive(rows=batch_size * n_views)),
        ("FeatureExtractor, full forward", same_rows, n_views,
         lambda e=extractor(same_rows, False): e.transform(images)),
        ("FeatureExtractor", same_rows, n_views,
         lambda e=extractor(same_rows, True): e.transform(images)),
        ("FeatureExtractor", batch_size, n_views,
         lambda e=extractor(batch_size, True): e.transform(images)),
    ]
    n = len(images)
    print(f"\n{name}: {n} images x {n_views} views, device={device}")
    print(f"  {'method':32s} {'images/fwd':>10s} {'rows/fwd':>8s} {'images/s':>9s} {'speed-up':>8s} "
          f"{'images/cpu-s':>12s} {'speed-up':>8s} {'vs naive, same rows (cpu)':>26s}")
    # interleave the methods (best of repeats each): a shared machine's load drifts.
    # With one thread, CPU seconds are what the method costs, whatever the load.
    wall = [float("inf")] * len(runs)
    cpu = [float("inf")] * len(runs)
    for _ in range(args.repeats):
        for k, run in enumerate(runs):
            w, c = timed(run[3], device)
            wall[k], cpu[k] = min(wall[k], w), min(cpu[k], c)
    rates = []
    # the naive loop's CPU rate at each rows-per-pass setting: the equal-memory reference
    naive_rate = {rows: n / c for (label, rows, _, _), c in zip(runs, cpu) if label == "naive loop"}
    for (label, images_per_forward, views_per_forward, _), w, c in zip(runs, wall, cpu):
        rates.append((n / w, n / c))
        rows = images_per_forward * views_per_forward
        same = "" if label == "naive loop" else f"{n / c / naive_rate[rows]:.2f}x"
        print(f"  {label:32s} {images_per_forward:10d} {rows:8d} "
              f"{n / w:9.1f} {n / w / rates[0][0]:7.2f}x {n / c:12.1f} {n / c / rates[0][1]:7.2f}x {same:>26s}")
    best_naive, best_extractor = max(naive_rate.values()), max(
        n / c for (label, *_), c in zip(runs, cpu) if label == "FeatureExtractor")
    print(f"  best FeatureExtractor / best naive loop (CPU time): {best_extractor / best_naive:.2f}x")
    return rates


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n-views", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16,
                        help="images per forward pass of the naive loop (one view each)")
    parser.add_argument("--n-small", type=int, default=256, help="images for the small denoiser")
    parser.add_argument("--n-cifar", type=int, default=32, help="images for the DDPM-CIFAR10 U-Net")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    print(f"torch {torch.__version__}, {args.threads} thread(s), {card}; "
          f"load average at start {os.getloadavg()[0]:.1f}")

    rng = np.random.default_rng(0)
    net, net_name = small_denoiser()
    gray = rng.random((args.n_small, 1, 16, 16), dtype=np.float32)
    compare(net_name, net, EDMBackbone(net), "mid", gray, args, device)

    unet = ddpm_cifar10_unet2d()
    rgb = rng.random((args.n_cifar, 3, 32, 32), dtype=np.float32)
    compare("UNet2DModel, DDPM-CIFAR10 size (random init)", unet, UNet2DBackbone(unet),
            "mid_block", rgb, args, device)
    print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
