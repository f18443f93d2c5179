"""Shared layers of the backbone zoo (backbones.md §1).

Public, stable API (other architecture files import from here):

* :class:`LayerNorm2d` — per-pixel LayerNorm over channels of a (B,C,H,W) tensor (NAFNet style, keys
  ``weight``/``bias``), configurable ``eps``.
* :class:`ChannelLayerNorm` — Restormer/PromptIR style LayerNorm with the parameters under ``body.`` and three
  implementations: ``"WithBias"`` (official), ``"BiasFree"`` (official option), ``"torch"`` (``nn.LayerNorm``,
  MaskDCPT).
* :class:`DropPath`, :func:`drop_path` — stochastic depth with an optional explicit ``torch.Generator``.
* :func:`trunc_normal_` — truncated-normal init helper (absolute truncation bounds).
* :class:`SimpleGate`, :class:`MDTA`, :class:`GDFN`, :class:`TransformerBlock`, :class:`Downsample`,
  :class:`Upsample` — the NAFNet gate and the Restormer transformer pieces.
* :func:`pad_to_multiple`, :func:`ffn_hidden`, :func:`rename_keys` — small helpers.
"""
from __future__ import annotations

import re
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from anyrestore.archs.fastpaths import FAST_BY_DEFAULT

LAYERNORM_KINDS = ("WithBias", "BiasFree", "torch")


def channel_layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    """LayerNorm over the channels of (B,C,H,W), per pixel, in one ``F.layer_norm`` call (fast path).

    The result is returned in channels-last memory (the permuted view of the normalised (B,H,W,C) tensor, no copy
    back); the convolutions after every norm of the zoo take it as is, and MDTA attends on its token-major view.
    A channels-last input is not copied at all.
    """
    return F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), weight, bias, eps).permute(0, 3, 1, 2)


def bias_free_channel_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Restormer's BiasFree norm ``x / sqrt(Var_c(x) + eps) * weight`` over channels of (B,C,H,W) (fast path).

    One ``var`` over the channel axis and one fused multiply, in the input's memory format.
    """
    var = x.var(1, keepdim=True, unbiased=False)
    return x * torch.rsqrt(var + eps) * weight.view(1, -1, 1, 1)


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of (B,C,H,W), per pixel, biased variance.

    ``eps`` 1e-6 reproduces official NAFNet; MaskDCPT's NAFNet uses 1e-5.
    """

    def __init__(self, channels: int, *, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.fused_layernorm = FAST_BY_DEFAULT

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused_layernorm:
            return channel_layer_norm(x, self.weight, self.bias, self.eps)
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        y = (x - mu) / (var + self.eps).sqrt()
        return self.weight.view(1, -1, 1, 1) * y + self.bias.view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, eps={self.eps}"


class _WithBiasLN(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (..., C)
        mu = x.mean(-1, keepdim=True)
        var = x.var(-1, keepdim=True, unbiased=False)
        return (x - mu) / torch.sqrt(var + 1e-5) * self.weight + self.bias


class _BiasFreeLN(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (..., C); the mean is used for σ² but not subtracted
        var = x.var(-1, keepdim=True, unbiased=False)
        return x / torch.sqrt(var + 1e-5) * self.weight


class ChannelLayerNorm(nn.Module):
    """Restormer-style LayerNorm over channels of (B,C,H,W); parameters live under ``body.``.

    Args:
        dim: number of channels.
        kind: ``"WithBias"`` (eps 1e-5, weight+bias), ``"BiasFree"`` (weight only, mean not subtracted) or
            ``"torch"`` (``nn.LayerNorm(dim)``, numerically equal to WithBias up to rounding).
    """

    def __init__(self, dim: int, *, kind: str = "WithBias") -> None:
        super().__init__()
        if kind == "WithBias":
            self.body = _WithBiasLN(dim)
        elif kind == "BiasFree":
            self.body = _BiasFreeLN(dim)
        elif kind == "torch":
            self.body = nn.LayerNorm(dim)
        else:
            raise ValueError(f"unknown LayerNorm kind {kind!r}; expected one of {', '.join(LAYERNORM_KINDS)}")
        self.kind = kind
        self.fused_layernorm = FAST_BY_DEFAULT

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused_layernorm:
            if self.kind == "BiasFree":
                return bias_free_channel_norm(x, self.body.weight, 1e-5)
            return channel_layer_norm(x, self.body.weight, self.body.bias, getattr(self.body, "eps", 1e-5))
        b, c, h, w = x.shape
        t = x.permute(0, 2, 3, 1).reshape(b, h * w, c)  # (B,HW,C)
        return self.body(t).reshape(b, h, w, c).permute(0, 3, 1, 2)


def drop_path(x: torch.Tensor, prob: float, training: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero whole samples of a residual branch with probability ``prob`` and rescale the rest by 1/(1-prob)."""
    if prob == 0.0 or not training:
        return x
    keep = 1.0 - prob
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    mask = torch.empty(shape, dtype=x.dtype, device="cpu").bernoulli_(keep, generator=generator).to(x.device)
    return x * mask / keep


class DropPath(nn.Module):
    """Stochastic depth (per-sample residual drop). ``generator`` (CPU) makes the draws reproducible."""

    def __init__(self, prob: float = 0.0, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not 0.0 <= prob < 1.0:
            raise ValueError(f"drop-path probability must be in [0, 1), got {prob}")
        self.prob = prob
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.prob, self.training, self.generator)

    def extra_repr(self) -> str:
        return f"prob={self.prob}"


def trunc_normal_(
    tensor: torch.Tensor,
    *,
    std: float = 0.02,
    mean: float = 0.0,
    a: float = -2.0,
    b: float = 2.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """In-place truncated normal init; ``a``/``b`` are absolute bounds (timm convention: ±2, i.e. ~no truncation)."""
    with torch.no_grad():
        return nn.init.trunc_normal_(tensor, mean=mean, std=std, a=a, b=b, generator=generator)


def init_transformer_weights(m: nn.Module) -> None:
    """Upstream transformer init (SwinIR, RetinexFormer): Linear weights trunc-normal std 0.02, zero biases;
    LayerNorm weight 1, bias 0. Use with ``module.apply``."""
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def ffn_hidden(dim: int, expansion: float) -> int:
    """GDFN hidden width: ``int(dim * expansion)`` (48 -> 127 for 2.66)."""
    return int(dim * expansion)


def centre_crop_at_most(x: torch.Tensor, side: int) -> torch.Tensor:
    """The centred window of (..., H, W) at most ``side`` high and wide (smaller sides are kept whole)."""
    h, w = x.shape[-2:]
    top, left = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return x[..., top:top + side, left:left + side]


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "reflect") -> torch.Tensor:
    """Pad (B,C,H,W) on the right/bottom so H and W are multiples of ``multiple``.

    ``mode`` is ``"zeros"``, ``"reflect"`` or ``"replicate"``. Reflect padding larger than the image falls back to
    replicate for the remainder (conventions.md §6.1).
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    if mode == "zeros":
        return F.pad(x, (0, pw, 0, ph))
    if mode == "replicate":
        return F.pad(x, (0, pw, 0, ph), mode="replicate")
    if mode != "reflect":
        raise ValueError(f"unknown pad mode {mode!r}; expected zeros, reflect or replicate")
    rh, rw = min(ph, h - 1), min(pw, w - 1)
    x = F.pad(x, (0, rw, 0, rh), mode="reflect") if (rh or rw) else x
    if rh < ph or rw < pw:
        x = F.pad(x, (0, pw - rw, 0, ph - rh), mode="replicate")
    return x


def apply_pixel_mask(x: torch.Tensor, mask: torch.Tensor, token: torch.Tensor | float | None = None) -> torch.Tensor:
    """RAM input masking (ram.md §4.2): ``x·(1 − m) + token·m`` with m broadcast over channels.

    ``mask`` is (B,H,W) as the RAM backbones document, or (B,1,H,W); 1 marks a hidden pixel. ``token`` defaults to
    0 (in the model's normalised input space).
    """
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)
    if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[0] != x.shape[0] or mask.shape[-2:] != x.shape[-2:]:
        raise ValueError(f"mask must be (B, H, W) = {(x.shape[0], *x.shape[-2:])}, got {tuple(mask.shape)}")
    m = mask.to(x.dtype)
    return x * (1 - m) + (0.0 if token is None else token) * m


def rename_keys(
    sd: Mapping[str, torch.Tensor], rules: Sequence[tuple[re.Pattern[str], str]]
) -> dict[str, torch.Tensor]:
    """Apply ``(compiled regex, replacement)`` rules in order to every key; returns a new dict (input untouched)."""
    out = {}
    for key, value in sd.items():
        for rx, repl in rules:
            key = rx.sub(repl, key)
        out[key] = value
    return out


class SimpleGate(nn.Module):
    """NAFNet gate: split channels in two halves and multiply them (2C -> C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return a * b


def _matmul_in_fp16(x: torch.Tensor) -> bool:
    """Whether a matmul of ``x`` runs in float16, by its dtype or under autocast."""
    kind = x.device.type
    autocast_fp16 = torch.is_autocast_enabled(kind) and torch.get_autocast_dtype(kind) == torch.float16
    return x.dtype == torch.float16 or autocast_fp16


def transposed_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, temperature: torch.Tensor, *,
                         tokens_last: bool = True) -> torch.Tensor:
    """``softmax(normalize(q) @ normalize(k)ᵀ · temperature) @ v`` with the L2 norms applied to the small map.

    Shape: q, k, v (B, heads, d, N), temperature broadcastable to (B, heads, d, d) -> (B, heads, d, N); with
    ``tokens_last=False`` all three and the result are (B, heads, N, d) instead (the transposed views of
    channels-last maps).
    ``normalize(q) @ normalize(k)ᵀ = diag(1/|q_i|) (q kᵀ) diag(1/|k_j|)``, so the d×N maps are
    never rescaled or copied: the fast path of MDTA and IG-MSA. (``F.scaled_dot_product_attention`` is the same
    function once temperature/|q_i| is folded into q, but with the head size N = H·W it runs the generic math
    kernel and was slower on CPU than this; the CUDA fused kernels do not take head sizes above 256.)
    """
    eps = 1e-12  # F.normalize's: x / max(|x|, eps)
    if not tokens_last:
        q, k = q.transpose(-2, -1), k.transpose(-2, -1)
    qn = torch.linalg.vector_norm(q, dim=-1, keepdim=True).clamp_min(eps)  # (B, heads, d, 1)
    kn = torch.linalg.vector_norm(k, dim=-1, keepdim=True).clamp_min(eps)
    if _matmul_in_fp16(q):
        # fp16 (also under autocast): the raw q·kᵀ sums N = H·W products and overflows 65504 on large maps, so
        # normalise the maps first, as the plain formula does; bf16 and fp32 have the range to skip it
        q, k = q / qn, k / kn
        attn = (q @ k.transpose(-2, -1)) * temperature
    else:
        attn = (q @ k.transpose(-2, -1)) * (temperature / (qn * kn.transpose(-2, -1)))  # (B, heads, d, d)
    if tokens_last:
        return attn.softmax(dim=-1) @ v
    return v @ attn.softmax(dim=-1).transpose(-2, -1)


class MDTA(nn.Module):
    """Multi-Dconv head transposed attention: channel-by-channel attention per head (backbones.md §1.2)."""

    def __init__(self, dim: int, *, num_heads: int, bias: bool = False) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"MDTA: dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)
        self.sdpa = FAST_BY_DEFAULT

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv_dwconv(self.qkv(x))
        heads = self.num_heads
        if self.sdpa and qkv.is_contiguous(memory_format=torch.channels_last):
            # channels-last maps are (B, HW, 3C) token matrices: attend over channels without any transpose copy
            t = qkv.permute(0, 2, 3, 1).reshape(b, h * w, 3, heads, c // heads)
            q, k, v = (t[:, :, i].transpose(1, 2) for i in range(3))  # (B, heads, HW, C/heads) views
            out = transposed_attention(q, k, v, self.temperature, tokens_last=False)  # (B, heads, HW, C/heads)
            out = out.transpose(1, 2).reshape(b, h, w, c).permute(0, 3, 1, 2)  # channels-last (B, C, H, W)
            return self.project_out(out)
        q, k, v = qkv.chunk(3, dim=1)
        q = q.reshape(b, heads, c // heads, h * w)  # (B, heads, C/heads, HW)
        k = k.reshape(b, heads, c // heads, h * w)
        v = v.reshape(b, heads, c // heads, h * w)
        if self.sdpa:
            out = transposed_attention(q, k, v, self.temperature)
        else:
            q = F.normalize(q, dim=-1)
            k = F.normalize(k, dim=-1)
            attn = (q @ k.transpose(-2, -1)) * self.temperature  # (B, heads, C/heads, C/heads)
            out = attn.softmax(dim=-1) @ v
        return self.project_out(out.reshape(b, c, h, w))


class GDFN(nn.Module):
    """Gated-Dconv feed-forward network with exact GELU (backbones.md §1.2)."""

    def __init__(self, dim: int, *, expansion: float = 2.66, bias: bool = False) -> None:
        super().__init__()
        hidden = ffn_hidden(dim, expansion)
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(a) * b)


class TransformerBlock(nn.Module):
    """Restormer block: ``x + MDTA(LN(x))`` then ``x + GDFN(LN(x))``.

    Args:
        dim: channels. num_heads: MDTA heads. expansion: GDFN factor (2.66). bias: conv biases.
        layernorm: ``"WithBias"``, ``"BiasFree"`` or ``"torch"`` (see :class:`ChannelLayerNorm`).
    """

    def __init__(
        self, dim: int, *, num_heads: int, expansion: float = 2.66, bias: bool = False, layernorm: str = "WithBias"
    ) -> None:
        super().__init__()
        self.norm1 = ChannelLayerNorm(dim, kind=layernorm)
        self.attn = MDTA(dim, num_heads=num_heads, bias=bias)
        self.norm2 = ChannelLayerNorm(dim, kind=layernorm)
        self.ffn = GDFN(dim, expansion=expansion, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


def transformer_stage(
    dim: int, depth: int, *, num_heads: int, expansion: float, bias: bool, layernorm: str
) -> nn.Sequential:
    """``depth`` :class:`TransformerBlock` s in a Sequential (keys ``<stage>.<j>.``)."""
    return nn.Sequential(
        *[TransformerBlock(dim, num_heads=num_heads, expansion=expansion, bias=bias, layernorm=layernorm)
          for _ in range(depth)]
    )


class Downsample(nn.Module):
    """conv3x3 C -> C/2 (no bias), then PixelUnshuffle(2) -> 2C at half resolution. Keys ``body.0.weight``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Upsample(nn.Module):
    """conv3x3 C -> 2C (no bias), then PixelShuffle(2) -> C/2 at double resolution. Keys ``body.0.weight``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels * 2, 3, padding=1, bias=False), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
