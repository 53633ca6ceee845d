"""
Monitoring a diffusers training loop run with Hugging Face accelerate
=====================================================================

The shape of diffusers' ``train_unconditional.py``: an ``Accelerator``, a
``UNet2DModel`` trained on the DDPM noise-prediction loss with a
``DDPMScheduler``, an ``EMAModel`` of its weights. Every ``--icr_every`` steps
the main process copies the EMA weights into a separate network and calls
:class:`~skicr.monitoring.ICRMonitor` on it: ICR on fixed views of training
images and, through a diffusers scheduler's sampler
(:class:`~skicr.monitoring.SchedulerSampler`, DDIM from the training
scheduler's config), the memorization ratio. The numbers go to
``accelerator.log`` as a plain dict (TensorBoard, W&B... whichever tracker
``--report_to`` names), and when the monitor's early-stopping rule fires the
main process sets accelerate's trigger, so every process leaves the loop at
the same step.

This example is shown, not run, when the documentation is built (its file name
does not start with ``plot_``); ``tests/test_examples_accelerate.py`` runs it
for a few CPU steps. Run it yourself with::

    pip install "skicr[diffusers]" accelerate
    accelerate launch examples/accelerate_training_loop.py --n_images 128 \\
        --max_train_steps 20000 --icr_every 250
"""

# %%
# The script
# ----------
import argparse
import copy

import numpy as np
import torch
import torch.nn.functional as F


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="diffusers training loop with an ICR monitor")
    parser.add_argument("--n_images", type=int, default=128, help="training digits (limited data)")
    parser.add_argument("--resolution", type=int, default=16)
    parser.add_argument("--train_batch_size", type=int, default=64)
    parser.add_argument("--max_train_steps", type=int, default=20000)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--ema_decay", type=float, default=0.999)
    parser.add_argument("--icr_every", type=int, default=250, help="monitor every k steps")
    parser.add_argument("--icr_images", type=int, default=256)
    parser.add_argument("--memorization_samples", type=int, default=64,
                        help="samples per evaluation for the memorization ratio (0: none)")
    parser.add_argument("--sampler_steps", type=int, default=20)
    parser.add_argument("--report_to", default=None, help="an accelerate tracker (tensorboard...)")
    parser.add_argument("--output_dir", default="ddpm-digits-monitored")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    from accelerate import Accelerator
    from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
    from diffusers.training_utils import EMAModel

    from skicr.datasets import load_digits_images
    from skicr.extraction import UNet2DBackbone
    from skicr.monitoring import ICRMonitor, SchedulerSampler

    args = parse_args(argv)
    accelerator = Accelerator(log_with=args.report_to, project_dir=args.output_dir)
    if args.report_to:
        accelerator.init_trackers("skicr-icr-monitor", config=vars(args))
    torch.manual_seed(args.seed)

    images = load_digits_images(args.resolution, return_y=False)
    images = images[np.random.default_rng(args.seed).permutation(len(images))[:args.n_images]]
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(images)), batch_size=args.train_batch_size,
        shuffle=True, drop_last=len(images) >= args.train_batch_size)

    model = UNet2DModel(sample_size=args.resolution, in_channels=1, out_channels=1,
                        layers_per_block=1, block_out_channels=(32, 64), norm_num_groups=8,
                        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                        up_block_types=("AttnUpBlock2D", "UpBlock2D"))
    noise_scheduler = DDPMScheduler(num_train_timesteps=1000)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    ema = EMAModel(accelerator.unwrap_model(model).parameters(), decay=args.ema_decay)

    # the monitor: fixed views of training images at sigma 0.2; DDIM samples (same noise at
    # every evaluation) against the training set; the early-stopping rule chosen by the study
    sampler = None
    if args.memorization_samples:
        sampler = SchedulerSampler(DDIMScheduler.from_config(noise_scheduler.config),
                                   args.memorization_samples, images.shape[1:],
                                   n_steps=args.sampler_steps, seed=args.seed)
    monitor = ICRMonitor(images[:args.icr_images], sigma=0.2, n_views=4, random_state=args.seed,
                         sampler=sampler, training_images=images, early_stopping=True)
    ema_model = copy.deepcopy(accelerator.unwrap_model(model)).eval()

    global_step = 0
    while global_step < args.max_train_steps:
        for (clean,) in loader:
            clean = clean * 2 - 1
            noise = torch.randn_like(clean)
            timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps,
                                      (clean.shape[0],), device=clean.device)
            noisy = noise_scheduler.add_noise(clean, noise, timesteps)
            with accelerator.accumulate(model):
                loss = F.mse_loss(model(noisy, timesteps).sample, noise)
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad()
            if accelerator.sync_gradients:
                ema.step(accelerator.unwrap_model(model).parameters())
                global_step += 1
                logs = {"loss": loss.detach().item(), "step": global_step}
                if global_step % args.icr_every == 0 and accelerator.is_main_process:
                    ema.copy_to(ema_model.parameters())
                    # the adapter reads sigma -> timestep from the training schedule
                    stop = monitor(global_step, UNet2DBackbone(ema_model,
                                                               scheduler=noise_scheduler))
                    row = monitor.history_.iloc[-1]
                    logs.update({f"icr/{key}": float(row[key]) for key in
                                 ("icr", "trace_s", "trace_xi", "memorization_ratio")
                                 if key in row})
                    if stop:
                        accelerator.set_trigger()
                accelerator.log(logs, step=global_step)
                if accelerator.check_trigger():  # any process's trigger stops all of them
                    accelerator.print(f"ICR signal at step {global_step}: stopping; keep the "
                                      f"checkpoint of step {monitor.early_stopping_checkpoint_}")
                    global_step = args.max_train_steps
                if global_step >= args.max_train_steps:
                    break
    accelerator.end_training()
    return monitor


if __name__ == "__main__":
    main()
