"""The default model's JPEG expert: the U-Net's shallow layers fine-tuned on JPEG alone.

One compact U-Net restores every degradation with one set of weights, and it hedges: at quality 30 it takes the fine
texture a JPEG kept (gravel, foliage) for noise and wipes some of it. An expert that has only ever seen JPEG input
need not hedge. Fine-tuning a whole second U-Net would double the model, so the expert keeps the base's two deepest
parts (the last encoder level and the middle blocks, 3.1 M of its 4.5 M parameters, where the degradation is
recognised) and has its own copy of everything else: the first convolution, the three shallow encoder levels, every
downsampling, upsampling and decoder level and the last convolution (1.3 M parameters, keys ``jpeg_expert.*``).
This is RAM's selective fine-tuning with the layers chosen by depth instead of by MAC.

The expert runs only where :class:`~anyrestore.archs.jpeg_projection.JpegProjection` would project: the input is a
JPEG with a standard table, and the base U-Net's output stays inside most of its quantisation intervals, so JPEG
was the only damage (noise, haze, rain and blur before the compression move the blocks or remove what the JPEG
kept, and the gate refuses them). A scene darkened before the compression is not refused (whole held-out photos
under low light then JPEG q30: 4 of 5 take the expert, at q75 all 5): the expert leaves it dark, as the U-Net would,
and the exposure curve after it brightens it, so the route cannot tell a dark scene from a darkened one either.
To decide the route the base U-Net restores a centre window of the input (at most 512² pixels;
:meth:`NAFNet.expert_route <anyrestore.archs.nafnet.NAFNet.expert_route>`), then the chosen network restores the
whole image (in tiles of ``NAFNet.expert_tile`` for the expert), and the whole-image stages, the projection first,
run on its output.

Since session 30 the cautious crop head of the exposure stage decides first on a whole photo the route takes
(:class:`~anyrestore.archs.tone_curve.ToneCurveBySize`): dark JPEG photos stay as dark as they were shot, and a photo
the crop head finds under-exposed gets the whole-photo head's curve (held-out photos, low light then JPEG q30:
+6.21 dB over the input, against +6.26 with the whole-photo head alone and +1.08 with the crop head alone).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn


class JpegExpert(nn.Module):
    """The shallow layers of a :class:`~anyrestore.archs.nafnet.NAFNet` with the same shapes, under the same names
    (``intro``, ``encoders`` without the deepest level, ``downs``, ``ups``, ``decoders``, ``ending``), so that a
    base's state dict initialises it (:meth:`init_from`). The NAFNet runs it (``NAFNet.forward_expert``).

    ``encoder_levels``: how many encoder levels, from the shallowest, the expert owns (default all but the deepest;
    the base's run in its place for the others)."""

    def __init__(self, *, in_channels: int, width: int, enc_blocks: Sequence[int], dec_blocks: Sequence[int],
                 ln_eps: float, encoder_levels: int | None = None) -> None:
        super().__init__()
        from anyrestore.archs.nafnet import _stage  # the NAFNet module imports this one

        if encoder_levels is None:
            encoder_levels = len(enc_blocks) - 1
        if not 0 <= encoder_levels <= len(enc_blocks):
            raise ValueError(f"encoder_levels must be 0-{len(enc_blocks)} (the U-Net's encoder levels), "
                             f"got {encoder_levels}")

        self.intro = nn.Conv2d(in_channels, width, 3, padding=1)
        self.ending = nn.Conv2d(width, in_channels, 3, padding=1)
        self.encoders, self.downs = nn.ModuleList(), nn.ModuleList()
        c = width
        for level, n in enumerate(enc_blocks):
            if level < encoder_levels:
                self.encoders.append(_stage(c, n, ln_eps))
            self.downs.append(nn.Conv2d(c, 2 * c, 2, stride=2))
            c *= 2
        self.ups, self.decoders = nn.ModuleList(), nn.ModuleList()
        for n in dec_blocks:
            self.ups.append(nn.Sequential(nn.Conv2d(c, 2 * c, 1, bias=False), nn.PixelShuffle(2)))
            c //= 2
            self.decoders.append(_stage(c, n, ln_eps))

    @torch.no_grad()
    def init_from(self, base: nn.Module) -> None:
        """Copy the base U-Net's weights of the same names: the starting point of the fine-tuning."""
        weights = base.state_dict()
        self.load_state_dict({key: weights[key] for key in self.state_dict()})


def by_route(route: torch.Tensor | None, expert: Callable[[], torch.Tensor],
             base: Callable[[], torch.Tensor]) -> torch.Tensor:
    """The batch restored by ``expert()`` where ``route`` (per image) is True and by ``base()`` elsewhere; each
    runs only when some image needs it. ``route`` None: the model has no expert."""
    if route is None or not bool(route.any()):
        return base()
    if bool(route.all()):
        return expert()
    out = expert()
    return torch.where(route.to(out.device)[:, None, None, None], out, base())
