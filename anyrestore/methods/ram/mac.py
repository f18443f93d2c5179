"""RAM stage 2: Mask Attribute Conductance (MAC) layer ranking, plus the IG and random baselines (ram.md §5).

For every image the input is revealed pixel by pixel along a *mask attribute path*: a random pixel order is
drawn and, at step j, the first ``ceil(α_j·HW)`` pixels of that order are visible with soft sigmoid weights
(``α_j = (1 − r) + r·j/N``). The attributed scalar is the edge energy of the output. For every layer (module that
directly owns a parameter) the conductance ``Σ_j dF/dy_j · (y_j − y_{j−1})`` is accumulated per element of the
layer output; a layer's score is the mean of its absolute value, summed over images.

All layers are measured at once: one forward and one backward per path step, with forward hooks on every layer
and a single ``autograd.grad`` over the layer outputs. The cost is ``steps × ceil(images / batch)`` passes,
independent of the number of layers.

``method="ig"`` accumulates the raw output gradients along the linear path ``x_j = α_j·x`` (the paper's IG row
of Table 5); ``method="random"`` ranks the layers by a seeded shuffle.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn

from anyrestore.archs.registry import model_meta
from anyrestore.errors import ConfigError
from anyrestore.methods.ram.finetune import Ranking, enumerate_layers, layer_param_counts
from anyrestore.methods.ram.pretrain import unwrap

METHODS = ("mac", "ig", "random")


@dataclass(frozen=True)
class MacSettings:
    """Analysis settings (defaults = the paper's MAC run). Recorded in ``ranking.json``."""

    method: str = "mac"
    total_step: int = 200
    start_ratio: float = 0.5
    k: float = 10_000.0
    eps: float = 1e-12
    seed: int = 0
    batch_size: int = 1

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown layer-ranking method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.total_step < 2:
            raise ConfigError(f"MAC needs at least 2 path steps, got {self.total_step}")
        if not 0.0 < self.start_ratio <= 1.0:
            raise ConfigError(f"start ratio must be in (0, 1], got {self.start_ratio}")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, got {self.batch_size}")


def path_alphas(steps: int, start_ratio: float) -> list[float]:
    """``α_j = (1 − r) + r·j/N`` for j = 0..N−1, in float64 (0.5 → 0.9975 for r = 0.5, N = 200)."""
    return [(1.0 - start_ratio) + start_ratio * j / steps for j in range(steps)]


def soft_visibility(order: torch.Tensor, alpha: float, k: float) -> torch.Tensor:
    """Soft visibility weights (HW,) float64 for one path point (paper Eq. 6, corrected).

    ``order`` is a permutation of the HW pixel positions. The first ``n = ceil(α·HW)`` pixels in that order get
    ``sigmoid(k·(α − i/HW))`` (all > 0.5); the others get 0.
    """
    hw = order.numel()
    n = min(hw, math.ceil(alpha * hw))
    ranks = torch.arange(n, dtype=torch.float64)
    weights = torch.zeros(hw, dtype=torch.float64)
    weights[order[:n]] = torch.sigmoid(k * (alpha - ranks / hw))
    return weights


def edge_energy(output: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``Σ sqrt((o[h,w] − o[h+1,w])² + (o[h,w] − o[h,w+1])² + eps)`` over batch, channels and h<H−1, w<W−1."""
    core = output[:, :, :-1, :-1]
    dv = core - output[:, :, 1:, :-1]
    dh = core - output[:, :, :-1, 1:]
    return torch.sqrt(dv * dv + dh * dh + eps).sum()


class _LayerRecorder:
    """Forward hooks that keep each layer's output tensor for the current forward pass."""

    def __init__(self, net: nn.Module, names: Sequence[str]) -> None:
        self.names = list(names)
        self.outputs: dict[str, list[tuple[torch.Tensor, int]]] = {}
        self.handles = []
        for name in self.names:
            module = net.get_submodule(name)
            self.handles.append(module.register_forward_hook(self._hook(name)))

    def _hook(self, name: str) -> Callable:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if not isinstance(output, torch.Tensor):
                raise ConfigError(f"layer {name!r} returns {type(output).__name__}, MAC needs a tensor output")
            self.outputs.setdefault(name, []).append((output, output._version))
        return hook

    def take(self) -> dict[str, torch.Tensor | None]:
        """Outputs of the last forward (None for layers that did not run); clears the record."""
        taken: dict[str, torch.Tensor | None] = {}
        for name in self.names:
            outs = self.outputs.get(name, [])
            if len(outs) > 1:
                raise ConfigError(f"layer {name!r} ran {len(outs)} times in one forward; MAC needs each layer once")
            if outs and outs[0][0]._version != outs[0][1]:
                raise ConfigError(f"layer {name!r}: its output is modified in place later in the forward; "
                                  "MAC needs the layer's own output")
            taken[name] = outs[0][0] if outs else None
        self.outputs = {}
        return taken

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def _path_inputs(x: torch.Tensor, orders: list[torch.Tensor], alpha: float, settings: MacSettings) -> torch.Tensor:
    """The path point for a batch of normalised images x (B,C,H,W) against the zero baseline."""
    if settings.method == "ig":
        return x * alpha
    b, _, h, w = x.shape
    masks = torch.stack([soft_visibility(o, alpha, settings.k) for o in orders]).view(b, 1, h, w)
    return masks.to(dtype=x.dtype, device=x.device) * x


def layer_conductance(
    model: nn.Module,
    x: torch.Tensor,
    *,
    settings: MacSettings,
    generator: torch.Generator,
    on_step: Callable[[], None] | None = None,
) -> dict[str, torch.Tensor | None]:
    """Accumulated per-element conductance (MAC) or gradient sum (IG) of every layer, before ``abs``.

    ``x`` is a batch of images already in the model's input space (B,C,H,W); each image gets its own pixel order
    drawn from ``generator`` in batch order. Returns ``{layer name: tensor shaped like the layer output}``
    (None for a layer that never ran). The model is put in ``eval()`` and its parameters' ``requires_grad`` are
    switched off during the analysis; both are restored afterwards.
    """
    net = unwrap(model)
    names = enumerate_layers(net)
    b, _, h, w = x.shape
    orders = [torch.randperm(h * w, generator=generator) for _ in range(b)]
    alphas = path_alphas(settings.total_step, settings.start_ratio)
    was_training = net.training
    grad_flags = [(p, p.requires_grad) for p in net.parameters()]
    recorder = _LayerRecorder(net, names)
    acc: dict[str, torch.Tensor] = {}
    prev: dict[str, torch.Tensor] = {}
    ties: dict[str, str] | None = None
    last_shapes: dict[str, tuple] = {}
    try:
        net.eval()
        for p, _ in grad_flags:
            p.requires_grad_(False)
        for j, alpha in enumerate(alphas):
            xj = _path_inputs(x, orders, alpha, settings).detach().requires_grad_(True)
            out = net(xj)
            outputs = recorder.take()
            energy = edge_energy(out, settings.eps)
            # layers returning the very same tensor object (attn / attn.proj) share one gradient and one result
            rep_of: dict[int, str] = {}
            step_ties = {}
            for name, t in outputs.items():
                if t is not None:
                    step_ties[name] = rep_of.setdefault(id(t), name)
            if ties is None:
                ties = step_ties
            elif ties != step_ties:
                raise ConfigError("the model's layer structure changed between MAC steps")
            reps = [n for n in step_ties if step_ties[n] == n and outputs[n].requires_grad]
            grads = torch.autograd.grad(energy, [outputs[n] for n in reps], allow_unused=True)
            for name, g in zip(reps, grads):
                y = outputs[name].detach()
                if g is None:
                    g = torch.zeros_like(y)
                if settings.method == "ig":
                    acc[name] = acc[name] + g if name in acc else g.clone()
                else:
                    if j > 0:
                        term = g * (y - prev[name])
                        acc[name] = acc[name] + term if name in acc else term
                    prev[name] = y
            last_shapes = {n: (t.shape, t.dtype, t.device) for n, t in outputs.items() if t is not None}
            del out, outputs, energy, grads  # free this step's graph before the next forward
            if on_step is not None:
                on_step()
    finally:
        recorder.close()
        net.train(was_training)
        for p, flag in grad_flags:
            p.requires_grad_(flag)
    result: dict[str, torch.Tensor | None] = {}
    for name in names:
        rep = (ties or {}).get(name)
        if rep is None:
            result[name] = None
        elif rep in acc:
            result[name] = acc[rep]
        else:  # output does not depend on the input: zero conductance
            shape, dtype, device = last_shapes[rep]
            result[name] = torch.zeros(shape, dtype=dtype, device=device)
    return result


def per_image_scores(cond: dict[str, torch.Tensor | None], batch: int) -> dict[str, torch.Tensor]:
    """Mean of |cond| over each image's elements: {layer: (B,) float64}; layers that never ran score 0."""
    scores = {}
    for name, c in cond.items():
        if c is None:
            scores[name] = torch.zeros(batch, dtype=torch.float64)
        else:
            # batch-major layouts (windows of image b before those of b+1) split evenly into images
            scores[name] = c.detach().abs().reshape(batch, -1).double().mean(dim=1).cpu()
    return scores


def sort_ranking(names: Sequence[str], scores: Sequence[float]) -> Ranking:
    """Rank by score descending; equal scores by descending enumeration index (D11)."""
    order = sorted(range(len(names)), key=lambda i: scores[i])
    order.reverse()
    return Ranking(names=[names[i] for i in order], indices=order, scores=[float(scores[i]) for i in order])


@dataclass
class LayerAnalysis:
    """Result of :func:`rank_layers`: the ranking plus everything ``ranking.json`` records."""

    ranking: Ranking
    settings: MacSettings
    per_task: dict[str, dict[str, float]] = field(default_factory=dict)
    num_params: dict[str, int] = field(default_factory=dict)
    passes: int = 0

    def json_extra(self) -> dict[str, Any]:
        settings = asdict(self.settings)
        method = settings.pop("method")
        return {"method": method, "settings": {**settings, "mode": "eval", "difference": "backward"},
                "per_task": self.per_task, "num_params": self.num_params, "passes": self.passes}


def rank_layers(
    model: nn.Module,
    images: Sequence[torch.Tensor] | torch.Tensor,
    *,
    tasks: Sequence[str] | None = None,
    settings: MacSettings = MacSettings(),
    progress: Callable[[int], None] | None = None,
) -> LayerAnalysis:
    """Rank the layers of ``model`` by MAC, IG or at random.

    Args:
        model: any backbone; its ``meta`` normalisation is applied to the images.
        images: (3,H,W) tensors in [0,1] RGB (or one (N,3,H,W) tensor). Images batched together must share a size.
        tasks: one task label per image, for the per-task scores in the JSON (default: all ``"all"``).
        settings: method, path steps, start ratio, sigmoid sharpness k, edge-energy ε, seed, batch size.
        progress: called with the number of forward/backward passes just done.

    Returns:
        a :class:`LayerAnalysis`; ``ranking.scores[i]`` is the sum over images of the per-image mean |cond|.
    """
    net = unwrap(model)
    names = enumerate_layers(net)
    if not names:
        raise ConfigError("the model has no parameter-owning layers to rank")
    counts = layer_param_counts(net)
    generator = torch.Generator().manual_seed(settings.seed)
    if settings.method == "random":
        perm = torch.randperm(len(names), generator=generator).tolist()
        ranking = Ranking(names=[names[i] for i in perm], indices=perm, scores=[0.0] * len(names))
        return LayerAnalysis(ranking, settings, {}, counts, 0)
    images = list(images)
    if not images:
        raise ConfigError("no images to analyse")
    tasks = list(tasks) if tasks is not None else ["all"] * len(images)
    if len(tasks) != len(images):
        raise ConfigError(f"{len(tasks)} task labels for {len(images)} images")
    meta = model_meta(net)
    device = next(net.parameters()).device
    totals = torch.zeros(len(names), dtype=torch.float64)
    per_task: dict[str, torch.Tensor] = {}
    passes = 0

    def step_done() -> None:
        nonlocal passes
        passes += 1
        if progress is not None:
            progress(1)

    for start in range(0, len(images), settings.batch_size):
        chunk = images[start:start + settings.batch_size]
        if len({tuple(im.shape) for im in chunk}) != 1:
            raise ConfigError("images batched together must have the same size (use batch size 1 or a crop)")
        x = meta.normalize(torch.stack(chunk).to(device=device, dtype=torch.float32))
        cond = layer_conductance(net, x, settings=settings, generator=generator, on_step=step_done)
        scores = per_image_scores(cond, len(chunk))
        table = torch.stack([scores[n] for n in names], dim=1)  # (B, layers)
        totals += table.sum(dim=0)
        for row, task in zip(table, tasks[start:start + len(chunk)]):
            per_task[task] = per_task.get(task, torch.zeros(len(names), dtype=torch.float64)) + row
    ranking = sort_ranking(names, totals.tolist())
    task_scores = {task: {n: float(v) for n, v in zip(names, vals.tolist())} for task, vals in per_task.items()}
    return LayerAnalysis(ranking, settings, task_scores, counts, passes)
