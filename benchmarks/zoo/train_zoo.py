"""Train the denoiser zoo of the noise-level study, one model per call.

Each entry of ``SPECS`` is a reproducible recipe: data, architecture,
parameterisation (EDM / VP epsilon with a DDPM schedule / flow matching),
steps, batch, learning rate, seed, and the steps at which an EMA checkpoint is
written (an under-trained one and the final one). One torch thread; the same
command on the same torch version gives the same weights::

    python benchmarks/zoo/train_zoo.py digits_unet_s      # one model
    python benchmarks/zoo/train_zoo.py --list             # the recipes
    python benchmarks/zoo/train_zoo.py --time shapes_dit  # seconds per step, no training

Each checkpoint goes to ``benchmarks/zoo/weights/<name>.pt`` (float16,
:func:`skicr.models.save_checkpoint`, read back by
:func:`skicr.models.load_checkpoint`) with a JSON record next to it
(``<name>.json``: recipe, parameters, seconds, loss curve, final loss).
The shipped ``digits`` denoiser (``python -m skicr.models.train``) is the
zoo's tenth member and is not retrained here.
"""

import argparse
import copy
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from skicr.datasets import load_digits_images
from skicr.models import (
    EDMPrecond,
    SmallDiT,
    SmallUNet,
    ddpm_alphas_cumprod,
    edm_loss,
    flow_matching_loss,
    save_checkpoint,
    vp_epsilon_loss,
)
from skicr.models._training import images_to_tensor

HERE = Path(__file__).resolve().parent
WEIGHTS = HERE / "weights"
DDPM_SCHEDULE = {"num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02,
                 "beta_schedule": "linear"}
EVAL_SEED = 12345
#: the zoo trains and evaluates the shapes at 24x24 (a third of the cost of 32x32 on a CPU)
SHAPES_SIZE = 24


def _shapes(n_images=3000):
    from skicr.datasets import make_shapes_images

    return make_shapes_images(n_images=n_images, image_size=SHAPES_SIZE, random_state=0)


def _unet2d(in_channels, size, attention):
    from diffusers import UNet2DModel

    down = ("DownBlock2D", "AttnDownBlock2D") if attention else ("DownBlock2D", "DownBlock2D")
    up = ("AttnUpBlock2D", "UpBlock2D") if attention else ("UpBlock2D", "UpBlock2D")
    return UNet2DModel(
        sample_size=size, in_channels=in_channels, out_channels=in_channels,
        block_out_channels=(16, 32), layers_per_block=1, down_block_types=down,
        up_block_types=up, norm_num_groups=8, attention_head_dim=8,
        add_attention=attention,
    )


def build(spec, in_channels, image_size):
    """The recipe's untrained network for images of ``in_channels`` x ``image_size``."""
    if spec["arch"] == "UNet2DModel":
        return _unet2d(in_channels, image_size, attention=spec["attention"])
    family = {"SmallUNet": SmallUNet, "SmallDiT": SmallDiT}[spec["arch"]]
    return family(in_channels=in_channels, image_size=image_size, **spec["options"])


#: the recipes, one row each: name, data, architecture, parameterisation, attention,
#: architecture options, steps, learning rate, saves ((step, checkpoint name); the last one
#: is the converged model). Every recipe uses batches of 32.
RECIPES = [
    ("digits_unet_s", "digits", "SmallUNet", "edm", False,
     dict(channels=(16, 32), mid_channels=48, emb_dim=64), 1200, 2e-3,
     [(100, "digits_unet_s_early"), (1200, "digits_unet_s")]),
    ("digits_ddpm_attn", "digits", "UNet2DModel", "vp_epsilon", True, {}, 500, 1e-3,
     [(500, "digits_ddpm_attn")]),
    ("digits_dit_flow", "digits", "SmallDiT", "flow", True,
     dict(patch_size=2, width=64, depth=4, n_heads=4), 600, 1e-3, [(600, "digits_dit_flow")]),
    ("shapes_unet", "shapes", "SmallUNet", "edm", False,
     dict(channels=(16, 32), mid_channels=64, emb_dim=64), 250, 2e-3,
     [(60, "shapes_unet_early"), (250, "shapes_unet")]),
    ("shapes_ddpm", "shapes", "UNet2DModel", "vp_epsilon", False, {}, 200, 1e-3,
     [(200, "shapes_ddpm")]),
    ("shapes_dit_flow", "shapes", "SmallDiT", "flow", True,
     dict(patch_size=4, width=96, depth=4, n_heads=4), 300, 1e-3, [(300, "shapes_dit_flow")]),
    ("shapes_unet_flow", "shapes", "SmallUNet", "flow", False,
     dict(channels=(16, 32), mid_channels=64, emb_dim=64), 250, 2e-3, [(250, "shapes_unet_flow")]),
    # round 2 of the study (docs/noise_level_study.md, "Round 2"): the fresh held-out set,
    # trained after the round-2 protocol was committed
    ("digits_ddpm", "digits", "UNet2DModel", "vp_epsilon", False, {}, 500, 1e-3,
     [(500, "digits_ddpm")]),
    ("digits_unet_m", "digits", "SmallUNet", "edm", False,
     dict(channels=(24, 48), mid_channels=64, emb_dim=64), 1000, 2e-3, [(1000, "digits_unet_m")]),
    ("shapes_dit_p2", "shapes", "SmallDiT", "flow", True,
     dict(patch_size=2, width=64, depth=4, n_heads=4), 300, 1e-3, [(300, "shapes_dit_p2")]),
]
_COLUMNS = ("data", "arch", "param", "attention", "options", "steps", "lr", "save")

# name -> recipe (a dict of the columns, batch 32)
SPECS = {name: dict(zip(_COLUMNS, row), batch=32) for name, *row in RECIPES}


def load_data(name):
    """Training images (float32 in [0, 1], (n, C, H, W)) of a recipe's dataset."""
    if name == "digits":
        return load_digits_images(return_y=False)
    if name == "shapes":
        return _shapes()[0]
    raise ValueError(f"unknown dataset {name!r}")


def make_loss(spec, net):
    """Loss function ``loss(x, generator)`` of the recipe's parameterisation."""
    if spec["param"] == "edm":
        denoiser = EDMPrecond(net)
        return lambda x, g: edm_loss(denoiser, x, generator=g)
    if spec["param"] == "vp_epsilon":
        abar = ddpm_alphas_cumprod(DDPM_SCHEDULE["num_train_timesteps"],
                                   DDPM_SCHEDULE["beta_start"], DDPM_SCHEDULE["beta_end"])
        return lambda x, g: vp_epsilon_loss(lambda xt, t: net(xt, t, return_dict=False), x, abar,
                                            generator=g)
    if spec["param"] == "flow":
        return lambda x, g: flow_matching_loss(net, x, generator=g)
    raise ValueError(spec["param"])


@torch.no_grad()
def eval_loss(spec, net, x_all, n=512):
    """The training objective on ``n`` fixed images with fixed noise (comparable across steps)."""
    was_training = net.training
    net.eval()
    loss = make_loss(spec, net)(x_all[:n], torch.Generator().manual_seed(EVAL_SEED)).item()
    net.train(was_training)
    return loss


def train(name, time_only=False):
    spec = SPECS[name]
    torch.set_num_threads(1)
    images = load_data(spec["data"])
    x_all = images_to_tensor(images)
    n, c, h, _ = x_all.shape
    seed = 0
    torch.manual_seed(seed)
    net = build(spec, c, h).train()
    n_params = sum(p.numel() for p in net.parameters())
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    loss_fn = make_loss(spec, net)
    optimizer = torch.optim.Adam(net.parameters(), lr=spec["lr"])
    generator = torch.Generator().manual_seed(seed)
    steps = spec["steps"] if not time_only else 20
    warmup = min(200, steps // 10)
    saves = dict(spec["save"])
    losses, curve = [], []
    perm = torch.empty(0, dtype=torch.long)
    start = time.perf_counter()
    for step in range(1, steps + 1):
        for group in optimizer.param_groups:
            group["lr"] = spec["lr"] * min(1.0, step / warmup) if warmup else spec["lr"]
        while perm.numel() < spec["batch"]:
            perm = torch.cat([perm, torch.randperm(n, generator=generator)])
        idx, perm = perm[: spec["batch"]], perm[spec["batch"]:]
        loss = loss_fn(x_all[idx], generator)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{name}: loss {loss.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        decay = min(0.999, (1 + step) / (10 + step))
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), net.parameters()):
                p_ema.lerp_(p, 1 - decay)
            for b_ema, b in zip(ema.buffers(), net.buffers()):
                b_ema.copy_(b)
        losses.append(loss.item())
        if time_only:
            continue
        if step % 50 == 0:
            curve.append({"step": step, "train_loss_mean": float(np.mean(losses[-50:])),
                          "seconds": time.perf_counter() - start})
            print(f"{name} step {step} loss {curve[-1]['train_loss_mean']:.4f} "
                  f"{curve[-1]['seconds']:.0f}s", flush=True)
        if step in saves:
            out = saves[step]
            ema_eval = eval_loss(spec, ema, x_all)
            record = {
                "name": out, "recipe": name, "data": spec["data"], "architecture": spec["arch"],
                "parameterization": spec["param"], "attention": spec["attention"],
                "n_parameters": int(n_params), "steps": step, "total_steps": spec["steps"],
                "batch_size": spec["batch"], "lr": spec["lr"], "seed": seed,
                "train_seconds": time.perf_counter() - start,
                "train_loss_last100": float(np.mean(losses[-100:])),
                "ema_eval_loss": ema_eval, "train_curve": curve,
                "command": f"python benchmarks/zoo/train_zoo.py {name}",
                "torch_version": str(torch.__version__), "threads": 1,
                "platform": platform.platform(),
            }
            save_checkpoint(ema, WEIGHTS / f"{out}.pt", parameterization=spec["param"],
                            schedule=DDPM_SCHEDULE if spec["param"] == "vp_epsilon" else None,
                            metadata={k: v for k, v in record.items() if k != "train_curve"})
            (WEIGHTS / f"{out}.json").write_text(json.dumps(record, indent=1))
            print(f"saved {out} (eval loss {ema_eval:.4f})", flush=True)
    seconds = time.perf_counter() - start
    if time_only:
        print(f"{name}: {n_params} parameters, {seconds / steps:.3f} s/step "
              f"-> {spec['steps']} steps ~ {spec['steps'] * seconds / steps:.0f} s")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--time", action="store_true", help="time 20 steps, save nothing")
    args = parser.parse_args(argv)
    if args.list or not args.names:
        for key, spec in SPECS.items():
            print(key, spec["data"], spec["arch"], spec["param"], spec["steps"])
        return
    for name in args.names:
        train(name, time_only=args.time)


if __name__ == "__main__":
    sys.exit(main())
