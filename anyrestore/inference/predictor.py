"""Predictor: run any restoration ``nn.Module`` on [0, 1] RGB images of any size.

The Predictor reads the model's :class:`~anyrestore.archs.registry.ModelMeta` (pad multiple, normalisation) and never
branches on architecture names. Per call it normalises, reflect-pads to the pad multiple, runs the model on the
whole image or on overlapping tiles (:mod:`anyrestore.inference.tiling`), crops back, denormalises and clamps.

Tiling modes (``tile`` argument):

* ``None`` (auto): whole image when it is safe, tiles otherwise. On CUDA/MPS the whole image is tried first and
  an out-of-memory error falls back to tiles. On CPU, where running out of memory kills the process instead of
  raising, images above ``max_whole_pixels`` (default 2**19, about 0.5 MP: a 35M-parameter PromptIR needs about
  8 GB of RAM for a whole 1 MP image) are tiled straight away. A model with the attribute
  ``prefer_whole_image = True`` (e.g. one that estimates the degradation globally) always runs whole in auto mode.
  A model with an integer ``whole_image_pixels`` (the default model: 4 MP) sets its own limit, on every device:
  whole up to that many pixels, above it tiles of about that area (a side of its square root) in place of the
  default tile.
  Auto-mode tiles are the default tile shrunk as far as the number of tiles allows (:func:`fitted_tile`).
  An expert that names its own tile (the default model's JPEG expert: ``NAFNet.expert_tile``) always runs in tiles
  of at most that side in auto mode, on any device: near the size it was trained on it restores best.
* ``0``: always the whole image.
* ``N > 0``: tiles of N x N (rounded down to the pad multiple), overlap ``overlap``, blending ``blend``.

Global stage: a model whose ``global_stage`` attribute is a module (e.g. the default model's colour-noise smoothing,
motion deblurring, sharpening and exposure curve, :mod:`anyrestore.archs.chroma_denoise`,
:mod:`anyrestore.archs.motion_deblur`, :mod:`anyrestore.archs.global_sharpen`,
:mod:`anyrestore.archs.tone_curve`) is split in two. Its ``forward_local`` runs on the whole image or tile by tile as
above; then ``global_stage(input, local_output)`` runs once on the whole image in fp32, so every tile gets the same
correction.

On an out-of-memory error in tiled mode the tile is halved (rounded to the pad multiple, floor 64), the image is
restarted, and the smaller tile is remembered for later images.

Speed options (:func:`anyrestore.archs.fastpaths.optimize_model`): ``fast`` switches the exact in-layer fast paths
(fused channel LayerNorm, ``scaled_dot_product_attention``) on or off; ``channels_last`` defaults to on for CPU
(exact, and 1.2-1.8x faster there: benchmarks/results/suite-cpu-*) and off elsewhere (not measured on GPUs yet);
``compile`` is opt-in.
They change the model passed in (switches, memory format) in place.
"""
from __future__ import annotations

import contextlib
import gc
import logging
import math
from typing import Callable

import torch
from torch import nn

from anyrestore.archs.fastpaths import copy_model_attrs, optimize_model, set_device_fast_paths
from anyrestore.archs.jpeg_expert import by_route
from anyrestore.archs.registry import model_meta
from anyrestore.errors import AnyRestoreError, ConfigError
from anyrestore.inference.tiling import BLENDS, fitted_tile, is_out_of_memory, pad_to_multiple, tiled_apply

log = logging.getLogger("anyrestore.inference")

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
MIN_TILE = 64
_ACCUMULATE_ON_CPU_ABOVE = 8_000_000  # pixels; keeps GPU memory for the model on very large images


class InferenceError(AnyRestoreError):
    """Inference cannot proceed (e.g. out of memory even at the smallest tile, bad input tensor)."""


def select_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"`` -> cuda, else mps, else cpu; anything else is checked for availability."""
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"invalid device {device!r}: use auto, cpu, cuda, cuda:N or mps") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available; use --device cpu")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"device {device!r} requested but MPS is not available; use --device cpu")
    return dev


class Predictor:
    """Wrap a restoration model for inference on images of any size.

    Args:
        model: any ``nn.Module`` mapping a normalised (B, C, H, W) batch to an image batch; ``model.meta`` (if
            present) gives the pad multiple and normalisation.
        device: ``"auto"``/None, ``"cpu"``, ``"cuda[:N]"`` or ``"mps"``; the model is moved there.
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"`` (autocast; the output is float32).
        tile: None (auto), 0 (whole image) or the tile size in pixels.
        overlap: overlap between neighbouring tiles in pixels; must be at most half the tile.
        blend: ``"feather"`` (raised-cosine ramps) or ``"mean"`` (uniform average).
        default_tile: tile used when auto mode falls back to tiling (default: the square root of the model's
            ``whole_image_pixels`` when it names one, else 512 on GPU, 256 on CPU).
        max_whole_pixels: in auto mode on CPU, larger images are tiled (unless the model names its own
            ``whole_image_pixels``, see the module).
        progress: optional callback ``progress(done_tiles, total_tiles)``.
        fast: ``None`` (default): the exact in-layer fast paths measured fastest on the device
            (:func:`~anyrestore.archs.fastpaths.set_device_fast_paths`: all of them on CPU, a measured subset on
            CUDA); ``True``: every fast path; ``False``: the plain official formulas. Set on ``model`` in place.
        channels_last: run the model in ``torch.channels_last`` memory format (same values); ``None`` (default) =
            on for CPU, off for other devices.
        compile: wrap the model with ``torch.compile`` (opt-in; each new input shape compiles first).
        global_stage: run the model's whole-image ``global_stage`` when it has one (default True); False runs
            ``forward_local`` alone (for the default model: no colour-noise smoothing, no motion deblurring, no
            sharpening and no exposure correction, so dark photos stay dark).
        keep_exposure: run the whole-image stages without their exposure curves (a stage with
            ``without_exposure()``, as the default model's): a dark scene stays dark, the other stages still run.

    Raises:
        ConfigError: bad option values, an unavailable device, or ``compile=True`` where ``torch.compile`` cannot
            run.

    Call the predictor with a float tensor (C, H, W) or (B, C, H, W) in [0, 1]; it returns a float32 tensor of the
    same rank in [0, 1] on the input's device. :attr:`last_run` describes how the last call ran
    (``mode``, ``tile``, ``overlap``, ``blend``), for metric records.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        device: str | torch.device | None = None,
        precision: str = "fp32",
        tile: int | None = None,
        overlap: int = 32,
        blend: str = "feather",
        default_tile: int | None = None,
        max_whole_pixels: int = 1 << 19,
        progress: Callable[[int, int], None] | None = None,
        fast: bool | None = None,
        channels_last: bool | None = None,
        compile: bool = False,
        global_stage: bool = True,
        keep_exposure: bool = False,
    ) -> None:
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if blend not in BLENDS:
            raise ConfigError(f"blend must be one of {', '.join(BLENDS)}, got {blend!r}")
        if tile is not None and tile < 0:
            raise ConfigError(f"tile must be 0 (whole image) or a positive size, got {tile}")
        if overlap < 0:
            raise ConfigError(f"overlap must be >= 0, got {overlap}")
        if tile and 2 * overlap > tile:
            raise ConfigError(f"overlap {overlap} must be at most half the tile {tile}")
        self.device = select_device(device)
        self.meta = model_meta(model)
        self.prefer_whole_image = bool(getattr(model, "prefer_whole_image", False))
        self.whole_image_pixels: int | None = getattr(model, "whole_image_pixels", None)
        if channels_last is None:
            channels_last = self.device.type == "cpu"
        self.options = {"fast": fast if fast is None else bool(fast), "channels_last": bool(channels_last),
                        "compile": bool(compile)}
        if fast is None:
            set_device_fast_paths(model, self.device, precision)
        model = model.to(self.device)
        stage = getattr(model, "global_stage", None)
        if stage is not None and keep_exposure and hasattr(stage, "without_exposure"):
            stage = stage.without_exposure()
        self.global_stage: nn.Module | None = stage if global_stage else None
        self.model = optimize_model(_TiledPart(model) if stage is not None else model, **self.options)
        # An expert (the default model's JPEG expert) restores the images its model's route picks in place of the
        # model; like the whole-image stages it belongs to the full model, not to --local-only.
        self.expert: nn.Module | None = None
        self.expert_route: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.expert_tile: int | None = None
        if global_stage and getattr(model, "jpeg_expert", None) is not None:
            self.expert = optimize_model(_TiledPart(model, "forward_expert"), **{**self.options, "fast": None})
            self.expert_route = model.expert_route
            self.expert_tile = getattr(model, "expert_tile", None)
        self.multiple = max(1, int(self.meta.pad_multiple))
        self.precision = precision
        self.tile = tile
        self.overlap = overlap
        self.blend = blend
        gpu = self.device.type in ("cuda", "mps")
        own_side = None if self.whole_image_pixels is None else math.isqrt(self.whole_image_pixels)
        self.default_tile = default_tile or own_side or (512 if gpu else 256)
        self.max_whole_pixels = max_whole_pixels
        self.progress = progress
        self.min_tile = _round_up(MIN_TILE, self.multiple)
        self._oom_tile: int | None = None  # smallest tile that worked after an OOM, reused for later images
        self.last_run: dict = {}

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if not isinstance(image, torch.Tensor) or image.ndim not in (3, 4) or not image.is_floating_point():
            shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise InferenceError(f"expected a float tensor (C,H,W) or (B,C,H,W) in [0,1], got {shape}")
        batch = image[None] if image.ndim == 3 else image
        was_training = self.model.training
        self.model.eval()
        try:
            out = self._run(batch.float())
        finally:
            self.model.train(was_training)  # a training loop can validate through a Predictor without side effects
        out = out.clamp(0.0, 1.0).to(image.device)
        return out[0] if image.ndim == 3 else out

    @torch.inference_mode()
    def _run(self, batch: torch.Tensor) -> torch.Tensor:
        h, w = batch.shape[-2:]
        x = pad_to_multiple(self.meta.normalize(self.meta.quantize(batch.cpu())), self.multiple)
        route = None if self.expert_route is None else self.expert_route(x[..., :h, :w].to(self.device)).cpu()
        y = by_route(route, lambda: self._local_pass(x, self.expert, h, w, self.expert_tile),
                     lambda: self._local_pass(x, self.model, h, w))
        if route is not None:
            self.last_run["expert"] = route.tolist()
        return self._finish(y, x, h, w, route)

    def _local_pass(self, x: torch.Tensor, model: nn.Module, h: int, w: int,
                    own_tile: int | None = None) -> torch.Tensor:
        """``model`` over the padded batch ``x``, whole or in tiles (see the module); sets ``last_run``.
        ``own_tile``: the largest tile ``model`` runs on in auto mode (an expert's ``expert_tile``)."""
        own_tile = own_tile if self.tile is None else None
        if own_tile is None and self._whole_first(h * w):
            try:
                y = self._forward(x.to(self.device), model)
                self.last_run = {"mode": "whole", "tile": None, "overlap": None, "blend": None}
                return y
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                if self.tile == 0:
                    raise InferenceError(f"out of memory on a {h}x{w} image in whole-image mode; "
                                         "use tiles (--tile 256)") from exc
                log.warning("out of memory on the whole %dx%d image; switching to tiles of at most %d", h, w,
                            self.default_tile)
                self._free()
        tile = self._oom_tile or self.tile or min(own_tile or self.default_tile, self.default_tile)
        if self.tile is None and self._oom_tile is None:  # auto: as many tiles as the default, each no larger than needed
            tile = fitted_tile(*x.shape[-2:], self._round_tile(tile), self.overlap, self.multiple)
        while True:
            tile = self._round_tile(tile)
            try:
                y = tiled_apply(lambda part: self._forward(part, model), x, tile=tile, overlap=self.overlap,
                                blend=self.blend, compute_device=self.device,
                                accumulate_device=self._accumulate_device(x), progress=self.progress)
                self.last_run = {"mode": "tiled", "tile": tile, "overlap": min(self.overlap, tile // 2), "blend": self.blend}
                return y
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                self._free()
                if tile <= self.min_tile:
                    raise InferenceError(f"out of memory even with {tile}x{tile} tiles on {self.device}; "
                                         "try --device cpu or --precision fp16") from exc
                new_tile = max(self.min_tile, tile // 2 // self.multiple * self.multiple)
                log.warning("out of memory with %dx%d tiles; retrying with %dx%d", tile, tile, new_tile, new_tile)
                tile = self._oom_tile = new_tile

    def _round_tile(self, tile: int) -> int:
        """``tile`` rounded down to the pad multiple (at least one multiple)."""
        return max(self.multiple, tile // self.multiple * self.multiple)

    def _whole_first(self, pixels: int) -> bool:
        if self.tile == 0:
            return True
        if self.tile is not None:
            return False
        if self.prefer_whole_image:
            return True
        if self._oom_tile is not None:
            return False
        if self.whole_image_pixels is not None:
            return pixels <= self.whole_image_pixels
        return self.device.type != "cpu" or pixels <= self.max_whole_pixels

    def _forward(self, x: torch.Tensor, model: nn.Module) -> torch.Tensor:
        dtype = PRECISIONS[self.precision]
        ctx = torch.autocast(self.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
        with ctx:
            return model(x)

    def _finish(self, y: torch.Tensor, x: torch.Tensor, h: int, w: int,
                route: torch.Tensor | None = None) -> torch.Tensor:
        scale = y.shape[-1] // (w + (-w) % self.multiple)
        y = y[..., : h * scale, : w * scale].float()
        if self.global_stage is not None:
            # the expert's route also tells the whole-image stages which images JPEG alone damaged
            args = () if route is None else (route,)
            y = self.global_stage(x[..., :h, :w].to(y.device), y, *args)
        return self.meta.denormalize(y)

    def _accumulate_device(self, x: torch.Tensor) -> torch.device:
        pixels = x.shape[-1] * x.shape[-2]
        return torch.device("cpu") if pixels > _ACCUMULATE_ON_CPU_ABOVE else self.device

    def _free(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        elif self.device.type == "mps":
            torch.mps.empty_cache()


class _TiledPart(nn.Module):
    """The part of a model that may run tile by tile, one of its methods: ``forward_local`` for a model with a
    ``global_stage``, ``forward_expert`` for its expert."""

    def __init__(self, model: nn.Module, method: str = "forward_local") -> None:
        super().__init__()
        self.model = model
        self.method = method
        copy_model_attrs(model, self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self.model, self.method)(x)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple
