"""A small JPEG specialist that refines the all-in-one U-Net's output once the JPEG projection has found a JPEG.

The compact U-Net restores every degradation with one set of weights, and JPEG gets the smallest share of them: on
held-out photos at quality 30 it gains about half a dB, most of it in the luma, while the error that is left sits
largely in the colour (4:2:0 chroma keeps a few coefficients per 16×16 block). This refiner sees the JPEG input, the
U-Net's output and how coarse the quantisation was (the mean step of the luma table the projection estimated), and
adds a correction to the output. It runs only when :class:`~anyrestore.archs.jpeg_projection.JpegProjection` has
found a standard table and its gate has passed, so every other image is left as it was, and its output is then
clamped into the input's quantisation intervals like the U-Net's.

An option (``NAFNet(jpeg_refiner=True)``, trained by scripts/train_jpeg_refiner.py), not part of the shipped default
model: trained for 22 minutes on 2 CPU cores it added about 0.3 dB on the training photos at quality 30 and almost
nothing on held-out ones (anyrestore/weights/README.md, "Probe of session 23").

The network works on 4×4 pixel cells (``pixel_unshuffle``): two cells per 8-pixel JPEG block side, so it sees the
block grid directly and a plain stack of 3×3 convolutions covers several blocks at one sixteenth of the pixels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CELL = 4  # pixels per cell side; divides the 8-pixel JPEG block
SLOPE = 0.1  # leaky activations: with plain ReLUs and a PSNR loss the whole stack died within a few hundred steps
STEP_SCALE = 16.0  # a luma table's mean step is fed as log(mean / STEP_SCALE): about -1.5 at quality 90, 1 at 20


class JpegRefiner(nn.Module):
    """Residual refinement ``restored + f(degraded, restored, step)`` of (B,3,H,W) images in [0, 1].

    Args:
        width: channels of the hidden convolutions.
        depth: number of 3×3 convolutions (at least 2).
    """

    def __init__(self, *, width: int = 64, depth: int = 8) -> None:
        super().__init__()
        if depth < 2:
            raise ValueError(f"JpegRefiner needs depth >= 2, got {depth}")
        cells = CELL * CELL
        layers: list[nn.Module] = [nn.Conv2d(6 * cells + 1, width, 3, padding=1), nn.LeakyReLU(SLOPE)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(SLOPE)]
        self.body = nn.Sequential(*layers)
        for layer in self.body:  # He initialisation keeps the activations' scale through the stack
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, a=SLOPE, nonlinearity="leaky_relu")
                nn.init.zeros_(layer.bias)
        self.tail = nn.Conv2d(width, 3 * cells, 3, padding=1)
        nn.init.zeros_(self.tail.weight)  # starts as the identity: the U-Net's output unchanged
        nn.init.zeros_(self.tail.bias)

    def forward(self, degraded: torch.Tensor, restored: torch.Tensor, mean_step: torch.Tensor) -> torch.Tensor:
        """``mean_step``: (B,) mean of each image's luma quantisation table (levels of 255)."""
        h, w = restored.shape[-2:]
        pad_h, pad_w = -h % CELL, -w % CELL  # at the bottom/right, so the cells stay on the JPEG block grid
        pair = torch.cat([degraded, restored], dim=1).to(restored.dtype)
        if pad_h or pad_w:
            mode = "reflect" if min(h, w) > max(pad_h, pad_w) else "replicate"
            pair = F.pad(pair, (0, pad_w, 0, pad_h), mode=mode)
        cells = F.pixel_unshuffle(pair - 0.5, CELL)
        step = torch.log(mean_step.to(cells).clamp_min(1.0) / STEP_SCALE)
        step = step.view(-1, 1, 1, 1).expand(-1, 1, *cells.shape[-2:])
        correction = F.pixel_shuffle(self.tail(self.body(torch.cat([cells, step], dim=1))), CELL)
        return restored + correction[..., :h, :w]

