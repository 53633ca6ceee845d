"""Loading a diffusers checkpoint folder as an adapter."""

from pathlib import Path

from ._diffusers import _SUPPORTED_CLASSES, _read_json
from ._dit import DiTBackbone
from ._unet2d import UNet2DBackbone

__all__ = ["load_backbone"]


def load_backbone(path, *, scheduler=None, device=None):
    """Load a diffusers checkpoint directory as a backbone adapter.

    Understands a pipeline folder (``model_index.json`` with ``unet/`` or
    ``transformer/``, optional ``vae/`` and ``scheduler/``) and a bare model
    folder (``config.json`` + weights, optional ``scheduler_config.json``).
    Nothing is downloaded.

    Parameters
    ----------
    path : str or os.PathLike
        Local directory.
    scheduler : scheduler, path, array or None, default=None
        Overrides the saved noise schedule.
    device : str or torch.device or None, default=None
        Where to put the modules (CPU when None).

    Returns
    -------
    backbone : UNet2DBackbone or DiTBackbone

    Raises
    ------
    FileNotFoundError
        If ``path`` is not a checkpoint directory.
    ValueError
        If the saved model class is not supported.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(
            f"{str(path)!r} is not a directory. Download a checkpoint first, e.g. "
            "`huggingface-cli download google/ddpm-cifar10-32 --local-dir ddpm-cifar10-32`."
        )
    class_name = None
    if (path / "model_index.json").is_file():
        index = _read_json(path / "model_index.json")
        for name, component in _SUPPORTED_CLASSES.items():
            entry = index.get(component)
            if entry and (path / component / "config.json").is_file():
                class_name = name
                break
    if class_name is None and (path / "config.json").is_file():
        class_name = _read_json(path / "config.json").get("_class_name")
    if class_name is None:
        for name, component in _SUPPORTED_CLASSES.items():
            if (path / component / "config.json").is_file():
                class_name = _read_json(path / component / "config.json").get("_class_name")
                break
    if class_name == "UNet2DModel":
        backbone = UNet2DBackbone(path, scheduler=scheduler)
    elif class_name == "DiTTransformer2DModel":
        backbone = DiTBackbone(path, scheduler=scheduler)
    else:
        raise ValueError(
            f"Cannot load {str(path)!r}: saved model class {class_name!r} is not one of "
            f"{sorted(_SUPPORTED_CLASSES)}. Load the module yourself and wrap it in "
            "EDMBackbone, FlowBackbone or CallableBackbone."
        )
    if device is not None:
        backbone.to(device)
    return backbone
