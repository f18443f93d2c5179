"""Plain supervised restoration objective: the baseline every method is compared with.

``loss = weight · pixel(pred, gt) + fft_weight · mean|FFT(pred) − FFT(gt)|`` where ``pixel`` is L1 or Charbonnier
(``sqrt((pred − gt)² + eps²)``), averaged over all pixels and channels, or the PSNR loss
(``mean_i 10·log10(MSE_i + eps)``, one MSE per sample, as NAFNet trains). The PSNR loss weighs every sample's
improvement in dB: a JPEG or blur sample with a small residual pulls as hard as a haze sample with a large one,
which an all-in-one mixture needs (with L1 the large-error degradations dominate the gradient). The FFT term compares the real and
imaginary parts of the 2-D real FFT (MoCE-IR uses it with weight 0.1).

By default the loss is computed in the model's own input space (``space: model``): models that declare an input
normalisation (RAM's ImageNet mean/std) are fed and supervised in normalised space, as in the official code; the
others in [0,1]. ``space: image`` always compares de-normalised [0,1] outputs.
"""
from __future__ import annotations

import copy
from typing import Any, Literal, Sequence

import torch
from torch import nn

from anyrestore.engine.objectives import model_space, register_objective
from anyrestore.errors import ConfigError


class SupervisedObjective:
    """Pixel loss between ``model(lq)`` and ``gt``.

    Args:
        loss: ``"l1"``, ``"charbonnier"`` or ``"psnr"``.
        weight: weight of the pixel term.
        fft_weight: weight of the frequency-domain L1 term (0 disables it).
        eps: Charbonnier epsilon, or the PSNR loss's MSE floor.
        space: ``"model"`` (normalised space when the model has one) or ``"image"`` ([0,1]).
        train_only: module paths (``"intro"``, ``"encoders.0"``): only their parameters train, every other one is
            frozen (``None``: all train). A path that names no parameter of the model is an error.
        keep_outputs_except: degradation types (``["snow"]``). A sample whose degradation has none of them is
            supervised by the output of the model as training found it (its pretrained weights, a frozen copy made
            in ``prepare``) instead of by the clean image; the others by the clean image. A fine-tune that teaches
            these types and leaves the rest of the model's behaviour where it was, for one more forward pass per step.
            With the PSNR loss such a sample's MSE is its distance to that output plus that output's own MSE to the
            clean image: a step away costs what the same error would cost a sample of that quality (with the
            distance alone, near zero, the log would weigh the slightest drift above any restoration).
        keep_weight: how much more a kept sample's distance to the starting output costs than the same error
            would (its pixel loss, or with the PSNR loss its distance before the log, is multiplied by it).
    """

    def __init__(
        self,
        *,
        loss: Literal["l1", "charbonnier", "psnr"] = "l1",
        weight: float = 1.0,
        fft_weight: float = 0.0,
        eps: float = 1e-3,
        space: Literal["model", "image"] = "model",
        train_only: Sequence[str] | None = None,
        keep_outputs_except: Sequence[str] | None = None,
        keep_weight: float = 1.0,
    ) -> None:
        if loss not in ("l1", "charbonnier", "psnr"):
            raise ValueError(f"loss must be 'l1', 'charbonnier' or 'psnr', got {loss!r}")
        if space not in ("model", "image"):
            raise ValueError(f"space must be 'model' or 'image', got {space!r}")
        if weight < 0 or fft_weight < 0 or eps <= 0:
            raise ValueError("weight and fft_weight must be >= 0 and eps > 0")
        self.loss, self.weight, self.fft_weight, self.eps, self.space = loss, float(weight), float(fft_weight), float(eps), space
        if train_only is not None and (isinstance(train_only, str) or not train_only):
            raise ConfigError(f"train_only must be a non-empty list of module paths, got {train_only!r}")
        self.train_only = None if train_only is None else [str(p) for p in train_only]
        if keep_outputs_except is not None and (isinstance(keep_outputs_except, str) or not keep_outputs_except):
            raise ConfigError(f"keep_outputs_except must be a non-empty list of degradation types, "
                              f"got {keep_outputs_except!r}")
        self.keep_outputs_except = None if keep_outputs_except is None else {str(t) for t in keep_outputs_except}
        if keep_weight <= 0 or (keep_weight != 1.0 and keep_outputs_except is None):
            raise ConfigError(f"keep_weight must be > 0 and needs keep_outputs_except, got {keep_weight}")
        self.keep_weight = float(keep_weight)
        self.anchor: nn.Module | None = None

    def prepare(self, model: nn.Module) -> None:
        if self.keep_outputs_except is not None:
            self.anchor = copy.deepcopy(model).eval().requires_grad_(False)
        if self.train_only is None:
            return
        names = [n for n, _ in model.named_parameters()]
        unused = [p for p in self.train_only if not any(n.startswith(p + ".") for n in names)]
        if unused:
            raise ConfigError(f"train_only names no parameters of the model: {', '.join(unused)}")
        for name, param in model.named_parameters():
            param.requires_grad_(any(name.startswith(p + ".") for p in self.train_only))

    def _kept(self, batch: dict[str, Any]) -> torch.Tensor:
        """Per sample, whether its target is the starting model's output (no step of an excepted type)."""
        kept = []
        for label in batch["labels"]:
            types = {step.get("type") for step in (label or {}).get("steps", [])}
            kept.append(not types & self.keep_outputs_except)
        return torch.tensor(kept, device=batch["gt"].device)

    def __call__(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        meta = model_space(model)
        pred = model(meta.normalize(batch["lq"]))
        target = batch["gt"]
        floor = torch.zeros(target.shape[0], device=target.device)  # per sample: the starting model's own MSE
        weight = torch.ones(target.shape[0], device=target.device)
        if self.keep_outputs_except is not None:
            if self.anchor is None:
                raise RuntimeError("keep_outputs_except needs prepare(model) before the first step")
            kept = self._kept(batch)
            if kept.any():
                self.anchor.to(batch["lq"].device)
                with torch.no_grad():
                    before = meta.denormalize(self.anchor(meta.normalize(batch["lq"]))).to(target.dtype)
                floor = torch.where(kept, (before - target).float().pow(2).flatten(1).mean(1), floor)
                weight = torch.where(kept, torch.full_like(weight, self.keep_weight), weight)
                target = torch.where(kept.view(-1, 1, 1, 1), before, target)
        if self.space == "model":
            target = meta.normalize(target)
        else:
            pred = meta.denormalize(pred)
        pred = pred.float()
        diff = pred - target.float()
        if self.loss == "l1":
            pixel = (diff.abs().flatten(1).mean(1) * weight).mean()
        elif self.loss == "psnr":
            pixel = 10.0 * torch.log10(diff.pow(2).flatten(1).mean(1) * weight + floor + self.eps).mean()
        else:
            pixel = (torch.sqrt(diff * diff + self.eps * self.eps).flatten(1).mean(1) * weight).mean()
        out = {f"{self.loss}": pixel}
        total = self.weight * pixel
        if self.fft_weight > 0:
            spec = torch.view_as_real(torch.fft.rfft2(pred)) - torch.view_as_real(torch.fft.rfft2(target.float()))
            fft = spec.abs().mean()
            out["fft"] = fft
            total = total + self.fft_weight * fft
        out["loss"] = total
        return out


register_objective("supervised")(SupervisedObjective)


@register_objective("l1")
def l1_objective(*, weight: float = 1.0, fft_weight: float = 0.0, space: Literal["model", "image"] = "model",
                 train_only: Sequence[str] | None = None,
                 keep_outputs_except: Sequence[str] | None = None, keep_weight: float = 1.0) -> SupervisedObjective:
    """Plain L1 (optionally + FFT term)."""
    return SupervisedObjective(loss="l1", weight=weight, fft_weight=fft_weight, space=space, train_only=train_only,
                               keep_outputs_except=keep_outputs_except, keep_weight=keep_weight)


@register_objective("charbonnier")
def charbonnier_objective(
    *, weight: float = 1.0, fft_weight: float = 0.0, eps: float = 1e-3, space: Literal["model", "image"] = "model",
    train_only: Sequence[str] | None = None, keep_outputs_except: Sequence[str] | None = None,
    keep_weight: float = 1.0,
) -> SupervisedObjective:
    """Charbonnier (smooth L1-like) loss (optionally + FFT term)."""
    return SupervisedObjective(loss="charbonnier", weight=weight, fft_weight=fft_weight, eps=eps, space=space,
                               train_only=train_only, keep_outputs_except=keep_outputs_except,
                               keep_weight=keep_weight)


@register_objective("psnr")
def psnr_objective(*, weight: float = 1.0, fft_weight: float = 0.0, eps: float = 1e-8,
                   space: Literal["model", "image"] = "image",
                   train_only: Sequence[str] | None = None,
                   keep_outputs_except: Sequence[str] | None = None,
                   keep_weight: float = 1.0) -> SupervisedObjective:
    """Per-sample PSNR loss (``mean_i 10·log10(MSE_i + eps)``, i.e. minus the batch-mean PSNR of [0,1] images);
    ``train_only`` and ``keep_outputs_except`` as in :class:`SupervisedObjective`."""
    return SupervisedObjective(loss="psnr", weight=weight, fft_weight=fft_weight, eps=eps, space=space,
                               train_only=train_only, keep_outputs_except=keep_outputs_except,
                               keep_weight=keep_weight)
