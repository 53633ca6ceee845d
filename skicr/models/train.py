"""Train the small EDM denoiser on sklearn's digits and save its EMA weights.

The shipped weights ``skicr/models/weights/digits.pt`` come from::

    python -m skicr.models.train --steps 3000 --seed 0 --threads 1 \\
        --out skicr/models/weights/digits.pt

(see ``docs/models.md`` for the time, loss curve and samples). Everything is
seeded; the same command with the same torch version and thread count gives
the same weights.
"""

import argparse
import platform
import shlex
import sys
import time

import numpy as np
import torch

from ..datasets import load_digits_images
from ._edm import EDMPrecond, edm_loss
from ._pretrained import save_denoiser
from ._sampler import edm_sampler
from ._training import images_to_tensor, train_denoiser
from ._unet import SmallUNet

__all__ = ["main", "evaluate_denoiser", "save_image_grid"]

EVAL_SEED = 12345
EVAL_SIGMAS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)


@torch.no_grad()
def evaluate_denoiser(net, images, sigmas=EVAL_SIGMAS, seed=EVAL_SEED, batch_size=512):
    """Fixed-seed denoising quality of a raw network on images.

    Parameters
    ----------
    net : torch.nn.Module
        Raw EDM network ``F``.
    images : array-like of shape (n, C, H, W)
        Clean images in [0, 1].
    sigmas : sequence of float, default=EVAL_SIGMAS
        Noise levels for the per-sigma denoising error.
    seed : int, default=12345
        Seed of the evaluation noise (fixed, so evaluations are comparable).
    batch_size : int, default=512
        Images per network call.

    Returns
    -------
    result : dict
        ``"edm_loss"``: the EDM training loss (log-normal sigma) on all images;
        ``"mse"``: ``{sigma: mean squared error of D(x; sigma) in [-1, 1] units}``
        (the identity denoiser would score ``sigma^2``).
    """
    x_all = images_to_tensor(images)
    device = next(net.parameters()).device
    denoiser = EDMPrecond(net).eval()
    generator = torch.Generator().manual_seed(seed)
    total = 0.0
    for start in range(0, x_all.shape[0], batch_size):
        x = x_all[start : start + batch_size].to(device)
        total += edm_loss(denoiser, x, generator=generator).item() * x.shape[0]
    result = {"edm_loss": total / x_all.shape[0], "mse": {}}
    for sigma in sigmas:
        sq = 0.0
        for start in range(0, x_all.shape[0], batch_size):
            x = x_all[start : start + batch_size]
            noisy = (x + sigma * torch.randn(tuple(x.shape), generator=generator)).to(device)
            sq += (denoiser(noisy, sigma).cpu() - x).square().sum().item()
        result["mse"][float(sigma)] = sq / x_all.numel()
    return result


def save_image_grid(images, path, n_cols=16, scale=4):
    """Save images in [0, 1] of shape (n, C, H, W) as one PNG grid (needs Pillow).

    Parameters
    ----------
    images : ndarray of shape (n, C, H, W)
        Images in [0, 1]; C is 1 or 3.
    path : str or Path
        Output PNG.
    n_cols : int, default=16
        Images per row.
    scale : int, default=4
        Nearest-neighbour magnification.
    """
    from PIL import Image

    images = np.asarray(images, dtype=np.float32)
    n, c, h, w = images.shape
    n_rows = -(-n // n_cols)
    grid = np.ones((c, n_rows * (h + 1) + 1, n_cols * (w + 1) + 1), dtype=np.float32) * 0.5
    for i, img in enumerate(images):
        r, col = divmod(i, n_cols)
        grid[:, 1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + col * (w + 1) : 1 + col * (w + 1) + w] = img
    grid = np.kron(grid, np.ones((1, scale, scale), dtype=np.float32))
    pixels = (np.clip(grid, 0, 1) * 255).round().astype(np.uint8)
    Image.fromarray(pixels[0] if c == 1 else pixels.transpose(1, 2, 0)).save(path)


def _parser():
    p = argparse.ArgumentParser(
        prog="python -m skicr.models.train",
        description="Train skicr's small EDM denoiser on sklearn's digits and save "
        "its EMA weights (a file load_denoiser() reads).",
    )
    p.add_argument("--steps", type=int, default=3000, help="optimizer steps (default 3000)")
    p.add_argument("--batch-size", type=int, default=128, help="images per step (default 128)")
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (default 2e-3)")
    p.add_argument("--ema-decay", type=float, default=0.999, help="EMA decay (default 0.999)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    p.add_argument("--size", type=int, default=16, help="image size (default 16)")
    p.add_argument(
        "--n-images", type=int, default=None,
        help="train on the first N digits only (default: all 1797)",
    )
    p.add_argument(
        "--max-shift", type=int, default=0,
        help="random integer translation augmentation in pixels (default 0: none)",
    )
    p.add_argument("--channels", type=int, nargs=2, default=[32, 64], metavar=("C0", "C1"))
    p.add_argument("--mid-channels", type=int, default=96)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--device", default=None, help="torch device (default cpu)")
    p.add_argument(
        "--eval-every", type=int, default=500,
        help="steps between fixed-seed evaluations of the EMA network (default 500)",
    )
    p.add_argument(
        "--float16", action="store_true", help="store the weights as float16 (half the file)"
    )
    p.add_argument(
        "--samples", default=None, metavar="PNG",
        help="also draw 128 samples with the Heun sampler (seed 0) and save a grid here",
    )
    p.add_argument("--out", default="denoiser.pt", help="output weights file (default denoiser.pt)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


# long (~90 lines): the training script's argument list and its run, one linear story read
# top to bottom; splitting it would scatter the options from where they are used
def main(argv=None):
    """Command-line entry point; returns the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    if args.eval_every < 1:
        parser.error("--eval-every must be >= 1")
    if args.n_images is not None and args.n_images < 1:
        parser.error("--n-images must be >= 1")
    torch.set_num_threads(args.threads)

    images = load_digits_images(args.size, return_y=False)
    if args.n_images is not None:
        images = images[: args.n_images]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        net = SmallUNet(
            in_channels=1,
            channels=tuple(args.channels),
            mid_channels=args.mid_channels,
            image_size=args.size,
        )
    n_params = sum(p.numel() for p in net.parameters())
    print(f"SmallUNet: {n_params:,} parameters; {len(images)} images of {args.size}x{args.size}")

    curve = []
    start = time.perf_counter()

    def log_eval(step, ema_net):
        t0 = time.perf_counter()
        loss = evaluate_denoiser(ema_net, images, sigmas=())["edm_loss"]
        curve.append({"step": step, "ema_eval_loss": loss, "seconds": t0 - start})
        print(f"  step {step:6d}  EMA eval loss {loss:.4f}  ({t0 - start:.0f} s)", file=sys.stderr)

    try:
        result = train_denoiser(
            images,
            n_steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            ema_decay=args.ema_decay,
            seed=args.seed,
            net=net,
            max_shift=args.max_shift,
            callback=log_eval,
            callback_every=args.eval_every,
            progress=not args.no_progress,
            device=args.device,
        )
    except ValueError as exc:
        parser.error(str(exc))
    seconds = time.perf_counter() - start
    losses = result.history["loss"]
    final = evaluate_denoiser(result.ema_net, images)
    train_curve = [
        {"step": s, "train_loss_mean": float(np.mean(losses[max(0, s - 100) : s]))}
        for s in range(100, len(losses) + 1, 100)
    ]
    metadata = {
        "command": "python -m skicr.models.train " + shlex.join(sys.argv[1:] if argv is None else argv),
        "dataset": f"sklearn.datasets.load_digits, {len(images)} images, bicubic to {args.size}x{args.size}",
        "seed": args.seed,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "ema_decay": args.ema_decay,
        "max_shift": args.max_shift,
        "threads": args.threads,
        "n_parameters": n_params,
        "train_seconds": seconds,
        "torch_version": str(torch.__version__),
        "platform": platform.platform(),
        "train_loss_last100": float(np.mean(losses[-100:])),
        "ema_eval_loss": final["edm_loss"],
        "ema_eval_curve": curve,
        "train_curve": train_curve,
        "denoising_mse": {str(k): v for k, v in final["mse"].items()},
    }
    path = save_denoiser(
        result.ema_net, args.out, metadata, dtype=torch.float16 if args.float16 else torch.float32
    )
    print(f"trained {args.steps} steps in {seconds:.0f} s; train loss (last 100 steps) "
          f"{metadata['train_loss_last100']:.4f}; EMA eval loss {final['edm_loss']:.4f}")
    print("denoising MSE of D(x; sigma) (identity would be sigma^2):")
    for sigma, mse in final["mse"].items():
        print(f"  sigma {sigma:6.2f}: {mse:.5f}")
    print(f"saved {path} ({path.stat().st_size / 1e6:.2f} MB)")
    if args.samples:
        samples = edm_sampler(result.ema_net, 128, seed=0, progress=not args.no_progress)
        save_image_grid(samples, args.samples)
        print(f"saved samples to {args.samples}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
