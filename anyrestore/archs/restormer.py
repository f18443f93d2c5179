"""Restormer, backbones.md §3.

Paper: Zamir et al., "Restormer: Efficient Transformer for High-Resolution Image Restoration", CVPR 2022.
Upstream: swz30/Restormer (code and weights under an Academic Public License: non-commercial). Written from the
anyrestore spec; parameter names follow the upstream layout so official checkpoints load without renaming.

Checkpoint families: ``official`` (WithBias or BiasFree LayerNorm; canonical) and ``maskdcpt`` (``.blocks.``,
``normX.weight``, ``downX_Y.conv.`` naming; ``nn.LayerNorm``).
"""
from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import math

import torch
import torch.nn.functional as F
from torch import nn

from anyrestore.archs.blocks import (
    LAYERNORM_KINDS, Downsample, Upsample, pad_to_multiple, rename_keys, transformer_stage,
)
from anyrestore.archs.registry import CheckpointFamily, ModelMeta, register_arch, register_family, register_preset

STAGES = ("encoder_level1", "encoder_level2", "encoder_level3", "latent",
          "decoder_level3", "decoder_level2", "decoder_level1", "refinement")


class OverlapPatchEmbed(nn.Module):
    """conv3x3 in -> dim, no bias (key ``proj.weight``)."""

    def __init__(self, in_channels: int, dim: int, *, bias: bool = False) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, 3, padding=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


@register_arch("restormer")
class Restormer(nn.Module):
    """Restormer U-Net of MDTA/GDFN blocks (backbones.md §3.1). Input/output (B,C,H,W) in [0,1], any H, W
    (reflect-padded to a multiple of 8 inside and cropped back).

    Args:
        in_channels, out_channels: image channels.
        dim: channels at full resolution (levels: dim, 2dim, 4dim, 8dim).
        num_blocks: blocks of encoder levels 1-3 and the latent; decoders mirror levels 3-1.
        num_refinement_blocks: blocks after the last decoder.
        heads: attention heads per level.
        ffn_expansion_factor: GDFN hidden = int(C * factor).
        bias: conv biases in the blocks, the channel reductions and the output conv.
        layernorm: ``"WithBias"`` (official default), ``"BiasFree"`` (official denoising) or ``"torch"`` (MaskDCPT).
    """

    MASK_POINTS = {
        "pre": (r"patch_embed",),
        "post": (r"patch_embed", r".*\.norm1", r".*\.norm2", r".*\.attn\.qkv_dwconv", r".*\.ffn\.project_out",
                 r"(down1_2|down2_3|down3_4|up4_3|up3_2|up2_1)\.body\.0"),
    }
    pad_multiple = 8

    def __init__(
        self,
        *,
        in_channels: int = 3,
        out_channels: int = 3,
        dim: int = 48,
        num_blocks: Sequence[int] = (4, 6, 6, 8),
        num_refinement_blocks: int = 4,
        heads: Sequence[int] = (1, 2, 4, 8),
        ffn_expansion_factor: float = 2.66,
        bias: bool = False,
        layernorm: str = "WithBias",
    ) -> None:
        super().__init__()
        if layernorm not in LAYERNORM_KINDS:
            raise ValueError(f"unknown layernorm {layernorm!r}; expected one of {', '.join(LAYERNORM_KINDS)}")
        if len(num_blocks) != 4 or len(heads) != 4:
            raise ValueError(f"num_blocks and heads need 4 entries, got {list(num_blocks)} and {list(heads)}")

        self.meta = ModelMeta(pad_multiple=self.pad_multiple)

        def stage(c: int, n: int, h: int) -> nn.Sequential:
            return transformer_stage(c, n, num_heads=h, expansion=ffn_expansion_factor, bias=bias, layernorm=layernorm)

        self.patch_embed = OverlapPatchEmbed(in_channels, dim)
        self.encoder_level1 = stage(dim, num_blocks[0], heads[0])
        self.down1_2 = Downsample(dim)
        self.encoder_level2 = stage(dim * 2, num_blocks[1], heads[1])
        self.down2_3 = Downsample(dim * 2)
        self.encoder_level3 = stage(dim * 4, num_blocks[2], heads[2])
        self.down3_4 = Downsample(dim * 4)
        self.latent = stage(dim * 8, num_blocks[3], heads[3])
        self.up4_3 = Upsample(dim * 8)
        self.reduce_chan_level3 = nn.Conv2d(dim * 8, dim * 4, 1, bias=bias)
        self.decoder_level3 = stage(dim * 4, num_blocks[2], heads[2])
        self.up3_2 = Upsample(dim * 4)
        self.reduce_chan_level2 = nn.Conv2d(dim * 4, dim * 2, 1, bias=bias)
        self.decoder_level2 = stage(dim * 2, num_blocks[1], heads[1])
        self.up2_1 = Upsample(dim * 2)
        self.decoder_level1 = stage(dim * 2, num_blocks[0], heads[0])
        self.refinement = stage(dim * 2, num_refinement_blocks, heads[0])
        self.output = nn.Conv2d(dim * 2, out_channels, 3, padding=1, bias=bias)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Input -> refinement features (B, 2dim, H', W') at the padded resolution."""
        x = pad_to_multiple(x, self.pad_multiple, "reflect")
        e1 = self.encoder_level1(self.patch_embed(x))
        e2 = self.encoder_level2(self.down1_2(e1))
        e3 = self.encoder_level3(self.down2_3(e2))
        d = self.latent(self.down3_4(e3))
        d = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(d), e3], 1)))
        d = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(d), e2], 1)))
        d = self.decoder_level1(torch.cat([self.up2_1(d), e1], 1))
        return self.refinement(d)

    def decode_head(self, features: torch.Tensor, x: torch.Tensor, residual: bool = True) -> torch.Tensor:
        """``output`` conv (+ padded input if ``residual``), cropped to ``x``'s size."""
        y = self.output(features)
        if residual:
            y = y + pad_to_multiple(x, self.pad_multiple, "reflect")
        return y[:, :, : x.shape[-2], : x.shape[-1]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode_head(self.encode(x), x, True)


class LoRAConv2d(nn.Module):
    """A conv plus a low-rank update, key-compatible with ``loralib.ConvLoRA`` (unirestorer.md §5.3).

    weight = conv.weight + reshape(lora_B @ lora_A, conv.weight.shape) * alpha / rank, with
    lora_A (rank*k, C_in*k) Kaiming-uniform and lora_B (C_out/groups*k, rank*k) zero-initialised (ΔW = 0 at init).
    """

    def __init__(self, conv: nn.Conv2d, *, rank: int = 8, alpha: float = 16.0) -> None:
        super().__init__()
        if rank <= 0:
            raise ValueError(f"LoRA rank must be positive, got {rank}")
        k = conv.kernel_size[0]
        self.conv = conv
        self.scaling = alpha / rank
        self.lora_A = nn.Parameter(torch.zeros(rank * k, conv.in_channels * k))
        self.lora_B = nn.Parameter(torch.zeros(conv.out_channels // conv.groups * k, rank * k))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def merged_weight(self) -> torch.Tensor:
        return self.conv.weight + (self.lora_B @ self.lora_A).view(self.conv.weight.shape) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        return F.conv2d(x, self.merged_weight(), c.bias, c.stride, c.padding, c.dilation, c.groups)


@register_arch("lora_restormer")
class LoRARestormer(Restormer):
    """Restormer with every conv wrapped by :class:`LoRAConv2d` (UniRestorer's CAR experts; backbones.md §3.3).

    Args:
        lora_rank, lora_alpha: LoRA rank r and alpha (scale alpha/r; UniRestorer: 8, 16).
        Other arguments as :class:`Restormer`.
    """

    def __init__(self, *, lora_rank: int = 8, lora_alpha: float = 16.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        convs = [(name, m) for name, m in self.named_modules() if isinstance(m, nn.Conv2d)]
        for name, conv in convs:
            parent_name, _, child = name.rpartition(".")
            parent = self.get_submodule(parent_name) if parent_name else self
            setattr(parent, child, LoRAConv2d(conv, rank=lora_rank, alpha=lora_alpha))


def merge_lora_state_dict(sd: Mapping[str, torch.Tensor], *, scaling: float = 2.0) -> dict[str, torch.Tensor]:
    """A LoRA-Restormer state dict -> a plain Restormer one: ``<m>.conv.weight`` + ΔW -> ``<m>.weight``, ``lora_*``
    dropped, everything else unchanged (merge exactly once)."""
    out = {}
    for key, value in sd.items():
        if key.endswith((".lora_A", ".lora_B")):
            continue
        if key.endswith(".conv.weight") and f"{key[:-12]}.lora_A" in sd:
            module = key[:-12]
            delta = (sd[f"{module}.lora_B"] @ sd[f"{module}.lora_A"]).view(value.shape) * scaling
            out[f"{module}.weight"] = value + delta
        elif key.endswith(".conv.bias") and f"{key[:-10]}.lora_A" in sd:
            out[f"{key[:-10]}.bias"] = value
        else:
            out[key] = value
    return out


# ---------------------------------------------------------------- presets

register_preset("restormer", "restormer", description="Restormer, WithBias LN (deraining/deblurring releases, 26.1 M)",
                pad_multiple=8)
register_preset("restormer-biasfree", "restormer", description="Restormer, BiasFree LN (denoising releases, 26.1 M)",
                pad_multiple=8, layernorm="BiasFree")
register_preset("restormer-maskdcpt", "restormer", description="Restormer as released by MaskDCPT (nn.LayerNorm)",
                pad_multiple=8, layernorm="torch")
register_preset("restormer-lora", "lora_restormer",
                description="LoRA-Restormer (r 8, alpha 16), UniRestorer CAR experts", pad_multiple=8)
register_preset("restormer-tiny", "restormer", description="tiny Restormer for tests and smoke runs",
                pad_multiple=8, dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 1, 2, 2))


# ---------------------------------------------------------------- checkpoint families

# MaskDCPT layout <-> canonical; shared with PromptIR (whose single noise_level blocks also match the norm rule)
MASKDCPT_TO_CANON = (
    (re.compile(r"\.blocks\.(\d+)\."), r".\1."),
    (re.compile(r"(norm[12])\.(weight|bias)$"), r"\1.body.\2"),
    (re.compile(r"^(down|up)(\d_\d)\.conv\."), r"\1\2.body.0."),
)
CANON_TO_MASKDCPT = (
    (re.compile(r"^(" + "|".join(STAGES) + r")\.(\d+)\."), r"\1.blocks.\2."),
    (re.compile(r"(norm[12])\.body\.(weight|bias)$"), r"\1.\2"),
    (re.compile(r"^(down|up)(\d_\d)\.body\.0\."), r"\1\2.conv."),
)


def stage_depth(sd: Mapping[str, Any], stage: str) -> int:
    return 1 + max((int(m.group(1)) for k in sd if (m := re.match(rf"{stage}\.(\d+)\.", k))), default=-1)


def ffn_factor(dim: int, hidden: int) -> float:
    """A factor f with int(dim * f) == hidden; 2.66 when that is the upstream value."""
    if int(dim * 2.66) == hidden:
        return 2.66
    return hidden / dim if hidden % dim == 0 else (hidden + 0.5) / dim


def restormer_kwargs(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Hyper-parameters of a canonical-layout Restormer (or PromptIR encoder) state dict."""
    dim = int(sd["patch_embed.proj.weight"].shape[0])
    heads = [int(sd[f"{s}.0.attn.temperature"].shape[0]) for s in STAGES[:4]]
    if "encoder_level1.0.norm1.body.bias" in sd:
        layernorm = "WithBias"
    else:
        layernorm = "BiasFree"
    return {
        "in_channels": int(sd["patch_embed.proj.weight"].shape[1]),
        "out_channels": int(sd["output.weight"].shape[0]),
        "dim": dim,
        "num_blocks": [stage_depth(sd, s) for s in STAGES[:4]],
        "num_refinement_blocks": stage_depth(sd, "refinement"),
        "heads": heads,
        "ffn_expansion_factor": ffn_factor(dim, int(sd["encoder_level1.0.ffn.project_out.weight"].shape[1])),
        "bias": "encoder_level1.0.attn.qkv.bias" in sd,
        "layernorm": layernorm,
    }


def _is_lora(sd: Mapping[str, torch.Tensor]) -> bool:
    return "patch_embed.proj.lora_A" in sd and "patch_embed.proj.conv.weight" in sd and "prompt1.prompt_param" not in sd


def _lora_kwargs(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    kwargs = restormer_kwargs(merge_lora_state_dict(sd))
    # qkv is 1x1: lora_A is (rank, C_in); alpha is not stored in a file: UniRestorer's 16
    return {**kwargs, "lora_rank": int(sd["encoder_level1.0.attn.qkv.lora_A"].shape[0]), "lora_alpha": 16.0}


def _is_official(sd: Mapping[str, torch.Tensor]) -> bool:
    return ("patch_embed.proj.weight" in sd and "encoder_level1.0.norm1.body.weight" in sd
            and "prompt1.prompt_param" not in sd)


def _is_maskdcpt(sd: Mapping[str, torch.Tensor]) -> bool:
    return ("patch_embed.proj.weight" in sd and "encoder_level1.blocks.0.norm1.weight" in sd
            and "prompt1.prompt_param" not in sd)


def _maskdcpt_kwargs(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    return {**restormer_kwargs(rename_keys(sd, MASKDCPT_TO_CANON)), "layernorm": "torch"}


_META = ModelMeta(pad_multiple=8)
register_family(CheckpointFamily(arch="restormer", family="official", detect=_is_official,
                                 infer_kwargs=restormer_kwargs, from_canonical=dict, meta=_META, priority=10))
register_family(CheckpointFamily(arch="restormer", family="maskdcpt", detect=_is_maskdcpt,
                                 infer_kwargs=_maskdcpt_kwargs,
                                 to_canonical=lambda sd: rename_keys(sd, MASKDCPT_TO_CANON),
                                 from_canonical=lambda sd: rename_keys(sd, CANON_TO_MASKDCPT), meta=_META, priority=10))
register_family(CheckpointFamily(arch="lora_restormer", family="official", detect=_is_lora, infer_kwargs=_lora_kwargs,
                                 from_canonical=dict, meta=_META, priority=15))
