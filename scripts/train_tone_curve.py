"""Train the default model's exposure stage (a global tone curve) on top of frozen restoration weights.

The U-Net of the default model keeps the brightness of its input: it cannot tell an under-exposed photo from a dark
scene inside one 96² crop, and a 2-5x brightening is hard to build as a residual. This stage adds
:class:`anyrestore.archs.tone_curve.GlobalToneCurve` (about 8 k parameters), which reads brightness statistics of
the whole input and predicts one curve. The U-Net is frozen, so the training set is computed once:

1. thumbnails: square crops (50-100 % of the shorter side) of the training photos, area-resized to 128²;
2. each thumbnail is under-exposed (30 %: Retinex darkening, a pixel gamma ``s·x^g`` or a linear-light exposure
   cut, some with noise), or made a dark scene (40 %: ``s·x^g`` with g in [1, 1.6], s in [0.55, 0.9], its own
   clean target) and then degraded by the default model's training mixture, or degraded by the mixture alone;
3. the frozen U-Net restores every degraded thumbnail once;
4. the head learns the curve that takes each restored thumbnail to its clean photo: 1,000 Adam steps on the pixel
   MSE (which leaves the identity curve quickly), then 3,000 on the PSNR loss (the mean of per-image PSNRs, the
   quality report's average, which keeps dark scenes and photos that need no correction as they are).

The dark scenes and the dark photographs of the training set are identity targets: from the statistics of the
*whole* image the head learns which dark inputs to brighten. The whole run takes about 8 minutes on 2 CPU cores.

    python scripts/train_tone_curve.py --weights runs/default-gpu-polish/model.safetensors \
        -o runs/default-tone/model.safetensors
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from anyrestore.archs.registry import build_arch, get_preset
from anyrestore.archs.tone_curve import brightness_features
from anyrestore.checkpoints import load_model, save_model, file_sha256
from anyrestore.data.sources import list_images, shipped_photo_paths
from anyrestore.degradations.light import low_light
from anyrestore.degradations.noise import gaussian_noise
from anyrestore.degradations.pipeline import degrade
from anyrestore.io import read_image

THUMB = 128
LOSS_SIDE = 64


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


def make_thumbnails(paths: list[Path], count: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    photos = [read_image(p)[:3] for p in paths]
    out = torch.empty(count, 3, THUMB, THUMB)
    for i in range(count):
        photo = photos[int(torch.randint(len(photos), (), generator=generator))]
        h, w = photo.shape[-2:]
        side = max(THUMB, int(min(h, w) * _uniform(generator, 0.5, 1.0)))
        side = min(side, h, w)
        top = int(torch.randint(h - side + 1, (), generator=generator))
        left = int(torch.randint(w - side + 1, (), generator=generator))
        crop = photo[:, top:top + side, left:left + side]
        out[i] = F.interpolate(crop[None], size=(THUMB, THUMB), mode="area")[0] if side != THUMB else crop
    return out


def degrade_all(clean: torch.Tensor, share: float, scene_share: float, seed: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Degrade the thumbnails in place of a data loader. A ``share`` of them is under-exposed (``dark`` marks
    them); a ``scene_share`` first becomes a dark scene, ``s * x^g`` with g in [1, 1.6] and s in [0.55, 0.9]
    (the mild dark copies of scripts/make_dark_photos.py), which is then its own clean target; the rest, dark
    scenes included, get the default model's training mixture."""
    generator = torch.Generator().manual_seed(seed + 1)
    degraded = torch.empty_like(clean)
    dark = torch.zeros(len(clean), dtype=torch.bool)
    for i in range(len(clean)):
        draw = torch.rand((), generator=generator).item()
        if draw < share:
            degraded[i] = under_expose(clean[i], generator)
            dark[i] = True
            continue
        if draw < share + scene_share:
            gamma, scale = _uniform(generator, 1.0, 1.6), _uniform(generator, 0.55, 0.9)
            clean[i] = (scale * clean[i] ** gamma * 255).round() / 255
        degraded[i] = degrade(clean[i], "default-model", seed=seed * 1_000_003 + i)[0]
    return degraded, dark


@torch.inference_mode()
def restore_all(model: torch.nn.Module, degraded: torch.Tensor, batch: int = 16) -> torch.Tensor:
    out = torch.empty_like(degraded)
    for start in range(0, len(degraded), batch):
        out[start:start + batch] = model.forward_local(degraded[start:start + batch]).clamp(0, 1)
    return out


def training_set(model: torch.nn.Module, args: argparse.Namespace, started: float) -> dict:
    """Features of the degraded thumbnails, the U-Net's outputs and the clean targets (both area-resized to
    LOSS_SIDE²), and the under-exposed mask; from ``args.cache`` when it holds the same recipe."""
    key = json.dumps({"weights": file_sha256(args.weights), "samples": args.samples, "dark": args.dark_share,
                      "scene": args.scene_share, "seed": args.seed, "photos": sorted(map(str, args.photos))})
    if args.cache is not None and args.cache.is_file():
        cached = torch.load(args.cache, weights_only=True)
        if cached.get("key") == key:
            print(f"training set from {args.cache}", flush=True)
            return cached
    paths = photo_paths(args.photos)
    clean = make_thumbnails(paths, args.samples, args.seed)
    degraded, dark = degrade_all(clean, args.dark_share, args.scene_share, args.seed)
    print(f"{len(paths)} photos -> {args.samples} thumbnails ({int(dark.sum())} under-exposed), "
          f"{time.time() - started:.0f} s", flush=True)
    restored = restore_all(model, degraded)
    print(f"U-Net outputs computed, {time.time() - started:.0f} s", flush=True)
    small = lambda t: F.interpolate(t, size=(LOSS_SIDE, LOSS_SIDE), mode="area")  # noqa: E731
    data = {"key": key, "features": brightness_features(degraded), "restored": small(restored),
            "clean": small(clean), "dark": dark}
    if args.cache is not None:
        args.cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.cache.with_suffix(".tmp")
        torch.save(data, tmp)
        tmp.replace(args.cache)
    return data


def psnr_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    mse = (pred - target).pow(2).mean(dim=(1, 2, 3)).clamp_min(1e-10)
    return (10 * torch.log10(mse)).mean()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True, help="trained default-model weights (the U-Net)")
    parser.add_argument("-o", "--out", type=Path, required=True, help="output weights file (.safetensors)")
    parser.add_argument("--photos", type=Path, nargs="+", default=[Path("data_cache/default_photos/train")],
                        help="folders of clean training photos (the shipped package photos are always added)")
    parser.add_argument("--samples", type=int, default=4000, help="training thumbnails (default 4000)")
    parser.add_argument("--dark-share", type=float, default=0.3, help="share of under-exposed samples")
    parser.add_argument("--scene-share", type=float, default=0.4,
                        help="share of thumbnails turned into clean dark scenes (kept dark)")
    parser.add_argument("--steps", type=int, default=4000, help="Adam steps in all (default 4000)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--loss", choices=("psnr", "mse"), default="psnr",
                        help="psnr: mean of per-image -PSNR (the report's average); mse: pixel MSE")
    parser.add_argument("--mse-steps", type=int, default=1000,
                        help="start with this many pixel-MSE steps before the PSNR loss: MSE leaves the identity "
                             "curve quickly, the PSNR loss then weighs each image equally")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=None,
                        help="file to keep the training set in (the U-Net outputs take minutes); reused when it was "
                             "made from the same weights and options")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    started = time.time()

    backbone = load_model(args.weights)
    kwargs = {**backbone.arch_kwargs, "tone_curve": True}
    model = build_arch(backbone.arch_name, backbone.meta, **kwargs)
    missing, unexpected = model.load_state_dict(backbone.state_dict(), strict=False)
    if unexpected or any(not k.startswith("tone_curve.") for k in missing):
        raise SystemExit(f"train_tone_curve: {args.weights} is not a U-Net of this architecture")
    model.arch_name, model.preset_name = backbone.arch_name, _preset_of(backbone, kwargs)
    model.eval()

    data = training_set(model, args, started)
    head = model.tone_curve
    features, restored, clean, dark = data["features"], data["restored"], data["clean"], data["dark"]
    n_val = max(1, len(clean) // 10)
    optim = torch.optim.Adam(head.parameters(), lr=args.lr)
    generator = torch.Generator().manual_seed(args.seed + 2)
    for step in range(1, args.steps + 1):
        lr = args.lr * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for group in optim.param_groups:
            group["lr"] = lr
        idx = n_val + torch.randint(len(clean) - n_val, (args.batch,), generator=generator)
        values, share = head.curve_from_features(features[idx])
        out = head.apply(restored[idx], values, share)
        mse_phase = args.loss == "mse" or step <= args.mse_steps
        loss = (out - clean[idx]).pow(2).mean() if mse_phase else psnr_loss(out, clean[idx])
        optim.zero_grad()
        loss.backward()
        optim.step()
        if step % 500 == 0 or step == args.steps:
            with torch.no_grad():
                report = _validate(head, features[:n_val], restored[:n_val], clean[:n_val], dark[:n_val])
            print(f"step {step}: train loss {loss.item():.4g} | validation {report}", flush=True)

    model.tone_curve.requires_grad_(False)
    meta = {"run": "default-tone-curve", "tone_curve_samples": str(args.samples), "tone_curve_steps": str(args.steps),
            "tone_curve_seed": str(args.seed), "backbone_weights": args.weights.name,
            "backbone_sha256": file_sha256(args.weights)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, args.out, weights="ema", **meta)
    print(f"wrote {args.out} ({time.time() - started:.0f} s)")
    return 0


def _preset_of(backbone: torch.nn.Module, kwargs: dict) -> str | None:
    """The backbone's preset when that preset pins exactly these hyper-parameters (the default model's does)."""
    name = getattr(backbone, "preset_name", None)
    if name is None:
        return None
    pinned = json.loads(json.dumps(dict(get_preset(name).kwargs), sort_keys=True))
    return name if pinned == json.loads(json.dumps(kwargs, sort_keys=True)) else None


def _validate(head, features, restored, clean, dark) -> str:
    values, share = head.curve_from_features(features)
    out = head.apply(restored, values, share)
    gain = lambda m: (psnr_loss(restored[m], clean[m]) - psnr_loss(out[m], clean[m])).item()  # noqa: E731
    return json.dumps({"under-exposed gain dB": round(gain(dark), 2), "other gain dB": round(gain(~dark), 2)})


if __name__ == "__main__":
    raise SystemExit(main())
