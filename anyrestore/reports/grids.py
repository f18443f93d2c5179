"""Before/after image grids: images side by side with a thin separator, written atomically as PNG."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch


def make_grid(images: Sequence[torch.Tensor], *, gap: int = 4, background: float = 1.0) -> torch.Tensor:
    """Place (3,H,W) [0,1] images in one row (smaller ones top-left aligned) -> (3, Hmax, ΣW + gaps)."""
    if not images:
        raise ValueError("make_grid needs at least one image")
    height = max(img.shape[-2] for img in images)
    width = sum(img.shape[-1] for img in images) + gap * (len(images) - 1)
    grid = torch.full((3, height, width), float(background))
    x = 0
    for img in images:
        img = img.detach().float().cpu().clamp(0, 1)
        if img.shape[0] == 1:
            img = img.expand(3, -1, -1)
        grid[:, : img.shape[-2], x : x + img.shape[-1]] = img
        x += img.shape[-1] + gap
    return grid


def save_grid(path: str | os.PathLike, images: Sequence[torch.Tensor]) -> Path:
    """Write :func:`make_grid` of ``images`` (e.g. input, output, target) to ``path`` (PNG, atomic)."""
    from anyrestore.io import write_image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, make_grid(images))
    return path
