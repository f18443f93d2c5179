"""How much the default model's sharpen stage leaves on the table against oracle deblurring of the U-Net output.

    python benchmarks/sharpen_headroom.py                          # shipped model, 16 crops of the training photos
    python benchmarks/sharpen_headroom.py --crops 32 --json headroom.json --markdown headroom.md

For each Gaussian blur (and the blur+noise+JPEG chain) the same 256² crops are blurred with the library's own
degradation, rounded to 8 bits and restored by the U-Net alone. The report compares, in mean PSNR:

* the U-Net output, and the output after the model's own sharpen stage (its unsharp mask or Wiener deconvolution,
  with the head's own estimates);
* an oracle unsharp mask: the best (amount, radius) of a small grid, one setting per row;
* an oracle Gaussian Wiener deconvolution (:func:`anyrestore.archs.motion_deblur.wiener_deconvolve`, gradient
  prior): the best (kernel sigma, prior weight) of a small grid, one setting per row.

The oracles know the row, so they are upper bounds for a stage that has to estimate its setting blind; the gap
between the two oracles is what replacing the unsharp mask with a deconvolution could gain at most. The crops come
from the *training* photos (``data_cache/default_photos/train``) on purpose: the result is meant to steer a design,
and the held-out photos stay for judging it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make `benchmarks.*` importable
    sys.path.insert(0, str(REPO))

from anyrestore.api import default_model_spec, load_model  # noqa: E402
from anyrestore.archs.global_sharpen import gaussian_blur  # noqa: E402
from anyrestore.archs.motion_deblur import wiener_deconvolve  # noqa: E402
from anyrestore.data.sources import list_images  # noqa: E402
from anyrestore.degradations.blur import gaussian_kernel  # noqa: E402
from anyrestore.degradations.pipeline import degrade  # noqa: E402
from anyrestore.errors import ConfigError  # noqa: E402
from anyrestore.io import read_image  # noqa: E402
from anyrestore.metrics import psnr  # noqa: E402
from benchmarks.default_model import PROTOCOL, _f, report_cli  # noqa: E402

CROP = 256
KERNEL = 15
ROWS = ("blur:k15s1.0", "blur:k15s1.5", "blur:k15s2.0", "blur:k15s2.5", "blur:k15s1.5+noise:15+jpeg:50")
AMOUNTS = (0.5, 1.0, 1.5, 2.0, 3.0)
RADII = (1.0, 1.5, 2.0, 3.0)
KERNEL_SCALES = (0.6, 0.8, 1.0)  # times the row's true sigma
PRIOR_WEIGHTS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)


def blur_sigma(spec: str) -> float:
    """The Gaussian sigma of a ``blur:kKsS`` spec (the first term of a chain)."""
    return float(spec.split("+")[0].split("s")[-1])


def random_crops(paths: list[Path], count: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    photos = [photo for photo in (read_image(p)[:3].float() for p in paths) if min(photo.shape[-2:]) >= CROP]
    if not photos:
        raise ConfigError(f"no photo of at least {CROP}x{CROP} pixels to crop")
    crops = []
    for i in range(count):
        photo = photos[i % len(photos)]
        h, w = photo.shape[-2:]
        top = int(torch.randint(h - CROP + 1, (), generator=generator))
        left = int(torch.randint(w - CROP + 1, (), generator=generator))
        crops.append(photo[:, top:top + CROP, left:left + CROP])
    return torch.stack(crops)


def _score(images: torch.Tensor, clean: torch.Tensor) -> float:
    return float(psnr(images.clamp(0, 1), clean, protocol=PROTOCOL))


@torch.inference_mode()
def row(model: torch.nn.Module, spec: str, clean: torch.Tensor, seed: int, batch: int = 4) -> dict:
    degraded = torch.stack([degrade(c, spec, seed=seed + i)[0] for i, c in enumerate(clean)])
    degraded = (degraded.clamp(0, 1) * 255).round() / 255
    local = torch.cat([model.forward_local(degraded[i:i + batch]) for i in range(0, len(degraded), batch)]).clamp(0, 1)
    n = len(clean)
    result = {"degradation": spec, "input_db": _score(degraded, clean), "unet_db": _score(local, clean)}
    head = getattr(model, "sharpen", None)
    if head is not None:
        result["model_sharpen_db"] = _score(head(degraded, local), clean)
    unsharp = [(_score(local + a * (local - gaussian_blur(local, torch.full((n,), r))), clean), a, r)
               for a in AMOUNTS for r in RADII]
    best = max(unsharp)
    result.update(oracle_unsharp_db=best[0], unsharp_amount=best[1], unsharp_radius=best[2])
    sigma = blur_sigma(spec)
    wiener = [(_score(wiener_deconvolve(local, gaussian_kernel(KERNEL, s * sigma)[None].expand(n, -1, -1),
                                        torch.full((n,), lam)), clean), s * sigma, lam)
              for s in KERNEL_SCALES for lam in PRIOR_WEIGHTS]
    best = max(wiener)
    result.update(oracle_wiener_db=best[0], wiener_sigma=best[1], wiener_prior=best[2])
    return result


def markdown(report: dict) -> str:
    lines = [f"Model `{report['model']}`; {report['crops']} crops of {CROP}² from {report['photos']} training photos "
             f"(seed {report['seed']}); mean PSNR {PROTOCOL} RGB, dB. Oracles: best setting of a grid per row.", "",
             f"| degradation | input | U-Net | model's stage ({report.get('sharpen_mode') or 'none'}) "
             "| oracle unsharp (amount, radius) | oracle Gaussian Wiener (sigma, prior) | oracle Wiener - model |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        shipped = r.get("model_sharpen_db")
        gap = "-" if shipped is None else _f(r["oracle_wiener_db"] - shipped)
        lines.append(f"| `{r['degradation']}` | {_f(r['input_db'])} | {_f(r['unet_db'])} "
                     f"| {'-' if shipped is None else _f(shipped)} "
                     f"| {_f(r['oracle_unsharp_db'])} ({r['unsharp_amount']:g}, {r['unsharp_radius']:g}) "
                     f"| {_f(r['oracle_wiener_db'])} ({r['wiener_sigma']:.2f}, {r['wiener_prior']:g}) | {gap} |")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="checkpoint path or model name (default: the bundled model)")
    parser.add_argument("--photos", type=Path, default=REPO / "data_cache/default_photos/train",
                        help="folder of photos to crop (default: the default model's training photos)")
    parser.add_argument("--crops", type=int, default=16, help="256² crops per row (default 16)")
    parser.add_argument("--degradations", default=",".join(ROWS),
                        help="comma-separated blur specs, each starting with blur:kKsS (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    parser.add_argument("--json", type=Path, default=None, help="write the report as JSON")
    parser.add_argument("--markdown", type=Path, default=None, help="write the printed report as markdown")
    return parser


def run(args: argparse.Namespace) -> dict:
    if args.threads < 1 or args.crops < 1:
        raise ConfigError("--threads and --crops must be >= 1")
    specs = [s.strip() for s in args.degradations.split(",") if s.strip()]
    if not specs or any(not s.startswith("blur:") for s in specs):
        raise ConfigError(f"--degradations must be blur specs starting with blur:kKsS, got {args.degradations!r}")
    torch.set_num_threads(args.threads)
    spec = default_model_spec() if args.model is None else args.model
    model = load_model(spec, device="cpu").eval()
    if not hasattr(model, "forward_local"):
        raise ConfigError(f"model {spec} has no whole-image stages (no forward_local): nothing to compare")
    paths = list_images(args.photos) if args.photos.is_dir() else []
    if not paths:
        raise ConfigError(f"no photos in {args.photos}: pass --photos DIR or run scripts/prepare_default_photos.py")
    clean = random_crops(paths, args.crops, args.seed)
    rows = [row(model, s, clean, args.seed * 1000 + 100 * i) for i, s in enumerate(specs)]
    head = getattr(model, "sharpen", None)
    return {"model": str(spec), "sharpen_mode": None if head is None else head.mode, "photos": len(paths),
            "crops": args.crops, "seed": args.seed, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    return report_cli(build_parser().parse_args(argv), run, markdown)


if __name__ == "__main__":
    sys.exit(main())
