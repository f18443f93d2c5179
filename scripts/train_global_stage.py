"""Train one whole-image stage of the default model on top of frozen restoration weights.

The default model's U-Net sees one crop or tile at a time. Six corrections need the whole image instead; four are
small heads (:mod:`anyrestore.archs.tone_curve`, :mod:`anyrestore.archs.global_sharpen`,
:mod:`anyrestore.archs.motion_deblur`, :mod:`anyrestore.archs.chroma_denoise`) that read statistics of the whole
degraded input or of the U-Net's output, and two have no weights (:mod:`anyrestore.archs.coarse_pass`,
:mod:`anyrestore.archs.jpeg_projection`).
The U-Net (and any stage trained before) is frozen, so each training set is computed once, and a run takes minutes
on 2 CPU cores. A ``--cache`` file is keyed by the U-Net's weights and the options, not by the stages: retraining
one stage reuses the sets of the others.

``sharpen`` (about 5 k parameters; stage 9 of scripts/train_default.sh, about 15 minutes): the U-Net removes noise
well but sharpens little. The head reads band-pass energies of the input at native resolution and predicts a share
t of a Gaussian Wiener deconvolution of the U-Net output (share, kernel sigma, gradient-prior weight; the default
``--sharpen-mode wiener``, shipped since the eleventh release).
1. 3,000 native-resolution 128² crops of the training photos; 30 % blurred (Gaussian, sigma 0.5-3), 20 % JPEG alone
   (``--jpeg-share``; q 15-90, any chroma subsampling: a deconvolution amplifies block edges, and without them it
   fired on JPEG q30, -3 dB on one crop), the rest degraded by the default model's training mixture (noise,
   JPEG... must stay unsharpened); ``--blur-jpeg-share`` saves a share of the blurred crops as JPEG q 50-95 (session
   25's probe, not in the shipped recipe: it deblurred blurred JPEGs but over-sharpened smooth sharp ones);
2. the frozen U-Net restores each crop once;
3. 500 steps on the blurred crops alone with the whole deconvolution (the sigma and prior first), then 300
   logistic steps of the share towards "the deconvolution helps this crop" (weighted by how much), then the PSNR
   loss: 2,500 Adam steps in all at batch 16 (the spectra of larger batches overflow the CPU caches). From its
   untrained shares the PSNR loss alone closed the gate on every crop.
At inference the stage comes after the motion stage and before the tone curve; it is trained after the tone curve,
on the U-Net's outputs. Its share yields to the motion stage's (``GlobalSharpen.yield_to_motion``), and the motion
stage is trained through that rule. ``--sharpen-mode unsharp`` trains the first releases' head instead: one unsharp
mask (amount, radius), no JPEG-only crops, 2,000 steps at batch 32 on the PSNR loss (about 6 minutes).

``tone_curve`` (about 8 k parameters; stage 8, about 8 minutes): the U-Net keeps the brightness of its input. It
cannot tell an under-exposed photo from a dark scene in one crop, and a 2-5x brightening is hard to build as a
residual. The head predicts one monotone curve from brightness statistics of the whole input.
1. thumbnails: square crops (50-100 % of the shorter side) of the training photos, area-resized to 128²;
2. each thumbnail is under-exposed (30 %: Retinex darkening, a pixel gamma ``s·x^g`` or a linear-light exposure
   cut, some with noise), or made a dark scene (40 %: ``s·x^g`` with g in [1, 1.6], s in [0.55, 0.9], its own
   clean target) and then degraded by the default model's training mixture, or degraded by the mixture alone;
3. the frozen U-Net restores every degraded thumbnail once;
4. 1,000 Adam steps on the pixel MSE (which leaves the identity curve quickly), then 3,000 on the PSNR loss (the
   mean of per-image PSNRs, the quality report's average, which keeps dark scenes and photos that need no
   correction as they are). The dark scenes and the dark photographs of the training set are identity targets:
   from the statistics of the *whole* image the head learns which dark inputs to brighten.
Stage 13 trains a new head in place of stage 8's (``--replace``) with dark scenes that keep their white point,
``s·x^g`` with g in [1, 1.8] and s in [0.92, 1] (a dark scene is exposed for its highlights; an under-exposed photo
is not), and 15 % small windows that are dark in the photo itself (``--dark-window-share``; crops of shadows, which
have no highlights either). Stage 8's scenes, ``s·x^g`` with s in [0.55, 0.9], looked like mild under-exposures,
and its head brightened whole under-exposed photos hardly at all.

``photo_tone_curve`` (stage 15, about 8 minutes): a second exposure head, trained the same way, that a model uses
in place of ``tone_curve`` on whole photos it finds under-exposed (a shorter side of at least 640 px, or a
non-square frame from 256 px; :class:`~anyrestore.archs.tone_curve.ToneCurveBySize`), so that it may brighten more
than a head that must keep crops of shadows dark. The recipe trains it with 10 % dark windows (``--dark-window-share 0.10``), 45 %
under-exposed thumbnails and 30 % dark scenes that keep their white point. Session 21 routed it from 320 px, and
512² crops of shadows were brightened like under-exposed photos; from 640 px (the sixteenth release) they keep the
crop head.

``motion_deblur`` (about 1.4 k parameters; stage 10, about 55 minutes from scratch): the U-Net leaves a linear
motion blur almost as it is. The stage finds the blur's length and direction in the cepstrum of the whole restored
image and deconvolves it (:mod:`anyrestore.archs.motion_deblur`); the head only decides how much of three
deconvolutions (sharp, medium, smooth prior) to blend in.
1. 2,000 native-resolution 256² crops: 40 % with a linear motion blur (5-35 px, any direction, two kernel
   implementations, some with noise or JPEG), 10 % camera shake, 20 % JPEG alone, 10 % clean, the rest the mixture
   (every JPEG with one of three chroma subsamplings);
2. the frozen U-Net restores each crop once, and the three deconvolutions are computed once;
3. 800 cross-entropy steps towards each crop's best option (keep, or one of the three), weighted by how much better
   it is, then 1,600 steps on the PSNR loss (batch 16), each scored after the frozen Gaussian deconvolution and
   exposure curve (36 minutes: the later Wiener deconvolution runs at every step). From the untrained shares the
   PSNR loss alone closes the gate on everything: a wrong deconvolution costs far more than a right one gains.

``chroma_denoise`` (about 600 parameters; stage 11, about 10 minutes): the U-Net leaves colour noise on strongly
noisy photos. The stage guided-filters the chroma of the U-Net output by its own luma
(:mod:`anyrestore.archs.chroma_denoise`), and a small gate decides per image how much of that to blend in.
1. 3,000 native-resolution 128² crops: 40 % with Gaussian noise alone (sigma 1-50; half of them then saved as JPEG
   q 50-95), 10 % clean, the rest the default model's training mixture;
2. the frozen U-Net restores each crop once; the filtered output and the gate's statistics are computed once;
3. 1,500 Adam steps on the PSNR loss at batch 32. At inference the stage comes before the motion stage.

``coarse_pass`` (no weights; stage 12, seconds): the U-Net also restores the whole input downscaled to its training
scale, and a lifted haze veil is carried to the full-resolution output (:mod:`anyrestore.archs.coarse_pass`). There
is nothing to train: the command writes the weights with the stage switched on. At inference it comes first.

``jpeg_projection`` (no weights; stage 14, seconds): when the input is a JPEG whose only damage was the compression,
the U-Net output's luma is clamped into the quantisation intervals of the input's DCT coefficients
(:mod:`anyrestore.archs.jpeg_projection`). Nothing to train either; at inference it comes before every other stage.

    python scripts/train_global_stage.py tone_curve --weights runs/default-gpu-polish/model.safetensors \
        -o runs/default-tone-curve/model.safetensors
    python scripts/train_global_stage.py sharpen --weights runs/default-tone-curve/model.safetensors \
        -o runs/default-sharpen/model.safetensors
    python scripts/train_global_stage.py motion_deblur --weights runs/default-sharpen/model.safetensors \
        -o runs/default-motion-deblur/model.safetensors
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from anyrestore.archs.global_sharpen import MODES
from anyrestore.archs.tone_curve import PHOTO_MIN_SIDE
from anyrestore.archs.registry import build_arch, get_preset
from anyrestore.checkpoints import load_model, save_model
from anyrestore.data.sources import list_images, shipped_photo_paths
from anyrestore.degradations.blur import apply_kernels, motion_kernel
from anyrestore.degradations.jpeg import jpeg
from anyrestore.degradations.light import low_light
from anyrestore.degradations.noise import gaussian_noise
from anyrestore.degradations.pipeline import degrade
from anyrestore.io import atomic_write_bytes, read_image

THUMB = 128  # tone_curve: whole-photo thumbnails
SCENE_GAMMA, SCENE_SCALE = (1.0, 1.6), (0.55, 0.9)  # tone_curve: the dark scenes of the shipped recipe's stage 8
DARK_WINDOW_MEAN = 0.22  # tone_curve: a window this dark in the clean photo is a dark scene, not an exposure error
DARK_WINDOW_TRIES = 200
LOSS_SIDE = 64
CROP = 128  # sharpen: native-resolution crops
MOTION_CROP = 256  # motion_deblur: native-resolution crops holding several 128² spectrum blocks
JPEG_SUBSAMPLINGS = ("4:2:0", "4:2:2", "4:4:4")
# the whole-image stages' state-dict keys
STAGE_PREFIXES = ("chroma_denoise.", "motion_deblur.", "sharpen.", "tone_curve.", "photo_tone_curve.",
                  "jpeg_expert.")  # the expert does not change what the U-Net outputs
TONE_STAGES = ("tone_curve", "photo_tone_curve")  # the exposure heads: one training set, one recipe


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * torch.rand((), generator=generator).item()


def under_expose(clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One of three under-exposure models with seeded parameters, sometimes with sensor-like noise."""
    kind = int(torch.randint(3, (), generator=generator))
    gamma, scale = _uniform(generator, 1.3, 3.2), _uniform(generator, 0.3, 0.95)
    if kind == 0:
        out = low_light(clean[None], gamma=gamma, scale=scale)[0]
    elif kind == 1:
        out = scale * clean.clamp(0, 1) ** gamma
    else:  # exposure cut in linear light (sRGB-like 2.2), 1.5-5 stops
        stops = _uniform(generator, 1.5, 5.0)
        out = (clean.clamp(0, 1) ** 2.2 * 2.0 ** -stops) ** (1 / 2.2)
    if torch.rand((), generator=generator).item() < 0.4:
        out = gaussian_noise(out[None], sigma=_uniform(generator, 1.0, 15.0), generator=generator)[0]
    return (out.clamp(0, 1) * 255).round() / 255


def photo_paths(folders: list[Path]) -> list[Path]:
    paths = [p for folder in folders for p in list_images(folder)]
    return paths + shipped_photo_paths()


def _random_square(photos: list[torch.Tensor], generator: torch.Generator, side_of) -> torch.Tensor:
    """A random photo's square window of side ``side_of(h, w)`` at a random place."""
    photo = photos[int(torch.randint(len(photos), (), generator=generator))]
    h, w = photo.shape[-2:]
    side = side_of(h, w)
    top = int(torch.randint(h - side + 1, (), generator=generator))
    left = int(torch.randint(w - side + 1, (), generator=generator))
    return photo[:, top:top + side, left:left + side]


def make_thumbnails(paths: list[Path], count: int, seed: int, dark_window_share: float = 0.0
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Square windows of 50-100 % of the photos' short side, area-resized to THUMB² (a whole-photo view).

    A ``dark_window_share`` of them are instead small windows (THUMB to half the short side) that are dark in the
    photo itself (grey mean below DARK_WINDOW_MEAN): real dark scenes, as a crop or tile of a night photo or a shadow
    shows them, which the curve must keep; ``natural_dark`` marks them."""
    generator = torch.Generator().manual_seed(seed)
    photos = [read_image(p)[:3] for p in paths]
    side_of = lambda h, w: min(max(THUMB, int(min(h, w) * _uniform(generator, 0.5, 1.0))), h, w)  # noqa: E731
    small_side = lambda h, w: min(max(THUMB, int(min(h, w) * _uniform(generator, 0.18, 0.5))), h, w)  # noqa: E731
    out = torch.empty(count, 3, THUMB, THUMB)
    natural_dark = torch.zeros(count, dtype=torch.bool)
    wants_dark = torch.zeros(count, dtype=torch.bool)
    if dark_window_share > 0:  # no draw at 0: the shipped recipe's random stream stays as it was
        wants_dark = torch.rand(count, generator=generator) < dark_window_share
    for i in range(count):
        crop = None
        if wants_dark[i]:
            for _ in range(DARK_WINDOW_TRIES):
                window = _random_square(photos, generator, small_side)
                if window.mean() < DARK_WINDOW_MEAN:
                    crop, natural_dark[i] = window, True
                    break
        if crop is None:
            crop = _random_square(photos, generator, side_of)
        out[i] = F.interpolate(crop[None], size=(THUMB, THUMB), mode="area")[0] if crop.shape[-1] != THUMB else crop
    return out, natural_dark


def degrade_all(clean: torch.Tensor, share: float, scene_share: float, seed: int,
                natural_dark: torch.Tensor | None = None, scene_gamma: tuple[float, float] = SCENE_GAMMA,
                scene_scale: tuple[float, float] = SCENE_SCALE) -> tuple[torch.Tensor, torch.Tensor]:
    """Degrade the thumbnails in place of a data loader. A ``share`` of them is under-exposed (``dark`` marks
    them); a ``scene_share`` first becomes a dark scene, ``s * x^g`` with g in ``scene_gamma`` and s in
    ``scene_scale`` (by default the mild dark copies of scripts/make_dark_photos.py), which is then its own clean
    target; the rest, dark scenes included, get the default model's training mixture. ``natural_dark`` thumbnails
    (already dark in the photo) only get the mixture."""
    generator = torch.Generator().manual_seed(seed + 1)
    degraded = torch.empty_like(clean)
    dark = torch.zeros(len(clean), dtype=torch.bool)
    for i in range(len(clean)):
        draw = torch.rand((), generator=generator).item()
        if natural_dark is not None and natural_dark[i]:
            draw = 1.0
        if draw < share:
            degraded[i] = under_expose(clean[i], generator)
            dark[i] = True
            continue
        if draw < share + scene_share:
            gamma, scale = _uniform(generator, *scene_gamma), _uniform(generator, *scene_scale)
            clean[i] = (scale * clean[i] ** gamma * 255).round() / 255
        degraded[i] = degrade(clean[i], "default-model", seed=seed * 1_000_003 + i)[0]
    return degraded, dark


@torch.inference_mode()
def restore_all(model: torch.nn.Module, degraded: torch.Tensor, batch: int = 16) -> torch.Tensor:
    out = torch.empty_like(degraded)
    for start in range(0, len(degraded), batch):
        out[start:start + batch] = model.forward_local(degraded[start:start + batch]).clamp(0, 1)
    return out


def make_crops(paths: list[Path], count: int, seed: int, side: int = CROP) -> torch.Tensor:
    """Random side² windows of the training photos at their own resolution (blur lives at the pixel scale)."""
    generator = torch.Generator().manual_seed(seed)
    photos = [photo for photo in (read_image(p)[:3] for p in paths) if min(photo.shape[-2:]) >= side]
    return torch.stack([_random_square(photos, generator, lambda h, w: side) for _ in range(count)])


def _degrade_each(clean: torch.Tensor, seed: int, degrade_one) -> tuple[torch.Tensor, torch.Tensor]:
    """``degrade_one(image, generator, seed_i) -> (degraded, marked)`` for each crop, with one generator seeded
    ``seed + 1`` drawn in crop order; 8-bit quantised."""
    generator = torch.Generator().manual_seed(seed + 1)
    degraded = torch.empty_like(clean)
    marked = torch.zeros(len(clean), dtype=torch.bool)
    for i in range(len(clean)):
        x, marked[i] = degrade_one(clean[i], generator, seed * 1_000_003 + i)
        degraded[i] = (x.clamp(0, 1) * 255).round() / 255
    return degraded, marked


def blur_or_mix(clean: torch.Tensor, share: float, seed: int, jpeg_share: float = 0.0, blur_jpeg_share: float = 0.0
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``share`` of the crops gets an isotropic Gaussian blur (sigma 0.5-3, kernel 2*ceil(3 sigma)+1; ``blurred``
    marks them), a ``blur_jpeg_share`` of those then saved as JPEG (q 50-95, any chroma subsampling), a
    ``jpeg_share`` JPEG alone (q 15-90, any chroma subsampling: blocky crops whose fine-scale energy a deconvolution
    would amplify), the rest the default model's training mixture; 8-bit quantised. With ``jpeg_share`` 0 the
    random stream is the shipped unsharp recipe's, with ``blur_jpeg_share`` 0 the eleventh release's Wiener one."""
    def one(image: torch.Tensor, generator: torch.Generator, seed_i: int) -> tuple[torch.Tensor, bool]:
        draw = torch.rand((), generator=generator).item()
        if draw < share:
            sigma = _uniform(generator, 0.5, 3.0)
            blurred = degrade(image, f"blur:k{2 * math.ceil(3 * sigma) + 1}s{sigma:.2f}", seed=seed_i)[0]
            if blur_jpeg_share and torch.rand((), generator=generator).item() < blur_jpeg_share:
                blurred = _any_jpeg((blurred.clamp(0, 1) * 255).round() / 255, generator, 50, 96)
            return blurred, True
        if draw < share + jpeg_share:
            return _any_jpeg(image, generator, 15, 90), False
        return degrade(image, "default-model", seed=seed_i)[0], False

    return _degrade_each(clean, seed, one)


def noise_or_mix(clean: torch.Tensor, share: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``share`` of the crops gets Gaussian noise alone (sigma 1-50; ``noisy`` marks them), half of those then
    saved as JPEG (q 50-95, any chroma subsampling); 10 % of all stay clean (textured colour the filter must keep);
    the rest get the default model's training mixture; 8-bit quantised."""
    def one(image: torch.Tensor, generator: torch.Generator, seed_i: int) -> tuple[torch.Tensor, bool]:
        draw = torch.rand((), generator=generator).item()
        if draw < share:
            x = degrade(image, f"noise:{_uniform(generator, 1.0, 50.0):.1f}", seed=seed_i)[0]
            if torch.rand((), generator=generator).item() < 0.5:
                x = _any_jpeg((x.clamp(0, 1) * 255).round() / 255, generator, 50, 96)
            return x, True
        if draw < share + 0.1:
            return image, False
        return degrade(image, "default-model", seed=seed_i)[0], False

    return _degrade_each(clean, seed, one)


def pixel_line_kernel(length: float, angle: float) -> torch.Tensor:
    """A second linear-motion implementation: ``round(length)`` equal taps, each rounded to the nearest pixel (no
    bilinear spreading), so the stage does not learn one discretisation only."""
    taps = max(2, round(length))
    size = 2 * math.ceil(length / 2) + 1
    t = torch.linspace(-(length - 1) / 2, (length - 1) / 2, taps, dtype=torch.float64)
    a = math.radians(angle)
    cols = (t * math.cos(a)).round().long() + size // 2
    rows = (-t * math.sin(a)).round().long() + size // 2
    kernel = torch.zeros(size, size, dtype=torch.float64)
    kernel.index_put_((rows, cols), torch.ones(taps, dtype=torch.float64), accumulate=True)
    return (kernel / kernel.sum()).float()


def _any_jpeg(image: torch.Tensor, generator: torch.Generator, low: int, high: int) -> torch.Tensor:
    """JPEG at a quality drawn from [low, high) with a chroma subsampling drawn from 4:2:0, 4:2:2 and 4:4:4."""
    quality = int(_uniform(generator, low, high))
    subsampling = JPEG_SUBSAMPLINGS[int(torch.randint(len(JPEG_SUBSAMPLINGS), (), generator=generator))]
    return jpeg(image[None], quality=quality, subsampling=subsampling)[0]


def motion_or_mix(clean: torch.Tensor, share: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``share`` of the crops gets a linear motion blur (length 5-35 px, any direction; the library's
    anti-aliased segment or :func:`pixel_line_kernel`, half each; ``moved`` marks them), then sometimes noise
    (sigma 1-10) or JPEG (q 50-95). Of the rest: 10 % of all crops get camera shake along a curved path (not a
    line: the stage must leave it alone or help), 20 % JPEG alone (q 15-90), 10 % stay clean, and the others the
    default model's training mixture; 8-bit quantised. Every JPEG here draws its chroma subsampling (4:2:0, 4:2:2,
    4:4:4): 4:2:2 smears colour along rows, and a model that knew only 4:2:0 took it for motion on a photo of
    slanted grass blades (-3.8 dB)."""
    generator = torch.Generator().manual_seed(seed + 1)
    degraded = torch.empty_like(clean)
    moved = torch.zeros(len(clean), dtype=torch.bool)
    for i in range(len(clean)):
        seed_i = seed * 1_000_003 + i
        draw = torch.rand((), generator=generator).item()
        if draw < share:
            length, angle = _uniform(generator, 5.0, 35.0), _uniform(generator, 0.0, 180.0)
            if torch.rand((), generator=generator).item() < 0.5:
                kernel = motion_kernel(2 * math.ceil(length / 2) + 1, length, angle)
            else:
                kernel = pixel_line_kernel(length, angle)
            x = apply_kernels(clean[i][None], [kernel])
            extra = torch.rand((), generator=generator).item()
            if extra < 0.3:
                x = degrade(x[0], f"noise:{_uniform(generator, 1.0, 10.0):.1f}", seed=seed_i)[0][None]
            elif extra < 0.6:
                x = _any_jpeg(x[0], generator, 50, 95)[None]
            degraded[i] = x[0]
            moved[i] = True
        elif draw < share + 0.1:
            degraded[i] = degrade(clean[i], "shake_blur", seed=seed_i)[0]
        elif draw < share + 0.3:  # blocking and ringing: the negatives the first training sets lacked
            degraded[i] = _any_jpeg(clean[i], generator, 15, 90)
        elif draw < share + 0.4:
            degraded[i] = clean[i]
        else:
            degraded[i] = degrade(clean[i], "default-model", seed=seed_i)[0]
        degraded[i] = (degraded[i].clamp(0, 1) * 255).round() / 255
    return degraded, moved


def later_stages(model: torch.nn.Module, stage: str) -> list[torch.nn.Module]:
    """The whole-image stages that run after ``stage`` at inference (the model's ``global_stage`` order)."""
    stages = list(model.global_stage.stages)
    head = getattr(model, stage)
    position = next(i for i, s in enumerate(stages) if s is head or head in s.children())  # a head in a router
    return stages[position + 1:]


def unet_sha256(model: torch.nn.Module) -> str:
    """Hash of the weights every training set depends on: the U-Net's, without any whole-image stage (the sets hold
    U-Net outputs and statistics of the inputs, so retraining a stage does not invalidate a cache)."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        if not key.startswith(STAGE_PREFIXES):
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def recipe_key(model: torch.nn.Module, args: argparse.Namespace) -> str:
    """What a cached training set was made from: the U-Net's weights and every option that changes the set."""
    recipe = {"stage": args.stage, "unet": unet_sha256(model), "samples": args.samples,
              "seed": args.seed, "photos": sorted(map(str, args.photos))}
    if args.stage in TONE_STAGES:
        recipe.update(dark=args.dark_share, scene=args.scene_share)
        if args.dark_window_share:
            recipe.update(dark_windows=args.dark_window_share)
        if (tuple(args.scene_gamma), tuple(args.scene_scale)) != (SCENE_GAMMA, SCENE_SCALE):
            recipe.update(scene_gamma=list(args.scene_gamma), scene_scale=list(args.scene_scale))
    elif args.stage == "chroma_denoise":
        recipe.update(noise=args.noise_share, noise_jpeg="half, q50-95", clean=0.1)
    elif args.stage == "sharpen":
        recipe.update(blur=args.blur_share)
        if args.jpeg_share:
            recipe.update(jpeg_alone=args.jpeg_share)
        if args.blur_jpeg_share:
            recipe.update(blur_then_jpeg=args.blur_jpeg_share)
    else:
        recipe.update(motion=args.motion_share, jpeg="4:2:0, 4:2:2, 4:4:4",
                      others="shake 10 %, JPEG q15-90 20 %, clean 10 %, mixture")
    later = later_stages(model, args.stage) if args.through_later else []
    if later:
        recipe["through"] = [type(stage).__name__ for stage in later]
    return json.dumps(recipe)


def training_set(model: torch.nn.Module, args: argparse.Namespace, started: float) -> dict:
    """The stage's features of the degraded images, the U-Net's outputs, the clean targets and the mask of the
    samples the stage is for (under-exposed, blurred); from ``args.cache`` when it holds the same recipe.

    tone_curve: thumbnails of whole photos, outputs and targets area-resized to LOSS_SIDE² (a pointwise curve
    does not care); sharpen: native-resolution crops at full size."""
    key = recipe_key(model, args)
    later = later_stages(model, args.stage) if args.through_later else []
    cached = cached_set(args, key)
    if cached is not None:
        return cached
    paths = photo_paths(args.photos)
    if args.stage in TONE_STAGES:
        clean, natural_dark = make_thumbnails(paths, args.samples, args.seed, args.dark_window_share)
        degraded, marked = degrade_all(clean, args.dark_share, args.scene_share, args.seed, natural_dark,
                                       args.scene_gamma, args.scene_scale)
    elif args.stage == "sharpen":
        clean = make_crops(paths, args.samples, args.seed)
        degraded, marked = blur_or_mix(clean, args.blur_share, args.seed, args.jpeg_share, args.blur_jpeg_share)
    elif args.stage == "chroma_denoise":
        clean = make_crops(paths, args.samples, args.seed)
        degraded, marked = noise_or_mix(clean, args.noise_share, args.seed)
    else:
        clean = make_crops(paths, args.samples, args.seed, MOTION_CROP)
        degraded, marked = motion_or_mix(clean, args.motion_share, args.seed)
    print(f"{len(paths)} photos -> {args.samples} images ({int(marked.sum())} {MARKED[args.stage]}), "
          f"{time.time() - started:.0f} s", flush=True)
    restored = restore_all(model, degraded)
    print(f"U-Net outputs computed, {time.time() - started:.0f} s", flush=True)
    head = getattr(model, args.stage)
    if hasattr(head, "prepare"):  # chroma_denoise: one candidate per image and the gate's statistics, computed once
        features, candidate = zip(*(head.prepare(degraded[i:i + 64], restored[i:i + 64])
                                    for i in range(0, len(degraded), 64)))
        print(f"candidates computed, {time.time() - started:.0f} s", flush=True)
        return _save_set(args, {"key": key, "features": torch.cat(features), "restored": restored,
                                "candidate": torch.cat(candidate), "clean": clean, "marked": marked})
    features = head.features(restored if head.features_from == "restored" else degraded)
    if args.stage in TONE_STAGES:
        small = lambda t: F.interpolate(t, size=(LOSS_SIDE, LOSS_SIDE), mode="area")  # noqa: E731
        restored, clean = small(restored), small(clean)
    data = {"key": key, "features": features, "restored": restored, "clean": clean, "marked": marked}
    if args.stage in TONE_STAGES:
        data["natural_dark"] = natural_dark
        print(f"{int(natural_dark.sum())} dark windows of the photos kept dark", flush=True)
    if later:  # the later stages' own statistics, so the loss sees what inference will output
        if any(stage.features_from != "degraded" for stage in later):
            raise SystemExit("train_global_stage: a later stage reads the restored image; train it after this one")
        data["later_features"] = [stage.features(degraded) for stage in later]
    if hasattr(head, "candidates"):  # fixed per image: computed once, the head only learns to blend them
        dx, dy = features[:, 0], features[:, 1]
        data["candidates"] = torch.cat([head.candidates(restored[i:i + 16], dx[i:i + 16], dy[i:i + 16])
                                        for i in range(0, len(restored), 16)]).half()
        print(f"candidate deconvolutions computed, {time.time() - started:.0f} s", flush=True)
    return _save_set(args, data)


def cached_set(args: argparse.Namespace, key: str) -> dict | None:
    """The training set kept in ``args.cache`` when it was made under ``key``, else None."""
    if args.cache is None or not args.cache.is_file():
        return None
    cached = torch.load(args.cache, weights_only=True)
    if cached.get("key") != key:
        return None
    print(f"training set from {args.cache}", flush=True)
    return cached


def _save_set(args: argparse.Namespace, data: dict) -> dict:
    if args.cache is not None:
        args.cache.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(data, buffer)
        atomic_write_bytes(args.cache, buffer.getvalue())
    return data


def image_db(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR per image (B,) of (B,C,H,W) images in [0, 1]."""
    return -10 * torch.log10((pred - target).pow(2).mean(dim=(1, 2, 3)).clamp_min(1e-10))


def psnr_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return -image_db(pred, target).mean()


_TONE_DEFAULTS = {"samples": 4000, "steps": 4000, "mse_steps": 1000, "batch": 64, "choice_steps": 0,
                  "through_later": False, "deconvolution_steps": 0, "gate_steps": 0, "jpeg_share": 0.0}
DEFAULTS = {  # per stage: samples, steps, MSE steps first, batch
    "tone_curve": _TONE_DEFAULTS,
    "photo_tone_curve": _TONE_DEFAULTS,  # the same recipe; only the options differ
    "sharpen": {"samples": 3000, "steps": 2500, "mse_steps": 0, "batch": 16, "choice_steps": 0,
                "through_later": False, "deconvolution_steps": 500, "gate_steps": 300, "jpeg_share": 0.2},
    "chroma_denoise": {"samples": 3000, "steps": 1500, "mse_steps": 0, "batch": 32, "choice_steps": 0,
                       "through_later": False, "deconvolution_steps": 0, "gate_steps": 0, "jpeg_share": 0.0},
    "coarse_pass": {},  # no weights: switched on, not trained
    "jpeg_projection": {},  # no weights either (an empty entry marks a stage with nothing to train)
    "motion_deblur": {"samples": 2000, "steps": 2400, "mse_steps": 0, "batch": 16, "choice_steps": 800,
                      "through_later": True, "deconvolution_steps": 0, "gate_steps": 0, "jpeg_share": 0.0},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=tuple(DEFAULTS), help="the whole-image stage to add and train")
    parser.add_argument("--weights", type=Path, required=True,
                        help="trained default-model weights (the U-Net, with any stages trained before)")
    parser.add_argument("-o", "--out", type=Path, required=True, help="output weights file (.safetensors)")
    parser.add_argument("--photos", type=Path, nargs="+", default=[Path("data_cache/default_photos/train")],
                        help="folders of clean training photos (the shipped package photos are always added)")
    parser.add_argument("--samples", type=int, default=None,
                        help="training images (tone_curve 4000, sharpen 3000, motion_deblur 2000)")
    parser.add_argument("--dark-share", type=float, default=0.3, help="tone stages: share of under-exposed samples")
    parser.add_argument("--scene-share", type=float, default=0.4,
                        help="tone stages: share of thumbnails turned into clean dark scenes (kept dark)")
    parser.add_argument("--scene-gamma", type=float, nargs=2, default=SCENE_GAMMA, metavar=("LOW", "HIGH"),
                        help="tone stages: exponent range of the dark scenes (default 1 1.6)")
    parser.add_argument("--scene-scale", type=float, nargs=2, default=SCENE_SCALE, metavar=("LOW", "HIGH"),
                        help="tone stages: white-point range of the dark scenes (default 0.55 0.9; 1 1 keeps the "
                             "white point, as a dark scene exposed for its highlights does)")
    parser.add_argument("--dark-window-share", type=float, default=0.0,
                        help="tone stages: share of thumbnails that are small windows already dark in the photo "
                             "(kept dark; stage 8's head was trained with 0, stage 13's with 0.15)")
    parser.add_argument("--blur-share", type=float, default=0.3,
                        help="sharpen: share of crops with Gaussian blur, sigma 0.5-3 (of the rest: --jpeg-share "
                             "JPEG alone, then the mixture)")
    parser.add_argument("--jpeg-share", type=float, default=None,
                        help="sharpen: share of crops with JPEG alone, q 15-90 (wiener 0.2, unsharp 0): negatives "
                             "the deconvolution must leave alone")
    parser.add_argument("--blur-jpeg-share", type=float, default=0.0,
                        help="sharpen: share of the blurred crops then saved as JPEG, q 50-95 (default 0): a blurred "
                             "photo is usually a JPEG too, and the head must still deconvolve it")
    parser.add_argument("--sharpen-mode", choices=MODES, default="wiener",
                        help="sharpen: Gaussian Wiener deconvolution (share, sigma, prior weight; the shipped head "
                             "since the eleventh release) or unsharp mask (amount, radius; the releases before)")
    parser.add_argument("--photo-min-side", type=int, default=PHOTO_MIN_SIDE,
                        help="photo_tone_curve: the shorter side (px) from which the model uses the new head in place "
                             f"of tone_curve; written into the file's arch_kwargs (default {PHOTO_MIN_SIDE})")
    parser.add_argument("--deconvolution-steps", type=int, default=None,
                        help="sharpen, wiener mode: start with this many steps on the blurred crops alone with the "
                             "whole deconvolution blended in (500), so the kernel sigma and prior are learnt before "
                             "the gate")
    parser.add_argument("--gate-steps", type=int, default=None,
                        help="sharpen, wiener mode: then this many logistic steps of the share towards 'the "
                             "deconvolution helps this crop' (300), weighted by how much; the PSNR loss alone "
                             "closes the untrained gate on everything")
    parser.add_argument("--noise-share", type=float, default=0.4,
                        help="chroma_denoise: share of crops with Gaussian noise alone")
    parser.add_argument("--motion-share", type=float, default=0.4,
                        help="motion_deblur: share of crops with a linear motion blur (of the others: 10 %% of "
                             "all crops camera shake, 20 %% JPEG alone, 10 %% clean, the rest the mixture)")
    parser.add_argument("--steps", type=int, default=None,
                        help="Adam steps in all (tone_curve 4000, sharpen 2500 (unsharp 2000), motion_deblur 2400)")
    parser.add_argument("--batch", type=int, default=None,
                        help="tone_curve 64, sharpen 16 (unsharp 32), motion_deblur 16")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--loss", choices=("psnr", "mse"), default="psnr",
                        help="psnr: mean of per-image -PSNR (the report's average); mse: pixel MSE")
    parser.add_argument("--mse-steps", type=int, default=None,
                        help="start with this many pixel-MSE steps before the PSNR loss (tone_curve 1000: MSE "
                             "leaves the identity curve quickly, the PSNR loss then weighs each image equally)")
    parser.add_argument("--choice-steps", type=int, default=None,
                        help="motion_deblur: start with this many cross-entropy steps towards each image's best "
                             "candidate (800; from near-zero shares the PSNR loss alone never opens the gate)")
    parser.add_argument("--through-later", action=argparse.BooleanOptionalAction, default=None,
                        help="score the head's output after the frozen stages that run after it at inference "
                             "(motion_deblur: on, so it does not deconvolve what the sharpen stage restores anyway; "
                             "the shipped tone_curve and sharpen heads were trained without)")
    parser.add_argument("--replace", action="store_true",
                        help="the weights already have this stage: drop it and train a new one from scratch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run", default=None,
                        help="the output's metadata 'run' name (default: default-<stage>, e.g. default-tone-curve)")
    parser.add_argument("--release", type=int, default=None,
                        help="the output's metadata 'release' number, for a file that will ship as the default model "
                             "(default: none written)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="file to keep the training set in (the U-Net outputs take minutes); reused when it was "
                             "made from the same U-Net weights and options")
    args = parser.parse_args(argv)
    defaults = dict(DEFAULTS[args.stage])
    if args.stage == "sharpen" and args.sharpen_mode == "unsharp":  # the first releases' head
        defaults.update(deconvolution_steps=0, gate_steps=0, steps=2000, batch=32, jpeg_share=0.0)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if (args.deconvolution_steps or args.gate_steps) and not (args.stage == "sharpen"
                                                               and args.sharpen_mode == "wiener"):
        raise SystemExit("train_global_stage: --deconvolution-steps and --gate-steps are for sharpen "
                         "--sharpen-mode wiener")
    for name, (low, high) in (("--scene-gamma", args.scene_gamma), ("--scene-scale", args.scene_scale)):
        if not 0 < low <= high or (name == "--scene-scale" and high > 1):
            parser.error(f"{name} needs 0 < LOW <= HIGH{' <= 1' if name == '--scene-scale' else ''}, "
                         f"got {low:g} {high:g}")
    if args.photo_min_side < 1:
        parser.error(f"--photo-min-side must be a positive number of pixels, got {args.photo_min_side}")
    for name in ("jpeg_share", "blur_jpeg_share"):
        if getattr(args, name) and args.stage != "sharpen":
            raise SystemExit(f"train_global_stage: --{name.replace('_', '-')} is for the sharpen stage")
    if not 0 <= args.blur_jpeg_share <= 1:
        parser.error(f"--blur-jpeg-share must be between 0 and 1, got {args.blur_jpeg_share:g}")
    if args.release is not None and args.release < 1:
        parser.error(f"--release needs a positive number, got {args.release}")
    args.run = args.run or f"default-{args.stage.replace('_', '-')}"
    torch.manual_seed(args.seed)
    started = time.time()

    previous = load_model(args.weights)
    previous_sha256 = previous.checkpoint_info["sha256"]
    kept = previous.state_dict()
    if previous.arch_kwargs.get(args.stage):  # checked first: another mode of the stage would not even load
        if not args.replace:
            raise SystemExit(f"train_global_stage: {args.weights} already has a {args.stage} stage; train it on a "
                             f"model without a {args.stage} stage, or pass --replace to train a new one in its place")
        kept = {k: v for k, v in kept.items() if not k.startswith(f"{args.stage}.")}
    kwargs = {**previous.arch_kwargs, args.stage: True}
    if args.stage == "sharpen" and args.sharpen_mode != "unsharp":  # the constructor's default stays implicit
        kwargs["sharpen_mode"] = args.sharpen_mode
    if args.stage == "photo_tone_curve":
        kwargs["photo_min_side"] = args.photo_min_side
    model = build_arch(previous.arch_name, previous.meta, **kwargs)
    missing, unexpected = model.load_state_dict(kept, strict=False)
    has_weights = bool(DEFAULTS[args.stage])
    if unexpected or (has_weights and not missing) or any(not k.startswith(f"{args.stage}.") for k in missing):
        raise SystemExit(f"train_global_stage: {args.weights} is not a model of this architecture without a "
                         f"{args.stage} stage")
    model.arch_name, model.preset_name = previous.arch_name, _preset_of(previous, kwargs)
    model.eval()
    if not has_weights:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        save_model(model, args.out, weights="ema", run=args.run, stage=args.stage,
                   previous_weights=args.weights.name, previous_sha256=previous_sha256, **_release(args))
        print(f"wrote {args.out}: {args.stage} switched on (no weights to train)")
        return 0

    data = training_set(model, args, started)
    head = getattr(model, args.stage)
    clean = data["clean"]
    n_val = max(1, len(clean) // 10)
    if hasattr(head, "set_feature_statistics"):
        head.set_feature_statistics(data["features"][n_val:])
    later = later_stages(model, args.stage) if args.through_later else []
    for stage in later:
        stage.requires_grad_(False)
    choices = best_choices(data, later) if "candidates" in data else None
    marked_train = n_val + torch.nonzero(data["marked"][n_val:]).flatten()
    optim = torch.optim.Adam(head.parameters(), lr=args.lr)
    generator = torch.Generator().manual_seed(args.seed + 2)
    for step in range(1, args.steps + 1):
        lr = args.lr * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for group in optim.param_groups:
            group["lr"] = lr
        idx = n_val + torch.randint(len(clean) - n_val, (args.batch,), generator=generator)
        if step <= args.deconvolution_steps:
            # blurred crops only; drawn after the usual draw, so the shipped recipes' random streams stay the same
            idx = marked_train[torch.randint(len(marked_train), (args.batch,), generator=generator)]
            _, sigma, prior = head.from_features(data["features"][idx])
            out = run_later(head.apply(data["restored"][idx], torch.ones_like(sigma), sigma, prior), data, idx, later)
            loss = psnr_loss(out.clamp(0, 1), clean[idx])
        elif step <= args.deconvolution_steps + args.gate_steps:
            helps, weight = deconvolution_gains(head, data, idx, later)
            loss = (F.binary_cross_entropy_with_logits(head.share_logits(data["features"][idx]), helps,
                                                       reduction="none") * weight).mean()
        elif step <= args.choice_steps:  # learn which candidate is best first: the PSNR loss alone keeps all shares 0
            best, weight = choices
            loss = (F.cross_entropy(head.logits(data["features"][idx]), best[idx], reduction="none")
                    * weight[idx]).mean()
        else:
            out = stage_output(head, data, idx, later).clamp(0, 1)
            mse_phase = args.loss == "mse" or step <= args.mse_steps
            loss = (out - clean[idx]).pow(2).mean() if mse_phase else psnr_loss(out, clean[idx])
        optim.zero_grad()
        loss.backward()
        optim.step()
        if step % 500 == 0 or step == args.steps:
            with torch.no_grad():
                report = _validate(head, data, torch.arange(n_val), MARKED[args.stage], later)
            print(f"step {step}: train loss {loss.item():.4g} | validation {report}", flush=True)

    head.requires_grad_(False)
    # stage_recipe: the training set's key (its options), so the file says how it was made
    meta = {"run": args.run, "stage": args.stage, "stage_recipe": data["key"],
            "stage_samples": str(args.samples), "stage_steps": str(args.steps), "stage_seed": str(args.seed),
            "previous_weights": args.weights.name, "previous_sha256": previous_sha256, **_release(args)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, args.out, weights="ema", **meta)
    print(f"wrote {args.out} ({time.time() - started:.0f} s)")
    return 0


def _release(args: argparse.Namespace) -> dict[str, str]:
    return {} if args.release is None else {"release": str(args.release)}


def _preset_of(backbone: torch.nn.Module, kwargs: dict) -> str | None:
    """The backbone's preset when that preset pins exactly these hyper-parameters (the default model's does)."""
    name = getattr(backbone, "preset_name", None)
    if name is None:
        return None
    pinned = json.loads(json.dumps(dict(get_preset(name).kwargs), sort_keys=True))
    return name if pinned == json.loads(json.dumps(kwargs, sort_keys=True)) else None


MARKED = {"chroma_denoise": "noisy", "tone_curve": "under-exposed", "photo_tone_curve": "under-exposed", "sharpen": "blurred",
          "motion_deblur": "motion-blurred"}


def best_choices(data: dict, later=(), batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Per training image: the index of its best option (0 keeps the image, j deconvolves with the j-th prior
    weight) by PSNR after the ``later`` stages, and how much it matters: the dB gap to the runner-up, clamped to
    [0.05, 3]."""
    scores = []
    for start in range(0, len(data["clean"]), batch):
        idx = torch.arange(start, min(start + batch, len(data["clean"])))
        clean = data["clean"][idx]
        options = torch.cat([data["restored"][idx, None], data["candidates"][idx]], dim=1).float()
        with torch.no_grad():  # option j > 0 blends in the whole j-th deconvolution (motion share 1)
            options = torch.stack([run_later(options[:, j], data, idx, later, torch.full((len(idx),), float(j > 0)))
                                   for j in range(options.shape[1])], dim=1).clamp(0, 1)
        scores.append(torch.stack([image_db(options[:, j], clean) for j in range(options.shape[1])], dim=1))
    db = torch.cat(scores)
    top2 = db.topk(2, dim=1).values
    return db.argmax(dim=1), (top2[:, 0] - top2[:, 1]).clamp(0.05, 3.0)


def deconvolution_gains(head, data: dict, idx: torch.Tensor, later=()) -> tuple[torch.Tensor, torch.Tensor]:
    """Wiener sharpen: per training image ``idx``, whether the whole deconvolution with the head's current sigma and
    prior beats the U-Net output (1.0 or 0.0) after the ``later`` stages, and by how many dB, clamped to [0.05, 3]."""
    with torch.no_grad():
        restored, clean = data["restored"][idx], data["clean"][idx]
        _, sigma, prior = head.from_features(data["features"][idx])
        options = [head.apply(restored, torch.ones_like(sigma), sigma, prior), restored]
        db = torch.stack([image_db(run_later(o, data, idx, later).clamp(0, 1), clean) for o in options])
    return (db[0] > db[1]).float(), (db[0] - db[1]).abs().clamp(0.05, 3.0)


def run_later(image: torch.Tensor, data: dict, idx: torch.Tensor, later=(), motion_share=None) -> torch.Tensor:
    """The frozen ``later`` stages applied to training images ``idx`` as inference runs them after the head: a
    Wiener sharpen stage yields to ``motion_share`` (B,), the motion deblurring blended in before it."""
    for stage, features in zip(later, data.get("later_features", [])):
        parameters = stage.from_features(features[idx])
        if hasattr(stage, "yield_to_motion"):
            parameters = stage.yield_to_motion(parameters, motion_share)
        image = stage.apply(image, *parameters)
    return image


def stage_output(head, data: dict, idx: torch.Tensor, later=()) -> torch.Tensor:
    """The head's output on training images ``idx`` (from precomputed candidates where the head has them), then the
    ``later`` stages."""
    if "candidate" in data:  # one fixed candidate per image: the head only learns its share
        return head.blend(data["restored"][idx], data["candidate"][idx], head.share(data["features"][idx]))
    restored, parameters = data["restored"][idx], head.from_features(data["features"][idx])
    if "candidates" in data:
        out = head.blend(restored, data["candidates"][idx], parameters[0])
        return run_later(out, data, idx, later, motion_share=parameters[0].sum(dim=1))
    return run_later(head.apply(restored, *parameters), data, idx, later)


def _validate(head, data: dict, idx: torch.Tensor, name: str, later=()) -> str:
    out = stage_output(head, data, idx, later).clamp(0, 1)
    restored = run_later(data["restored"][idx], data, idx, later).clamp(0, 1)
    clean, marked = data["clean"][idx], data["marked"][idx]
    gain = lambda m: (psnr_loss(restored[m], clean[m]) - psnr_loss(out[m], clean[m])).item()  # noqa: E731
    report = {f"{name} gain dB": round(gain(marked), 2), "other gain dB": round(gain(~marked), 2)}
    if data.get("natural_dark") is not None and data["natural_dark"][idx].any():
        report["dark windows gain dB"] = round(gain(data["natural_dark"][idx]), 2)
    return json.dumps(report)


if __name__ == "__main__":
    raise SystemExit(main())
