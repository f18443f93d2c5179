"""Python API: ``load_model()`` and ``restore()``.

>>> import anyrestore
>>> out = anyrestore.restore("photo.jpg")                # (3, H, W) float tensor in [0, 1]
>>> arr = anyrestore.restore(uint8_hwc_array, tile=256)  # uint8 (H, W, 3) array back
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from anyrestore.errors import AnyRestoreError, UnknownModelError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SAMPLES_DIR = Path(__file__).resolve().parent / "samples"
_CACHE: dict[tuple[str, str, int | None], nn.Module] = {}


class InputTypeError(AnyRestoreError, TypeError):
    """``restore()`` was given something that is not an image path, array or tensor."""


def default_model_spec() -> str:
    """The preset flagged ``default=True`` whose weights are bundled (``anyrestore/weights/<name>.safetensors``),
    else the weight-free ``classical`` baseline."""
    from anyrestore.archs.registry import list_presets

    for preset in list_presets():
        if preset.default and (WEIGHTS_DIR / f"{preset.name}.safetensors").is_file():
            return preset.name
    return "classical"


def load_model(spec: str | os.PathLike | None = None, *, device: str | torch.device | None = None,
               trust: bool = False) -> nn.Module:
    """Load a restoration model by name or file, in eval mode on ``device`` (auto: cuda, mps, cpu).

    ``spec`` is resolved in this order:

    1. ``None`` or ``"default"`` -> :func:`default_model_spec` (the bundled trained default, else ``classical``);
    2. an existing file -> :func:`anyrestore.checkpoints.load_model` (safetensors, BasicSR ``.pth``, Lightning
       ``.ckpt``... read without executing pickled code);
    3. a name with a bundled file ``anyrestore/weights/<name>.safetensors`` -> that file;
    4. a registered preset that needs no weights (zero parameters, e.g. ``classical``) -> built directly.

    ``trust=True`` allows full unpickling of a checkpoint file the caller vouches for (see
    :func:`anyrestore.checkpoints.read_checkpoint`); never needed for plain weight files.

    Raises:
        UnknownModelError: unknown name, missing file, or a trainable preset without bundled weights.
    """
    from anyrestore.inference.predictor import select_device

    dev = select_device(device)
    spec = default_model_spec() if spec in (None, "default") else spec
    model = _resolve(spec, trust=trust)
    return model.to(dev).eval()


def restore(
    image,
    *,
    model: nn.Module | str | os.PathLike | None = None,
    tile: int | None = None,
    overlap: int = 32,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    fast: bool | None = None,
    channels_last: bool | None = None,
    local_only: bool = False,
    keep_exposure: bool = False,
):
    """Restore one image (or a batch of tensors) and return it in the kind it was given.

    Args:
        image: one of
            * a path (str or Path) -> returns a float32 (3, H, W) tensor in [0, 1] (gray files come back with 3
              equal channels; alpha is dropped: use :mod:`anyrestore.io` to keep it);
            * a NumPy array (H, W, 3), (H, W, 4) RGBA or (H, W) gray, dtype uint8, uint16 or float in [0, 1]
              -> an array of the same shape and dtype (alpha passed through unchanged);
            * a torch tensor (C, H, W) or (B, C, H, W) in [0, 1] with C in {1, 3} -> a tensor of the same shape,
              dtype and device.
        model: an ``nn.Module``, or a spec for :func:`load_model` (None: the default model).
        tile: None (auto), 0 (whole image) or the tile size; overlap: tile overlap in pixels.
        device: ``auto``/None, ``cpu``, ``cuda``, ``mps``. precision: ``fp32``, ``fp16`` or ``bf16``.
        fast: None (default): the exact in-layer fast paths measured fastest on the device; True: all of them;
            False: the plain official formulas. channels_last: run the model in channels-last memory format (None:
            on for CPU). See :class:`~anyrestore.inference.Predictor`.
        local_only: skip the model's whole-image stages (the default model's JPEG projection, coarse haze pass,
            colour-noise smoothing, motion deblurring, sharpening and exposure curve, which brightens photos it
            judges under-exposed).
        keep_exposure: run those stages without the exposure curve: a genuinely dark scene (night, low-key) stays
            as dark as it is and still gets every other stage.

    Raises:
        InputTypeError, ImageReadError, UnknownModelError, ConfigError.
    """
    from anyrestore.inference import Predictor

    net = model if isinstance(model, nn.Module) else _cached_model(model, device)
    predictor = Predictor(net, device=device, precision=precision, tile=tile, overlap=overlap, fast=fast,
                          channels_last=channels_last, global_stage=not local_only, keep_exposure=keep_exposure)

    if isinstance(image, (str, os.PathLike)):
        from anyrestore.io import read_image

        return predictor(read_image(image))
    if isinstance(image, torch.Tensor):
        return _restore_tensor(predictor, image)
    if isinstance(image, np.ndarray):
        return _restore_array(predictor, image)
    raise InputTypeError(f"restore() takes a path, a NumPy array or a torch tensor, got {type(image).__name__}")


def _restore_tensor(predictor, image: torch.Tensor) -> torch.Tensor:
    if image.ndim not in (3, 4) or image.shape[-3] not in (1, 3) or not image.is_floating_point():
        raise InputTypeError(f"expected a float tensor (C,H,W) or (B,C,H,W) in [0,1] with C=1 or 3, got "
                             f"{tuple(image.shape)} {image.dtype}")
    x = image.float()
    gray = x.shape[-3] == 1
    if gray:
        x = x.expand(*x.shape[:-3], 3, *x.shape[-2:])
    y = predictor(x)
    if gray:
        y = y.mean(dim=-3, keepdim=True)
    return y.to(device=image.device, dtype=image.dtype)


def _restore_array(predictor, image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        chw = image[None]
    elif image.ndim == 3 and image.shape[2] in (1, 3, 4):
        chw = image.transpose(2, 0, 1)
    else:
        raise InputTypeError(f"expected an (H,W), (H,W,3) or (H,W,4) array, got shape {image.shape}")
    if image.dtype == np.uint8:
        peak = 255.0
    elif image.dtype == np.uint16:
        peak = 65535.0
    elif np.issubdtype(image.dtype, np.floating):
        peak = 1.0
    else:
        raise InputTypeError(f"expected a uint8, uint16 or float array, got {image.dtype}")
    x = torch.from_numpy(np.ascontiguousarray(chw).astype(np.float32) / peak).clamp(0, 1)
    alpha = None
    if x.shape[0] == 4:
        x, alpha = x[:3], chw[3:]
    gray = x.shape[0] == 1
    y = predictor(x.expand(3, -1, -1) if gray else x)
    if gray:
        y = y.mean(dim=0, keepdim=True)
    out = y.numpy() * peak
    if peak != 1.0:
        out = np.round(out)
    out = out.astype(image.dtype)
    if alpha is not None:
        out = np.concatenate([out, alpha], axis=0)
    out = out.transpose(1, 2, 0)
    return out[:, :, 0] if image.ndim == 2 else np.ascontiguousarray(out)


def _cached_model(spec, device) -> nn.Module:
    from anyrestore.inference.predictor import select_device

    spec = default_model_spec() if spec in (None, "default") else spec
    path = Path(spec)
    # a file rewritten since it was cached (e.g. a new training checkpoint) must be read again
    version = path.stat().st_mtime_ns if path.is_file() else None
    key = (str(spec), str(select_device(device)), version)
    if key not in _CACHE:
        if len(_CACHE) >= 2:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = load_model(spec, device=device)
    return _CACHE[key]


def _resolve(spec: str | os.PathLike, *, trust: bool = False) -> nn.Module:
    from anyrestore.archs.registry import build_model, get_preset

    path = Path(spec)
    if path.is_file():
        from anyrestore.checkpoints import load_model as load_checkpoint_model

        return load_checkpoint_model(path, trust=trust)
    name = str(spec)
    bundled = WEIGHTS_DIR / f"{name}.safetensors"
    if bundled.is_file():
        from anyrestore.checkpoints import load_model as load_checkpoint_model

        return load_checkpoint_model(bundled)
    if path.suffix or os.sep in name or "/" in name:
        raise UnknownModelError(f"model file not found: {spec}")
    get_preset(name)  # raises UnknownModelError with close matches
    if preset_parameter_count(name) > 0:
        raise UnknownModelError(f"preset {name} has no bundled weights; pass a checkpoint path")
    return build_model(name)


def preset_parameter_count(name: str) -> int:
    """Number of parameters of a registered preset, built on the ``meta`` device (no memory, no weights)."""
    from anyrestore.archs.registry import build_model

    with torch.device("meta"):
        model = build_model(name)
    return sum(p.numel() for p in model.parameters())
