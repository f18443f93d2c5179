"""SwinIR for denoising / JPEG artefact removal, and its RAM and MaskDCPT variants (backbones.md §1.3, §5).

Paper: Liang et al., "SwinIR: Image Restoration Using Swin Transformer", ICCVW 2021. Upstream code and weights:
JingyunLiang/SwinIR (Apache-2.0). Variants: RAM (Dragonisss/RAM, ECCV 2024, no licence file) and MaskDCPT
(MILab-PKU/MaskDCPT, no licence file); their weights carry their authors' terms. Written from the anyrestore spec;
module names follow the upstream layout so official checkpoints load without renaming.

Registry names: ``swinir`` (official denoise/JPEG path), ``ram_swinir`` (1x1 first conv, normed long skip, no global
residual, ``mask_token``, input pixel masking), ``maskdcpt_swinir`` (no relative-position bias, no shift mask, no
internal padding). Checkpoint families: ``official``, ``ram``, ``maskdcpt`` (``encode_layers``/``decode_layers``).

Shift masks are derived data: ``attn_mask`` is a non-persistent buffer at ``img_size`` and masks for other padded
sizes are computed on first use and cached per (size, device). Exporters re-emit ``attn_mask`` (``from_canonical``).
"""
from __future__ import annotations

import math
import re
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from anyrestore.archs.blocks import DropPath, apply_pixel_mask, init_transformer_weights, pad_to_multiple, trunc_normal_
from anyrestore.archs.fastpaths import FAST_BY_DEFAULT
from anyrestore.archs.registry import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CheckpointFamily,
    ModelMeta,
    register_arch,
    register_family,
    register_preset,
)
from anyrestore.errors import CheckpointMismatchError

RGB_MEAN = (0.4488, 0.4371, 0.4040)
LONG_SKIPS = ("raw", "normed")


# ---------------------------------------------------------------- window helpers

def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * nW, window * window, C), windows in row-major order."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def window_merge(windows: torch.Tensor, window: int, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * nW, window * window, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    x = windows.view(-1, height // window, width // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, c)


def relative_position_index(window: int) -> torch.Tensor:
    """(w², w²) int64: ``(Δrow + w − 1)·(2w − 1) + (Δcol + w − 1)`` for every token pair of a window."""
    rows, cols = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    rows, cols = rows.flatten(), cols.flatten()
    d_row = rows[:, None] - rows[None, :] + window - 1
    d_col = cols[:, None] - cols[None, :] + window - 1
    return d_row * (2 * window - 1) + d_col


def shift_attention_mask(height: int, width: int, window: int, shift: int) -> torch.Tensor:
    """(nW, w², w²) float mask of the shifted-window attention: −100 between tokens of different regions."""
    labels = torch.zeros(height, width)
    bounds = ((0, -window), (-window, -shift), (-shift, None))
    region = 0
    for r0, r1 in bounds:
        for c0, c1 in bounds:
            labels[r0:r1, c0:c1] = region
            region += 1
    windows = window_partition(labels.view(1, height, width, 1), window).squeeze(-1)  # (nW, w²)
    diff = windows[:, None, :] - windows[:, :, None]
    return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)


class _ShiftMaskCache:
    """Shift masks for padded sizes other than ``img_size``, shared by all blocks of one model (not state)."""

    def __init__(self, window: int, shift: int, max_entries: int = 4) -> None:
        self.window, self.shift, self.max_entries = window, shift, max_entries
        self.masks: dict[tuple[int, int, torch.device], torch.Tensor] = {}

    def get(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        key = (height, width, device)
        if key not in self.masks:
            if len(self.masks) >= self.max_entries:
                self.masks.pop(next(iter(self.masks)))
            self.masks[key] = shift_attention_mask(height, width, self.window, self.shift).to(device)
        return self.masks[key]


# ---------------------------------------------------------------- layers

class Mlp(nn.Module):
    """Linear C -> rC, exact GELU, Linear rC -> C (keys ``fc1``, ``fc2``)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside w×w windows, with an optional relative-position bias table.

    Shape: x (B·nW, w², C) -> (B·nW, w², C); ``mask`` (nW, w², w²) or None.
    """

    def __init__(self, dim: int, *, window: int, num_heads: int, qkv_bias: bool = True,
                 qk_scale: float | None = None, rel_pos_bias: bool = True) -> None:
        super().__init__()
        self.window, self.num_heads = window, num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        # Registration order (table before qkv) fixes the MAC layer order of ram.md §5.1.
        if rel_pos_bias:
            self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
            self.register_buffer("relative_position_index", relative_position_index(window))
        else:
            self.relative_position_bias_table = None
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.window_sdpa = FAST_BY_DEFAULT

    def position_bias(self) -> torch.Tensor | None:
        """The gathered relative-position bias (heads, N, N), or None without a table.

        Gathered once per block call (for all windows at once; a 24K-element gather, not worth a cache that would
        have to track the table's updates).
        """
        table = self.relative_position_bias_table
        if table is None:
            return None
        n = self.relative_position_index.shape[0]
        return table[self.relative_position_index.view(-1)].view(n, n, -1).permute(2, 0, 1).contiguous()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B·nW, heads, N, head_dim)
        if self.window_sdpa:
            # softmax(q·kᵀ·scale + bias + mask) v in one fused call; bias and shift mask become one additive mask
            # (4-D query and mask: the fused CPU kernel takes nothing else and falls back to the math path)
            bias = self.position_bias()  # (heads, N, N)
            add = None if bias is None else bias.to(q.dtype).unsqueeze(0)  # (1, heads, N, N)
            if mask is not None:
                nw = mask.shape[0]
                add = mask.to(q.dtype).unsqueeze(1) if add is None else mask.to(q.dtype).unsqueeze(1) + add
                if bw != nw:  # (nW, heads|1, N, N) -> (B·nW, heads|1, N, N), window order as in x
                    add = add.expand(bw // nw, *add.shape).reshape(bw, *add.shape[1:])
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=add, scale=self.scale)  # (B·nW, heads, N, hd)
            return self.proj(out.transpose(1, 2).reshape(bw, n, c))
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.position_bias()
        if bias is not None:
            attn = attn + bias.unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(bw // nw, nw, self.num_heads, n, n) + mask.to(attn.dtype).unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.num_heads, n, n)
        attn = attn.softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(bw, n, c))


class SwinBlock(nn.Module):
    """``t += DropPath(WA(LN1(t)))``; ``t += DropPath(MLP(LN2(t)))`` on tokens (B, H·W, C).

    Odd blocks roll the grid by −shift before partitioning and back after; ``shift_mask`` adds the −100 region
    mask (MaskDCPT turns it off: wrapped border tokens then attend to each other).
    """

    def __init__(self, dim: int, *, img_size: tuple[int, int], num_heads: int, window: int, shift: int,
                 mlp_ratio: float, qkv_bias: bool, qk_scale: float | None, drop_path: float,
                 rel_pos_bias: bool, shift_mask: bool, mask_cache: _ShiftMaskCache | None) -> None:
        super().__init__()
        if min(img_size) <= window:  # upstream rule: no partition or shift when the image fits in one window
            window, shift = min(img_size), 0
        self.window, self.shift, self.img_size = window, shift, img_size
        self.use_shift_mask = shift_mask and shift > 0
        self.mask_cache = mask_cache
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window=window, num_heads=num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale,
                                    rel_pos_bias=rel_pos_bias)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        mask = shift_attention_mask(*img_size, window, shift) if self.use_shift_mask else None
        self.register_buffer("attn_mask", mask, persistent=False)

    def _mask(self, height: int, width: int, device: torch.device) -> torch.Tensor | None:
        if not self.use_shift_mask:
            return None
        if (height, width) == tuple(self.img_size):
            return self.attn_mask
        if self.mask_cache is None:
            return shift_attention_mask(height, width, self.window, self.shift).to(device)
        return self.mask_cache.get(height, width, device)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        h, w = size
        b, _, c = x.shape
        shortcut = x
        x = self.norm1(x).view(b, h, w, c)
        if self.shift:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
        windows = self.attn(window_partition(x, self.window), mask=self._mask(h, w, x.device))
        x = window_merge(windows, self.window, h, w)
        if self.shift:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        x = shortcut + self.drop_path(x.reshape(b, h * w, c))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class BlockGroup(nn.Module):
    """A sequence of :class:`SwinBlock` (upstream ``BasicLayer``; keys ``blocks.{j}.``)."""

    def __init__(self, blocks: Sequence[SwinBlock]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, size)
        return x


def _to_map(tokens: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    b, _, c = tokens.shape  # (B, H·W, C) -> (B, C, H, W)
    return tokens.transpose(1, 2).reshape(b, c, size[0], size[1])


def _to_tokens(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)  # (B, C, H, W) -> (B, H·W, C)


class RSTB(nn.Module):
    """Residual Swin Transformer block: ``t + tokens(conv3x3(map(blocks(t))))`` (keys ``residual_group``, ``conv``)."""

    def __init__(self, dim: int, *, depth: int, drop_paths: Sequence[float], **block_kwargs: Any) -> None:
        super().__init__()
        blocks = [SwinBlock(dim, shift=0 if j % 2 == 0 else block_kwargs["window"] // 2, drop_path=drop_paths[j],
                            **block_kwargs) for j in range(depth)]
        self.residual_group = BlockGroup(blocks)
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return _to_tokens(self.conv(_to_map(self.residual_group(x, size), size))) + x


class PatchEmbed(nn.Module):
    """Patch size 1: flatten (B,C,H,W) to tokens (B,H·W,C), then LayerNorm (key ``norm``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(_to_tokens(x))


# ---------------------------------------------------------------- model

@register_arch("swinir")
class SwinIR(nn.Module):
    """SwinIR without upsampler (denoising / JPEG; backbones.md §5.1), with the flags of its RAM/MaskDCPT variants.

    Args:
        img_size: training patch size; fixes the precomputed shift mask (other sizes are computed on the fly) and,
            when ≤ window, disables shifting as upstream does.
        in_chans: 1 (grey) or 3 (colour; enables the RGB mean shift).
        embed_dim, depths, num_heads, window_size, mlp_ratio, qkv_bias, qk_scale: transformer configuration.
        drop_path_rate: stochastic depth, linear from 0 over all blocks (training only).
        img_range: input scale after the mean shift (1, or 255 for the JPEG models).
        first_conv: kernel of ``conv_first``: 3 (official) or 1 (RAM).
        long_skip: ``"raw"`` adds ``conv_first``'s output after the body (official); ``"normed"`` adds the
            LayerNorm-ed ``patch_embed`` features (RAM).
        global_residual: add the (shifted) input to ``conv_last``'s output (official True, RAM False).
        mean_shift: subtract the RGB mean and scale by ``img_range`` on the way in (RAM False).
        mask_token: create the unused RAM ``mask_token`` parameter (1, in_chans, img, img), frozen.
        rel_pos_bias: relative-position bias in window attention (MaskDCPT False).
        shift_mask: −100 mask between wrapped regions in shifted windows (MaskDCPT False).
        internal_pad: reflect-pad right/bottom to the window multiple inside ``forward`` (MaskDCPT False: the
            input must already be a multiple).

    Shape: (B, in_chans, H, W) -> same. MaskDCPT hook points are the module names in ``MASK_POINTS``.
    """

    MASK_POINTS = {
        "pre": (r"conv_first",),
        "post": (r"conv_first", r"patch_embed\.norm", r"layers\.\d+\.residual_group\.blocks\.\d+\.norm[12]",
                 r"layers\.\d+\.residual_group\.blocks\.\d+", r"layers\.\d+\.conv", r"norm", r"conv_after_body"),
    }

    def __init__(
        self,
        *,
        img_size: int | Sequence[int] = 128,
        in_chans: int = 3,
        embed_dim: int = 180,
        depths: Sequence[int] = (6, 6, 6, 6, 6, 6),
        num_heads: Sequence[int] = (6, 6, 6, 6, 6, 6),
        window_size: int = 8,
        mlp_ratio: float = 2.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_path_rate: float = 0.1,
        img_range: float = 1.0,
        first_conv: int = 3,
        long_skip: str = "raw",
        global_residual: bool = True,
        mean_shift: bool = True,
        mask_token: bool = False,
        rel_pos_bias: bool = True,
        shift_mask: bool = True,
        internal_pad: bool = True,
    ) -> None:
        super().__init__()
        img = (img_size, img_size) if isinstance(img_size, int) else tuple(int(v) for v in img_size)
        if len(depths) != len(num_heads):
            raise ValueError(f"depths {list(depths)} and num_heads {list(num_heads)} differ in length")
        if any(embed_dim % h for h in num_heads):
            raise ValueError(f"embed_dim {embed_dim} is not divisible by every num_heads {list(num_heads)}")
        if first_conv not in (1, 3):
            raise ValueError(f"first_conv must be 1 or 3, got {first_conv}")
        if long_skip not in LONG_SKIPS:
            raise ValueError(f"unknown long_skip {long_skip!r}; expected one of {', '.join(LONG_SKIPS)}")
        if window_size < 1 or len(img) != 2:
            raise ValueError(f"bad window_size {window_size} or img_size {img_size}")
        self.window_size, self.img_range, self.in_chans = window_size, float(img_range), in_chans
        self.long_skip, self.global_residual, self.mean_shift = long_skip, global_residual, mean_shift
        self.internal_pad, self.img_size = internal_pad, img
        self.pad_multiple = window_size
        self.meta = ModelMeta(pad_multiple=window_size)  # replaced by the preset's metadata when built by name
        if mask_token:
            self.mask_token = nn.Parameter(torch.zeros(1, in_chans, *img), requires_grad=False)
        else:
            self.mask_token = None
        self.conv_first = nn.Conv2d(in_chans, embed_dim, first_conv, padding=first_conv // 2)
        self.patch_embed = PatchEmbed(embed_dim)
        dpr = [float(v) for v in torch.linspace(0, drop_path_rate, sum(depths), device="cpu")]
        cache = _ShiftMaskCache(window_size, window_size // 2) if shift_mask else None
        self.layers = nn.ModuleList()
        start = 0
        for depth, heads in zip(depths, num_heads):
            self.layers.append(RSTB(embed_dim, depth=depth, drop_paths=dpr[start:start + depth], img_size=img,
                                    num_heads=heads, window=window_size, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                                    qk_scale=qk_scale, rel_pos_bias=rel_pos_bias, shift_mask=shift_mask,
                                    mask_cache=cache))
            start += depth
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, padding=1)
        self.conv_last = nn.Conv2d(embed_dim, in_chans, 3, padding=1)
        self.apply(_init_weights)
        if self.mask_token is not None:
            trunc_normal_(self.mask_token, std=0.02)

    # -- input/output space -------------------------------------------------------------------------------
    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Pad (or check) to the window multiple, then mean-shift and scale."""
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"SwinIR expects (B, {self.in_chans}, H, W), got {tuple(x.shape)}")
        if self.internal_pad:
            x = pad_to_multiple(x, self.window_size, "reflect")
        elif x.shape[-2] % self.window_size or x.shape[-1] % self.window_size:
            raise ValueError(f"input {tuple(x.shape[-2:])} is not a multiple of the window {self.window_size}; "
                             "reflect-pad it first (this variant does not pad internally)")
        if self.mean_shift:
            x = (x - self._mean(x)) * self.img_range
        return x

    def _mean(self, x: torch.Tensor) -> torch.Tensor:
        mean = RGB_MEAN if self.in_chans == 3 else (0.0,) * self.in_chans
        return x.new_tensor(mean).view(1, -1, 1, 1)

    # -- MaskDCPT backbone contract (maskdcpt.md §4.1) ----------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Input -> ``conv_after_body(body) + long skip`` (B, embed_dim, H', W') at the padded resolution."""
        x = self._prepare(x)
        f0 = self.conv_first(x)
        size = (f0.shape[-2], f0.shape[-1])
        t = self.patch_embed(f0)
        skip = f0 if self.long_skip == "raw" else _to_map(t, size)
        for layer in self.layers:
            t = layer(t, size)
        return self.conv_after_body(_to_map(self.norm(t), size)) + skip

    def decode_head(self, features: torch.Tensor, x: torch.Tensor, residual: bool = True) -> torch.Tensor:
        """``conv_last`` on :meth:`encode` features (+ shifted input if ``residual`` and the variant has a global
        residual), back to the input space, cropped to ``x``'s size."""
        y = self.conv_last(features)
        if residual and self.global_residual:
            y = self._prepare(x) + y
        if self.mean_shift:
            y = y / self.img_range + self._mean(y)
        return y[:, :, : x.shape[-2], : x.shape[-1]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode_head(self.encode(x), x, True)


def _init_weights(m: nn.Module) -> None:
    init_transformer_weights(m)
    if isinstance(m, WindowAttention) and m.relative_position_bias_table is not None:
        trunc_normal_(m.relative_position_bias_table, std=0.02)


def _arguments(frame_locals: dict[str, Any]) -> dict[str, Any]:
    """A variant constructor's own keyword arguments (its locals minus ``self``/``__class__``), passed on as-is."""
    return {k: v for k, v in frame_locals.items() if k not in ("self", "__class__")}


@register_arch("ram_swinir")
class RAMSwinIR(SwinIR):
    """RAM-SwinIR (ram.md §8.1): ImageNet-normalised input and output, optional input pixel masking.

    Same arguments as :class:`SwinIR` with the RAM defaults (img_size 64 per D13, 1x1 ``conv_first``, normed long
    skip, no global residual, no mean shift, ``mask_token``). ``forward(x, mask=None, mask_token=None)``: ``mask``
    (B, H, W), 1 = hidden; hidden pixels are replaced by ``mask_token`` (default 0 = ImageNet-mean grey) before
    padding and before any layer.
    """

    # A ``mask_token`` saved at another img_size (e.g. the official benchmark's 512) keeps ours: it is never used.
    CHECKPOINT_TOLERATED = (r"mask_token",)

    def __init__(
        self,
        *,
        img_size: int | Sequence[int] = 64,
        in_chans: int = 3,
        embed_dim: int = 180,
        depths: Sequence[int] = (6, 6, 6, 6, 6, 6),
        num_heads: Sequence[int] = (6, 6, 6, 6, 6, 6),
        window_size: int = 8,
        mlp_ratio: float = 2.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_path_rate: float = 0.1,
        img_range: float = 1.0,
        first_conv: int = 1,
        long_skip: str = "normed",
        global_residual: bool = False,
        mean_shift: bool = False,
        mask_token: bool = True,
        rel_pos_bias: bool = True,
        shift_mask: bool = True,
        internal_pad: bool = True,
    ) -> None:
        super().__init__(**_arguments(locals()))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                mask_token: torch.Tensor | float | None = None) -> torch.Tensor:
        if mask is not None:
            x = apply_pixel_mask(x, mask, mask_token)
        return super().forward(x)


@register_arch("maskdcpt_swinir")
class MaskDCPTSwinIR(SwinIR):
    """SwinIR as released by MaskDCPT (backbones.md §5.3): no relative-position bias, no shift mask, no internal
    padding, no drop path. Same arguments as :class:`SwinIR` with those defaults."""

    def __init__(
        self,
        *,
        img_size: int | Sequence[int] = 128,
        in_chans: int = 3,
        embed_dim: int = 180,
        depths: Sequence[int] = (6, 6, 6, 6, 6, 6),
        num_heads: Sequence[int] = (6, 6, 6, 6, 6, 6),
        window_size: int = 8,
        mlp_ratio: float = 2.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_path_rate: float = 0.0,
        img_range: float = 1.0,
        first_conv: int = 3,
        long_skip: str = "raw",
        global_residual: bool = True,
        mean_shift: bool = True,
        mask_token: bool = False,
        rel_pos_bias: bool = False,
        shift_mask: bool = False,
        internal_pad: bool = False,
    ) -> None:
        super().__init__(**_arguments(locals()))


# ---------------------------------------------------------------- presets

register_preset("swinir-denoise", "swinir", description="SwinIR-M colour denoising (upstream 005_colorDN, s128w8)",
                pad_multiple=8)
register_preset("swinir-jpeg", "swinir", description="SwinIR-M colour JPEG artefact removal (upstream 006, s126w7)",
                pad_multiple=7, window_size=7, img_size=126, img_range=255.0)
register_preset("swinir-ram", "ram_swinir", description="RAM-SwinIR (ImageNet-normalised, img_size 64)",
                pad_multiple=8, mean=IMAGENET_MEAN, std=IMAGENET_STD)
register_preset("swinir-maskdcpt", "maskdcpt_swinir", description="SwinIR as released by MaskDCPT (5D)",
                pad_multiple=8)
register_preset("swinir-tiny", "swinir", description="tiny SwinIR for tests and smoke runs", pad_multiple=8,
                img_size=32, embed_dim=24, depths=(2, 2), num_heads=(2, 2), drop_path_rate=0.0)
register_preset("swinir-ram-tiny", "ram_swinir", description="tiny RAM-SwinIR for tests and smoke runs",
                pad_multiple=8, mean=IMAGENET_MEAN, std=IMAGENET_STD, img_size=32, embed_dim=24, depths=(2, 2),
                num_heads=(2, 2), drop_path_rate=0.0)


# ---------------------------------------------------------------- checkpoint families

_BLOCK_RX = re.compile(r"^layers\.(\d+)\.residual_group\.blocks\.(\d+)\.")


def _depths(sd: Mapping[str, Any]) -> list[int]:
    counts: dict[int, int] = {}
    for key in sd:
        m = _BLOCK_RX.match(key)
        if m:
            counts[int(m.group(1))] = max(counts.get(int(m.group(1)), 0), int(m.group(2)) + 1)
    return [counts.get(i, 0) for i in range(max(counts, default=-1) + 1)]


def _window_from(sd: Mapping[str, torch.Tensor]) -> int | None:
    index = sd.get("layers.0.residual_group.blocks.0.attn.relative_position_index")
    if index is not None:
        return math.isqrt(index.shape[0])
    table = sd.get("layers.0.residual_group.blocks.0.attn.relative_position_bias_table")
    if table is not None:
        return (math.isqrt(table.shape[0]) + 1) // 2
    return None


def _default_img_size(window: int) -> int:
    return {8: 128, 7: 126}.get(window, 16 * window)


def _img_size_from(sd: Mapping[str, torch.Tensor], window: int) -> int:
    masks = [v for k, v in sd.items() if k.endswith(".attn_mask")]
    if masks:
        return math.isqrt(masks[0].shape[0]) * window
    return _default_img_size(window)


def _common_kwargs(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    depths = _depths(sd)
    embed = int(sd["conv_first.weight"].shape[0])
    heads = []
    for i in range(len(depths)):
        table = sd.get(f"layers.{i}.residual_group.blocks.0.attn.relative_position_bias_table")
        heads.append(int(table.shape[1]) if table is not None else 6)
    return {
        "in_chans": int(sd["conv_first.weight"].shape[1]),
        "embed_dim": embed,
        "depths": depths,
        "num_heads": heads,
        "mlp_ratio": sd["layers.0.residual_group.blocks.0.mlp.fc1.weight"].shape[0] / embed,
        "qkv_bias": "layers.0.residual_group.blocks.0.attn.qkv.bias" in sd,
    }


def _official_kwargs(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    window = _window_from(sd) or 8
    return {**_common_kwargs(sd), "window_size": window, "img_size": _img_size_from(sd, window),
            "img_range": 255.0 if window == 7 else 1.0}


def _ram_kwargs(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    # img_size follows the file's mask_token (D13 files hold 64); it only shapes unused tensors.
    return {**_common_kwargs(sd), "window_size": _window_from(sd) or 8, "img_size": int(sd["mask_token"].shape[-1])}


def _maskdcpt_kwargs(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    # Heads and window are not stored without a bias table: the release uses 6 heads and window 8.
    return {**_common_kwargs(_from_maskdcpt(sd)), "window_size": 8}


def _has_swin_body(sd: Mapping[str, torch.Tensor]) -> bool:
    return "conv_first.weight" in sd and "conv_last.weight" in sd and "conv_after_body.weight" in sd


def _is_official(sd: Mapping[str, torch.Tensor]) -> bool:
    return (_has_swin_body(sd) and "mask_token" not in sd and sd["conv_first.weight"].shape[-1] == 3
            and "layers.0.residual_group.blocks.0.attn.relative_position_bias_table" in sd
            and "layers.0.conv.weight" in sd and not any(k.startswith(("upsample.", "conv_up")) for k in sd))


def _is_ram(sd: Mapping[str, torch.Tensor]) -> bool:
    return _has_swin_body(sd) and "mask_token" in sd and sd["conv_first.weight"].shape[-1] == 1


def _is_maskdcpt(sd: Mapping[str, torch.Tensor]) -> bool:
    return (_has_swin_body(sd) and "mask_token" not in sd
            and not any(k.endswith("relative_position_bias_table") for k in sd)
            and any(k.startswith(("encode_layers.", "decode_layers", "layers.")) for k in sd))


def _check_index(key: str, value: torch.Tensor) -> None:
    if value.is_meta:
        return
    window = math.isqrt(value.shape[0])
    if value.shape != (window * window, window * window) or not torch.equal(
            value.to("cpu", torch.int64), relative_position_index(window)):
        raise CheckpointMismatchError(f"{key} is not the standard relative-position index for window {window}")


def _drop_derived(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Canonical dict: shift masks dropped (recomputed by the model), position indices verified and kept."""
    out = {}
    for key, value in sd.items():
        if key.endswith(".attn_mask"):
            continue
        if key.endswith(".relative_position_index"):
            _check_index(key, value)
        out[key] = value
    return out


def _with_masks(sd: Mapping[str, torch.Tensor], img_size: int) -> dict[str, torch.Tensor]:
    """Re-emit upstream ``attn_mask`` buffers (odd blocks) for ``img_size``, right after each block's ``mlp``."""
    window = _window_from(sd) or 8
    out = {}
    for key, value in sd.items():
        out[key] = value
        m = re.match(r"^(layers\.\d+\.residual_group\.blocks\.(\d+))\.mlp\.fc2\.bias$", key)
        if m and int(m.group(2)) % 2 == 1 and img_size > window:
            out[f"{m.group(1)}.attn_mask"] = shift_attention_mask(img_size, img_size, window, window // 2)
    return out


_MASKDCPT_TO_CANON = (
    (re.compile(r"^encode_layers\.(\d+)\."), lambda m: f"layers.{int(m.group(1))}."),
    (re.compile(r"^decode_layers(\d+)\."), lambda m: f"layers.{int(m.group(1)) + 3}."),
)
_CANON_TO_MASKDCPT = (
    (re.compile(r"^layers\.([0-2])\."), lambda m: f"encode_layers.{m.group(1)}."),
    (re.compile(r"^layers\.([3-5])\."), lambda m: f"decode_layers{int(m.group(1)) - 3}."),
)


def _rename(sd: Mapping[str, torch.Tensor], rules) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in sd.items():
        for rx, repl in rules:
            key = rx.sub(repl, key, count=1)
        out[key] = value
    return out


def _from_maskdcpt(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return _drop_derived(_rename(sd, _MASKDCPT_TO_CANON))


def _to_maskdcpt(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if len(_depths(sd)) != 6:
        raise CheckpointMismatchError(f"the MaskDCPT layout needs exactly 6 RSTBs, this model has {len(_depths(sd))}")
    return _rename(sd, _CANON_TO_MASKDCPT)


def _official_export(sd: Mapping[str, torch.Tensor], *, img_size: int | None = None) -> dict[str, torch.Tensor]:
    """Upstream layout; ``attn_mask`` is emitted for ``img_size`` (default: the release size, 128 for window 8,
    126 for window 7; pass ``model.img_size[0]`` to match another training size exactly)."""
    return _with_masks(sd, img_size or _default_img_size(_window_from(sd) or 8))


def _ram_export(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return _with_masks(sd, int(sd["mask_token"].shape[-1]))


register_family(CheckpointFamily(arch="swinir", family="official", detect=_is_official, infer_kwargs=_official_kwargs,
                                 to_canonical=_drop_derived, from_canonical=_official_export,
                                 meta=ModelMeta(pad_multiple=8), priority=10))
register_family(CheckpointFamily(arch="ram_swinir", family="ram", detect=_is_ram, infer_kwargs=_ram_kwargs,
                                 to_canonical=_drop_derived, from_canonical=_ram_export,
                                 meta=ModelMeta(pad_multiple=8, mean=IMAGENET_MEAN, std=IMAGENET_STD), priority=12))
register_family(CheckpointFamily(arch="maskdcpt_swinir", family="maskdcpt", detect=_is_maskdcpt,
                                 infer_kwargs=_maskdcpt_kwargs, to_canonical=_from_maskdcpt,
                                 from_canonical=_to_maskdcpt, meta=ModelMeta(pad_multiple=8), priority=12))
