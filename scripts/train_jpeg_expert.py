#!/usr/bin/env python
"""Train the default model's JPEG expert (``jpeg_expert``, stage 16 of scripts/train_default.sh).

The expert (anyrestore/archs/jpeg_expert.py) is a copy of the U-Net's shallow layers, 1.3 M parameters, that
restores the images the JPEG projection's gate passes in place of the all-in-one U-Net; the deepest encoder level
and the middle blocks stay the U-Net's, frozen. It starts from the U-Net's own weights and is fine-tuned on JPEG
alone:

- 96² windows of the training photos at full size (half of the draws) or downscaled to 0.75 or 0.5 (whole photos
  are usually seen downscaled), mirrored half of the time;
- 10 % get Gaussian noise (sigma 1-8) and 10 % a Gaussian blur (sigma 0.5-2) before the compression: such mild
  mixtures pass the gate too, so the expert must not hurt them. The blurred window is their target
  (``--blur-target blurred``, the default since the nineteenth release): the expert undoes the compression and
  leaves the blur to the Gaussian deconvolution stage after it. With the sharp window as the target (``sharp``, the
  eighteenth release) the expert learns to deblur, and a longer run steepened the edges of soft photos;
- the quality is drawn from 15-45 60 % of the time, else from 10-95; the chroma subsampling is 4:2:0, 4:2:2 or
  4:4:4 (60 / 15 / 25 %), and 40 % of the windows are encoded with Pillow, the rest with OpenCV (two encoders:
  both are libjpeg, but their decoders upsample the chroma differently);
- Adam at 1e-4 with a cosine decay, batch 8, the PSNR loss (the mean of per-window PSNRs), 16,000 steps by
  default (the twentieth release; the eighteenth and nineteenth took 8,000): about 47 minutes on a quiet 2-core CPU
  of session 29, whose CPU was about twice as fast as earlier sessions'.

A fixed validation set (300 windows drawn the same way under another seed) reports the gain over the U-Net every
``--every`` steps (1,000), when a checkpoint (expert weights, optimizer and generator state) is also written
atomically next to the output; ``--resume`` continues from it, to the same result as a run without a break.
Everything else in the weights file stays byte for byte; the output keeps the input's metadata and adds ``run``,
``stage`` and the options. The input is the seventeenth release (stage 15's output; the shipped file already has
an expert and is refused)::

    python scripts/train_jpeg_expert.py --weights runs/default-photo-exposure/model.safetensors \
        -o expert.safetensors --release 20

``--expert-levels 4`` gives the expert the deepest encoder level too (2.36 M parameters instead of 1.30 M; the
middle blocks stay shared). ``--device`` (default auto: CUDA when there is one, as the trainer) says where the
expert trains; the windows are drawn and compressed on the CPU either way, and a run on a GPU gives the same quality,
not the same bytes. The GPU path has not been timed yet (no GPU was lent since it was written, session 30).
"""
from __future__ import annotations

import argparse
import io
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared helpers of the whole-image stages
from train_global_stage import _preset_of, _release, _uniform, image_db, photo_paths, psnr_loss  # noqa: E402

from anyrestore.archs.registry import build_arch  # noqa: E402
from anyrestore.checkpoints import load_model, save_model  # noqa: E402
from anyrestore.degradations.blur import gaussian_blur  # noqa: E402
from anyrestore.degradations.jpeg import jpeg_uint8  # noqa: E402
from anyrestore.degradations.noise import gaussian_noise  # noqa: E402
from anyrestore.errors import ConfigError  # noqa: E402
from anyrestore.inference import select_device  # noqa: E402
from anyrestore.io import atomic_write_bytes, read_image  # noqa: E402

SCALES = ((1.0, 0.5), (0.75, 0.25), (0.5, 0.25))  # (downscale, share of the draws) per photo
SUBSAMPLINGS = ("4:2:0", "4:2:2", "4:4:4")
SUBSAMPLING_WEIGHTS = (0.6, 0.15, 0.25)
PILLOW_SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}
PILLOW_SHARE = 0.4
VALIDATION_WINDOWS = 300


def photo_pyramid(paths: list[Path], side: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Every photo at each of SCALES (uint8, only where a window fits) and the share of the draws each gets."""
    copies, weights = [], []
    for path in paths:
        photo = read_image(path)[:3]
        for scale, share in SCALES:
            if min(photo.shape[-2:]) * scale < side + 1:
                continue
            image = photo if scale == 1 else F.interpolate(photo[None], scale_factor=scale, mode="bicubic",
                                                           antialias=True, align_corners=False)[0].clamp(0, 1)
            copies.append((image * 255).round().to(torch.uint8))
            weights.append(share)
    if not copies:
        raise SystemExit(f"train_jpeg_expert: no training photo has both sides of at least {side + 1} pixels")
    return copies, torch.tensor(weights)


def encode(rgb: np.ndarray, quality: int, subsampling: str, pillow: bool) -> np.ndarray:
    """JPEG round trip of one (H,W,3) uint8 array with Pillow or OpenCV."""
    if not pillow:
        return jpeg_uint8(rgb, quality, subsampling)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality, subsampling=PILLOW_SUBSAMPLING[subsampling])
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))


def jpeg_window(copies: list[torch.Tensor], weights: torch.Tensor, side: int, generator: torch.Generator,
                blur_target: str = "blurred") -> tuple[torch.Tensor, torch.Tensor]:
    """One seeded (JPEG window, target window) pair, (3, side, side) in [0, 1]; see the module for the draws."""
    photo = copies[int(torch.multinomial(weights, 1, generator=generator))]
    h, w = photo.shape[-2:]
    top = int(torch.randint(h - side + 1, (), generator=generator))
    left = int(torch.randint(w - side + 1, (), generator=generator))
    clean = photo[:, top:top + side, left:left + side].float() / 255
    if torch.rand((), generator=generator) < 0.5:
        clean = clean.flip(-1)
    image, kind = clean[None], torch.rand((), generator=generator).item()
    if kind < 0.10:
        image = gaussian_noise(image, sigma=_uniform(generator, 1.0, 8.0), generator=generator).clamp(0, 1)
    elif kind < 0.20:
        image = gaussian_blur(image, sigma=_uniform(generator, 0.5, 2.0))
        if blur_target == "blurred":
            clean = image[0]
    low, high = (15, 46) if torch.rand((), generator=generator) < 0.6 else (10, 96)
    quality = int(torch.randint(low, high, (), generator=generator))
    subsampling = SUBSAMPLINGS[int(torch.multinomial(torch.tensor(SUBSAMPLING_WEIGHTS), 1, generator=generator))]
    rgb = (image[0] * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    decoded = encode(np.ascontiguousarray(rgb), quality, subsampling,
                     bool(torch.rand((), generator=generator) < PILLOW_SHARE))
    return torch.from_numpy(decoded.copy()).permute(2, 0, 1).float() / 255, clean


def batch_of(copies, weights, side: int, size: int, generator: torch.Generator,
             blur_target: str = "blurred") -> tuple[torch.Tensor, torch.Tensor]:
    pairs = [jpeg_window(copies, weights, side, generator, blur_target) for _ in range(size)]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


def validation_gain(model: torch.nn.Module, degraded: torch.Tensor, base_db: torch.Tensor, clean: torch.Tensor,
                    batch: int = 25) -> float:
    """Mean dB the expert adds to the U-Net on the validation windows."""
    expert_db = []
    with torch.no_grad():
        for start in range(0, len(degraded), batch):
            part = slice(start, start + batch)
            expert_db.append(image_db(model.forward_expert(degraded[part]).clamp(0, 1), clean[part]))
    return float((torch.cat(expert_db) - base_db).mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True,
                        help="default-model weights with the JPEG projection and no expert (not changed)")
    parser.add_argument("-o", "--out", type=Path, required=True, help="output weights file (.safetensors)")
    parser.add_argument("--photos", type=Path, nargs="+", default=[Path("data_cache/default_photos/train")],
                        help="folders of clean training photos (the shipped package photos are always added)")
    parser.add_argument("--steps", type=int, default=16000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--side", type=int, default=96, help="training window side in pixels")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--blur-target", choices=("blurred", "sharp"), default="blurred",
                        help="target of the windows blurred before the compression: the blurred window (the expert "
                             "leaves blur to the deconvolution stage) or the sharp one (the eighteenth release)")
    parser.add_argument("--expert-levels", type=int, default=None,
                        help="encoder levels the expert owns, from the shallowest (default: all but the deepest, "
                             "3 of the default model's 4; 4 adds the deepest level's 1.06 M parameters)")
    parser.add_argument("--run", default="default-jpeg-expert", help="the metadata `run` name of the output")
    parser.add_argument("--release", type=int, default=None, help="write this metadata `release` number")
    parser.add_argument("--every", type=int, default=1000, help="steps between validations and checkpoints")
    parser.add_argument("--device", default="auto",
                        help="where the expert trains: auto (CUDA when there is one, as the trainer), cpu, cuda, "
                             "cuda:N or mps; the windows are always drawn and compressed on the CPU")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the checkpoint next to --out (OUT.resume.pt) with the same options")
    args = parser.parse_args(argv)
    for name in ("steps", "batch", "side", "every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} needs a positive number, got {getattr(args, name)}")
    if args.side % 16:
        parser.error(f"--side must be a multiple of 16 (the U-Net's pad multiple), got {args.side}")
    if args.release is not None and args.release < 1:
        parser.error(f"--release needs a positive number, got {args.release}")
    if args.out.suffix != ".safetensors":
        parser.error(f"--out must be a .safetensors file, got {args.out.name}")
    try:
        device = select_device(args.device)
    except ConfigError as exc:
        parser.error(str(exc))
    torch.manual_seed(args.seed)
    started = time.time()

    previous = load_model(args.weights)
    kwargs = dict(previous.arch_kwargs)
    if not kwargs.get("jpeg_projection"):
        raise SystemExit(f"train_jpeg_expert: {args.weights} has no JPEG projection, whose gate routes to the "
                         f"expert; switch it on first (scripts/train_global_stage.py jpeg_projection)")
    if kwargs.get("jpeg_expert"):
        raise SystemExit(f"train_jpeg_expert: {args.weights} already has a JPEG expert")
    kwargs["jpeg_expert"] = True
    if args.expert_levels is not None:
        kwargs["jpeg_expert_levels"] = args.expert_levels
    try:
        model = build_arch(previous.arch_name, previous.meta, **kwargs)
    except ValueError as exc:
        raise SystemExit(f"train_jpeg_expert: {exc}") from exc
    missing, unexpected = model.load_state_dict(previous.state_dict(), strict=False)
    if unexpected or not missing or any(not k.startswith("jpeg_expert.") for k in missing):
        raise SystemExit(f"train_jpeg_expert: {args.weights} is not a model of this architecture")
    model.arch_name, model.preset_name = previous.arch_name, _preset_of(previous, kwargs)
    expert = model.jpeg_expert
    expert.init_from(model)
    model.eval().requires_grad_(False).to(device)

    copies, weights = photo_pyramid(photo_paths(args.photos), args.side)
    val_x, val_clean = (t.to(device) for t in batch_of(copies, weights, args.side, VALIDATION_WINDOWS,
                                                       torch.Generator().manual_seed(args.seed + 1000),
                                                       args.blur_target))
    with torch.no_grad():
        base_db = torch.cat([image_db(model.forward_local(val_x[i:i + 25]).clamp(0, 1), val_clean[i:i + 25])
                             for i in range(0, VALIDATION_WINDOWS, 25)])
    print(f"{len(copies)} photo copies; validation: {VALIDATION_WINDOWS} windows, the U-Net gains "
          f"{float((base_db - image_db(val_x, val_clean)).mean()):+.3f} dB on them ({time.time() - started:.0f} s, "
          f"on {device})",
          flush=True)

    expert.train().requires_grad_(True)
    optim = torch.optim.Adam(expert.parameters(), lr=args.lr)
    generator = torch.Generator().manual_seed(args.seed)
    checkpoint = args.out.with_suffix(".resume.pt")
    options = {"weights_sha256": previous.checkpoint_info["sha256"], "steps": args.steps, "batch": args.batch,
               "side": args.side, "lr": args.lr, "seed": args.seed, "photos": sorted(map(str, args.photos)),
               "blur_target": args.blur_target}
    if args.expert_levels is not None:  # absent from the checkpoints of runs made before the option
        options["expert_levels"] = args.expert_levels
    first = 1
    if args.resume:
        if not checkpoint.is_file():
            raise SystemExit(f"train_jpeg_expert: --resume, but there is no checkpoint {checkpoint}")
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)  # the generator state stays on the CPU
        if state.get("options") != options:
            changed = sorted(k for k in options if state.get("options", {}).get(k) != options[k])
            raise SystemExit(f"train_jpeg_expert: {checkpoint} was made with other options ({', '.join(changed)}); "
                             f"resume with the same ones or delete it")
        expert.load_state_dict(state["expert"])
        optim.load_state_dict(state["optim"])
        generator.set_state(state["generator"])
        first = int(state["step"]) + 1
        print(f"resumed at step {first}", flush=True)
    running = None
    for step in range(first, args.steps + 1):
        for group in optim.param_groups:
            group["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        degraded, clean = (t.to(device) for t in batch_of(copies, weights, args.side, args.batch, generator,
                                                          args.blur_target))
        loss = psnr_loss(model.forward_expert(degraded), clean)
        optim.zero_grad()
        loss.backward()
        optim.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % args.every == 0 or step == args.steps:
            expert.eval()
            gain = validation_gain(model, val_x, base_db, val_clean)
            expert.train()
            print(f"step {step}: train loss {running:.3f} | validation gain {gain:+.3f} dB over the U-Net "
                  f"({time.time() - started:.0f} s)", flush=True)
            buffer = io.BytesIO()
            torch.save({"step": step, "expert": expert.state_dict(), "optim": optim.state_dict(),
                        "generator": generator.get_state(), "options": options}, buffer)
            atomic_write_bytes(checkpoint, buffer.getvalue())

    model.eval().requires_grad_(False).cpu()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, args.out, weights="ema", run=args.run, stage="jpeg_expert",
               stage_steps=str(args.steps), stage_batch=str(args.batch), stage_side=str(args.side),
               stage_lr=str(args.lr), stage_seed=str(args.seed),
               stage_blur_target=args.blur_target, previous_weights=args.weights.name,
               previous_sha256=previous.checkpoint_info["sha256"], **_release(args))
    checkpoint.unlink(missing_ok=True)
    print(f"wrote {args.out} ({time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
