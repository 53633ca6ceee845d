"""Scratch measurement: what the CPU offers FeatureExtractor beyond early exit (goal-4 groundwork).

Interleaved, best of ``--repeats`` CPU-seconds (one torch thread), same images, same
``random_state``; the naive peer loop of ``bench_extraction.py`` as the reference:

* images per forward pass (batch sizing): 2, 4 (= the naive loop's 16 rows), 16 (its 16 images);
* channels-last weights (a copy of the network converted with ``memory_format=channels_last``);
* the maximum difference of the features against the default configuration.

``torch.compile`` is not in the table: on this 2-core machine the inductor compile of the
shipped denoiser did not finish within 240 s (one thread, shared cores), which a 1-2 s
extraction cannot amortise, and the early exit raises from a forward hook, which compiled
graphs break on. On idle cores (session 4) the DDPM-CIFAR10 U-Net's forward up to
``mid_block`` compiled in 36-80 s and ran 1.11x-1.12x faster than eager
(``results/extraction.md``). Run: ``python benchmarks/bench_extraction_options.py [small|cifar]``.
"""

import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_extraction import naive_extract  # noqa: E402

from skicr import FeatureExtractor  # noqa: E402
from skicr.extraction import EDMBackbone, RandomAffine, UNet2DBackbone  # noqa: E402


def main():
    which = sys.argv[1] if len(sys.argv) > 1 else "small"
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    if which == "small":
        from skicr.models import SmallUNet

        net, adapter, layer = SmallUNet(), EDMBackbone, "mid"
        images = rng.random((256, 1, 16, 16), dtype=np.float32)
    else:
        from skicr.extraction._testing import ddpm_cifar10_unet2d

        net, adapter, layer = ddpm_cifar10_unet2d(), UNet2DBackbone, "mid_block"
        images = rng.random((16, 3, 32, 32), dtype=np.float32)
    channels_last = copy.deepcopy(net).to(memory_format=torch.channels_last)
    backbone, backbone_cl = adapter(net), adapter(channels_last)

    def extractor(b, batch_size):
        return FeatureExtractor(b, layer=layer, sigma=0.3, n_views=4, batch_size=batch_size,
                                augment=RandomAffine(), random_state=0).fit(images[:2])

    variants = {
        "naive loop (16 rows/forward)": lambda: naive_extract(
            net, lambda m, x, s: backbone.forward(x, s), layer, images, 0.3, 4, 16, torch.device("cpu")),
        "FeatureExtractor, 4 images (16 rows)": lambda e=extractor(backbone, 4): e.transform_views(images),
        "FeatureExtractor, 4 images, channels-last": lambda e=extractor(backbone_cl, 4): e.transform_views(images),
        "FeatureExtractor, 16 images (64 rows)": lambda e=extractor(backbone, 16): e.transform_views(images),
        "FeatureExtractor, 16 images, channels-last": lambda e=extractor(backbone_cl, 16): e.transform_views(images),
        "FeatureExtractor, 2 images (8 rows)": lambda e=extractor(backbone, 2): e.transform_views(images),
    }
    best, outputs = {k: float("inf") for k in variants}, {}
    for _ in range(repeats):
        for name, run in variants.items():
            start = time.process_time()
            outputs[name] = run()
            best[name] = min(best[name], time.process_time() - start)
    reference = outputs["FeatureExtractor, 4 images (16 rows)"]
    naive = best["naive loop (16 rows/forward)"]
    print(f"| configuration ({which}) | CPU-s | speed-up vs naive | max diff vs default |")
    print("|---|---:|---:|---:|")
    for name in variants:
        diff = "" if name.startswith("naive") else f"{float(np.abs(outputs[name] - reference).max()):.1e}"
        print(f"| {name} | {best[name]:.2f} | {naive / best[name]:.2f}x | {diff} |")


if __name__ == "__main__":
    main()
