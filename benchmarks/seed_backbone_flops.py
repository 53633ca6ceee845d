"""FLOPs and weight memory of the seed paper's backbones, counted on skicr's implementations.

Counts with ``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per
multiply-add; matmuls, convolutions and attention) on the meta device, so
no weights are allocated and nothing is downloaded. For feature extraction
the forward pass stops at the read layer; both the full pass and the pass up
to the layer are counted. Writes ``benchmarks/results/seed_backbones.md``.

Run: ``python benchmarks/seed_backbone_flops.py``.
"""

import platform
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from skicr.models import PrecondEDM, build_transformer

HERE = Path(__file__).resolve().parent


class _Stop(Exception):
    pass


def _flops(net, layer, *inputs):
    """(full-pass FLOPs, FLOPs up to and including ``layer``) for one batch of one."""
    with FlopCounterMode(display=False) as counter:
        net(*inputs)
    full = counter.get_total_flops()

    def stop(module, args, output):
        raise _Stop

    handle = dict(net.named_modules())[layer].register_forward_hook(stop)
    with FlopCounterMode(display=False) as counter:
        try:
            net(*inputs)
        except _Stop:
            pass
    handle.remove()
    return full, counter.get_total_flops()


def edm_cifar10():
    # edm-cifar10-32x32-uncond-vp.pkl: train.py --arch=ddpmpp --precond=edm --cond=0
    net = PrecondEDM(
        img_resolution=32, img_channels=3, label_dim=0, use_fp16=False, model_type="SongUNet",
        embedding_type="positional", encoder_type="standard", decoder_type="standard",
        channel_mult_noise=1, resample_filter=[1, 1], model_channels=128,
        channel_mult=[2, 2, 2], augment_dim=9, dropout=0.13,
    ).eval()
    x = torch.zeros(1, 3, 32, 32, device="meta")
    sigma = torch.ones(1, device="meta")
    return net, "model.dec.8x8_in1", (x, sigma)


def sit_xl2():
    net = build_transformer("SiT-XL/2", input_size=32).eval()
    x = torch.zeros(1, 4, 32, 32, device="meta")
    t = torch.ones(1, device="meta")
    y = torch.zeros(1, dtype=torch.long, device="meta")
    return net, "blocks.14", (x, t, y)


def sd_vae_encoder():
    # stabilityai/sd-vae-ft-ema config (AutoencoderKL), encoder only, 256x256 input
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
        block_out_channels=(128, 256, 512, 512), norm_num_groups=32, sample_size=256,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    ).eval()
    return vae


def main():
    rows = []
    with torch.device("meta"), torch.no_grad():
        for name, build in (("EDM DDPM++ CIFAR-10 32x32", edm_cifar10),
                            ("SiT-XL/2 ImageNet 256x256", sit_xl2)):
            net, layer, inputs = build()
            params = sum(p.numel() for p in net.parameters())
            full, partial = _flops(net, layer, *inputs)
            rows.append((name, layer, params, full, partial))
        try:
            vae = sd_vae_encoder()
        except ImportError:
            vae = None
        if vae is not None:
            x = torch.zeros(1, 3, 256, 256, device="meta")
            with FlopCounterMode(display=False) as counter:
                vae.encode(x)
            enc_params = sum(p.numel() for p in vae.encoder.parameters())
            enc_params += sum(p.numel() for p in vae.quant_conv.parameters())
            rows.append(("SD-VAE encoder 256x256", "(latents)", enc_params,
                         counter.get_total_flops(), counter.get_total_flops()))
    lines = [
        "# Seed-paper backbones: FLOPs per image",
        "",
        f"Counted by `python benchmarks/seed_backbone_flops.py` with torch {torch.__version__} "
        f"({platform.machine()}), `FlopCounterMode` on the meta device (2 FLOPs per "
        "multiply-add), batch of one image.",
        "",
        "| network | read layer | parameters | GFLOPs full pass | GFLOPs up to the layer |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for name, layer, params, full, partial in rows:
        lines.append(f"| {name} | `{layer}` | {params / 1e6:.1f} M | {full / 1e9:.2f} | "
                     f"{partial / 1e9:.2f} |")
    out = HERE / "results" / "seed_backbones.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
