"""Padding to a multiple and overlapping tiled inference (conventions.md §6.1-6.3).

Pure helpers used by :class:`anyrestore.inference.predictor.Predictor`:

* :func:`pad_to_multiple`: reflect-pad right/bottom to a multiple, replicate the part a reflection cannot cover.
* :func:`tile_starts`: SwinIR-rule start positions ``0, s, 2s, ... < size - T`` plus a tile flush with the border.
* :func:`fitted_tile`: the auto mode's tile, shrunk below the default as far as the number of tiles allows.
* :func:`blend_weights`: ``feather`` (raised-cosine ramps over the overlap on the sides that face a neighbour tile,
  1 elsewhere, never 0) or ``mean`` (all ones: the official demos' sum / count).
* :func:`tiled_apply`: one tiled pass at a fixed tile size; out-of-memory errors propagate to the caller, which
  halves the tile and retries (:func:`is_out_of_memory` recognises them).
"""
from __future__ import annotations

import math
from typing import Callable, Literal

import torch
import torch.nn.functional as F

Blend = Literal["feather", "mean"]
BLENDS: tuple[str, ...] = ("feather", "mean")


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad a (B, C, H, W) tensor on the right/bottom so H and W are multiples of ``multiple``.

    Reflect padding is used; when the pad is larger than ``size - 1`` (tiny images) the rest is replicated.
    """
    if multiple <= 1:
        return x
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    reflect_h, reflect_w = min(pad_h, h - 1), min(pad_w, w - 1)
    if reflect_h or reflect_w:
        x = F.pad(x, (0, reflect_w, 0, reflect_h), mode="reflect")
    if pad_h > reflect_h or pad_w > reflect_w:
        x = F.pad(x, (0, pad_w - reflect_w, 0, pad_h - reflect_h), mode="replicate")
    return x


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of length ``tile`` covering ``size`` with stride ``tile - overlap``."""
    if tile >= size:
        return [0]
    stride = tile - overlap
    if stride < 1:
        raise ValueError(f"overlap {overlap} must be smaller than the tile {tile}")
    return list(range(0, size - tile, stride)) + [size - tile]


def fitted_tile(height: int, width: int, tile: int, overlap: int, multiple: int = 1) -> int:
    """The smallest tile side, a multiple of ``multiple`` and at most ``tile``, that covers a (height, width) image
    with no more tiles than ``tile`` does (:func:`tile_starts`): as many model calls on fewer pixels. A 1024² image
    takes 25 tiles of 256 (overlap 32) or 25 of 240, 12 % fewer pixels."""
    def count(side: int) -> int:
        th, tw = min(side, height), min(side, width)
        o = min(overlap, min(th, tw) // 2)
        return len(tile_starts(height, th, o)) * len(tile_starts(width, tw, o))

    calls = count(tile)
    best = tile
    side = tile - multiple
    while side >= max(multiple, 2 * overlap + 1) and count(side) <= calls:  # fewer pixels, never more calls
        best, side = side, side - multiple
    return best


def ramp(length: int, overlap: int, *, before: bool, after: bool) -> torch.Tensor:
    """1-D feather weights: raised-cosine rise over ``overlap`` samples on each side that has a neighbour."""
    w = torch.ones(length)
    overlap = min(overlap, length // 2)
    if overlap > 0:
        i = torch.arange(overlap, dtype=torch.float64)
        rise = (0.5 - 0.5 * torch.cos(math.pi * (i + 0.5) / overlap)).float()  # > 0 everywhere
        if before:
            w[:overlap] = rise
        if after:
            w[length - overlap:] = rise.flip(0)
    return w


def blend_weights(height: int, width: int, overlap: int, blend: Blend, *, top: bool, bottom: bool,
                  left: bool, right: bool) -> torch.Tensor:
    """(1, 1, height, width) weights of one tile; ``top`` etc. say which sides face a neighbouring tile."""
    if blend == "mean":
        return torch.ones(1, 1, height, width)
    wy = ramp(height, overlap, before=top, after=bottom)
    wx = ramp(width, overlap, before=left, after=right)
    return (wy[:, None] * wx[None, :])[None, None]


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA's OutOfMemoryError and the 'out of memory' RuntimeErrors of other backends."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "failed to allocate" in text)


def tiled_apply(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    tile: int,
    overlap: int,
    blend: Blend = "feather",
    compute_device: torch.device | str | None = None,
    accumulate_device: torch.device | str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Run ``fn`` on overlapping tiles of ``x`` (B, C, H, W) and blend the outputs.

    ``tile`` is used as is (the caller rounds it to the model's multiple; H and W are expected to be multiples
    too); a tile larger than a side covers that side in one piece. The output may have a different channel count
    or an integer scale factor. Returns a float32 tensor on ``accumulate_device`` (default: ``x``'s device).
    """
    if blend not in BLENDS:
        raise ValueError(f"blend must be one of {BLENDS}, got {blend!r}")
    h, w = x.shape[-2:]
    th, tw = min(tile, h), min(tile, w)
    overlap = min(overlap, min(th, tw) // 2)
    ys, xs = tile_starts(h, th, overlap), tile_starts(w, tw, overlap)
    compute_device = torch.device(compute_device) if compute_device is not None else x.device
    accumulate_device = torch.device(accumulate_device) if accumulate_device is not None else x.device
    acc = wsum = None
    scale = 1
    total, done = len(ys) * len(xs), 0
    for y0 in ys:
        for x0 in xs:
            patch = x[:, :, y0:y0 + th, x0:x0 + tw].to(compute_device)
            out = fn(patch).float()
            if acc is None:
                scale = out.shape[-1] // tw
                if out.shape[-2] != th * scale or out.shape[-1] != tw * scale or scale < 1:
                    raise ValueError(f"model output {tuple(out.shape[-2:])} is not an integer scale of its input {(th, tw)}")
                acc = torch.zeros(out.shape[0], out.shape[1], h * scale, w * scale, device=accumulate_device)
                wsum = torch.zeros(1, 1, h * scale, w * scale, device=accumulate_device)
            weight = blend_weights(th * scale, tw * scale, overlap * scale, blend,
                                   top=y0 > 0, bottom=y0 + th < h, left=x0 > 0, right=x0 + tw < w)
            weight = weight.to(accumulate_device)
            region = (slice(None), slice(None), slice(y0 * scale, (y0 + th) * scale), slice(x0 * scale, (x0 + tw) * scale))
            acc[region] += out.to(accumulate_device) * weight
            wsum[region] += weight
            del out, patch
            done += 1
            if progress is not None:
                progress(done, total)
    return acc / wsum
