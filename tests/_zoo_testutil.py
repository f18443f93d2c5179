"""Helpers for the backbone-zoo tests (not a test module)."""
from __future__ import annotations

import torch
from torch import nn


def randomize_(model: nn.Module, seed: int = 0, std: float = 0.05) -> nn.Module:
    """Seeded random values for EVERY parameter (default init hides errors: NAFNet's beta/gamma start at 0).

    Norm weights and attention temperatures are drawn around 1, prompt banks uniform in [0,1), the rest N(0, std).
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ("norm" in name and name.endswith("weight")) or name.endswith("temperature"):
                value = 1.0 + 0.1 * torch.randn(p.shape, generator=gen)
            elif name.endswith("prompt_param"):
                value = torch.rand(p.shape, generator=gen)
            else:
                value = std * torch.randn(p.shape, generator=gen)
            p.copy_(value)
    return model


def image(h: int, w: int, seed: int = 1, batch: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, h, w, generator=torch.Generator().manual_seed(seed))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def meta_model(name: str, **overrides) -> nn.Module:
    from anyrestore.archs import build_model

    with torch.device("meta"):
        return build_model(name, **overrides)
