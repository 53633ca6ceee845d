"""Loading a checkpoint from disk as an adapter: diffusers folders and release files."""

from pathlib import Path

from ._diffusers import _SUPPORTED_CLASSES, _read_json
from ._dit import DiTBackbone
from ._registry import file_reader
from ._unet2d import UNet2DBackbone

__all__ = ["load_backbone"]


def load_backbone(path, arch=None, *, scheduler=None, class_label=None, vae=None,
                  model_kwargs=None, latent_scale=1.0, device=None):
    """Load a checkpoint from disk as a backbone adapter; nothing is downloaded.

    A directory is a diffusers checkpoint: a pipeline folder
    (``model_index.json`` with ``unet/`` or ``transformer/``, optional
    ``vae/`` and ``scheduler/``) or a bare model folder (``config.json`` +
    weights, optional ``scheduler_config.json``). A file is one of:

    - an NVlabs EDM pickle (``edm-cifar10-32x32-uncond-vp.pkl``), read
      without running the code it carries
      (:func:`skicr.models.load_edm_pickle`);
    - a DiT or SiT release state dict (``SiT-XL-2-256x256.pt``) or training
      checkpoint (its ``ema`` weights);
    - a skicr denoiser weights file (:func:`skicr.models.save_denoiser`).

    Parameters
    ----------
    path : str or os.PathLike
        Local directory or file.
    arch : str or None, default=None
        DiT / SiT files: ``"SiT-XL/2"``, ``"DiT-B/4"``... (sizes S, B, L, XL,
        patches 2, 4, 8), or ``"SiT"`` / ``"DiT"`` to read the sizes from the
        file. None reads it from the file name (``SiT-XL-2-256x256.pt``).
    scheduler : scheduler, path, array or None, default=None
        Overrides the noise schedule (diffusers folders).
    class_label : int or None, default=None
        Class to condition on. None is the null class of DiT / SiT; required
        for class-conditional EDM networks (they have no null class).
    vae : diffusers.AutoencoderKL, path or None, default=None
        DiT / SiT files: the encoder from pixels to latents, e.g. a local
        ``sd-vae-ft-ema`` folder. None: the inputs are latents.
    model_kwargs : dict or None, default=None
        DiT / SiT files: constructor arguments overriding those read from the
        file (``num_heads`` for a width that is not a release size).
    latent_scale : float, default=1.0
        DiT / SiT files without ``vae``: inputs in [0, 1] map to the latents
        ``(2 x - 1) * latent_scale``.
    device : str or torch.device or None, default=None
        Where to put the modules (CPU when None).

    Returns
    -------
    backbone : Backbone
        :class:`UNet2DBackbone` or :class:`DiTBackbone` (diffusers),
        :class:`EDMReleaseBackbone`, :class:`SiTReleaseBackbone`,
        :class:`DiTReleaseBackbone` or :class:`EDMBackbone` (skicr weights).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file format or the saved model class is not supported, the
        file does not match ``arch``, a folder has no readable ``config.json``,
        or diffusers cannot load it (one line with its reason).
    ImportError
        If a diffusers folder is given and diffusers is not installed (with
        the command that installs it).

    Examples
    --------
    >>> import skicr
    >>> skicr.load_backbone("SiT-XL-2-256x256.pt", arch="SiT-XL/2")  # doctest: +SKIP
    SiTReleaseBackbone(SiT)
    """
    path = Path(path)
    if path.is_file():
        # the reader registered with register_file_reader (skicr.models' by default)
        return file_reader()(
            path, arch, model_kwargs=model_kwargs, class_label=class_label, vae=vae,
            latent_scale=latent_scale, device=device,
        )
    if not path.is_dir():
        raise FileNotFoundError(
            f"{str(path)!r} is neither a file nor a directory. Download a checkpoint first, "
            "e.g. `huggingface-cli download google/ddpm-cifar10-32 --local-dir ddpm-cifar10-32`."
        )
    if arch is not None or model_kwargs is not None or latent_scale != 1.0:
        raise ValueError(
            "arch, model_kwargs and latent_scale apply to DiT / SiT release files; "
            f"{str(path)!r} is a diffusers folder."
        )
    class_name = _saved_class(path)
    if class_name not in ("UNet2DModel", "DiTTransformer2DModel"):
        raise ValueError(
            f"Cannot load {str(path)!r}: saved model class {class_name!r} is not one of "
            f"{sorted(_SUPPORTED_CLASSES)}. Load the module yourself and wrap it in "
            "EDMBackbone, FlowBackbone or CallableBackbone."
        )
    if class_name == "UNet2DModel" and vae is not None:
        raise ValueError("vae applies to latent models; this folder holds a UNet2DModel.")
    options = dict(scheduler=scheduler, class_label=class_label)
    if class_name == "DiTTransformer2DModel":
        options["vae"] = vae
    adapter = UNet2DBackbone if class_name == "UNet2DModel" else DiTBackbone
    try:
        backbone = adapter(path, **options)
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
