#!/usr/bin/env python
"""Train the default model's JPEG refiner (``jpeg_refiner``) on frozen weights that already have the JPEG projection.

The refiner (anyrestore/archs/jpeg_refiner.py) runs only on the images the projection passes: a standard JPEG
table found in the input, and the U-Net output still inside most of its quantisation intervals. So it is trained on
exactly those: random windows of the training photos (some downscaled, as whole photos are), compressed with
OpenCV's encoder at a quality drawn mostly from 15–45 (else 10–95) with 4:2:0, 4:2:2 or 4:4:4 chroma, and some of
them noisy or blurred before the compression (such mixtures can pass the gate, so the refiner must not hurt them).
Windows the gate refuses are dropped, as inference would skip them. The U-Net and every other stage stay byte for
byte; the output keeps the input's metadata and adds ``run``, ``stage`` and the training options.

Not part of the shipped recipe: session 23's probe of it (6,000 windows in 11 min, 4,000 steps in 22 min on 2 CPU
cores) added +0.29 dB to the U-Net on validation windows of the training photos at quality about 30, but only
+0.01 to +0.02 dB on the held-out photos (anyrestore/weights/README.md, "Probe of session 23")::

    python scripts/train_jpeg_refiner.py --weights anyrestore/weights/nafnet-default.safetensors \
        -o refined.safetensors --cache refiner_set.pt
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared helpers of the whole-image stages
from train_global_stage import (_preset_of, _release, _save_set, _uniform, cached_set, photo_paths,  # noqa: E402
                                psnr_loss, unet_sha256)

from anyrestore.archs.jpeg_projection import block_dct, luma_levels  # noqa: E402
from anyrestore.archs.registry import build_arch  # noqa: E402
from anyrestore.checkpoints import load_model, save_model  # noqa: E402
from anyrestore.degradations.blur import gaussian_blur  # noqa: E402
from anyrestore.degradations.jpeg import SUBSAMPLINGS, jpeg  # noqa: E402
from anyrestore.degradations.noise import gaussian_noise  # noqa: E402
from anyrestore.io import read_image  # noqa: E402

SIDE = 160  # training windows: 20 JPEG blocks a side, enough for the gate's statistics
SUBSAMPLING_WEIGHTS = (0.6, 0.15, 0.25)  # 4:2:0 (the encoders' default), 4:2:2, 4:4:4
PREFIX = "jpeg_projection.refiner."
MAX_TRIES_PER_WINDOW = 20  # the shipped U-Net passes about one JPEG window in two


def compress_one(clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One (3,H,W) window in [0, 1] -> its JPEG (sometimes noisy or blurred first) at a seeded quality."""
    image, kind = clean[None], torch.rand((), generator=generator).item()
    if kind < 0.12:
        image = gaussian_noise(image, sigma=_uniform(generator, 2.0, 12.0), generator=generator)
    elif kind < 0.24:
        image = gaussian_blur(image, sigma=_uniform(generator, 0.5, 2.0))
    low, high = (15, 46) if torch.rand((), generator=generator).item() < 0.6 else (10, 96)
    quality = int(torch.randint(low, high, (), generator=generator))
    subsampling = list(SUBSAMPLINGS)[int(torch.multinomial(torch.tensor(SUBSAMPLING_WEIGHTS), 1,
                                                               generator=generator))]
    return jpeg(image.clamp(0, 1), quality=quality, subsampling=subsampling)[0]


def random_window(photos: list[torch.Tensor], generator: torch.Generator) -> torch.Tensor:
    """A SIDE² window of a random photo, from a 0.5–0.9× downscaled copy 30 % of the time (whole-photo scale)."""
    photo = photos[int(torch.randint(len(photos), (), generator=generator))]
    if torch.rand((), generator=generator).item() < 0.3:
        scale = max(_uniform(generator, 0.5, 0.9), (SIDE + 1) / min(photo.shape[-2:]))
        photo = F.interpolate(photo[None], scale_factor=scale, mode="bicubic", antialias=True,
                              align_corners=False)[0].clamp(0, 1)
    h, w = photo.shape[-2:]
    top = int(torch.randint(h - SIDE + 1, (), generator=generator))
    left = int(torch.randint(w - SIDE + 1, (), generator=generator))
    return (photo[:, top:top + SIDE, left:left + SIDE] * 255).round() / 255


def training_set(model: torch.nn.Module, paths: list[Path], count: int, seed: int, log_every: int = 500) -> dict:
    """``count`` (JPEG input, U-Net output, clean window, luma table mean) that the projection's gate passes, as
    uint8 images (the U-Net output rounded to 8 bits) and a float table mean."""
    projection = model.jpeg_projection
    generator = torch.Generator().manual_seed(seed)
    photos = [photo for photo in (read_image(p)[:3] for p in paths) if min(photo.shape[-2:]) >= SIDE]
    if not photos:
        raise SystemExit(f"train_jpeg_refiner: no training photo has both sides of at least {SIDE} pixels")
    kept: dict[str, list] = {"degraded": [], "restored": [], "clean": [], "mean_step": []}
    tried, started = 0, time.time()
    while len(kept["clean"]) < count:
        if tried >= MAX_TRIES_PER_WINDOW * count:
            raise SystemExit(f"train_jpeg_refiner: the projection's gate passed only {len(kept['clean'])} of {tried} "
                             f"JPEG windows; the U-Net moves their blocks too far for a refiner to be of use")
        tried += 1
        clean = random_window(photos, generator)
        degraded = compress_one(clean, generator)
        coef = block_dct(luma_levels(degraded))
        table = projection.table_from(coef)
        if table is None:
            continue
        with torch.no_grad():
            restored = model.forward_local(degraded[None]).clamp(0, 1)[0]
        if not projection.passes(projection.gate_statistics(coef, block_dct(luma_levels(restored)), table)):
            continue
        for key, image in (("degraded", degraded), ("restored", restored), ("clean", clean)):
            kept[key].append((image * 255).round().to(torch.uint8))
        kept["mean_step"].append(table.double().mean().item())
        if len(kept["clean"]) % log_every == 0:
            print(f"{len(kept['clean'])} windows kept of {tried} ({time.time() - started:.0f} s)", flush=True)
    return {key: torch.tensor(value) if key == "mean_step" else torch.stack(value) for key, value in kept.items()}


def load_or_make_set(model: torch.nn.Module, args: argparse.Namespace) -> dict:
    key = json.dumps({"unet": unet_sha256(model), "samples": args.samples, "seed": args.seed,
                      "photos": sorted(map(str, args.photos))})
    cached = cached_set(args, key)
    if cached is not None:
        return cached
    return _save_set(args, {"key": key, **training_set(model, photo_paths(args.photos), args.samples, args.seed)})


def _images(data: dict, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return tuple(data[key][idx].float() / 255 for key in ("degraded", "restored", "clean"))


def validation_gain(refiner: torch.nn.Module, data: dict, idx: torch.Tensor, batch: int = 32) -> float:
    """Mean dB the refiner adds to the U-Net outputs of windows ``idx``."""
    gains = []
    with torch.no_grad():
        for start in range(0, len(idx), batch):
            part = idx[start:start + batch]
            degraded, restored, clean = _images(data, part)
            refined = refiner(degraded, restored, data["mean_step"][part]).clamp(0, 1)
            gains.append(psnr_loss(restored, clean) - psnr_loss(refined, clean))
    return float(torch.stack(gains).mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True,
                        help="weights with the JPEG projection and no refiner (the file is not changed)")
    parser.add_argument("-o", "--out", type=Path, required=True, help="output weights file (.safetensors)")
    parser.add_argument("--photos", type=Path, nargs="+", default=[Path("data_cache/default_photos/train")],
                        help="folders of clean training photos (the shipped package photos are always added)")
    parser.add_argument("--samples", type=int, default=6000, help="training windows the gate passes")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=4e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run", default="default-jpeg-refiner", help="the metadata `run` name of the output")
    parser.add_argument("--release", type=int, default=None, help="write this metadata `release` number")
    parser.add_argument("--cache", type=Path, default=None,
                        help="file to keep the training set in; reused when made from the same U-Net and options")
    args = parser.parse_args(argv)
    for name in ("samples", "steps", "batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} needs a positive number, got {getattr(args, name)}")
    if args.release is not None and args.release < 1:
        parser.error(f"--release needs a positive number, got {args.release}")
    torch.manual_seed(args.seed)
    started = time.time()

    previous = load_model(args.weights)
    kwargs = dict(previous.arch_kwargs)
    if not kwargs.get("jpeg_projection"):
        raise SystemExit(f"train_jpeg_refiner: {args.weights} has no JPEG projection to refine inside; switch it on "
                         f"first (scripts/train_global_stage.py jpeg_projection)")
    if kwargs.get("jpeg_refiner"):
        raise SystemExit(f"train_jpeg_refiner: {args.weights} already has a JPEG refiner")
    model = build_arch(previous.arch_name, previous.meta, **{**kwargs, "jpeg_refiner": True})
    missing, unexpected = model.load_state_dict(previous.state_dict(), strict=False)
    if unexpected or not missing or any(not k.startswith(PREFIX) for k in missing):
        raise SystemExit(f"train_jpeg_refiner: {args.weights} is not a model of this architecture")
    model.arch_name, model.preset_name = previous.arch_name, _preset_of(previous, {**kwargs, "jpeg_refiner": True})
    model.eval().requires_grad_(False)

    data = load_or_make_set(model, args)
    print(f"{len(data['clean'])} windows ready, {time.time() - started:.0f} s", flush=True)
    refiner = model.jpeg_projection.refiner.requires_grad_(True)
    n_val = max(1, len(data["clean"]) // 10)
    optim = torch.optim.Adam(refiner.parameters(), lr=args.lr)
    generator = torch.Generator().manual_seed(args.seed + 1)
    for step in range(1, args.steps + 1):
        for group in optim.param_groups:
            group["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        idx = n_val + torch.randint(len(data["clean"]) - n_val, (args.batch,), generator=generator)
        degraded, restored, clean = _images(data, idx)
        loss = psnr_loss(refiner(degraded, restored, data["mean_step"][idx]), clean)
        optim.zero_grad()
        loss.backward()
        optim.step()
        if step % 500 == 0 or step == args.steps:
            gain = validation_gain(refiner, data, torch.arange(n_val))
            print(f"step {step}: train loss {loss.item():.3f} | validation gain {gain:+.3f} dB over the U-Net "
                  f"({time.time() - started:.0f} s)", flush=True)

    refiner.requires_grad_(False)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, args.out, weights="ema", run=args.run, stage="jpeg_refiner",
               stage_samples=str(args.samples), stage_steps=str(args.steps), stage_seed=str(args.seed),
               previous_weights=args.weights.name, previous_sha256=previous.checkpoint_info["sha256"],
               **_release(args))
    print(f"wrote {args.out} ({time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
