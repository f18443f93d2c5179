"""NAFNet and NAFNet-Local (TLC), backbones.md §2.

Paper: Chen et al., "Simple Baselines for Image Restoration", ECCV 2022; TLC: Chu et al., "Improving Image
Restoration by Revisiting Global Information Aggregation", ECCV 2022. Upstream: megvii-research/NAFNet (MIT code
and weights). Written from the anyrestore spec; parameter names follow the upstream layout so official
checkpoints load without renaming.

Checkpoint families: ``official`` (canonical) and ``maskdcpt`` (``.blocks.`` naming, LN eps 1e-5, reflect pad).
"""
from __future__ import annotations

import re
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from anyrestore.archs.blocks import LayerNorm2d, SimpleGate, pad_to_multiple, rename_keys
from anyrestore.archs.chroma_denoise import ChromaDenoise
from anyrestore.archs.coarse_pass import CoarsePass
from anyrestore.archs.jpeg_expert import JpegExpert, by_route
from anyrestore.archs.jpeg_projection import JpegProjection, block_dct, luma_levels
from anyrestore.archs.fastpaths import FAST_BY_DEFAULT
from anyrestore.archs.registry import CheckpointFamily, ModelMeta, register_arch, register_family, register_preset
from anyrestore.archs.global_sharpen import GlobalSharpen
from anyrestore.archs.motion_deblur import GlobalMotionDeblur
from anyrestore.archs.tone_curve import PHOTO_MIN_SIDE, GlobalToneCurve, ToneCurveBySize

PAD_MODES = ("zeros", "reflect")
ROUTE_WINDOW = 512  # px: the centre window the base U-Net restores to decide whether the JPEG expert runs
EXPERT_TILE = 128  # px: the JPEG expert's tile side in the Predictor's auto mode (see NAFNet.expert_tile)
BAND_PIXELS = 1 << 16  # px: a band's area when a NAFBlock runs a large image in bands of rows (see NAFBlock)


class LocalAvgPool2d(nn.Module):
    """TLC replacement of the SCA global pool: a stride-1 box mean of a fixed kernel, replicate-padded back.

    Equals ``adaptive_avg_pool2d(x, 1)`` whenever the kernel covers the feature map.
    """

    def __init__(self, kernel_size: tuple[int, int]) -> None:
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        kh, kw = self.kernel_size
        if kh >= h and kw >= w:
            return F.adaptive_avg_pool2d(x, 1)
        kh, kw = min(h, kh), min(w, kw)
        # integral image: O(1) per output whatever the kernel (avg_pool2d is O(k^2) and k reaches 384); float64
        # because fp32 prefix sums over 4K maps lose the low bits (MPS has no float64: fp32 there)
        acc = torch.float32 if x.device.type == "mps" else torch.float64
        s = F.pad(x.to(acc).cumsum(-1).cumsum(-2), (1, 0, 1, 0))
        out = (s[..., kh:, kw:] - s[..., :-kh, kw:] - s[..., kh:, :-kw] + s[..., :-kh, :-kw]) / (kh * kw)
        out = out.to(x.dtype)
        dh, dw = h - out.shape[-2], w - out.shape[-1]
        return F.pad(out, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2), mode="replicate")

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}"


def _has_hooks(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks)


class NAFBlock(nn.Module):
    """NAFNet block at ``c`` channels: LN, conv, dwconv, SimpleGate, SCA, conv (β) then LN, FFN with gate (γ).

    Fast path ``folded_scales``: β and γ are folded into the weights of ``conv3``/``conv5`` and, for one image
    with a global SCA, so is the SCA's channel scale; the residual is added in place. Each removes a full pass over
    the feature map. It is skipped while hooks sit on those convolutions (MaskDCPT re-masks ``conv3``'s output).
    With it, one large image (more than ``2 * BAND_PIXELS`` pixels) at inference on the CPU runs in bands of rows:
    the double-width maps before the gates never exist whole, which keeps each band's work in the CPU caches and
    needs less memory; only the SCA's mean needs every band, so the block takes two sweeps. (Not on GPUs, where
    the many small kernels have not been measured.)
    """

    def __init__(self, c: int, *, ln_eps: float = 1e-6) -> None:
        super().__init__()
        self.norm1 = LayerNorm2d(c, eps=ln_eps)
        self.conv1 = nn.Conv2d(c, 2 * c, 1)
        self.conv2 = nn.Conv2d(2 * c, 2 * c, 3, padding=1, groups=2 * c)
        self.sg = SimpleGate()
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, c, 1))
        self.conv3 = nn.Conv2d(c, c, 1)
        self.norm2 = LayerNorm2d(c, eps=ln_eps)
        self.conv4 = nn.Conv2d(c, 2 * c, 1)
        self.conv5 = nn.Conv2d(c, c, 1)
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.folded_scales = FAST_BY_DEFAULT

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        if self._runs_in_bands(inp):
            return self._forward_in_bands(inp)
        t = self.sg(self.conv2(self.conv1(self.norm1(inp))))
        if self.folded_scales and not (_has_hooks(self.conv3) or _has_hooks(self.conv5)):
            return self._folded_tail(inp, t)
        t = self.conv3(t * self.sca(t))
        y = inp + t * self.beta
        t = self.conv5(self.sg(self.conv4(self.norm2(y))))
        return y + t * self.gamma

    def _runs_in_bands(self, inp: torch.Tensor) -> bool:
        return (self.folded_scales and not torch.is_grad_enabled() and inp.shape[0] == 1 and inp.device.type == "cpu"
                and inp.shape[-2] * inp.shape[-1] > 2 * BAND_PIXELS and type(self.sca[0]) is nn.AdaptiveAvgPool2d
                and not any(_has_hooks(m) for m in self.modules()))

    def _forward_in_bands(self, inp: torch.Tensor) -> torch.Tensor:
        """The folded block on one image, a band of rows at a time (see the class)."""
        height, width = inp.shape[-2:]
        rows = max(1, BAND_PIXELS // width)
        bands = [(top, min(height, top + rows)) for top in range(0, height, rows)]
        memory_format = (torch.channels_last if inp.is_contiguous(memory_format=torch.channels_last)
                         else torch.contiguous_format)
        gated = torch.empty((1, inp.shape[1], height, width), dtype=inp.dtype, device=inp.device,
                            memory_format=memory_format)
        total = torch.zeros((1, inp.shape[1], 1, 1), dtype=torch.float64, device=inp.device)
        for top, bottom in bands:
            # one row of context on each side for the 3x3 depthwise convolution, cropped off again
            start, stop = max(0, top - 1), min(height, bottom + 1)
            t = self.conv2(self.conv1(self.norm1(inp[:, :, start:stop])))[:, :, top - start:bottom - start]
            t = self.sg(t)
            gated[:, :, top:bottom] = t
            total += t.sum((2, 3), keepdim=True, dtype=torch.float64)
        weights = self._folded_weights(self.sca[1]((total / (height * width)).to(inp.dtype)))
        out = torch.empty_like(inp)
        for top, bottom in bands:
            out[:, :, top:bottom] = self._folded_rest(inp[:, :, top:bottom], gated[:, :, top:bottom], weights)
        return out

    def _folded_tail(self, inp: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The rest of the block from the gated features ``t`` on, with β, γ and the SCA scale folded."""
        scale = self.sca(t)
        single = scale.shape[0] == 1 and scale.shape[-2:] == (1, 1)
        if not single:
            t = t * scale
        return self._folded_rest(inp, t, self._folded_weights(scale if single else None))

    def _folded_weights(self, scale: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """``conv3``'s and ``conv5``'s weights and biases with β and γ folded in, and one image's SCA ``scale`` when
        given: conv3(t * s) = (W3 diag(s)) t."""
        beta, gamma = self.beta.view(-1), self.gamma.view(-1)
        w3 = self.conv3.weight * beta.view(-1, 1, 1, 1)
        if scale is not None:
            w3 = w3 * scale.view(1, -1, 1, 1)
        return w3, self.conv3.bias * beta, self.conv5.weight * gamma.view(-1, 1, 1, 1), self.conv5.bias * gamma

    def _folded_rest(self, inp: torch.Tensor, t: torch.Tensor, weights: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """conv3, the residual, LN, FFN and the second residual on gated features ``t``, with folded ``weights``."""
        w3, b3, w5, b5 = weights
        y = F.conv2d(t, w3, b3).add_(inp)
        return F.conv2d(self.sg(self.conv4(self.norm2(y))), w5, b5).add_(y)


class WholeImageStages(nn.Module):
    """Whole-image stages applied in order to the U-Net's output clamped to [0, 1] (as they were trained), each
    ``stage(degraded, restored)``. Built on the fly by :attr:`NAFNet.global_stage`; the stages' weights stay
    under the NAFNet's own keys. The sharpen stage is told how much of the motion deconvolution was blended in
    (:meth:`GlobalSharpen.yield_to_motion`); a :class:`CoarsePass` is given the U-Net itself (``restorer``)."""

    def __init__(self, stages: Sequence[nn.Module],
                 restorer: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.restorer = restorer

    def without_exposure(self) -> "WholeImageStages":
        """The same stages without the exposure curves, for a dark scene (night, low-key) that must stay as dark
        as it is while every other stage still runs."""
        kept = [stage for stage in self.stages if not isinstance(stage, (GlobalToneCurve, ToneCurveBySize))]
        return WholeImageStages(kept, restorer=self.restorer)

    def forward(self, degraded: torch.Tensor, restored: torch.Tensor,
                jpeg_only: torch.Tensor | None = None) -> torch.Tensor:
        """``jpeg_only``: per image, whether the JPEG route took it (:meth:`NAFNet.expert_route`); the motion stage
        deconvolves such an image only when its head is sure (:meth:`GlobalMotionDeblur.estimate`), and the exposure
        stage lets the cautious head decide first on such a whole photo (:class:`ToneCurveBySize`)."""
        restored = restored.clamp(0.0, 1.0)
        motion_share = None
        for stage in self.stages:
            if isinstance(stage, GlobalMotionDeblur):
                estimate = stage.estimate(degraded, restored, jpeg_only)
                if estimate is not None:
                    motion_share = estimate[0].sum(dim=1)
                    restored = stage.apply(restored, *estimate)
            elif isinstance(stage, GlobalSharpen):
                restored = stage(degraded, restored, motion_share)
            elif isinstance(stage, CoarsePass):
                restored = stage(degraded, restored, self.restorer)
            elif isinstance(stage, ToneCurveBySize):
                restored = stage(degraded, restored, jpeg_only)
            else:
                restored = stage(degraded, restored)
        return restored


def _stage(c: int, n: int, ln_eps: float) -> nn.Sequential:
    return nn.Sequential(*[NAFBlock(c, ln_eps=ln_eps) for _ in range(n)])


@register_arch("nafnet")
class NAFNet(nn.Module):
    """NAFNet U-Net (backbones.md §2.1). Input and output: (B,C,H,W) in [0,1]; any H, W (padded inside).

    Args:
        in_channels: image channels (3).
        width: channels at full resolution; level i has ``width * 2**i``.
        enc_blocks: NAFBlocks per encoder level (the number of levels sets the pad multiple ``2**levels``).
        middle_blocks: NAFBlocks at the bottleneck.
        dec_blocks: NAFBlocks per decoder level (deepest first); same length as ``enc_blocks``.
        ln_eps: LayerNorm epsilon (official 1e-6, MaskDCPT 1e-5).
        pad_mode: internal right/bottom padding to the multiple: ``"zeros"`` (official) or ``"reflect"``.
        motion_deblur: add a :class:`~anyrestore.archs.motion_deblur.GlobalMotionDeblur` (keys
            ``motion_deblur.*``): a linear motion blur estimated from the whole U-Net output and deconvolved, first
            of the whole-image stages (the default model's motion stage).
        sharpen: add a :class:`~anyrestore.archs.global_sharpen.GlobalSharpen` (keys ``sharpen.*``): an unsharp
            mask or a Gaussian deconvolution of the whole image after the U-Net, its strength estimated from the
            input (the default model's deblurring boost).
        sharpen_mode: that stage's mode, ``"unsharp"`` or ``"wiener"``.
        chroma_denoise: add a :class:`~anyrestore.archs.chroma_denoise.ChromaDenoise` (keys
            ``chroma_denoise.*``): a predicted share of the U-Net output with its chroma guided-filtered by its
            luma (the default model's colour-noise stage), first of the stages with weights (after ``coarse_pass``).
        tone_curve: add a :class:`~anyrestore.archs.tone_curve.GlobalToneCurve` (keys ``tone_curve.*``) that
            corrects the exposure of the whole image after the U-Net and ``sharpen`` (the default model's exposure
            stage).
        photo_tone_curve: add a second :class:`~anyrestore.archs.tone_curve.GlobalToneCurve` (keys
            ``photo_tone_curve.*``) for whole photographs, which brightens more than ``tone_curve``: a whole photo
            takes its curve where it finds the photo under-exposed, and ``tone_curve``'s otherwise
            (:class:`~anyrestore.archs.tone_curve.ToneCurveBySize`; the default model's exposure stage for whole
            photos since the sixteenth release).
        photo_min_side: the shorter side from which any image counts as a whole photograph
            (``tone_curve.PHOTO_MIN_SIDE``, 640, by default; the preset names it so that the weights file records it);
            a non-square frame counts from ``tone_curve.FRAME_MIN_SIDE`` (256).
        coarse_pass: add a :class:`~anyrestore.archs.coarse_pass.CoarsePass` (no weights), first of the
            whole-image stages: the U-Net also restores the whole input downscaled to its training scale, and a
            lifted haze veil is carried to the full-resolution output (the default model's haze stage for large
            photos).
        jpeg_projection: add a :class:`~anyrestore.archs.jpeg_projection.JpegProjection` (no weights), first of
            all the whole-image stages: when the input is a JPEG whose only damage was the compression, the U-Net
            output's luma is clamped back into the quantisation intervals of the input's DCT coefficients (the
            default model's guard against wiping texture JPEG kept).
        jpeg_expert: add a :class:`~anyrestore.archs.jpeg_expert.JpegExpert` (keys ``jpeg_expert.*``; needs
            ``jpeg_projection``): the U-Net's shallow layers fine-tuned on JPEG alone, which restore the images
            whose only damage the projection's gate finds to be JPEG in place of the base U-Net
            (:meth:`expert_route`, :meth:`forward_expert`).
        jpeg_expert_levels: encoder levels the expert owns, from the shallowest (default None: all but the
            deepest; the base's deeper levels and middle blocks are shared).
        whole_image_pixels: the largest image (in pixels) the Predictor's auto mode restores whole; larger ones run
            in tiles of about that area (default None: the Predictor's own rule). Every block's channel attention
            pools its whole input, so a tile of a large photo is restored from its own content only: a tile of bright
            out-of-focus flowers gets dehazed, one of fine gravel denoised. The default model sets 2**22 (4 MP: its
            full restore of a 2560x1600 photo peaks at 2.5 GB of RAM in fp32 on the CPU; session 34).

    MaskDCPT hook points (``MASK_POINTS``) are module names: forward hooks on them re-mask features; with no hook
    installed the network is the plain one.
    """

    MASK_POINTS = {"pre": (r"intro",), "post": (r"intro", r".*\.norm1", r".*\.norm2", r".*\.conv3")}

    def __init__(
        self,
        *,
        in_channels: int = 3,
        width: int = 64,
        enc_blocks: Sequence[int] = (1, 1, 1, 28),
        middle_blocks: int = 1,
        dec_blocks: Sequence[int] = (1, 1, 1, 1),
        ln_eps: float = 1e-6,
        pad_mode: str = "zeros",
        sharpen: bool = False,
        sharpen_mode: str = "unsharp",
        tone_curve: bool = False,
        photo_tone_curve: bool = False,
        photo_min_side: int = PHOTO_MIN_SIDE,
        motion_deblur: bool = False,
        chroma_denoise: bool = False,
        coarse_pass: bool = False,
        jpeg_projection: bool = False,
        jpeg_expert: bool = False,
        jpeg_expert_levels: int | None = None,
        whole_image_pixels: int | None = None,
    ) -> None:
        super().__init__()
        if whole_image_pixels is not None and whole_image_pixels < 64 * 64:
            raise ValueError(f"whole_image_pixels must be at least 4096 (a 64x64 image), got {whole_image_pixels}")
        if photo_min_side < 1:
            raise ValueError(f"photo_min_side must be a positive number of pixels, got {photo_min_side}")
        if jpeg_expert and not jpeg_projection:
            raise ValueError("jpeg_expert needs jpeg_projection: the projection's gate decides where the expert runs")
        if jpeg_expert_levels is not None and not jpeg_expert:
            raise ValueError("jpeg_expert_levels needs jpeg_expert=True")
        if len(enc_blocks) != len(dec_blocks):
            raise ValueError(f"enc_blocks {list(enc_blocks)} and dec_blocks {list(dec_blocks)} differ in length")
        if pad_mode not in PAD_MODES:
            raise ValueError(f"unknown pad_mode {pad_mode!r}; expected one of {', '.join(PAD_MODES)}")
        self.pad_mode = pad_mode
        self.pad_multiple = 2 ** len(enc_blocks)
        self.meta = ModelMeta(pad_multiple=self.pad_multiple)  # replaced by the preset's metadata when built by name
        self.intro = nn.Conv2d(in_channels, width, 3, padding=1)
        self.ending = nn.Conv2d(width, in_channels, 3, padding=1)
        self.encoders, self.downs = nn.ModuleList(), nn.ModuleList()
        c = width
        for n in enc_blocks:
            self.encoders.append(_stage(c, n, ln_eps))
            self.downs.append(nn.Conv2d(c, 2 * c, 2, stride=2))
            c *= 2
        self.middle_blks = _stage(c, middle_blocks, ln_eps)
        self.ups, self.decoders = nn.ModuleList(), nn.ModuleList()
        for n in dec_blocks:
            self.ups.append(nn.Sequential(nn.Conv2d(c, 2 * c, 1, bias=False), nn.PixelShuffle(2)))
            c //= 2
            self.decoders.append(_stage(c, n, ln_eps))
        self.jpeg_projection = JpegProjection() if jpeg_projection else None
        self.jpeg_expert = JpegExpert(in_channels=in_channels, width=width, enc_blocks=enc_blocks,
                                      dec_blocks=dec_blocks, ln_eps=ln_eps,
                                      encoder_levels=jpeg_expert_levels) if jpeg_expert else None
        self.coarse_pass = CoarsePass() if coarse_pass else None
        self.chroma_denoise = ChromaDenoise() if chroma_denoise else None
        self.motion_deblur = GlobalMotionDeblur() if motion_deblur else None
        self.sharpen = GlobalSharpen(mode=sharpen_mode) if sharpen else None
        self.tone_curve = GlobalToneCurve() if tone_curve else None
        self.photo_tone_curve = GlobalToneCurve() if photo_tone_curve else None
        self.photo_min_side = photo_min_side
        self.whole_image_pixels = whole_image_pixels

    @property
    def expert_tile(self) -> int | None:
        """The tile side the JPEG expert runs on when the Predictor picks tiles itself: its training windows are
        96², and on whole held-out photos at JPEG q30 tiles of 128 gave +0.02 dB over 256 (session 30)."""
        return None if self.jpeg_expert is None else EXPERT_TILE

    @property
    def global_stage(self) -> WholeImageStages | None:
        """The part that must see the whole image (run once per image by the Predictor), or None."""
        tone = self.tone_curve
        if self.photo_tone_curve is not None:
            tone = ToneCurveBySize(self.tone_curve, self.photo_tone_curve, min_side=self.photo_min_side)
        stages = [stage for stage in (self.jpeg_projection, self.coarse_pass, self.chroma_denoise, self.motion_deblur,
                                      self.sharpen, tone) if stage is not None]
        return WholeImageStages(stages, restorer=self.forward_local) if stages else None

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        return pad_to_multiple(x, self.pad_multiple, self.pad_mode)

    def encode(self, x: torch.Tensor, layers: nn.Module | None = None) -> torch.Tensor:
        """Input (any size; padded here) -> last decoder features (B, width, H', W') at the padded size.
        ``layers``: a :class:`JpegExpert` whose shallow layers replace this network's (the deepest encoder level
        and the middle blocks stay this network's)."""
        layers = self if layers is None else layers
        encoders = [*layers.encoders, *self.encoders[len(layers.encoders):]]
        f = layers.intro(self._pad(x))
        skips = []
        for encoder, down in zip(encoders, layers.downs):
            f = encoder(f)
            skips.append(f)
            f = down(f)
        f = self.middle_blks(f)
        for decoder, up, skip in zip(layers.decoders, layers.ups, reversed(skips)):
            f = decoder(up(f) + skip)
        return f

    def decode_head(self, features: torch.Tensor, x: torch.Tensor, residual: bool = True,
                    layers: nn.Module | None = None) -> torch.Tensor:
        """``ending`` conv (``layers``' when given) on :meth:`encode` features (+ padded input if ``residual``),
        cropped to ``x``'s size."""
        y = (self if layers is None else layers).ending(features)
        if residual:
            y = y + self._pad(x)
        return y[:, :, : x.shape[-2], : x.shape[-1]]

    def forward_local(self, x: torch.Tensor) -> torch.Tensor:
        """The U-Net alone: what may run tile by tile."""
        return self.decode_head(self.encode(x), x, True)

    def forward_expert(self, x: torch.Tensor) -> torch.Tensor:
        """The U-Net with the JPEG expert's shallow layers (needs ``jpeg_expert``); may run tile by tile too."""
        if self.jpeg_expert is None:
            raise RuntimeError("this NAFNet has no JPEG expert (build it with jpeg_expert=True)")
        return self.decode_head(self.encode(x, self.jpeg_expert), x, True, self.jpeg_expert)

    def expert_route(self, degraded: torch.Tensor) -> torch.Tensor | None:
        """Per image of the batch, whether the JPEG expert restores it in place of :meth:`forward_local`; None when
        the model has no expert. The whole image must be given (not a tile).

        The route is the JPEG projection's test: a standard table found in the input, and the base U-Net's output
        still inside most of its quantisation intervals (JPEG was the only damage). To keep its cost at a fraction
        of a restore, the base U-Net restores only a centre window of at most ``ROUTE_WINDOW``² pixels on the JPEG
        block grid, and the gate reads that window; an input without a JPEG table costs no U-Net run at all."""
        if self.jpeg_expert is None:
            return None
        mask = torch.zeros(degraded.shape[0], dtype=torch.bool)
        if degraded.shape[1] != 3 or min(degraded.shape[-2:]) < 64:
            return mask
        projection = self.jpeg_projection
        for i, x in enumerate(degraded):
            coef = block_dct(luma_levels(x))
            table = projection.table_from(coef)
            if table is None:
                continue
            (h, w), multiple = x.shape[-2:], max(8, self.pad_multiple)
            side_h, side_w = min(h, ROUTE_WINDOW) // multiple * multiple, min(w, ROUTE_WINDOW) // multiple * multiple
            top, left = (h - side_h) // 2 // 8 * 8, (w - side_w) // 2 // 8 * 8
            window = x[None, :, top:top + side_h, left:left + side_w]
            restored = self.forward_local(window).clamp(0.0, 1.0)[0]
            window_coef = coef[top // 8:(top + side_h) // 8, left // 8:(left + side_w) // 8]
            mask[i] = projection.passes(projection.gate_statistics(window_coef, block_dct(luma_levels(restored)),
                                                                   table))
        return mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        route = self.expert_route(x)
        y = by_route(route, lambda: self.forward_expert(x), lambda: self.forward_local(x))
        stage = self.global_stage
        return y if stage is None else stage(x, y, route)


@register_arch("nafnet_local")
class NAFNetLocal(NAFNet):
    """NAFNet with TLC local SCA pooling (backbones.md §2.2); same parameters and keys as :class:`NAFNet`.

    Args:
        train_size: training crop (int or (H, W)); each SCA pool covers 1.5x the feature size at that resolution.
        Other arguments as :class:`NAFNet`.
    """

    def __init__(self, *, train_size: int | Sequence[int] = 256, **kwargs: Any) -> None:
        if kwargs.get("jpeg_expert"):
            raise ValueError("jpeg_expert is not available with TLC pooling (nafnet_local); use nafnet")
        super().__init__(**kwargs)
        th, tw = (train_size, train_size) if isinstance(train_size, int) else tuple(train_size)
        self.train_size = (int(th), int(tw))
        base_h, base_w = int(th * 1.5), int(tw * 1.5)
        # factor = downsampling of the feature map each block sees
        levels = [(enc, 2**i) for i, enc in enumerate(self.encoders)]
        levels.append((self.middle_blks, 2 ** len(self.encoders)))
        levels += [(dec, 2 ** (len(self.decoders) - 1 - i)) for i, dec in enumerate(self.decoders)]
        for stage, factor in levels:
            fh, fw = -(-th // factor), -(-tw // factor)
            for block in stage:
                block.sca[0] = LocalAvgPool2d((base_h * fh // th, base_w * fw // tw))


# ---------------------------------------------------------------- presets

_GOPRO = dict(enc_blocks=(1, 1, 1, 28), middle_blocks=1, dec_blocks=(1, 1, 1, 1))
_SIDD = dict(enc_blocks=(2, 2, 4, 8), middle_blocks=12, dec_blocks=(2, 2, 2, 2))

register_preset("nafnet-w64", "nafnet_local", description="NAFNet GoPro/REDS config, width 64, TLC (67.9 M)",
                pad_multiple=16, width=64, train_size=256, **_GOPRO)
register_preset("nafnet-w32", "nafnet_local", description="NAFNet GoPro config, width 32, TLC (17.1 M)",
                pad_multiple=16, width=32, train_size=256, **_GOPRO)
register_preset("nafnet-sidd-w64", "nafnet", description="NAFNet SIDD denoising config, width 64 (116.0 M)",
                pad_multiple=16, width=64, **_SIDD)
register_preset("nafnet-sidd-w32", "nafnet", description="NAFNet SIDD denoising config, width 32 (29.2 M)",
                pad_multiple=16, width=32, **_SIDD)
register_preset("nafnet-maskdcpt", "nafnet",
                description="NAFNet w64 as released by MaskDCPT (LN eps 1e-5, reflect pad)",
                pad_multiple=16, width=64, ln_eps=1e-5, pad_mode="reflect", **_GOPRO)
register_preset("nafnet-default", "nafnet", default=True,
                description="compact NAFNet (4.45 M) with a JPEG expert (1.30 M) + whole-image JPEG projection, "
                            "coarse haze pass, colour-noise smoothing, motion deblurring, Gaussian deconvolution and "
                            "exposure curves (one for crops, one for whole photos): the shipped all-in-one default "
                            "model (weights bundled)",
                pad_multiple=16, input_levels=255, width=24, enc_blocks=(1, 1, 2, 4), middle_blocks=2,
                dec_blocks=(1, 1, 1, 1), pad_mode="reflect", sharpen=True, sharpen_mode="wiener", tone_curve=True,
                photo_tone_curve=True, photo_min_side=640, motion_deblur=True, chroma_denoise=True,
                coarse_pass=True, jpeg_projection=True, jpeg_expert=True, whole_image_pixels=1 << 22)
register_preset("nafnet-tiny", "nafnet", description="tiny NAFNet for tests and smoke runs",
                pad_multiple=16, width=8, enc_blocks=(1, 1, 1, 1), middle_blocks=1, dec_blocks=(1, 1, 1, 1))


# ---------------------------------------------------------------- checkpoint families

def _max_index(sd: Mapping[str, Any], pattern: str) -> dict[int, int]:
    """For keys matching ``pattern`` with groups (level, block), the block count per level."""
    counts: dict[int, int] = {}
    rx = re.compile(pattern)
    for key in sd:
        m = rx.match(key)
        if m:
            level, block = int(m.group(1)), int(m.group(2))
            counts[level] = max(counts.get(level, 0), block + 1)
    return counts


def _official_kwargs(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    enc = _max_index(sd, r"encoders\.(\d+)\.(\d+)\.")
    dec = _max_index(sd, r"decoders\.(\d+)\.(\d+)\.")
    levels = max(len([k for k in sd if re.fullmatch(r"downs\.\d+\.weight", k)]), 1)
    middle = 1 + max((int(m.group(1)) for k in sd if (m := re.match(r"middle_blks\.(\d+)\.", k))), default=-1)
    return {
        "in_channels": int(sd["intro.weight"].shape[1]),
        "width": int(sd["intro.weight"].shape[0]),
        "enc_blocks": [enc.get(i, 0) for i in range(levels)],
        "middle_blocks": middle,
        "dec_blocks": [dec.get(i, 0) for i in range(levels)],
    }


_MASKDCPT_TO_CANON = (
    (re.compile(r"^encoders\.(\d+)\.blocks\."), r"encoders.\1."),
    (re.compile(r"^middle_blks\.blocks\."), "middle_blks."),
    (re.compile(r"^decoder(\d+)\.blocks\."), r"decoders.\1."),
)
_CANON_TO_MASKDCPT = (
    (re.compile(r"^encoders\.(\d+)\.(\d+)\."), r"encoders.\1.blocks.\2."),
    (re.compile(r"^middle_blks\.(\d+)\."), r"middle_blks.blocks.\1."),
    (re.compile(r"^decoders\.(\d+)\.(\d+)\."), r"decoder\1.blocks.\2."),
)


def _is_official(sd: Mapping[str, torch.Tensor]) -> bool:
    return "intro.weight" in sd and "ending.weight" in sd and any(k.startswith("encoders.0.0.") for k in sd)


def _is_maskdcpt(sd: Mapping[str, torch.Tensor]) -> bool:
    return "intro.weight" in sd and any(re.match(r"(encoders\.\d+|decoder\d+|middle_blks)\.blocks\.", k) for k in sd)


def _is_gopro_layout(sd: Mapping[str, torch.Tensor]) -> bool:
    return _is_official(sd) and _official_kwargs(sd)["enc_blocks"] == [1, 1, 1, 28]


def _maskdcpt_kwargs(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    return {**_official_kwargs(rename_keys(sd, _MASKDCPT_TO_CANON)), "ln_eps": 1e-5, "pad_mode": "reflect"}


_META = ModelMeta(pad_multiple=16)
# Official GoPro/REDS releases were evaluated with TLC; the SIDD block layout uses the plain network.
register_family(CheckpointFamily(arch="nafnet_local", family="official", detect=_is_gopro_layout,
                                 infer_kwargs=lambda sd: {**_official_kwargs(sd), "train_size": 256},
                                 from_canonical=dict, meta=_META, priority=11))
register_family(CheckpointFamily(arch="nafnet", family="official", detect=_is_official, infer_kwargs=_official_kwargs,
                                 from_canonical=dict, meta=_META, priority=10))
register_family(CheckpointFamily(arch="nafnet", family="maskdcpt", detect=_is_maskdcpt,
                                 infer_kwargs=_maskdcpt_kwargs, to_canonical=lambda sd: rename_keys(sd, _MASKDCPT_TO_CANON),
                                 from_canonical=lambda sd: rename_keys(sd, _CANON_TO_MASKDCPT), meta=_META, priority=12))
