"""Image files <-> float tensors.

Reading (:func:`read_image`, :func:`read_image_info`):

* PNG, JPEG, BMP, TIFF and WebP (whatever OpenCV decodes), 8-bit and 16-bit integer samples, 32-bit float TIFF.
* Result: ``torch.float32`` tensor of shape (C, H, W), RGB channel order, values in [0, 1]
  (8-bit / 255, 16-bit / 65535, float clipped).
* Grayscale files are expanded to 3 identical channels by default (every model in the zoo is RGB);
  ``keep_gray=True`` keeps one channel.
* An alpha channel is split off and returned in :class:`ImageInfo` (``alpha``, (1, H, W) in [0, 1]); pass the info
  to :func:`write_image` to re-attach it.
* The EXIF orientation tag (if any) is applied, so the tensor is upright as a photo viewer shows it; the tag is not
  written back.
* A missing, empty, truncated, corrupt or non-image file raises :class:`~anyrestore.errors.ImageReadError` whose
  one-line message names the file.

Writing (:func:`write_image`): the format follows the suffix; the bit depth defaults to the source's
(``info.bit_depth``) or 8. JPEG, BMP and WebP hold only 8 bits, so 16-bit data is written as 8-bit there.
A gray source (``info.gray``) is written back as one channel (the mean of the RGB channels). The file is encoded
in memory, written to a temporary file in the target folder and renamed into place: a failure never leaves a
partial output.
"""
from __future__ import annotations

import io
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from anyrestore.errors import AnyRestoreError, ImageReadError

READ_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
_EIGHT_BIT_ONLY = (".jpg", ".jpeg", ".bmp", ".webp")
_EXIF_ORIENTATION = 0x0112


class ImageWriteError(AnyRestoreError):
    """An image cannot be written (unsupported suffix or bit depth, bad array, unwritable folder)."""


@dataclass(frozen=True)
class ImageInfo:
    """What :func:`write_image` needs to give an output the look of its source file.

    Attributes:
        bit_depth: 8 or 16 (32-bit float sources report 16: the closest integer depth for writing).
        gray: the file had one colour channel (possibly plus alpha).
        alpha: the alpha channel, (1, H, W) float32 in [0, 1], or None.
        orientation: the EXIF orientation that was applied (1 = none).
    """

    bit_depth: int
    gray: bool
    alpha: torch.Tensor | None = None
    orientation: int = 1


def is_image_file(path: str | os.PathLike) -> bool:
    """True when the suffix is one :func:`read_image` accepts (case-insensitive)."""
    return Path(path).suffix.lower() in READ_SUFFIXES


def read_image(path: str | os.PathLike, *, keep_gray: bool = False) -> torch.Tensor:
    """Read an image file as a float32 (C, H, W) RGB tensor in [0, 1] (alpha dropped; see module docstring)."""
    return read_image_info(path, keep_gray=keep_gray)[0]


def read_image_info(path: str | os.PathLike, *, keep_gray: bool = False) -> tuple[torch.Tensor, ImageInfo]:
    """Read an image file; return the tensor of :func:`read_image` and the :class:`ImageInfo` of the source.

    Raises:
        ImageReadError: the file is missing, a folder, empty, truncated, corrupt or not an image.
    """
    path = Path(path)
    data = _read_bytes(path)
    array = _decode(data)
    if array is None or array.size == 0:
        raise ImageReadError(f"cannot decode {path}: not an image, or the file is truncated or corrupt")

    if array.dtype == np.uint8:
        bit_depth, scale = 8, 255.0
    elif array.dtype == np.uint16:
        bit_depth, scale = 16, 65535.0
    elif array.dtype in (np.float32, np.float64):
        bit_depth, scale = 16, 1.0
    else:
        raise ImageReadError(f"unsupported sample type {array.dtype} in {path} (expected 8/16-bit or float)")

    orientation = _exif_orientation(data)
    array = _apply_orientation(array, orientation)
    if array.ndim == 2:
        array = array[:, :, None]
    channels = array.shape[2]
    if channels not in (1, 2, 3, 4):
        raise ImageReadError(f"unsupported channel count {channels} in {path}")

    values = np.clip(array.astype(np.float32) / scale, 0.0, 1.0)
    alpha = None
    if channels in (2, 4):  # gray+alpha or BGRA
        alpha = torch.from_numpy(np.ascontiguousarray(values[:, :, -1]))[None]
        values = values[:, :, :-1]
    gray = values.shape[2] == 1
    if not gray:
        values = values[:, :, ::-1]  # BGR -> RGB
    elif not keep_gray:
        values = np.repeat(values, 3, axis=2)
    tensor = torch.from_numpy(np.ascontiguousarray(values.transpose(2, 0, 1)))
    return tensor, ImageInfo(bit_depth=bit_depth, gray=gray, alpha=alpha, orientation=orientation)


def write_image(
    path: str | os.PathLike,
    image: torch.Tensor | np.ndarray,
    *,
    info: ImageInfo | None = None,
    bit_depth: int | None = None,
    alpha: torch.Tensor | None = None,
) -> Path:
    """Write ``image`` to ``path`` atomically; the format follows the suffix.

    Args:
        image: float tensor (C, H, W) or (1, C, H, W) in [0, 1] with C in {1, 3}, or a NumPy HWC/HW array
            (uint8, uint16, or float in [0, 1]). Values are clipped and rounded.
        info: the source's :class:`ImageInfo`; supplies the default bit depth, gray output and alpha.
        bit_depth: 8 or 16; overrides ``info``. Default: ``info.bit_depth`` or 8.
        alpha: (1, H, W) or (H, W) in [0, 1]; overrides ``info.alpha``. Resized if the image size differs.

    Returns:
        The written path.

    Raises:
        ImageWriteError: unsupported suffix or bit depth, or an image of the wrong shape.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in READ_SUFFIXES:
        raise ImageWriteError(f"cannot write {path}: unsupported suffix {suffix or '(none)'}; use one of {', '.join(READ_SUFFIXES)}")
    depth = bit_depth or (info.bit_depth if info is not None else 8)
    if depth not in (8, 16):
        raise ImageWriteError(f"cannot write {path}: bit depth must be 8 or 16, got {depth}")
    if suffix in _EIGHT_BIT_ONLY:
        depth = 8

    values = _to_hwc_float(image, path)
    if info is not None and info.gray and values.shape[2] == 3:
        values = values.mean(axis=2, keepdims=True)
    if values.shape[2] == 3:
        values = values[:, :, ::-1]  # RGB -> BGR for OpenCV
    alpha = alpha if alpha is not None else (info.alpha if info is not None else None)
    if alpha is not None:
        values = np.concatenate([values, _alpha_like(alpha, values.shape[:2])], axis=2)
        if values.shape[2] == 2:  # gray + alpha: OpenCV writes BGRA, not LA
            values = np.concatenate([np.repeat(values[:, :, :1], 3, axis=2), values[:, :, 1:]], axis=2)

    peak = 255.0 if depth == 8 else 65535.0
    dtype = np.uint8 if depth == 8 else np.uint16
    quantised = np.round(np.clip(values, 0.0, 1.0) * peak).astype(dtype)
    if quantised.shape[2] == 1:
        quantised = quantised[:, :, 0]
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if suffix in (".jpg", ".jpeg") else []
    ok, encoded = cv2.imencode(suffix, np.ascontiguousarray(quantised), params)
    if not ok:
        raise ImageWriteError(f"OpenCV could not encode {path} ({quantised.shape}, {quantised.dtype})")
    atomic_write_bytes(path, encoded.tobytes())
    return path


def new_file_mode() -> int:
    """The permissions a plain ``open(path, "w")`` would give a new file: 0o666 less the process umask.
    ``tempfile.mkstemp`` creates its files 0o600, which a rename would carry to the output."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path`` and rename it into place (with the usual permissions
    of a new file, :func:`new_file_mode`)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ImageWriteError(f"cannot write {path}: folder {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise ImageReadError(f"image file not found: {path}")
    if path.is_dir():
        raise ImageReadError(f"expected an image file, got a folder: {path}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageReadError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not data:
        raise ImageReadError(f"image file is empty: {path}")
    return data


def _decode(data: bytes) -> np.ndarray | None:
    # OpenCV logs decoder failures as several stderr lines; the caller reports one clear error instead.
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None
    finally:
        cv2.utils.logging.setLogLevel(level)


def _exif_orientation(data: bytes) -> int:
    """The EXIF orientation tag (1..8), read with Pillow from the header only; 1 when absent or unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as img:
                value = img.getexif().get(_EXIF_ORIENTATION, 1)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return 1
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else 1


def _apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    # EXIF orientations 2..8 as flips / transposes of the stored (row, column) grid.
    if orientation == 2:
        array = array[:, ::-1]
    elif orientation == 3:
        array = array[::-1, ::-1]
    elif orientation == 4:
        array = array[::-1]
    elif orientation == 5:
        array = array.swapaxes(0, 1)
    elif orientation == 6:
        array = np.rot90(array, k=-1)
    elif orientation == 7:
        array = array[::-1, ::-1].swapaxes(0, 1)
    elif orientation == 8:
        array = np.rot90(array, k=1)
    return np.ascontiguousarray(array)


def _to_hwc_float(image: torch.Tensor | np.ndarray, path: Path) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        tensor = image.detach()
        if tensor.ndim == 4 and tensor.shape[0] == 1:
            tensor = tensor[0]
        if tensor.ndim != 3 or tensor.shape[0] not in (1, 3):
            raise ImageWriteError(f"cannot write {path}: expected a (C,H,W) tensor with C in 1 or 3, got {tuple(image.shape)}")
        return tensor.float().cpu().numpy().transpose(1, 2, 0)
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3):
        raise ImageWriteError(f"cannot write {path}: expected an HWC array with 1 or 3 channels, got {array.shape}")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    return array.astype(np.float32)


def _alpha_like(alpha: torch.Tensor | np.ndarray, size: tuple[int, int]) -> np.ndarray:
    a = alpha.detach().float().cpu().numpy() if isinstance(alpha, torch.Tensor) else np.asarray(alpha, np.float32)
    a = a.reshape(a.shape[-2:])
    if a.shape != size:
        a = cv2.resize(a, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    return a[:, :, None].astype(np.float32)
