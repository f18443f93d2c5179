"""RetinexFormer (backbones.md §6): one-stage Retinex-based transformer for low-light enhancement.

Paper: Cai et al., "Retinexformer: One-stage Retinex-based Transformer for Low-light Image Enhancement", ICCV 2023.
Upstream code and weights: caiyuanhao1998/Retinexformer (MIT). Written from the anyrestore spec; module names follow
the upstream layout (``body.{s}.estimator`` / ``body.{s}.denoiser``) so official checkpoints load without renaming.

The network has no internal padding: H and W must be multiples of ``2**levels`` (4); the preset's ``pad_multiple``
tells the Predictor to reflect-pad. Checkpoint family: ``official`` (also UniRestorer's low-light experts).
"""
from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from anyrestore.archs.blocks import init_transformer_weights, transposed_attention
from anyrestore.archs.fastpaths import FAST_BY_DEFAULT
from anyrestore.archs.registry import CheckpointFamily, ModelMeta, register_arch, register_family, register_preset


class IlluminationEstimator(nn.Module):
    """Illumination features and map from the image and its channel mean (keys ``conv1``, ``depth_conv``, ``conv2``).

    Shape: img (B,3,H,W) -> (features (B,C,H,W), map (B,3,H,W)).
    """

    def __init__(self, channels: int, *, in_channels: int = 3) -> None:
        super().__init__()
        groups = in_channels + 1
        self.conv1 = nn.Conv2d(in_channels + 1, channels, 1)
        self.depth_conv = nn.Conv2d(channels, channels, 5, padding=2, groups=groups)
        self.conv2 = nn.Conv2d(channels, in_channels, 1)

    def forward(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.depth_conv(self.conv1(torch.cat([img, img.mean(dim=1, keepdim=True)], dim=1)))
        return features, self.conv2(features)


class IGMSA(nn.Module):
    """Illumination-guided multi-head self-attention across channels (transposed attention per head).

    Shape: x, guide (B,H,W,D) channels-last -> (B,H,W,D).
    """

    def __init__(self, dim: int, *, head_dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        inner = head_dim * heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.rescale = nn.Parameter(torch.ones(heads, 1, 1))
        self.proj = nn.Linear(inner, dim)
        self.sdpa = FAST_BY_DEFAULT
        self.pos_emb = nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False),
            nn.GELU(),
            nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False),
        )

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        b, n, _ = t.shape  # (B, N, heads·d) -> (B, heads, d, N)
        return t.reshape(b, n, self.heads, self.head_dim).permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        tokens = x.reshape(b, h * w, c)
        v_in = self.to_v(tokens)
        if self.sdpa:
            # token-major views (B, heads, N, d): no transposed copies; the L2 norms go onto the small d×d map
            def split(t: torch.Tensor) -> torch.Tensor:
                return t.view(b, h * w, self.heads, self.head_dim).transpose(1, 2)

            v = split(v_in * guide.reshape(b, h * w, -1))
            out = transposed_attention(split(self.to_k(tokens)), split(self.to_q(tokens)), v, self.rescale,
                                       tokens_last=False)  # (B, heads, N, d)
            out = self.proj(out.transpose(1, 2).reshape(b, h * w, self.heads * self.head_dim)).view(b, h, w, c)
        else:
            out = self._plain_attention(tokens, v_in, guide)
        pos = self.pos_emb(v_in.reshape(b, h, w, c).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return out + pos

    def _plain_attention(self, tokens: torch.Tensor, v_in: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        b, n, c = tokens.shape
        h, w = guide.shape[1:3]
        q = F.normalize(self._split(self.to_q(tokens)), dim=-1, p=2)
        k = F.normalize(self._split(self.to_k(tokens)), dim=-1, p=2)
        v = self._split(v_in) * self._split(guide.reshape(b, n, -1))
        attn = ((k @ q.transpose(-2, -1)) * self.rescale).softmax(dim=-1)  # (B, heads, d, d)
        out = (attn @ v).permute(0, 3, 1, 2).reshape(b, n, self.heads * self.head_dim)
        return self.proj(out).view(b, h, w, c)


class FeedForward(nn.Module):
    """1x1 D->4D, GELU, depthwise 3x3, GELU, 1x1 4D->D, no biases (keys ``net.{0,2,4}``); channels-last I/O."""

    def __init__(self, dim: int, *, mult: int = 4) -> None:
        super().__init__()
        hidden = dim * mult
        self.net = nn.Sequential(
            nn.Conv2d(dim, hidden, 1, bias=False),
            nn.GELU(),
            nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False),
            nn.GELU(),
            nn.Conv2d(hidden, dim, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the (B,C,H,W) view of channels-last tokens is a channels-last map: the convs take it as is (no copy), and
        # their channels-last output permutes back to contiguous tokens
        return self.net(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class PreNorm(nn.Module):
    """LayerNorm over channels-last tokens, then ``fn`` (keys ``norm``, ``fn``)."""

    def __init__(self, dim: int, fn: nn.Module) -> None:
        super().__init__()
        self.fn = fn
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x))


class IGAB(nn.Module):
    """Illumination-guided attention blocks: ``x += IG_MSA(x, g)``; ``x += FFN(LN(x))`` (keys ``blocks.{j}.{0,1}``).

    Shape: x, guide (B,D,H,W) -> (B,D,H,W).
    """

    def __init__(self, dim: int, *, head_dim: int, heads: int, depth: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.ModuleList([IGMSA(dim, head_dim=head_dim, heads=heads), PreNorm(dim, FeedForward(dim))])
            for _ in range(depth)
        )

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        guide = guide.permute(0, 2, 3, 1)
        for attn, ffn in self.blocks:
            x = attn(x, guide) + x
            x = ffn(x) + x
        return x.permute(0, 3, 1, 2)


class Denoiser(nn.Module):
    """Illumination-guided U-Net (keys ``embedding``, ``encoder_layers``, ``bottleneck``, ``decoder_layers``,
    ``mapping``). ``num_blocks`` gives the IGAB depth per level, the last entry being the bottleneck."""

    def __init__(self, *, in_dim: int, out_dim: int, dim: int, num_blocks: Sequence[int]) -> None:
        super().__init__()
        self.levels = len(num_blocks) - 1
        self.embedding = nn.Conv2d(in_dim, dim, 3, padding=1, bias=False)
        self.encoder_layers = nn.ModuleList()
        d = dim
        for i in range(self.levels):
            self.encoder_layers.append(nn.ModuleList([
                IGAB(d, head_dim=dim, heads=d // dim, depth=num_blocks[i]),
                nn.Conv2d(d, 2 * d, 4, stride=2, padding=1, bias=False),  # features
                nn.Conv2d(d, 2 * d, 4, stride=2, padding=1, bias=False),  # illumination guide
            ]))
            d *= 2
        self.bottleneck = IGAB(d, head_dim=dim, heads=d // dim, depth=num_blocks[-1])
        self.decoder_layers = nn.ModuleList()
        for i in range(self.levels):
            self.decoder_layers.append(nn.ModuleList([
                nn.ConvTranspose2d(d, d // 2, 2, stride=2),
                nn.Conv2d(d, d // 2, 1, bias=False),
                IGAB(d // 2, head_dim=dim, heads=d // 2 // dim, depth=num_blocks[self.levels - 1 - i]),
            ]))
            d //= 2
        self.mapping = nn.Conv2d(dim, out_dim, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        f = self.embedding(x)
        skips, guides = [], []
        for igab, down, guide_down in self.encoder_layers:
            f = igab(f, guide)
            skips.append(f)
            guides.append(guide)
            f, guide = down(f), guide_down(guide)
        f = self.bottleneck(f, guide)
        for up, fuse, igab in self.decoder_layers:
            f = fuse(torch.cat([up(f), skips.pop()], dim=1))
            f = igab(f, guides.pop())
        return self.mapping(f) + x


class RetinexStage(nn.Module):
    """One Retinex stage: estimate illumination, light up the image, denoise with the illumination guide."""

    def __init__(self, *, in_channels: int, out_channels: int, n_feat: int, num_blocks: Sequence[int]) -> None:
        super().__init__()
        self.estimator = IlluminationEstimator(n_feat, in_channels=in_channels)
        self.denoiser = Denoiser(in_dim=in_channels, out_dim=out_channels, dim=n_feat, num_blocks=num_blocks)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        features, illumination = self.estimator(img)
        return self.denoiser(img * illumination + img, features)


@register_arch("retinexformer")
class RetinexFormer(nn.Module):
    """RetinexFormer (backbones.md §6.1).

    Args:
        in_channels, out_channels: image channels (3).
        n_feat: channels at full resolution; also the head dimension of every IG-MSA.
        stage: number of stacked Retinex stages (``body.{s}``); the releases use 1.
        num_blocks: IGAB depths per encoder level plus the bottleneck ([1, 2, 2] = 2 levels).

    Shape: (B,3,H,W) -> (B,3,H,W) in [0,1] (not clamped); H and W must be multiples of ``pad_multiple`` (4).
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        out_channels: int = 3,
        n_feat: int = 40,
        stage: int = 1,
        num_blocks: Sequence[int] = (1, 2, 2),
    ) -> None:
        super().__init__()
        if len(num_blocks) < 2:
            raise ValueError(f"num_blocks needs at least one level plus the bottleneck, got {list(num_blocks)}")
        if stage < 1:
            raise ValueError(f"stage must be >= 1, got {stage}")
        self.pad_multiple = 2 ** (len(num_blocks) - 1)
        self.body = nn.Sequential(*[
            RetinexStage(in_channels=in_channels, out_channels=out_channels, n_feat=n_feat, num_blocks=num_blocks)
            for _ in range(stage)
        ])
        self.apply(init_transformer_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[-2] % self.pad_multiple or x.shape[-1] % self.pad_multiple:
            raise ValueError(f"RetinexFormer needs (B, C, H, W) with H and W multiples of {self.pad_multiple}, "
                             f"got {tuple(x.shape)}; reflect-pad the input first")
        return self.body(x)


register_preset("retinexformer", "retinexformer", description="RetinexFormer (LOL releases: n_feat 40, 1 stage)",
                pad_multiple=4)
register_preset("retinexformer-tiny", "retinexformer", description="tiny RetinexFormer for tests and smoke runs",
                pad_multiple=4, n_feat=8, num_blocks=(1, 1, 1))


# ---------------------------------------------------------------- checkpoint family

_PREFIX = "body.0.denoiser."


def _count(sd: Mapping[str, Any], pattern: str) -> int:
    rx = re.compile(pattern)
    return 1 + max((int(m.group(1)) for k in sd if (m := rx.match(k))), default=-1)


def _is_official(sd: Mapping[str, torch.Tensor]) -> bool:
    return all(k in sd for k in ("body.0.estimator.conv1.weight", "body.0.estimator.depth_conv.weight",
                                  _PREFIX + "embedding.weight", _PREFIX + "mapping.weight"))


def _official_kwargs(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    levels = _count(sd, re.escape(_PREFIX) + r"encoder_layers\.(\d+)\.")
    blocks = [_count(sd, re.escape(_PREFIX) + rf"encoder_layers\.{i}\.0\.blocks\.(\d+)\.") for i in range(levels)]
    blocks.append(_count(sd, re.escape(_PREFIX) + r"bottleneck\.blocks\.(\d+)\."))
    embedding = sd[_PREFIX + "embedding.weight"]
    return {
        "in_channels": int(embedding.shape[1]),
        "out_channels": int(sd[_PREFIX + "mapping.weight"].shape[0]),
        "n_feat": int(embedding.shape[0]),
        "stage": _count(sd, r"body\.(\d+)\.estimator\.conv1\.weight"),
        "num_blocks": blocks,
    }


register_family(CheckpointFamily(arch="retinexformer", family="official", detect=_is_official,
                                 infer_kwargs=_official_kwargs, from_canonical=dict,
                                 meta=ModelMeta(pad_multiple=4), priority=10))
