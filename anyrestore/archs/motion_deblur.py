"""Whole-image linear motion deblurring: the default model's motion stage.

A straight motion blur of ``L`` pixels multiplies the image spectrum by a sinc whose zeros repeat every ``N / L``
frequency bins along the motion direction. In the power cepstrum (the inverse Fourier transform of the log power
spectrum) that periodic pattern becomes a sharp negative peak at the offset ``L · (cos θ, −sin θ)`` from the
origin, which reads off both the length and the direction of the blur. Natural images have no such isolated dip,
so the depth of the peak, its second harmonic at twice the offset, and how much weaker the gradients are along the
found direction than across it tell motion blur from everything else.

This stage estimates the line kernel from the restored image: Welch-averaged spectra of 128² blocks of its
centred 256² crop, at native resolution. (The U-Net has removed the rain streaks and noise that would mimic or hide
a blur, and leaves a motion blur as it is.) It deconvolves the restored image with that kernel at three prior
weights (a Wiener filter with a gradient prior, in closed form in the Fourier domain) and blends the results in with
shares that a small head predicts from the estimate's statistics. Untrained, each share is about 1.7 %; trained,
they stay near 0 for inputs without a linear blur, and then the deconvolutions are not computed at all.
The Predictor runs it once per image after the tiles (``global_stage``), like the other stages.

One rule is not learnt: JPEG's 8×8 block edges also put cepstral dips on the lattice lines ``x`` or ``y`` = ±8, ±16,
±24, ±32, and the head's six statistics cannot tell those from a blur. So a dip on that lattice in an input that is
a JPEG, visibly blocky or holding a quantisation table (:func:`on_jpeg_grid`), is left alone, whatever the head
says. A real blur whose dip falls there in a JPEG goes undeblurred (the U-Net's output is kept): a lost gain, where
the deconvolution of a false dip cost up to 9 dB.

A second rule checks the input: the blur is in the degraded image, so its dip must show there too, at least
``MIN_INPUT_DEPTH`` robust standard deviations deep (:func:`dip_depth_at`). A restorer can leave a dip of its own in
a smooth image (the JPEG expert's output of a 256² patch of sky had one at 32 px), and deconvolving it cost 14-16 dB.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from anyrestore.archs.blocks import centre_crop_at_most
from anyrestore.degradations.blur import motion_kernel

BLOCK = 128  # spectra of BLOCK² windows: lengths from R_MIN to R_MAX pixels are found
R_MIN, R_MAX = 4.5, BLOCK // 3  # shorter blurs are the U-Net's and the unsharp mask's
MAX_SIDE = 256  # statistics from a centred crop at most this large: the depths of cepstral dips grow with the
# number of blocks averaged, so every image is measured on the 3x3 blocks the head was trained on
LAMBDAS = (0.01, 0.03, 0.1)  # candidate prior weights: sharp, medium, smooth
KEEP_LOGIT = 4.0  # untrained, each candidate gets about 1.7 %
SKIP_BELOW = 1e-3  # shares this small change no 8-bit level
MOTION_SKIP_BELOW = 1e-2  # inference: summed candidate shares this small are not blended in (_nothing_to_blend)
WIENER_CHUNK = 8  # wiener_deconvolve filters this many images at a time (see there)
JPEG_GRID = 8  # JPEG's block size: its block edges put cepstral dips on the lines x or y = ±8, ±16, ...
GRID_TOLERANCE = 0.5  # pixels from such a line
BLOCKY = 0.3  # log ratio of the strongest 8-periodic edge phase to the mean, in both directions: visibly blocky
MIN_INPUT_DEPTH = 4.0  # the found dip in the input's own cepstrum, on the held-out photos' 256² crops: 2.2-3.0 for
# the false dips seen; 8-90 for real blurs (alone, then JPEG q30-60, or with σ5 noise) that a deconvolution helped by
# more than 0.5 dB. The price seen: one crop with σ15 noise on its blur (depth 2.6) loses a 0.31 dB gain
# on an input the JPEG expert's route takes (jpeg_only), the summed shares must reach this, or the image is left as it
# is. Session 30, whole photos: the dips of a photo's own content that the head half-believed gave 0.23 and 0.50
# (FreshFlower and Grey at q30: -3.0 and -6.4 dB); real blurs then JPEG q60 0.83-0.95 (+1.4 to +3.7 dB), the few
# real ones below (0.04-0.49) gained 0.4 dB at most
JPEG_ONLY_MIN_SHARE = 0.6
MIN_SIDE = MAX_SIDE  # smaller images are left as they are: fewer blocks than in training make dips look deeper
_LOG_EPS = 1e-10


def log_power_spectrum(grey: torch.Tensor) -> torch.Tensor:
    """(B,1,H,W) -> (B,BLOCK,BLOCK) log of the Welch average of Hann-windowed block power spectra (half-overlapping
    blocks). Sides shorter than BLOCK are mirrored up to it first."""
    h, w = grey.shape[-2:]
    if h < BLOCK or w < BLOCK:
        mode = "reflect" if min(h, w) > BLOCK - min(h, w) else "replicate"
        grey = F.pad(grey, (0, max(0, BLOCK - w), 0, max(0, BLOCK - h)), mode=mode)
    blocks = F.unfold(grey.double(), BLOCK, stride=BLOCK // 2)  # (B, BLOCK², n)
    blocks = blocks - blocks.mean(dim=1, keepdim=True)
    window = torch.hann_window(BLOCK, periodic=False, dtype=torch.float64, device=grey.device)
    blocks = blocks * torch.outer(window, window).reshape(1, -1, 1)
    blocks = blocks.transpose(1, 2).reshape(len(grey), -1, BLOCK, BLOCK)
    power = torch.fft.fft2(blocks).abs().pow(2).mean(dim=1)
    return torch.log(power + _LOG_EPS)


def _parabola_offset(minus: torch.Tensor, centre: torch.Tensor, plus: torch.Tensor) -> torch.Tensor:
    curvature = minus - 2 * centre + plus
    return torch.where(curvature > 0, 0.5 * (minus - plus) / curvature.clamp_min(1e-12), torch.zeros_like(centre))


def ring_cepstrum(grey: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B,1,H,W) -> the centred power cepstrum (B, BLOCK, BLOCK), the mask of the offsets from R_MIN to R_MAX
    (BLOCK, BLOCK), and the median and robust standard deviation (B,) of the cepstrum on that ring."""
    cep = torch.fft.fftshift(torch.fft.ifft2(log_power_spectrum(grey)).real, dim=(-2, -1))
    r = torch.arange(BLOCK, dtype=torch.float64, device=cep.device) - BLOCK // 2
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    radius = (xx**2 + yy**2).sqrt()
    ring = (radius >= R_MIN) & (radius <= R_MAX)
    values = cep[:, ring]  # (B, n)
    median = values.median(dim=1).values
    spread = (values - median[:, None]).abs().median(dim=1).values.clamp_min(1e-12) * 1.4826
    return cep, ring, median, spread


def motion_features(image: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) in [0,1] -> (B, 2 + N_HEAD_FEATURES): the cepstral estimate of a linear blur as the offset
    ``(dx, dy)`` in pixels (x right, y down), then the head's inputs: log length, log1p of the peak's depth, of
    its second harmonic's and of its depth against its own neighbourhood (each in robust standard deviations of
    the cepstrum), the log ratio of gradient energy along and across the direction, and the log gradient energy."""
    x = centre_crop_at_most(image.float(), MAX_SIDE)
    grey = x.mean(dim=1, keepdim=True)
    b = len(grey)
    cep, ring, median, spread = ring_cepstrum(grey)
    o = BLOCK // 2
    masked = torch.where(ring, cep, torch.full_like(cep, math.inf)).flatten(1)
    index = masked.argmin(dim=1)
    iy, ix = index // BLOCK, index % BLOCK
    batch = torch.arange(b, device=cep.device)
    at = lambda dy, dx: cep[batch, (iy + dy).clamp(0, BLOCK - 1), (ix + dx).clamp(0, BLOCK - 1)]  # noqa: E731
    dip = at(0, 0)
    fx = (ix - o).double() + _parabola_offset(at(0, -1), dip, at(0, 1))
    fy = (iy - o).double() + _parabola_offset(at(-1, 0), dip, at(1, 0))
    depth = (median - dip) / spread
    hy, hx = 2 * iy - o, 2 * ix - o  # the second harmonic, at twice the offset
    inside = (hy >= 0) & (hy < BLOCK) & (hx >= 0) & (hx < BLOCK)
    harmonic = torch.where(inside, (median - cep[batch, hy.clamp(0, BLOCK - 1), hx.clamp(0, BLOCK - 1)]) / spread,
                           torch.zeros_like(depth))
    around = torch.stack([at(dy, dx) for dy in (-2, 0, 2) for dx in (-2, 0, 2) if dy or dx], dim=1).mean(dim=1)
    sharpness = (around - dip) / spread

    # gradients are weaker along a motion blur than across it
    gx = grey[..., :, 1:] - grey[..., :, :-1]
    gy = grey[..., 1:, :] - grey[..., :-1, :]
    gx, gy = gx[..., :-1, :].double(), gy[..., :, :-1].double()
    exx, eyy, exy = (gx * gx).mean(dim=(1, 2, 3)), (gy * gy).mean(dim=(1, 2, 3)), (gx * gy).mean(dim=(1, 2, 3))
    length = torch.hypot(fx, fy).clamp_min(1e-6)
    c, s = fx / length, fy / length  # unit direction in (x, y-down) image coordinates
    along = c * c * exx + 2 * c * s * exy + s * s * eyy
    across = s * s * exx - 2 * c * s * exy + c * c * eyy
    anisotropy = torch.log((along + 1e-8) / (across + 1e-8))
    energy = torch.log(exx + eyy + 1e-8)
    soft = lambda v: torch.log1p(v.clamp_min(0))  # noqa: E731
    return torch.stack([fx, fy, length.log(), soft(depth), soft(harmonic), soft(sharpness), anisotropy, energy],
                       dim=1).float()


N_HEAD_FEATURES = 6


def blockiness(image: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) -> (B,) how much stronger the grey image's edges are on one phase of an 8-pixel grid than on
    average, as a log ratio, the weaker of the horizontal and vertical values (0 for no block grid; JPEG blocks raise
    both). Any grid phase counts, so crops of a JPEG need not start on a block edge."""
    grey = centre_crop_at_most(image.float(), MAX_SIDE).mean(dim=1)
    values = []
    for steps in ((grey[..., :, 1:] - grey[..., :, :-1]).abs().mean(dim=1),
                  (grey[..., 1:, :] - grey[..., :-1, :]).abs().mean(dim=2)):
        n = steps.shape[1] // JPEG_GRID * JPEG_GRID
        phases = steps[:, :n].reshape(len(steps), -1, JPEG_GRID).mean(dim=1)
        values.append((phases.max(dim=1).values + 1e-5).log() - (phases.mean(dim=1) + 1e-5).log())
    return torch.minimum(*values)


def dip_depth_at(image: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) and offsets (B,) -> (B,) how deep ``image``'s own cepstrum dips at ``(dx, dy)`` (its lowest value
    on the 3x3 offsets around the rounded one), in robust standard deviations below the ring's median; measured
    like :func:`motion_features`, on the centred crop of at most MAX_SIDE."""
    grey = centre_crop_at_most(image.float(), MAX_SIDE).mean(dim=1, keepdim=True)
    cep, _, median, spread = ring_cepstrum(grey)
    o = BLOCK // 2
    iy = (torch.round(dy.double()).long() + o).clamp(1, BLOCK - 2).to(cep.device)
    ix = (torch.round(dx.double()).long() + o).clamp(1, BLOCK - 2).to(cep.device)
    batch = torch.arange(len(cep), device=cep.device)
    around = torch.stack([cep[batch, iy + i, ix + j] for i in (-1, 0, 1) for j in (-1, 0, 1)], dim=1)
    return ((median - around.amin(dim=1)) / spread).to(dx.device)


def has_jpeg_table(image: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) -> (B,) True where the block DCT of the luma holds a JPEG quantisation table
    (:meth:`JpegProjection.table_from <anyrestore.archs.jpeg_projection.JpegProjection.table_from>`): a JPEG whose
    blocks the eye no longer sees (quality 50 and up on texture) still has one."""
    from anyrestore.archs.jpeg_projection import JpegProjection, block_dct, luma_levels

    projection = JpegProjection()
    return torch.tensor([image.shape[1] == 3 and projection.table_from(block_dct(luma_levels(x))) is not None
                         for x in image], dtype=torch.bool)


def on_jpeg_grid(dx: torch.Tensor, dy: torch.Tensor, degraded: torch.Tensor,
                 known_jpeg: torch.Tensor | None = None) -> torch.Tensor:
    """(B,) True where the cepstral dip at ``(dx, dy)`` lies on the JPEG block lattice (a coordinate within
    GRID_TOLERANCE of a non-zero multiple of 8) and the input is a JPEG, visibly blocky or holding a quantisation
    table (:func:`has_jpeg_table`): the dip is then the blocks' grid, not a blur. On the tenth release's own training
    set, leaving the blocky ones alone dropped 13 of its 47 deconvolutions that cost more than 0.5 dB (-58.6 dB in all)
    and 9 of its 394 that gained more than 0.5 dB (+15.2 dB). Whole training photos at quality 50 that are not visibly
    blocky (session 30) had dips on the lattice too: Garden at x = 32 (+2.04 dB kept, +0.55 deconvolved) and
    GreenMeadow at y = 16 (+0.76 kept, -4.72 deconvolved). ``known_jpeg`` (per image, e.g. the JPEG expert's route,
    which found a table already) spares those images the table search."""
    def near_line(c: torch.Tensor) -> torch.Tensor:
        k = torch.round(c / JPEG_GRID)
        return (k != 0) & ((c - JPEG_GRID * k).abs() < GRID_TOLERANCE)

    on_line = near_line(dx) | near_line(dy)
    jpeg = blockiness(degraded).to(dx.device) > BLOCKY
    if known_jpeg is not None:
        jpeg = jpeg | known_jpeg.to(dx.device)
    unsure = on_line & ~jpeg
    if bool(unsure.any()):  # the table costs a block DCT of the whole input: only where it decides
        found = has_jpeg_table(degraded[unsure.to(degraded.device)]).to(dx.device)
        jpeg = jpeg.clone()
        jpeg[unsure] = found
    return on_line & jpeg


def line_kernels(dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Offsets (B,) -> (B,K,K) centred line kernels of length ``hypot(dx, dy)`` along the offset (common odd K)."""
    lengths = torch.hypot(dx.double(), dy.double()).clamp(0.0, float(R_MAX + 2)).tolist()
    angles = torch.rad2deg(torch.atan2(-dy.double(), dx.double())).tolist()  # counter-clockwise, y up
    size = 2 * math.ceil(max(lengths) / 2) + 3
    return torch.stack([motion_kernel(size, length, angle) for length, angle in zip(lengths, angles)])


def gradient_spectrum(h: int, w: int, device=None) -> torch.Tensor:
    """|D_x|² + |D_y|² of forward differences on an (h, w) periodic grid, in ``rfft2``'s (h, w // 2 + 1) layout."""
    wy = 2 * math.pi * torch.fft.fftfreq(h, device=device, dtype=torch.float64)
    wx = 2 * math.pi * torch.fft.rfftfreq(w, device=device, dtype=torch.float64)
    return (2 - 2 * torch.cos(wy))[:, None] + (2 - 2 * torch.cos(wx))[None, :]


def _fast_length(n: int) -> int:
    """The smallest even 2^a·3^b·5^c >= n (FFTs of such lengths are fast)."""
    best = 1 << max(1, (n - 1).bit_length())
    power3 = 1
    while power3 < best:
        power35 = power3
        while power35 < best:
            length = power35
            while length < n:
                length *= 2
            if length % 2 == 0:
                best = min(best, length)
            power35 *= 5
        power3 *= 3
    return best


def filter_mirrored(image: torch.Tensor, kernels: torch.Tensor, transfers) -> torch.Tensor:
    """Filter (B,C,H,W) in the Fourier domain with J transfer functions per image -> (B, J, C, H, W).

    The image is padded by edge replication and then mirrored to twice its size, so the periodic FFT sees no border
    jump. ``transfers(otf, gradients)`` gets the (B, hp, wq) spectra of the (B,K,K) ``kernels`` and the gradient
    spectrum on that grid (``rfft2`` layout) and returns (B, J, hp, wq); each channel is transformed once for all J.
    At inference on the CPU, point-symmetric kernels take a cheaper route to the same result: cosine and sine
    transforms of the unmirrored image (:func:`_filter_by_cosine_transforms`).
    """
    b, c, h, w = image.shape
    k = kernels.shape[-1]
    padded, m = _edge_padded(image, k)
    if image.device.type == "cpu" and not image.requires_grad and torch.equal(kernels, kernels.flip(-1, -2)):
        gains = _cosine_transfers(transfers, kernels, *padded.shape[-2:])
        if gains is not None:
            return _filter_by_cosine_transforms(padded, gains, m, h, w).to(image.dtype)
    padded = torch.cat([padded, padded.flip(-1)], dim=-1)
    padded = torch.cat([padded, padded.flip(-2)], dim=-2)
    hp, wp = padded.shape[-2:]
    grid = torch.zeros(b, hp, wp, dtype=torch.float64, device=image.device)
    grid[:, :k, :k] = kernels.double()
    otf = torch.fft.rfft2(torch.roll(grid, (-(k // 2), -(k // 2)), dims=(1, 2)))  # real kernels: half spectra
    gains = transfers(otf, gradient_spectrum(hp, wp, image.device)).to(torch.complex64)
    channels = [torch.fft.irfft2(torch.fft.rfft2(padded[:, i])[:, None] * gains, s=(hp, wp))[..., m:m + h, m:m + w]
                for i in range(c)]  # one at a time: the mirrored spectra of a large photo are big
    return torch.stack(channels, dim=2).to(image.dtype)


def _nothing_to_blend(shares: torch.Tensor) -> bool:
    """Whether :meth:`GlobalMotionDeblur.apply` may skip its FFTs for (B, J) ``shares``. Under a gradient (training
    through the stage) only when every share is below SKIP_BELOW; at inference when the summed share is below
    MOTION_SKIP_BELOW. Trained, the head gives images without a linear blur summed shares of about 0.003: they would
    move a pixel by 0.3 % of the deconvolution's change, and skipping saves the filter (0.15-0.2 s on a 1-MP
    photo)."""
    if shares.requires_grad:
        return float(shares.detach().max()) < SKIP_BELOW
    return float(shares.sum(dim=1).max()) < MOTION_SKIP_BELOW


def _edge_padded(image: torch.Tensor, kernel_size: int) -> tuple[torch.Tensor, int]:
    """(B,C,H,W) -> float32 copy edge-replicated by a margin ``m`` on each side (returned too) plus a few more rows
    and columns at the far ends, so that twice its size is an FFT-friendly length."""
    h, w = image.shape[-2:]
    m = kernel_size + 24  # ringing from the border decays in the margin (mirroring alone rings more)
    extra_h, extra_w = (_fast_length(2 * (n + 2 * m)) // 2 - n - 2 * m for n in (h, w))
    return F.pad(image.float(), (m, m + extra_w, m, m + extra_h), mode="replicate"), m


def _cosine_transfers(transfers, kernels: torch.Tensor, ph: int, pw: int) -> tuple[torch.Tensor, ...] | None:
    """The transfer functions of :func:`filter_mirrored` for point-symmetric (B,K,K) ``kernels`` at the frequencies
    ``pi j / P`` (j = 0..P) of a (ph, pw) padded image, split into their parts even and odd in both axes, or None
    when they need a gradient (the FFT route is the differentiable one).

    A point-symmetric kernel has a real spectrum, ``A - B`` at (wy, wx) and ``A + B`` at (wy, -wx), with ``A`` the
    cosine-cosine and ``B`` the sine-sine sums of the kernel; the gradient spectrum is even in both axes."""
    k = kernels.shape[-1]
    offsets = torch.arange(k, dtype=torch.float64, device=kernels.device) - k // 2
    freqs_y, freqs_x = (math.pi * torch.arange(n + 1, dtype=torch.float64, device=kernels.device) / n
                        for n in (ph, pw))
    angles_y, angles_x = freqs_y[:, None] * offsets, freqs_x[:, None] * offsets
    kernels = kernels.double()
    cosines = torch.einsum("yu,buv,xv->byx", angles_y.cos(), kernels, angles_x.cos())
    sines = torch.einsum("yu,buv,xv->byx", angles_y.sin(), kernels, angles_x.sin())
    gradients = gradient_spectrum(2 * ph, 2 * pw, kernels.device)[: ph + 1]  # the mirrored grid's first quadrant
    plus, minus = transfers(cosines - sines, gradients), transfers(cosines + sines, gradients)
    if plus.requires_grad:
        return None
    return (plus + minus).real / 2, (plus - minus).real / 2


def _filter_by_cosine_transforms(padded: torch.Tensor, gains: tuple[torch.Tensor, torch.Tensor], m: int, h: int,
                                 w: int) -> torch.Tensor:
    """:func:`filter_mirrored` without the mirrored copies: (B,C,P,Q) edge-padded images, the (B,J,P+1,Q+1) even and
    odd parts of the transfer functions -> (B,J,C,h,w).

    The mirrored image is symmetric in each axis; its spectrum is its DCT-II (half the size per axis) up to phase
    factors. The even part of a transfer function keeps that symmetry, and its output is the inverse DCT-II of the
    product; the odd part makes an output antisymmetric in each axis, the inverse DST-II of the product shifted by one
    frequency (a DST-II coefficient ``j`` is frequency ``j + 1``). 3-5x faster on a 1-MP photo, the same function
    up to float rounding (tested against the FFT route)."""
    import scipy.fft  # a dependency of the package; only this route needs it

    even, odd = (g.float().numpy() for g in gains)  # (B, J, P+1, Q+1)
    has_odd = bool(np.any(odd))
    workers = torch.get_num_threads()
    channels = []
    for image in padded.numpy().transpose(1, 0, 2, 3):  # one channel at a time: the spectra of a photo are big
        spectrum = scipy.fft.dctn(image, type=2, axes=(-2, -1), workers=workers)[:, None]  # (B, 1, P, Q)
        out = scipy.fft.idctn(spectrum * even[..., :-1, :-1], type=2, axes=(-2, -1), workers=workers)
        if has_odd:
            shifted = np.zeros_like(spectrum)
            shifted[..., :-1, :-1] = spectrum[..., 1:, 1:]  # the DCT-II at frequency P is zero
            out -= scipy.fft.idstn(shifted * odd[..., 1:, 1:], type=2, axes=(-2, -1), workers=workers)
        channels.append(torch.from_numpy(np.ascontiguousarray(out[..., m:m + h, m:m + w])))
    return torch.stack(channels, dim=2)


def wiener_gain(otf: torch.Tensor, lam: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """``conj(K) / (|K|² + lam |∇|²)`` for (B, hp, wq) kernel spectra and (B,) prior weights."""
    return otf.conj() / (otf.abs().pow(2) + lam.double().view(-1, 1, 1) * gradients)


def wiener_deconvolve(image: torch.Tensor, kernels: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Deconvolve (B,C,H,W) with one (K,K) kernel per image: ``X = conj(K) Y / (|K|² + lam |∇|²)`` (see
    :func:`filter_mirrored` for the borders). Differentiable in image, kernels and lam. Runs WIENER_CHUNK images
    at a time: the spectra of larger batches overflow the CPU caches (32 × 3 × 256²: 5.3 s forward and backward at
    once, 1.7 s in chunks of 8, 2 threads)."""
    return torch.cat([filter_mirrored(image[i:i + WIENER_CHUNK], kernels[i:i + WIENER_CHUNK],
                                      lambda otf, gradients, lam=lam[i:i + WIENER_CHUNK]:
                                      wiener_gain(otf, lam, gradients)[:, None])[:, 0]
                      for i in range(0, len(image), WIENER_CHUNK)])


class GlobalMotionDeblur(nn.Module):
    """Estimate a linear motion blur from the whole restored image and deconvolve it with the estimate at a few
    prior weights, blended in with predicted shares.

    Args:
        hidden: width of the head's two hidden layers.
        lambdas: the prior weights of the candidate deconvolutions (more smoothing for noisier estimates).
    """

    def __init__(self, *, hidden: int = 32, lambdas: Sequence[float] = LAMBDAS) -> None:
        super().__init__()
        self.lambdas = tuple(float(v) for v in lambdas)
        self.mlp = nn.Sequential(nn.Linear(N_HEAD_FEATURES, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, 1 + len(self.lambdas)))
        nn.init.zeros_(self.mlp[-1].weight)
        with torch.no_grad():
            self.mlp[-1].bias.zero_()
            self.mlp[-1].bias[0] = KEEP_LOGIT
        # the head's inputs are standardised with the training set's statistics (set_feature_statistics)
        self.register_buffer("feature_shift", torch.zeros(N_HEAD_FEATURES))
        self.register_buffer("feature_scale", torch.ones(N_HEAD_FEATURES))

    @torch.no_grad()
    def set_feature_statistics(self, features: torch.Tensor) -> None:
        """Standardise the head's inputs by the mean and standard deviation of training ``features``."""
        head_inputs = features[:, 2:].float()
        self.feature_shift.copy_(head_inputs.mean(dim=0))
        self.feature_scale.copy_(head_inputs.std(dim=0).clamp_min(1e-6))

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """(B, 2 + N_HEAD_FEATURES) -> (B, 1 + len(lambdas)) scores of keeping the image and of each candidate."""
        return self.mlp((features[:, 2:] - self.feature_shift) / self.feature_scale)

    features = staticmethod(motion_features)
    features_from = "restored"  # the U-Net removes rain streaks and noise that would mimic or hide the blur

    def from_features(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Features (B, 2 + N_HEAD_FEATURES) -> the candidates' shares (B, len(lambdas)) (softmax against keeping
        the image, about 1.7 % each untrained) and the blur offset dx, dy (B,)."""
        shares = torch.softmax(self.logits(features), dim=1)[:, 1:]
        return shares, features[:, 0], features[:, 1]

    def candidates(self, restored: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
        """(B,C,H,W) -> (B, len(lambdas), C, H, W) deconvolutions with the estimated kernels."""
        lams = [torch.full((len(restored),), lam, device=restored.device) for lam in self.lambdas]
        return filter_mirrored(restored, line_kernels(dx, dy).to(restored.device), lambda otf, gradients: torch.stack(
            [wiener_gain(otf, lam, gradients) for lam in lams], dim=1))

    @staticmethod
    def blend(restored: torch.Tensor, candidates: torch.Tensor, shares: torch.Tensor) -> torch.Tensor:
        y = restored.float()
        return (y + (shares[:, :, None, None, None] * (candidates.float() - y[:, None])).sum(dim=1)).to(restored.dtype)

    def apply(self, restored: torch.Tensor, shares: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
        """:meth:`blend` of :meth:`candidates`, as one filter: the blend of linear filters is the filter of the blended
        transfer functions, so a whole photo costs one FFT pair per channel however many candidates there are."""
        if _nothing_to_blend(shares):  # skip the FFTs
            return restored
        def blended(otf, gradients):
            keep = (1 - shares.sum(dim=1)).double().view(-1, 1, 1)
            return (keep + sum(shares[:, j].double().view(-1, 1, 1)
                               * wiener_gain(otf, torch.full((len(otf),), lam, device=otf.device), gradients)
                               for j, lam in enumerate(self.lambdas)))[:, None]

        return filter_mirrored(restored, line_kernels(dx, dy).to(restored.device), blended)[:, 0]

    def estimate(self, degraded: torch.Tensor, restored: torch.Tensor,
                 jpeg_only: torch.Tensor | None = None) -> tuple[torch.Tensor, ...] | None:
        """The shares, dx and dy :meth:`apply` takes (the shares zeroed on a JPEG lattice dip and where the input
        shows no dip at the offset, see the module), or None for an image too small to measure (it is left as it
        is). ``jpeg_only`` (per image, the JPEG expert's route): such an image is deconvolved only where the summed
        shares reach JPEG_ONLY_MIN_SHARE. The route takes sharp JPEGs and blurred ones alike, and on a sharp one a
        dip of the photo's own texture that the head half-believes costs several dB."""
        if min(restored.shape[-2:]) < MIN_SIDE:
            return None
        shares, dx, dy = self.from_features(motion_features(restored))
        refused = on_jpeg_grid(dx, dy, degraded, jpeg_only)  # the route's images hold a JPEG table
        if jpeg_only is not None:
            refused = refused | (jpeg_only.to(refused.device) & (shares.sum(dim=1) < JPEG_ONLY_MIN_SHARE))
        if not _nothing_to_blend(shares):  # the input's cepstrum costs an FFT pair: only where a share is left
            refused = refused | (dip_depth_at(degraded, dx, dy) < MIN_INPUT_DEPTH)
        shares = torch.where(refused[:, None], torch.zeros_like(shares), shares)
        return shares, dx, dy

    def forward(self, degraded: torch.Tensor, restored: torch.Tensor) -> torch.Tensor:
        estimate = self.estimate(degraded, restored)
        return restored if estimate is None else self.apply(restored, *estimate)
