"""Exponential moving average of a model's parameters (BasicSR ``model_ema``), buffers copied."""
from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEMA:
    """Keeps ``ema = decay·ema + (1 − decay)·param`` for every parameter after each optimiser step.

    Buffers (e.g. BatchNorm statistics, cached masks) are copied from the live model, not averaged. The EMA copy
    lives on the same device, is always in ``eval()`` mode and never requires gradients.

    Args:
        model: the live model (unwrapped, not the DDP wrapper).
        decay: averaging factor in (0, 1), e.g. 0.999 (BasicSR) or 0.995 (RAM pre-training).
    """

    def __init__(self, model: nn.Module, *, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        live = dict(model.named_parameters())
        for name, p_ema in self.module.named_parameters():
            p_ema.lerp_(live[name].detach().to(p_ema.dtype), 1.0 - self.decay)
        live_buffers = dict(model.named_buffers())
        for name, b_ema in self.module.named_buffers():
            b_ema.copy_(live_buffers[name])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)
