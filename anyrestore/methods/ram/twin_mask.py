"""Twin-mask inference for mask-pre-trained RAM models (ram.md §7.5, paper Fig. 4).

A model that has only been pre-trained reconstructs *hidden* pixels; fed a whole image it shifts colours. Twin-mask
inference draws one pixel mask M (exact count, ratio 0.5), runs the model twice, on the image with M hidden and on
the image with the complement hidden, and takes every pixel from the pass in which it was hidden:
``out = f(x, M)·M + f(x, 1 − M)·(1 − M)``.

:class:`TwinMaskModel` wraps any backbone so the :class:`~anyrestore.inference.predictor.Predictor` (tiling,
padding, normalisation) can run it like a plain model. The mask is drawn at the size of the tensor the wrapper
receives (the Predictor's padded image or tile), from a generator re-seeded with ``seed`` on every call, so the
same input always gives the same output. A model with whole-image stages (``global_stage``, e.g. the default
model's exposure curve) keeps them out of the twin passes: the wrapper twin-masks the model's ``forward_local`` and
exposes the same ``global_stage``, which the Predictor then runs once on the whole image.
"""
from __future__ import annotations

import torch
from torch import nn

from anyrestore.archs.registry import model_meta
from anyrestore.methods.ram.masking import apply_mask, batch_mask, check_ratio


def twin_mask_forward(model: nn.Module, x: torch.Tensor, mask: torch.Tensor, token: float = 0.0) -> torch.Tensor:
    """``model(x with mask hidden)·mask + model(x with 1−mask hidden)·(1 − mask)`` for a (B,H,W) or (H,W) mask."""
    m = mask.to(dtype=x.dtype, device=x.device)
    m = m.expand(x.shape[0], *m.shape[-2:]) if m.dim() == 2 else m
    first = model(apply_mask(x, m, token))
    second = model(apply_mask(x, 1 - m, token))
    m4 = m[:, None]
    return first * m4 + second * (1 - m4)


class TwinMaskModel(nn.Module):
    """Wrap ``model`` so that every forward is a twin-mask forward (input and output in the model's space).

    Args:
        model: the backbone (keeps its ``meta``, which this wrapper exposes unchanged).
        ratio: hidden fraction of the first mask (0.5: both passes hide half the pixels).
        seed: mask seed, re-applied on every call (deterministic output).
        token: hidden-pixel value in the model's input space (0 = ImageNet-mean grey for RAM models).
    """

    def __init__(self, model: nn.Module, *, ratio: float = 0.5, seed: int = 0, token: float = 0.0) -> None:
        super().__init__()
        self.model = model
        self.ratio = check_ratio(ratio)
        self.seed = int(seed)
        self.token = float(token)
        self.meta = model_meta(model)
        for attr in ("arch_name", "arch_kwargs", "preset_name"):
            if hasattr(model, attr):
                setattr(self, attr, getattr(model, attr))

    def draw_mask(self, batch: int, height: int, width: int, device: torch.device) -> torch.Tensor:
        """The (batch, height, width) mask (1 = hidden in the first pass), shared by the batch."""
        generator = torch.Generator().manual_seed(self.seed)
        return batch_mask(batch, height, width, ratio=self.ratio, generator=generator, device=device)

    @property
    def global_stage(self) -> nn.Module | None:
        """The wrapped model's whole-image stages (not masked), or None."""
        return getattr(self.model, "global_stage", None)

    def forward_local(self, x: torch.Tensor) -> torch.Tensor:
        """The twin-mask forward of the part that may run tile by tile (the whole model when it has no stages)."""
        local = self.model.forward_local if self.global_stage is not None else self.model
        mask = self.draw_mask(x.shape[0], x.shape[-2], x.shape[-1], x.device)
        return twin_mask_forward(local, x, mask, self.token)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.forward_local(x)
        stage = self.global_stage
        return y if stage is None else stage(x, y)
