"""RAM pixel masks (ram.md §4.1–4.2).

Convention: in pre-training ``mask = 1`` means *hidden*. A hidden pixel is replaced by the mask token, which is
0 in the model's (normalised) input space, for every channel. Masks are drawn without replacement, so the hidden
count is exact (``ceil(ratio · cells)``), never Bernoulli.
"""
from __future__ import annotations

import math

import torch

from anyrestore.errors import ConfigError


def hidden_count(cells: int, ratio: float) -> int:
    """Number of hidden cells out of ``cells`` for ``ratio``: ``ceil(ratio · cells)``.

    The product is rounded to 9 decimals first so that float noise (``0.1 * 30 = 3.0000000000000004``) does not
    add a cell.
    """
    return min(cells, math.ceil(round(ratio * cells, 9)))


def check_ratio(ratio: float) -> float:
    ratio = float(ratio)
    if not 0.0 < ratio < 1.0:
        raise ConfigError(f"mask_ratio must be in (0, 1), got {ratio}")
    return ratio


def random_pixel_mask(
    height: int,
    width: int,
    *,
    ratio: float = 0.5,
    patch_size: int = 1,
    generator: torch.Generator,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """One random mask of shape (height, width), float32, 1 = hidden.

    The image is divided into ``patch_size`` × ``patch_size`` cells (a partial last row/column of cells is
    cropped); a uniform random permutation of the cells is drawn from ``generator`` and its first
    ``ceil(ratio · cells)`` cells are hidden. With ``patch_size = 1`` (RAM's default) exactly
    ``ceil(ratio · H · W)`` pixels are hidden.
    """
    ratio = check_ratio(ratio)
    if patch_size < 1:
        raise ConfigError(f"mask_patch_size must be >= 1, got {patch_size}")
    if height < 1 or width < 1:
        raise ConfigError(f"mask size must be positive, got {height}x{width}")
    gh, gw = math.ceil(height / patch_size), math.ceil(width / patch_size)
    cells = gh * gw
    order = torch.randperm(cells, generator=generator, device=generator.device)
    flat = torch.zeros(cells, dtype=torch.float32, device=generator.device)
    flat[order[: hidden_count(cells, ratio)]] = 1.0
    grid = flat.view(gh, gw)
    if patch_size > 1:
        grid = grid.repeat_interleave(patch_size, 0).repeat_interleave(patch_size, 1)[:height, :width]
    return grid.contiguous().to(device) if device is not None else grid.contiguous()


def batch_mask(
    batch: int,
    height: int,
    width: int,
    *,
    ratio: float = 0.5,
    patch_size: int = 1,
    per_sample: bool = False,
    generator: torch.Generator,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Masks for a batch, shape (batch, height, width), 1 = hidden.

    By default one mask is drawn and shared by every sample (as the official pre-training does);
    ``per_sample=True`` draws an independent mask per sample.
    """
    if per_sample:
        masks = [
            random_pixel_mask(height, width, ratio=ratio, patch_size=patch_size, generator=generator)
            for _ in range(batch)
        ]
        out = torch.stack(masks)
    else:
        mask = random_pixel_mask(height, width, ratio=ratio, patch_size=patch_size, generator=generator)
        out = mask.unsqueeze(0).expand(batch, height, width)
    return out.to(device) if device is not None else out


def apply_mask(x: torch.Tensor, mask: torch.Tensor, token: float | torch.Tensor = 0.0) -> torch.Tensor:
    """Replace hidden pixels of ``x`` (B,C,H,W) by ``token``: ``x·(1 − m) + token·m``.

    ``mask`` is (H,W), (B,H,W) or (B,1,H,W) with 1 = hidden; it is broadcast over channels. ``token`` is a
    scalar or a tensor broadcastable to ``x`` (for example a (1,C,1,1) per-channel value); RAM uses 0 in
    normalised space.
    """
    if x.dim() != 4:
        raise ValueError(f"expected an image batch (B,C,H,W), got shape {tuple(x.shape)}")
    if mask.dim() == 2:
        mask = mask[None, None]
    elif mask.dim() == 3:
        mask = mask[:, None]
    if mask.shape[-2:] != x.shape[-2:]:
        raise ValueError(f"mask size {tuple(mask.shape[-2:])} does not match image size {tuple(x.shape[-2:])}")
    mask = mask.to(dtype=x.dtype, device=x.device)
    out = x * (1 - mask)
    if isinstance(token, torch.Tensor) or token != 0:
        out = out + token * mask
    return out


def masked_l1(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """RAM's pre-training loss (paper Eq. 1): mean absolute error over hidden pixel-channel elements.

    ``L = Σ_{b,c,h,w} |output − target|·M[b,h,w] / (Σ_{b,h,w} M + eps) / C`` with ``mask`` (B,H,W) or (H,W),
    1 = hidden. Visible pixels contribute nothing (and receive no gradient).
    """
    if output.shape != target.shape:
        raise ValueError(f"output shape {tuple(output.shape)} != target shape {tuple(target.shape)}")
    b, c, h, w = output.shape
    mask = mask.to(dtype=output.dtype, device=output.device)
    if mask.dim() == 2:
        mask = mask.expand(b, h, w)
    mask = mask.reshape(b, 1, h, w)
    return ((output - target).abs() * mask).sum() / (mask.sum() + eps) / c
