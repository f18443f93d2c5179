"""`anyrestore restore`: restore image files or folders into an output folder."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from anyrestore.errors import ConfigError, ImageReadError

SAMPLE = "chelsea_noise25.png"
SAMPLE_CLEAN = "chelsea.png"


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "restore",
        help="restore images (files or folders) into an output folder",
        description=(
            "Restore images and write OUTDIR/<stem>.png for each input (same bit depth as the input, alpha and "
            "grayscale kept). Folders are scanned for .png/.jpg/.jpeg/.bmp/.tif/.tiff/.webp files, not recursively "
            "unless --recursive is given. Existing outputs are never replaced without --overwrite, and an input is "
            "never overwritten."
        ),
    )
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help="image files and/or folders")
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder (created if missing)")
    parser.add_argument("--model", default=None, metavar="NAME|PATH",
                        help="preset name, bundled weights name or checkpoint file (default: the bundled default "
                             "model if present, else 'classical')")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="allow full unpickling of a --model file you trust (never needed for plain weight files)")
    parser.add_argument("--tile", type=int, default=None, metavar="N",
                        help="tile size in pixels; 0 = whole image; default: automatic (the default model restores "
                             "images up to 4 MP whole, about 2.5 GB of RAM, larger ones in tiles of 2048; set a "
                             "tile such as 512 to use less memory)")
    parser.add_argument("--overlap", type=int, default=32, metavar="N", help="tile overlap in pixels (default 32)")
    parser.add_argument("--blend", choices=("feather", "mean"), default="feather", help="tile blending (default feather)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    parser.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32",
                        help="compute precision: fp32, or fp16/bf16 autocast (mainly for CUDA)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                        help="run the model in channels-last memory format (same output; default: on for CPU, where "
                             "it is faster, off for other devices)")
    parser.add_argument("--compile", action="store_true",
                        help="compile the model with torch.compile (opt-in: the first image of each size compiles "
                             "first, which can take minutes; needs a working compiler toolchain)")
    parser.add_argument("--plain", action="store_true",
                        help="disable the exact in-layer fast paths (fused LayerNorm, scaled-dot-product attention) "
                             "and run the plain official formulas, e.g. to compare with upstream code (default: "
                             "every fast path on CPU, the subset measured fastest on CUDA)")
    parser.add_argument("--local-only", action="store_true",
                        help="run the model without its whole-image stages (the default model's JPEG projection, "
                             "coarse haze pass, colour-noise smoothing, motion deblurring, sharpening and exposure "
                             "curve, which brightens photos it judges under-exposed)")
    parser.add_argument("--keep-exposure", action="store_true",
                        help="run the whole-image stages without the exposure curve: a genuinely dark scene (night, "
                             "low-key) stays as dark as it is and still gets every other stage")
    parser.add_argument("--twin-mask", action="store_true",
                        help="RAM twin-mask inference for mask-pre-trained-only models: two passes with complementary "
                             "50%% pixel masks, each pixel taken from the pass where it was hidden (ram.md 7.5)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--recursive", action="store_true", help="also scan sub-folders of input folders")
    parser.add_argument("--sample", action="store_true",
                        help=f"restore the bundled noisy sample photo ({SAMPLE}) and report its PSNR vs the clean one")
    return parser


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from anyrestore.api import SAMPLES_DIR, default_model_spec, load_model
    from anyrestore.inference import Predictor
    from anyrestore.io import read_image_info, write_image

    inputs = collect_inputs(args.inputs, recursive=args.recursive)
    if args.sample:
        inputs.append(SAMPLES_DIR / SAMPLE)
    if not inputs:
        raise ConfigError("no input given: pass image files or folders, or --sample")
    outdir = Path(args.output)
    outputs = plan_outputs(inputs, outdir, overwrite=args.overwrite)

    model_name = args.model or default_model_spec()
    model = load_model(model_name, device=args.device, trust=args.trust_checkpoint)
    if args.twin_mask:
        from anyrestore.methods.ram.twin_mask import TwinMaskModel

        model = TwinMaskModel(model)
    predictor = Predictor(model, device=args.device, precision=args.precision, tile=args.tile,
                          overlap=args.overlap, blend=args.blend, fast=False if args.plain else None,
                          channels_last=args.channels_last, compile=args.compile,
                          global_stage=not args.local_only, keep_exposure=args.keep_exposure)
    outdir.mkdir(parents=True, exist_ok=True)

    watch_exposure = not (args.local_only or args.keep_exposure) and any(getattr(model, head, None) is not None
                                                 for head in ("tone_curve", "photo_tone_curve"))
    brightened: list[tuple[Path, float, float]] = []
    by_expert = 0
    start = time.perf_counter()
    for src, dst in tqdm(list(zip(inputs, outputs)), desc="restore", unit="img", disable=len(inputs) < 2):
        image, info = read_image_info(src)
        restored = predictor(image)
        write_image(dst, restored, info=info)
        by_expert += int(any(predictor.last_run.get("expert", [])))
        if watch_exposure:
            before, after = mean_level(image), mean_level(restored)
            if after >= BRIGHTENED * max(before, 1e-3):
                brightened.append((src, before, after))
    elapsed = time.perf_counter() - start
    print(f"restored {len(inputs)} image(s) with model '{model_name}' on {predictor.device} in {elapsed:.1f} s "
          f"-> {outdir}")
    for dst in outputs if len(outputs) <= 5 else []:
        print(f"  {dst}")
    if brightened:
        listed = ", ".join(f"{src.name} {before:.2f} -> {after:.2f}" for src, before, after in brightened[:5])
        print(f"note: the exposure curve brightened {len(brightened)} image(s) by {BRIGHTENED:g}x or more (mean "
              f"level: {listed}{' ...' if len(brightened) > 5 else ''}); if one is a dark scene (night, low-key) "
              "rather than an under-exposed photo, restore it again with --keep-exposure")
    if by_expert:
        print(f"note: {by_expert} image(s) looked like JPEGs damaged by the compression alone; the JPEG expert "
              "restored them")
    if args.sample:
        _report_sample(SAMPLES_DIR, outputs[-1])
    return 0


BRIGHTENED = 1.5  # output/input mean level above which the CLI names the image (the exposure curve may misjudge it)


def mean_level(image) -> float:
    """Mean of the colour channels of a (C,H,W) image in [0, 1] (alpha left out).

    The CLI compares it before and after restoring: the default model's exposure curve reads only brightness
    statistics of the whole image, so it cannot tell a dark scene from an under-exposed photo
    (anyrestore/weights/README.md), and the CLI names the images it brightened."""
    return float(image[:3].mean())


def collect_inputs(items: list[str], *, recursive: bool = False) -> list[Path]:
    """Expand files and folders into a list of image files (folders: sorted, image suffixes only)."""
    from anyrestore.io import is_image_file

    found: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            images = sorted(p for p in path.glob(pattern) if p.is_file() and is_image_file(p))
            if not images:
                raise ImageReadError(f"no images found in folder {path}")
            found.extend(images)
        elif path.is_file():
            found.append(path)
        else:
            raise ImageReadError(f"input not found: {path}")
    return found


def plan_outputs(inputs: list[Path], outdir: Path, *, overwrite: bool) -> list[Path]:
    """``outdir/<stem>.png`` per input; refuses duplicate stems, inputs as outputs and (unless asked) existing files."""
    outputs = [outdir / f"{p.stem}.png" for p in inputs]
    seen: dict[Path, Path] = {}
    clashes = []
    for src, dst in zip(inputs, outputs):
        if dst in seen:
            clashes.append(f"{seen[dst]} and {src}")
        seen[dst] = src
    if clashes:
        raise ConfigError(f"inputs share an output name (<stem>.png): {'; '.join(clashes[:5])}"
                          f"{' ...' if len(clashes) > 5 else ''}; restore them into separate folders")
    sources = {p.resolve() for p in inputs}
    same = [str(d) for d in outputs if d.resolve() in sources]
    if same:
        raise ConfigError(f"output would overwrite an input: {', '.join(same[:5])}; choose another output folder")
    existing = [str(d) for d in outputs if d.exists()]
    if existing and not overwrite:
        more = f" (+{len(existing) - 3} more)" if len(existing) > 3 else ""
        raise ConfigError(f"output exists: {', '.join(existing[:3])}{more}; pass --overwrite to replace")
    return outputs


def _report_sample(samples_dir: Path, restored_path: Path) -> None:
    from anyrestore.io import read_image
    from anyrestore.metrics import psnr

    clean = read_image(samples_dir / SAMPLE_CLEAN)
    noisy = read_image(samples_dir / SAMPLE)
    restored = read_image(restored_path)
    print(f"sample {SAMPLE}: PSNR vs clean {SAMPLE_CLEAN}: input {psnr(noisy, clean):.2f} dB -> "
          f"restored {psnr(restored, clean):.2f} dB (basicsr protocol, RGB); result: {restored_path}")
