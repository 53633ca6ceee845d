"""Loading a diffusers checkpoint folder as an adapter."""

from pathlib import Path

from ..._utils.serialization import read_torch_file
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
        If ``path`` does not exist.
    ValueError
        If ``path`` is a file (a skicr weights file: use
        :func:`skicr.models.load_denoiser`), a folder without a readable
        ``config.json``, a saved model class that is not supported, or a
        folder diffusers cannot load (one line with its reason).
    ImportError
        If diffusers is not installed (with the command that installs it).
    """
    path = Path(path)
    if path.is_file():
        raise ValueError(_file_instead_of_folder(path))
    if not path.is_dir():
        raise FileNotFoundError(
            f"{str(path)!r} is not a directory. Download a checkpoint first, e.g. "
            "`huggingface-cli download google/ddpm-cifar10-32 --local-dir ddpm-cifar10-32`."
        )
    class_name = _saved_class(path)
    if class_name not in ("UNet2DModel", "DiTTransformer2DModel"):
        raise ValueError(
            f"Cannot load {str(path)!r}: saved model class {class_name!r} is not one of "
            f"{sorted(_SUPPORTED_CLASSES)}. Load the module yourself and wrap it in "
            "EDMBackbone, FlowBackbone or CallableBackbone."
        )
    adapter = UNet2DBackbone if class_name == "UNet2DModel" else DiTBackbone
    try:
        backbone = adapter(path, scheduler=scheduler)
    except ImportError as exc:
        if "diffusers" not in f"{exc.name} {exc}":
            raise
        raise ImportError(
            f"Loading the diffusers model in {str(path)!r} needs diffusers, which is not "
            "installed: pip install 'skicr[diffusers]'."
        ) from exc
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RuntimeError) as exc:
        reason = " ".join(str(exc).split())[:300]  # diffusers' messages span lines
        raise ValueError(
            f"Could not load the diffusers {class_name} in {str(path)!r}: {reason}"
        ) from exc
    if device is not None:
        backbone.to(device)
    return backbone


def _config(path):
    """A diffusers json file as a dict, with one-line errors."""
    try:
        config = _read_json(path)
    except ValueError as exc:  # json.JSONDecodeError and bad encodings
        raise ValueError(f"{str(path)!r} is not valid JSON ({exc}).") from None
    if not isinstance(config, dict):
        raise ValueError(f"{str(path)!r} holds a {type(config).__name__}, not a JSON object.")
    return config


def _saved_class(path):
    """The model class a pipeline or model folder saved (``_class_name``)."""
    if (path / "model_index.json").is_file():
        index = _config(path / "model_index.json")
        for name, component in _SUPPORTED_CLASSES.items():
            if index.get(component) and (path / component / "config.json").is_file():
                return name
    if (path / "config.json").is_file():
        return _config(path / "config.json").get("_class_name")
    for component in _SUPPORTED_CLASSES.values():
        if (path / component / "config.json").is_file():
            return _config(path / component / "config.json").get("_class_name")
    raise ValueError(
        f"{str(path)!r} is not a diffusers model folder: it has no config.json (nor a "
        f"model_index.json with {' or '.join(f'{c}/' for c in _SUPPORTED_CLASSES.values())})."
    )


def _file_instead_of_folder(path):
    """What a file given as a backbone is, and what to do with it."""
    try:
        payload = read_torch_file(path)
    except ValueError:
        payload = None
    if isinstance(payload, dict) and payload.get("format") == "skicr.SmallUNet":
        return (
            f"{str(path)!r} is a skicr weights file: load it with "
            "skicr.models.load_denoiser(path) and pass the network, "
            "FeatureExtractor(load_denoiser(path), ...)."
        )
    return (
        f"{str(path)!r} is a file: a backbone given by path must be a local diffusers model "
        "folder (config.json and weights). Load other networks yourself and pass the module "
        "(skicr weights files: skicr.models.load_denoiser)."
    )
