"""RAM stage 1: mask image modelling pre-training objective (ram.md §4).

Each call draws one pixel mask (exact hidden count, shared by the batch and the channels unless
``per_sample_mask``), replaces the hidden pixels of the normalised input by the zero token, runs the network on
the whole image and scores only the hidden pixels against the clean image with :func:`masked_l1`.

The mask is applied to the input *before* the network, so the objective works for every backbone of the zoo,
not only the RAM variants (for those it is identical to passing ``mask=`` to their forward).

Mask randomness (one mask per optimisation step and process, independent of the data workers):

* default (``seed: null``): the mask is drawn from the trainer's per-iteration generator ``batch["generator"]``,
  which the engine seeds from (run seed, rank, iteration), so a resumed run draws exactly the masks of an
  uninterrupted one;
* ``seed: <int>``: the mask of iteration ``t`` on process ``rank`` comes from a private generator seeded with
  ``(seed, rank, t)`` (``t = batch["iteration"]``, or the objective's own call counter, which ``state_dict`` /
  ``load_state_dict`` save and restore, when the batch has no iteration). This keeps the mask stream fixed while
  the data seed changes.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from anyrestore.archs.registry import model_meta
from anyrestore.engine.objectives import register_objective
from anyrestore.errors import ConfigError
from anyrestore.methods.ram.masking import apply_mask, batch_mask, check_ratio, masked_l1

_MIX = 0x9E3779B97F4A7C15  # odd 64-bit constant: spreads (seed, rank, step) over distinct generator seeds


def step_generator(seed: int, rank: int, step: int) -> torch.Generator:
    """A CPU generator whose state depends only on (seed, rank, step)."""
    value = (int(seed) * _MIX + (int(rank) + 1) * 0xBF58476D1CE4E5B9 + int(step)) % (2**63 - 1)
    return torch.Generator().manual_seed(value)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel (or similar ``.module``) wrapper."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def current_rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return 0


@register_objective("ram_pretrain")
class RamPretrainObjective:
    """Masked-pixel reconstruction loss of RAM pre-training (paper Eq. 1).

    Args:
        mask_ratio: fraction of pixels (cells) hidden, exact count (default 0.5; Table 3 ablates 0.2–0.8).
        mask_patch_size: side of a mask cell in pixels (1 = pixel masks, RAM's default).
        per_sample_mask: draw one mask per sample instead of one shared by the batch (official: shared).
        pretrain_input: ``"lq"`` (degraded input, paired data; default) or ``"gt"`` (masked clean input,
            Table 4's "w/ GT" row).
        token: value of hidden pixels in the model's input space (0 = ImageNet-mean grey for RAM models).
        seed: ``None`` draws masks from the trainer's per-iteration ``batch["generator"]``; an integer gives the
            mask stream its own seed (combined with the process rank and the iteration).

    Call ``objective(model, batch)`` with ``batch["lq"]``, ``batch["gt"]`` (B,3,H,W) in [0,1]; returns
    ``{"loss", "masked_l1", "mask_fraction"}``.
    """

    def __init__(
        self,
        *,
        mask_ratio: float = 0.5,
        mask_patch_size: int = 1,
        per_sample_mask: bool = False,
        pretrain_input: str = "lq",
        token: float = 0.0,
        seed: int | None = None,
    ) -> None:
        if pretrain_input not in ("lq", "gt"):
            raise ConfigError(f"pretrain_input must be 'lq' or 'gt', got {pretrain_input!r}")
        if int(mask_patch_size) < 1:
            raise ConfigError(f"mask_patch_size must be >= 1, got {mask_patch_size}")
        self.mask_ratio = check_ratio(mask_ratio)
        self.mask_patch_size = int(mask_patch_size)
        self.per_sample_mask = bool(per_sample_mask)
        self.pretrain_input = pretrain_input
        self.token = float(token)
        self.seed = None if seed is None else int(seed)
        self.step = 0

    def draw_mask(self, batch: int, height: int, width: int, *, generator: torch.Generator) -> torch.Tensor:
        """A (batch, height, width) mask (1 = hidden) drawn from ``generator``, on the generator's device."""
        return batch_mask(
            batch, height, width,
            ratio=self.mask_ratio, patch_size=self.mask_patch_size, per_sample=self.per_sample_mask,
            generator=generator,
        )

    def mask_generator(self, batch: dict[str, Any]) -> torch.Generator:
        """The generator this call's mask is drawn from (see the module docstring); advances the step counter."""
        step = int(batch["iteration"]) if "iteration" in batch else self.step
        self.step = step + 1
        if self.seed is None and "generator" in batch:
            return batch["generator"]
        return step_generator(self.seed or 0, current_rank(), step)

    def __call__(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        meta = model_meta(unwrap(model))
        gt = meta.normalize(batch["gt"])
        source = gt if self.pretrain_input == "gt" else meta.normalize(batch["lq"])
        b, _, h, w = source.shape
        mask = self.draw_mask(b, h, w, generator=self.mask_generator(batch)).to(source.device)
        out = model(apply_mask(source, mask, self.token))
        loss = masked_l1(out, gt, mask)
        return {"loss": loss, "masked_l1": loss.detach(), "mask_fraction": mask.mean().detach()}

    def state_dict(self) -> dict[str, int | None]:
        return {"step": self.step, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int | None]) -> None:
        if state.get("seed", self.seed) != self.seed:
            raise ConfigError(f"resumed mask seed {state['seed']} differs from the recipe's seed {self.seed}")
        self.step = int(state["step"])
