"""PromptIR and its RAM / MaskDCPT variants, backbones.md §4 and ram.md §8.2.

Paper: Potlapalli et al., "PromptIR: Prompting for All-in-One Blind Image Restoration", NeurIPS 2023.
Upstream: va1shn9v/PromptIR (code and weights under an Academic Public License: non-commercial). RAM
(Dragonisss/RAM) and MaskDCPT (MILab-PKU/MaskDCPT) weights carry no licence file. Written from the anyrestore spec;
parameter names follow the upstream layout.

One implementation, three registry names:

* ``promptir`` — upstream layout (548 keys incl. six never-used 1x1 convs), [0,1] input, H and W must be multiples
  of 8 (no padding inside, as upstream).
* ``ram_promptir`` — the six unused convs removed, ImageNet-normalised input, optional pixel mask, reflect pad to 16.
* ``maskdcpt_promptir`` — unused convs removed, conv biases on, ``nn.LayerNorm``, no padding inside.

Checkpoint families: ``official`` / ``promptir_lightning`` (``net.`` prefix, stripped by the loader), ``ram``,
``maskdcpt``.
"""
from __future__ import annotations

import warnings
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from anyrestore.archs.blocks import (
    LAYERNORM_KINDS, Downsample, TransformerBlock, Upsample, apply_pixel_mask, pad_to_multiple, rename_keys,
    transformer_stage,
)
from anyrestore.archs.registry import (
    IMAGENET_MEAN, IMAGENET_STD, CheckpointFamily, ModelMeta, register_arch, register_family, register_preset,
)
from anyrestore.archs.restormer import (
    CANON_TO_MASKDCPT, MASKDCPT_TO_CANON, OverlapPatchEmbed, restormer_kwargs, stage_depth,
)

UNUSED_KEYS = ("chnl_reduce1.weight", "chnl_reduce2.weight", "chnl_reduce3.weight",
               "reduce_noise_channel_1.weight", "reduce_noise_channel_2.weight", "reduce_noise_channel_3.weight")


class PromptGenBlock(nn.Module):
    """Prompt generation: softmax(Linear(GAP(x))) weights a bank of ``prompt_len`` prompts, resized to x, conv3x3."""

    def __init__(self, *, prompt_dim: int, prompt_len: int = 5, prompt_size: int, lin_dim: int) -> None:
        super().__init__()
        self.prompt_param = nn.Parameter(torch.rand(1, prompt_len, prompt_dim, prompt_size, prompt_size))
        self.linear_layer = nn.Linear(lin_dim, prompt_len)
        self.conv3x3 = nn.Conv2d(prompt_dim, prompt_dim, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        weights = F.softmax(self.linear_layer(x.mean(dim=(-2, -1))), dim=1)  # (B, len)
        prompt = (weights.view(b, -1, 1, 1, 1) * self.prompt_param).sum(dim=1)  # (B, Cp, S, S)
        prompt = F.interpolate(prompt, (h, w), mode="bilinear", align_corners=False)
        return self.conv3x3(prompt)


@register_arch("promptir")
class PromptIR(nn.Module):
    """PromptIR: Restormer encoder + prompt-conditioned decoder (backbones.md §4.1; decoder always on).

    Args:
        in_channels, out_channels, dim, num_blocks, num_refinement_blocks, heads, ffn_expansion_factor, layernorm:
            as :class:`~anyrestore.archs.restormer.Restormer`.
        bias: conv biases in blocks, channel reductions and output (MaskDCPT: True).
        prompt_dims, prompt_sizes: prompt channels / spatial size of prompt1..3 (upstream (64,128,320),
            (64,32,16)); the decoder widths follow from them.
        prompt_len: prompts per bank (5).
        unused_modules: build upstream's six never-called 1x1 convs so upstream files load strictly.
        internal_pad: 0 = no padding inside (H, W must be multiples of 8, else ValueError); N = reflect-pad to N.
    """

    MASK_POINTS = {
        "pre": (r"patch_embed", r"prompt[123]\.conv3x3"),
        "post": (r"patch_embed", r".*\.norm1", r".*\.norm2", r".*\.attn\.qkv_dwconv", r".*\.ffn\.project_out",
                 r"(down1_2|down2_3|down3_4|up4_3|up3_2|up2_1)\.body\.0", r"prompt[123]\.conv3x3"),
    }
    min_multiple = 8

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
        prompt_dims: Sequence[int] = (64, 128, 320),
        prompt_sizes: Sequence[int] = (64, 32, 16),
        prompt_len: int = 5,
        unused_modules: bool = True,
        internal_pad: int = 0,
    ) -> None:
        super().__init__()
        if layernorm not in LAYERNORM_KINDS:
            raise ValueError(f"unknown layernorm {layernorm!r}; expected one of {', '.join(LAYERNORM_KINDS)}")
        if internal_pad and internal_pad % self.min_multiple:
            raise ValueError(f"internal_pad must be 0 or a multiple of {self.min_multiple}, got {internal_pad}")
        self.internal_pad = internal_pad
        self.meta = ModelMeta(pad_multiple=internal_pad or self.min_multiple)
        p1, p2, p3 = prompt_dims

        def stage(c: int, n: int, h: int) -> nn.Sequential:
            return transformer_stage(c, n, num_heads=h, expansion=ffn_expansion_factor, bias=bias, layernorm=layernorm)

        def block(c: int) -> TransformerBlock:
            return TransformerBlock(c, num_heads=heads[2], expansion=ffn_expansion_factor, bias=bias,
                                    layernorm=layernorm)

        self.patch_embed = OverlapPatchEmbed(in_channels, dim)
        self.prompt1 = PromptGenBlock(prompt_dim=p1, prompt_len=prompt_len, prompt_size=prompt_sizes[0],
                                       lin_dim=dim * 2)
        self.prompt2 = PromptGenBlock(prompt_dim=p2, prompt_len=prompt_len, prompt_size=prompt_sizes[1],
                                       lin_dim=dim * 4)
        self.prompt3 = PromptGenBlock(prompt_dim=p3, prompt_len=prompt_len, prompt_size=prompt_sizes[2],
                                       lin_dim=dim * 8)
        if unused_modules:  # upstream builds these but never calls them; kept only for strict key compatibility
            self.chnl_reduce1 = nn.Conv2d(p1, p1, 1, bias=bias)
            self.chnl_reduce2 = nn.Conv2d(p2, p2, 1, bias=bias)
            self.chnl_reduce3 = nn.Conv2d(p3, 2 * p2, 1, bias=bias)
            self.reduce_noise_channel_1 = nn.Conv2d(dim + p1, dim, 1, bias=bias)
            self.reduce_noise_channel_2 = nn.Conv2d(dim * 2 + p2, dim * 2, 1, bias=bias)
            self.reduce_noise_channel_3 = nn.Conv2d(p2 + p3, dim * 4, 1, bias=bias)
        self.encoder_level1 = stage(dim, num_blocks[0], heads[0])
        self.down1_2 = Downsample(dim)
        self.encoder_level2 = stage(dim * 2, num_blocks[1], heads[1])
        self.down2_3 = Downsample(dim * 2)
        self.encoder_level3 = stage(dim * 4, num_blocks[2], heads[2])
        self.down3_4 = Downsample(dim * 4)
        self.latent = stage(dim * 8, num_blocks[3], heads[3])
        self.up4_3 = Upsample(dim * 4)
        self.reduce_chan_level3 = nn.Conv2d(dim * 2 + dim * 4, dim * 4, 1, bias=bias)
        self.noise_level3 = block(dim * 8 + p3)
        self.reduce_noise_level3 = nn.Conv2d(dim * 8 + p3, dim * 4, 1, bias=bias)
        self.decoder_level3 = stage(dim * 4, num_blocks[2], heads[2])
        self.up3_2 = Upsample(dim * 4)
        self.reduce_chan_level2 = nn.Conv2d(dim * 4, dim * 2, 1, bias=bias)
        self.noise_level2 = block(dim * 4 + p2)
        self.reduce_noise_level2 = nn.Conv2d(dim * 4 + p2, dim * 4, 1, bias=bias)
        self.decoder_level2 = stage(dim * 2, num_blocks[1], heads[1])
        self.up2_1 = Upsample(dim * 2)
        self.noise_level1 = block(dim * 2 + p1)
        self.reduce_noise_level1 = nn.Conv2d(dim * 2 + p1, dim * 2, 1, bias=bias)
        self.decoder_level1 = stage(dim * 2, num_blocks[0], heads[0])
        self.refinement = stage(dim * 2, num_refinement_blocks, heads[0])
        self.output = nn.Conv2d(dim * 2, out_channels, 3, padding=1, bias=bias)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        if self.internal_pad:
            return pad_to_multiple(x, self.internal_pad, "reflect")
        h, w = x.shape[-2:]
        if h % self.min_multiple or w % self.min_multiple:
            raise ValueError(f"{type(self).__name__} needs H and W that are multiples of {self.min_multiple}, got "
                             f"{h}x{w}; pad the input (the Predictor does this from model.meta.pad_multiple)")
        return x

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Input -> refinement features (B, 2dim, H', W') (padded resolution when ``internal_pad``)."""
        x = self._pad(x)
        e1 = self.encoder_level1(self.patch_embed(x))
        e2 = self.encoder_level2(self.down1_2(e1))
        e3 = self.encoder_level3(self.down2_3(e2))
        d = self.latent(self.down3_4(e3))
        d = self.reduce_noise_level3(self.noise_level3(torch.cat([d, self.prompt3(d)], 1)))
        d = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(d), e3], 1)))
        d = self.reduce_noise_level2(self.noise_level2(torch.cat([d, self.prompt2(d)], 1)))
        d = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(d), e2], 1)))
        d = self.reduce_noise_level1(self.noise_level1(torch.cat([d, self.prompt1(d)], 1)))
        d = self.decoder_level1(torch.cat([self.up2_1(d), e1], 1))
        return self.refinement(d)

    def decode_head(self, features: torch.Tensor, x: torch.Tensor, residual: bool = True) -> torch.Tensor:
        """``output`` conv (+ (padded) input if ``residual``), cropped to ``x``'s size."""
        y = self.output(features)
        if residual:
            y = y + self._pad(x)
        return y[:, :, : x.shape[-2], : x.shape[-1]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode_head(self.encode(x), x, True)


@register_arch("ram_promptir")
class RAMPromptIR(PromptIR):
    """RAM's PromptIR (ram.md §8.2): no unused convs, reflect pad to 16 inside, optional input pixel mask.

    Takes ImageNet-normalised input (``model.meta``). ``forward(x, mask=None, mask_token=None)`` with ``mask``
    (B,H,W) (or (B,1,H,W)) in {0,1} replaces hidden pixels by the token (default: the zero, unregistered
    ``mask_token`` buffer) before padding.
    """

    def __init__(self, *, unused_modules: bool = False, internal_pad: int = 16, **kwargs: Any) -> None:
        super().__init__(unused_modules=unused_modules, internal_pad=internal_pad, **kwargs)
        self.meta = ModelMeta(pad_multiple=internal_pad, mean=IMAGENET_MEAN, std=IMAGENET_STD)
        self.register_buffer("mask_token", torch.zeros(1, kwargs.get("in_channels", 3), 1, 1), persistent=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                mask_token: torch.Tensor | float | None = None) -> torch.Tensor:
        if mask is not None:
            x = apply_pixel_mask(x, mask, self.mask_token if mask_token is None else mask_token)
        return self.decode_head(self.encode(x), x, True)


@register_arch("maskdcpt_promptir")
class MaskDCPTPromptIR(PromptIR):
    """MaskDCPT's PromptIR (maskdcpt.md §7): conv biases on, ``nn.LayerNorm``, no unused convs, no padding inside."""

    def __init__(self, *, bias: bool = True, layernorm: str = "torch", unused_modules: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(bias=bias, layernorm=layernorm, unused_modules=unused_modules, **kwargs)


# ---------------------------------------------------------------- presets

register_preset("promptir", "promptir", description="PromptIR, upstream layout (35.6 M; H, W multiples of 8)",
                pad_multiple=8)
register_preset("promptir-ram", "ram_promptir", description="PromptIR as trained by RAM (ImageNet-normalised input)",
                pad_multiple=16, mean=IMAGENET_MEAN, std=IMAGENET_STD)
register_preset("promptir-maskdcpt", "maskdcpt_promptir", description="PromptIR as released by MaskDCPT (conv bias)",
                pad_multiple=8)
_TINY = dict(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 1, 2, 2), prompt_dims=(8, 8, 16),
             prompt_sizes=(8, 4, 2))
register_preset("promptir-tiny", "promptir", description="tiny PromptIR for tests", pad_multiple=8, **_TINY)
register_preset("promptir-ram-tiny", "ram_promptir", description="tiny RAM-PromptIR for tests", pad_multiple=16,
                mean=IMAGENET_MEAN, std=IMAGENET_STD, **_TINY)


# ---------------------------------------------------------------- checkpoint families

def promptir_kwargs(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Hyper-parameters of a canonical-layout PromptIR state dict (any variant)."""
    kwargs = restormer_kwargs(sd)
    kwargs["prompt_dims"] = [int(sd[f"prompt{i}.prompt_param"].shape[2]) for i in (1, 2, 3)]
    kwargs["prompt_sizes"] = [int(sd[f"prompt{i}.prompt_param"].shape[3]) for i in (1, 2, 3)]
    kwargs["prompt_len"] = int(sd["prompt1.prompt_param"].shape[1])
    return kwargs


def _is_official(sd: Mapping[str, torch.Tensor]) -> bool:
    return "prompt1.prompt_param" in sd and "chnl_reduce1.weight" in sd and "encoder_level1.0.norm1.body.weight" in sd


def _is_ram(sd: Mapping[str, torch.Tensor]) -> bool:
    return ("prompt1.prompt_param" in sd and "chnl_reduce1.weight" not in sd
            and "encoder_level1.0.norm1.body.weight" in sd)


def _is_maskdcpt(sd: Mapping[str, torch.Tensor]) -> bool:
    return "prompt1.prompt_param" in sd and "encoder_level1.blocks.0.norm1.weight" in sd


def _official_kwargs(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    # a RAM-layout dict forced into the upstream class simply gets no unused convs (they are never called)
    return {**promptir_kwargs(sd), "unused_modules": "chnl_reduce1.weight" in sd}


def _ram_to_canonical(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = drop_unused(sd)
    if len(out) != len(sd):
        warnings.warn(f"dropped upstream PromptIR's never-used convs: {', '.join(sorted(set(sd) - set(out)))}",
                      stacklevel=2)
    return out


def _ram_kwargs(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    return promptir_kwargs(sd)


def _maskdcpt_to_canonical(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return drop_unused(rename_keys(sd, MASKDCPT_TO_CANON))


def _maskdcpt_kwargs(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    kwargs = promptir_kwargs(_maskdcpt_to_canonical(sd))
    kwargs.pop("layernorm")
    return kwargs


def drop_unused(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An upstream PromptIR dict without the six never-used convs (the RAM layout)."""
    return {k: v for k, v in sd.items() if k.rsplit(".", 1)[0] + ".weight" not in UNUSED_KEYS}


_official = CheckpointFamily(arch="promptir", family="official", detect=_is_official, infer_kwargs=_official_kwargs,
                             from_canonical=dict, meta=ModelMeta(pad_multiple=8), priority=20)
register_family(_official)
register_family(CheckpointFamily(arch="ram_promptir", family="ram", detect=_is_ram, infer_kwargs=_ram_kwargs,
                                 to_canonical=_ram_to_canonical, from_canonical=dict,
                                 meta=ModelMeta(pad_multiple=16, mean=IMAGENET_MEAN, std=IMAGENET_STD), priority=20))
register_family(CheckpointFamily(arch="maskdcpt_promptir", family="maskdcpt", detect=_is_maskdcpt,
                                 infer_kwargs=_maskdcpt_kwargs, to_canonical=_maskdcpt_to_canonical,
                                 from_canonical=lambda sd: rename_keys(sd, CANON_TO_MASKDCPT),
                                 meta=ModelMeta(pad_multiple=8), priority=20))
__all__ = ["PromptIR", "RAMPromptIR", "MaskDCPTPromptIR", "PromptGenBlock", "drop_unused", "promptir_kwargs",
           "stage_depth"]
