"""Reading diffusers checkpoint folders from disk (nothing is downloaded)."""

import json

__all__ = []

# saved model class -> its folder in a pipeline
_SUPPORTED_CLASSES = {"UNet2DModel": "unet", "DiTTransformer2DModel": "transformer"}


def _is_diffusers(obj, class_name):
    """isinstance check that imports diffusers only when the object comes from it."""
    if not type(obj).__module__.startswith("diffusers"):
        return False
    import diffusers

    return isinstance(obj, getattr(diffusers, class_name))


def _read_json(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _scheduler_dir(path):
    """(directory, subfolder) of a saved scheduler config next to a checkpoint, or None."""
    if (path / "scheduler" / "scheduler_config.json").is_file():
        return path, "scheduler"
    if (path / "scheduler_config.json").is_file():
        return path, None
    return None


def _load_scheduler(path):
    from diffusers import DDPMScheduler

    found = _scheduler_dir(path)
    if found is None:
        raise FileNotFoundError(
            f"No scheduler_config.json in {str(path)!r} or its scheduler/ folder."
        )
    directory, subfolder = found
    config = DDPMScheduler.load_config(str(directory), subfolder=subfolder, local_files_only=True)
    # any scheduler's betas config (DDPM, DDIM, DPM-Solver...) gives the training alphas_cumprod
    return DDPMScheduler.from_config(config)


def _load_diffusers_model(path, class_name, subfolder):
    import diffusers

    if not path.is_dir():
        raise FileNotFoundError(
            f"{str(path)!r} is not a directory. Download a checkpoint first, e.g. "
            "`huggingface-cli download google/ddpm-cifar10-32 --local-dir ddpm-cifar10-32`, "
            "and pass that directory."
        )
    use_subfolder = (path / subfolder / "config.json").is_file()
    if not use_subfolder and not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"No config.json in {str(path)!r} or {str(path / subfolder)!r}: not a saved "
            f"diffusers {class_name}."
        )
    cls = getattr(diffusers, class_name)
    from diffusers.utils import logging as diffusers_logging

    # a failed load is raised as one error; diffusers would also log (as errors) each weights
    # file it tried
    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity(diffusers_logging.CRITICAL)
    try:
        return cls.from_pretrained(
            str(path), subfolder=subfolder if use_subfolder else None, local_files_only=True
        )
    finally:
        diffusers_logging.set_verbosity(verbosity)
