"""Quality report of the default model: held-out photos, fixed degradations, classical baselines, CPU speed.

    python benchmarks/default_model.py                                  # default model, 5 held-out photos, 256² crops
    python benchmarks/default_model.py --model classical --quick        # 1-photo sanity run
    python benchmarks/default_model.py --model run/ckpt.safetensors --crop 0 --json report.json --markdown report.md
    python benchmarks/default_model.py --degradations noise:25,jpeg:30,haze:high

Protocol:

* Photos: ``--photos DIR`` (default ``data_cache/default_photos/holdout``, written by
  ``scripts/prepare_default_photos.py``; none of them is trained on). Without that folder the run falls back to the
  project's held-out shipped sample ``anyrestore/samples/chelsea.png`` only: the other photographs shipped with
  scikit-image / scikit-learn / matplotlib (``coffee.png`` included) are part of the default model's training data
  (``anyrestore.data.sources``, configs/default), so scoring on them would not be honest.
* Each photo is centre-cropped (``--crop``, 0 = whole image), degraded with a fixed-level
  :func:`anyrestore.degradations.build_sampler` spec using the seed ``crc32("default-model/<spec>/<photo name>")``,
  and rounded to 8 bits, as a real file would be. The model is never told the degradation.
* Metrics: PSNR/SSIM on RGB under the ``basicsr`` protocol (uint8 rounding, peak 255, Gaussian 11x11 SSIM, no border
  crop), averaged over photos.
* Baselines (given the true degradation, so they are upper bounds for a single classical setting): OpenCV
  ``fastNlMeansDenoisingColored`` for Gaussian noise with ``h = hColor = f * sigma_true``; unsharp masking for blurs;
  a gamma curve and CLAHE on the L channel of Lab for low light. Each baseline's free parameter is picked from a small
  grid to maximise the mean PSNR over the test photos (an oracle choice that favours the baseline).
* Speed: wall-clock seconds per megapixel (10^6 pixels) of the model at fp32 on the CPU, on one ``--speed-size``²
  image (default 1024²), median of ``--speed-repeats`` runs after one warm-up, with ``--threads`` threads.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from anyrestore.api import default_model_spec, load_model
from anyrestore.checkpoints import file_sha256
from anyrestore.data.sources import list_images
from anyrestore.degradations import build_sampler
from anyrestore.errors import AnyRestoreError, ConfigError
from anyrestore.inference.predictor import Predictor
from anyrestore.io import atomic_write_bytes, read_image
from anyrestore.metrics import psnr, ssim

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PHOTOS = Path("data_cache/default_photos/holdout")
FALLBACK_PHOTOS = (REPO / "anyrestore" / "samples" / "chelsea.png",)
PROTOCOL = "basicsr"
SPEED_TARGET_S_PER_MP = 4.0
BLUR_TYPES = ("blur", "aniso_blur", "motion_blur", "shake_blur", "defocus_blur")


@dataclass(frozen=True)
class Target:
    """Pass condition: output - input PSNR >= ``gain_db``, or output - baseline PSNR >= ``over_baseline_db``."""

    gain_db: float | None = None
    over_baseline_db: float | None = None

    def text(self) -> str:
        if self.over_baseline_db is not None:
            return f"≥ baseline +{self.over_baseline_db:g} dB"
        return f"gain ≥ {self.gain_db:g} dB"


# The target list, each at one fixed level (spec -> (description, target)).
DEGRADATIONS: dict[str, tuple[str, Target]] = {
    "noise:15": ("Gaussian noise σ=15", Target(gain_db=2.0)),
    "noise:25": ("Gaussian noise σ=25", Target(over_baseline_db=1.5)),
    "noise:50": ("Gaussian noise σ=50", Target(gain_db=2.0)),
    "jpeg:30": ("JPEG q=30", Target(gain_db=1.0)),
    "blur:k15s2.0": ("Gaussian blur σ=2 (15×15)", Target(gain_db=1.0)),
    "motion_blur:medium": ("motion blur, length 15, 30°", Target(gain_db=2.0)),
    "haze:medium": ("haze β=1.5, A=0.9", Target(gain_db=2.0)),
    "rain:medium": ("rain streaks (medium)", Target(gain_db=2.0)),
    "snow:medium": ("snow (medium, 2 layers)", Target(gain_db=2.0)),
    "low_light:medium": ("low light γ=2.2, ×0.8", Target(gain_db=2.0)),
    "blur:k15s1.5+noise:15+jpeg:50": ("blur σ=1.5 + noise σ=15 + JPEG q=50", Target(gain_db=2.0)),
}

NLM_FACTORS = (0.2, 0.3, 0.4, 0.5, 0.65, 0.8, 1.0)
UNSHARP_GRID = tuple((s, a) for s in (1.0, 2.0, 3.0) for a in (0.5, 1.0, 2.0, 3.0, 4.0))
GAMMA_GRID = (1.5, 2.0, 2.5, 3.0)
CLAHE_CLIPS = (2.0, 4.0, 8.0, 16.0)


# ------------------------------------------------------------------------------------------------ classical baselines
def _nlm(rgb: np.ndarray, h: float) -> np.ndarray:
    bgr8 = np.ascontiguousarray(np.round(rgb[:, :, ::-1] * 255.0).astype(np.uint8))
    out = cv2.fastNlMeansDenoisingColored(bgr8, None, h, h, 7, 21)
    return out[:, :, ::-1].astype(np.float32) / 255.0


def _unsharp(rgb: np.ndarray, sigma: float, amount: float) -> np.ndarray:
    blurred = cv2.GaussianBlur(rgb, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
    return np.clip(rgb + amount * (rgb - blurred), 0.0, 1.0)


def _gamma(rgb: np.ndarray, gamma: float) -> np.ndarray:
    return np.power(np.clip(rgb, 0.0, 1.0), 1.0 / gamma)


def _clahe_l(rgb: np.ndarray, clip: float) -> np.ndarray:
    lab = cv2.cvtColor(np.round(rgb * 255.0).astype(np.uint8), cv2.COLOR_RGB2LAB)
    lab[:, :, 0] = cv2.createCLAHE(clipLimit=clip, tileGridSize=(8, 8)).apply(np.ascontiguousarray(lab[:, :, 0]))
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB).astype(np.float32) / 255.0


def baseline_candidates(label: dict) -> dict[str, list[tuple[dict, object]]]:
    """Classical baselines for one image's degradation label: name -> grid of ``(params, fn(rgb) -> rgb)``.

    Grids of the same name have the same length and order for every image of a fixed-type degradation, so entry i
    is one setting across the photos (NL-means takes each image's own true sigma times the grid factor).
    """
    steps = [s for s in label["steps"] if s["type"] != "identity"]
    if len(steps) != 1:
        return {}
    kind, params = steps[0]["type"], steps[0]["params"]
    if kind == "noise" and params.get("sigma", 0) > 0:
        sigma = float(params["sigma"])
        return {"NLM": [({"h/sigma": f}, lambda x, h=f * sigma: _nlm(x, h)) for f in NLM_FACTORS]}
    if kind in BLUR_TYPES:
        return {"unsharp": [({"sigma": s, "amount": a}, lambda x, s=s, a=a: _unsharp(x, s, a))
                            for s, a in UNSHARP_GRID]}
    if kind == "low_light":
        return {"gamma": [({"gamma": g}, lambda x, g=g: _gamma(x, g)) for g in GAMMA_GRID],
                "CLAHE-L": [({"clip_limit": c}, lambda x, c=c: _clahe_l(x, c)) for c in CLAHE_CLIPS]}
    return {}


def best_baselines(images: list[tuple[np.ndarray, torch.Tensor, dict]]) -> dict[str, dict]:
    """For each applicable baseline, the grid setting with the best mean PSNR over ``(lq_hwc, clean, label)``."""
    grids = [baseline_candidates(label) for _, _, label in images]
    out = {}
    for name in grids[0]:
        if any(name not in g or len(g[name]) != len(grids[0][name]) for g in grids):
            continue  # the photos' degradations differ in kind: no common setting to report
        best = None
        for i, (params, _) in enumerate(grids[0][name]):
            ps, ss = [], []
            for (lq, clean, _), grid in zip(images, grids):
                restored = torch.from_numpy(np.ascontiguousarray(grid[name][i][1](lq))).permute(2, 0, 1).float()
                ps.append(psnr(restored, clean, protocol=PROTOCOL))
                ss.append(ssim(restored, clean, protocol=PROTOCOL))
            if best is None or _mean(ps) > best["psnr"]:
                best = {"psnr": _mean(ps), "ssim": _mean(ss), "params": params}
        best["grid"] = [p for p, _ in grids[0][name]]
        out[name] = best
    return out


# ------------------------------------------------------------------------------------------------ helpers
def seed_for(spec: str, name: str) -> int:
    """The deterministic degradation seed of one photo."""
    return zlib.crc32(f"default-model/{spec}/{name}".encode())


def shrink_to_short_side(img: torch.Tensor, side: int, name: str) -> torch.Tensor:
    """Area-downscale an 8-bit photo (C,H,W in [0, 1]) so that its shorter side is ``side`` (0: as it is), rounded to
    8 bits again, as a photo saved at that size would be (``--short-side 512`` gives Kodak-size frames)."""
    if side <= 0:
        return img
    h, w = img.shape[-2:]
    if side > min(h, w):
        raise ConfigError(f"--short-side {side} is larger than {name}'s shorter side ({min(h, w)} px); "
                          "the option only downscales")
    scale = side / min(h, w)
    levels = (img.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    small = cv2.resize(levels, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(small.reshape(*small.shape[:2], -1)).permute(2, 0, 1).float() / 255


def centre_crop(img: torch.Tensor, size: int) -> torch.Tensor:
    if size <= 0:
        return img
    h, w = img.shape[-2:]
    ch, cw = min(size, h), min(size, w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return img[..., top:top + ch, left:left + cw].contiguous()


def find_photos(photos: str | None) -> list[Path]:
    """The evaluation photos: ``photos`` (a folder), else the default hold-out folder, else the held-out sample."""
    if photos is not None:
        files = list_images(photos)
        if not files:
            raise ConfigError(f"no images in {photos}")
        return files
    for folder in (DEFAULT_PHOTOS, REPO / DEFAULT_PHOTOS):  # relative to the working directory, then the checkout
        if folder.is_dir() and list_images(folder):
            return list_images(folder)
    return [p for p in FALLBACK_PHOTOS if p.is_file()]


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, text.encode("utf-8"))


# ------------------------------------------------------------------------------------------------ evaluation
def evaluate_degradation(spec: str, photos: list[tuple[str, torch.Tensor]], predictor, *,
                         eight_bit: bool = True) -> dict:
    """Degrade each photo with ``spec``, restore it, score input / output / baselines. Returns one report row.

    The degraded input is rounded to 8-bit levels, as a saved PNG or JPEG would be; ``eight_bit=False`` keeps it as the
    degradation returned it (float), as a caller passing arrays straight to the model would."""
    sampler = build_sampler(spec)
    per_image, images = [], []
    for name, clean in photos:
        seed = seed_for(spec, name)
        lq, labels = sampler(clean[None], seeds=[seed])
        label = labels[0]
        lq = torch.round(lq[0].clamp(0, 1) * 255.0) / 255.0 if eight_bit else lq[0].clamp(0, 1)
        with torch.inference_mode():
            out = predictor(lq)
        per_image.append({"name": name, "seed": seed, "params": label["params"],
                          "input_psnr": psnr(lq, clean, protocol=PROTOCOL),
                          "input_ssim": ssim(lq, clean, protocol=PROTOCOL),
                          "output_psnr": psnr(out, clean, protocol=PROTOCOL),
                          "output_ssim": ssim(out, clean, protocol=PROTOCOL)})
        images.append((lq.permute(1, 2, 0).numpy(), clean, label))

    baselines = best_baselines(images)

    same = all(r["params"] == per_image[0]["params"] for r in per_image)
    row = {"degradation": spec, "images": len(photos), "label_type": label["type"],
           "params": per_image[0]["params"] if same else None}  # None: drawn per image (see per_image)
    for key in ("input_psnr", "input_ssim", "output_psnr", "output_ssim"):
        row[key] = _mean([r[key] for r in per_image])
    row["gain_db"] = row["output_psnr"] - row["input_psnr"]
    best_name = max(baselines, key=lambda n: baselines[n]["psnr"]) if baselines else None
    row["baseline"] = None if best_name is None else {"name": best_name, **baselines[best_name]}
    row["baselines"] = baselines
    description, target = DEGRADATIONS.get(spec, (spec, None))
    row["description"] = description
    row.update(_judge(row, target))
    row["per_image"] = per_image
    return row


def _judge(row: dict, target: Target | None) -> dict:
    if target is None:
        return {"target": None, "margin_db": None, "status": "-"}
    if target.over_baseline_db is not None:
        if row["baseline"] is None:
            return {"target": target.text(), "margin_db": None, "status": "-"}
        margin = row["output_psnr"] - row["baseline"]["psnr"] - target.over_baseline_db
    else:
        margin = row["gain_db"] - target.gain_db
    return {"target": target.text(), "margin_db": margin, "status": "PASS" if margin >= 0 else "FAIL"}


def measure_speed(predictor, photo: torch.Tensor, *, size: int, repeats: int, spec: str = "noise:25") -> dict:
    """Median wall seconds per megapixel of ``predictor`` on a ``size``² version of ``photo`` degraded by ``spec``."""
    hwc = photo.permute(1, 2, 0).numpy()
    big = torch.from_numpy(cv2.resize(hwc, (size, size), interpolation=cv2.INTER_CUBIC)).permute(2, 0, 1).clamp(0, 1)
    # Content matters for content-adaptive models (the classical one skips clean images, the default model's motion
    # stage runs its FFTs only on motion-blurred ones): time a degraded input.
    lq, _ = build_sampler(spec)(big[None].contiguous(), seeds=[seed_for("speed", spec)])
    lq = torch.round(lq[0] * 255.0) / 255.0
    with torch.inference_mode():
        predictor(lq)  # warm-up
        wall, cpu = [], []
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            predictor(lq)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    mp = size * size / 1e6
    s_per_mp = statistics.median(wall) / mp
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"size": [size, size], "megapixels": mp, "degradation": spec, "threads": torch.get_num_threads(),
            "precision": "fp32", "cpu_count": os.cpu_count(), "load_average_1min": load,
            "device": "cpu", "mode": dict(predictor.last_run), "repeats": repeats, "wall_s": wall, "cpu_s": cpu,
            "seconds_per_mp": s_per_mp, "cpu_seconds_per_mp": statistics.median(cpu) / mp,
            "target_s_per_mp": SPEED_TARGET_S_PER_MP,
            "status": "PASS" if s_per_mp <= SPEED_TARGET_S_PER_MP else "FAIL"}


# ------------------------------------------------------------------------------------------------ output
def _f(value, digits: int = 2) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _shrunk(report: dict) -> str:
    """The markdown header's note of ``--short-side`` (reports written before the option have no key)."""
    side = report.get("short_side", 0)
    return f" (photos area-downscaled to a {side}-px shorter side first)" if side else ""


def markdown(report: dict) -> str:
    """The report as markdown: a header, the per-degradation table and the speed line."""
    lines = [f"Model `{report['model']}` ({report['parameters']:,} parameters); {len(report['photos'])} photo(s) from "
             f"{report['photos_dir']}: {', '.join(report['photos'])}; crop {report['crop'] or 'full'}{_shrunk(report)}; "
             f"PSNR/SSIM {report['protocol']} RGB; blind (the model is not told the degradation); baselines use the "
             "true degradation and their best grid setting"
             + ("" if report.get("eight_bit_inputs", True) else "; inputs fed as float, not rounded to 8 bits") + ".",
             "",
             "| degradation | spec | input PSNR | output PSNR | output SSIM | gain dB | baseline | baseline PSNR "
             "| target | margin dB | result |",
             "|---|---|---:|---:|---:|---:|---|---:|---|---:|---|"]
    for r in report["rows"]:
        b = r["baseline"]
        bname = "-" if b is None else f"{b['name']} ({', '.join(f'{k}={v:g}' for k, v in b['params'].items())})"
        lines.append(f"| {r['description']} | `{r['degradation']}` | {_f(r['input_psnr'])} | {_f(r['output_psnr'])} "
                     f"| {_f(r['output_ssim'], 4)} | {_f(r['gain_db'])} | {bname} | {_f(b and b['psnr'])} "
                     f"| {r['target'] or '-'} | {_f(r['margin_db'])} | {r['status']} |")
    s = report["summary"]
    lines += ["", f"Targets: {s['passed']} passed, {s['failed']} failed."]
    sp = report.get("speed")
    if sp:
        lines.append(f"CPU speed: {sp['seconds_per_mp']:.2f} s/MP wall ({sp['cpu_seconds_per_mp']:.2f} CPU-s/MP) at "
                     f"fp32 on {sp['size'][0]}×{sp['size'][1]} (`{sp.get('degradation', 'noise:25')}`), "
                     f"{sp['threads']} thread(s), {sp['mode'].get('mode')} "
                     f"mode, median of {sp['repeats']} after a warm-up; target ≤ {sp['target_s_per_mp']:g} s/MP: "
                     f"{sp['status']}.")
        load, cpus = sp.get("load_average_1min"), sp.get("cpu_count")
        if load is not None and cpus and load > cpus:
            lines.append(f"Warning: the machine was busy (1-min load average {load:.1f} on {cpus} CPUs): wall times "
                         "are inflated; re-run the timing on an idle machine.")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None,
                        help="model spec for anyrestore.load_model: a checkpoint path or a name (default: the bundled "
                             "default model, else 'classical')")
    parser.add_argument("--photos", default=None, help=f"folder of held-out photos (default {DEFAULT_PHOTOS}, else "
                                                       "the held-out sample chelsea.png)")
    parser.add_argument("--crop", type=int, default=256, help="centre crop size (0 = whole image)")
    parser.add_argument("--short-side", type=int, default=0,
                        help="area-downscale each photo to this shorter side before the crop (0 = as stored; 512 "
                             "gives Kodak-size frames)")
    parser.add_argument("--degradations", default=",".join(DEGRADATIONS),
                        help="comma-separated degradation specs (default: the target list)")
    parser.add_argument("--tile", type=int, default=None, help="Predictor tile (default auto, 0 = whole image)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch and OpenCV (default 2)")
    parser.add_argument("--speed-size", type=int, default=1024, help="side of the square timing image")
    parser.add_argument("--speed-repeats", type=int, default=3, help="timed runs after the warm-up (median)")
    parser.add_argument("--speed-degradation", default="noise:25",
                        help="degradation of the timing image (content-adaptive stages cost more on some inputs: "
                             "motion_blur:medium makes the default model's motion stage deconvolve)")
    parser.add_argument("--float-inputs", action="store_true",
                        help="feed the degraded images as float, not rounded to 8-bit levels (as arrays passed "
                             "straight to the model would be; saved images are 8-bit)")
    parser.add_argument("--no-speed", action="store_true", help="skip the speed measurement")
    parser.add_argument("--quick", action="store_true", help="sanity run: first photo only, one timed speed run")
    parser.add_argument("--json", type=Path, default=None, help="write the full report (per image too) as JSON")
    parser.add_argument("--markdown", type=Path, default=None, help="write the printed report as markdown")
    return parser


def run(args: argparse.Namespace) -> dict:
    """Run the benchmark described by parsed ``args``; returns the report dict."""
    if args.threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {args.threads}")
    if args.crop < 0:
        raise ConfigError(f"--crop must be >= 0, got {args.crop}")
    if args.short_side < 0:
        raise ConfigError(f"--short-side must be >= 0, got {args.short_side}")
    if args.speed_size < 8 or args.speed_repeats < 1:
        raise ConfigError("--speed-size must be >= 8 and --speed-repeats >= 1")
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    specs = [s.strip() for s in args.degradations.split(",") if s.strip()]
    if not specs:
        raise ConfigError("--degradations is empty")

    paths = find_photos(args.photos)
    if not paths:
        raise ConfigError("no evaluation photos: pass --photos DIR or run scripts/prepare_default_photos.py")
    if args.quick:
        paths = paths[:1]
    photos = []
    for p in paths:
        img = read_image(p)
        img = img[:3] if img.shape[0] >= 3 else img.expand(3, -1, -1)
        img = shrink_to_short_side(img.float(), args.short_side, p.name)
        photos.append((p.name, centre_crop(img, args.crop)))

    spec = default_model_spec() if args.model is None else args.model
    model = load_model(spec, device="cpu")
    predictor = Predictor(model, device="cpu", precision="fp32", tile=args.tile)
    report = {"model": str(spec), "model_sha256": file_sha256(spec) if Path(spec).is_file() else None,
              "parameters": sum(p.numel() for p in model.parameters()),
              "photos_dir": str(paths[0].parent), "photos": [n for n, _ in photos], "crop": args.crop,
              "short_side": args.short_side, "protocol": PROTOCOL, "crop_border": 0, "y_channel": False, "tile": args.tile, "threads": args.threads,
              "eight_bit_inputs": not args.float_inputs, "rows": []}
    for s in specs:
        t0 = time.perf_counter()
        row = evaluate_degradation(s, photos, predictor, eight_bit=not args.float_inputs)
        row["seconds"] = time.perf_counter() - t0
        report["rows"].append(row)
        print(f"  {s}: in {_f(row['input_psnr'])} -> out {_f(row['output_psnr'])} dB ({row['seconds']:.1f} s)",
              file=sys.stderr, flush=True)
    statuses = [r["status"] for r in report["rows"]]
    report["summary"] = {"passed": statuses.count("PASS"), "failed": statuses.count("FAIL"),
                         "mean_gain_db": _mean([r["gain_db"] for r in report["rows"]])}
    if not args.no_speed:
        repeats = 1 if args.quick else args.speed_repeats
        report["speed"] = measure_speed(predictor, photos[0][1], size=args.speed_size, repeats=repeats,
                                        spec=args.speed_degradation)
    return report


def report_cli(args: argparse.Namespace, run_fn, markdown_fn) -> int:
    """Run ``run_fn(args)``, print ``markdown_fn(report)`` and write ``--json``/``--markdown``; errors: one line, 2."""
    try:
        report = run_fn(args)
    except AnyRestoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = markdown_fn(report)
    print(text, end="")
    if args.json:
        _atomic_write(args.json, json.dumps(report, indent=2, allow_nan=True) + "\n")
    if args.markdown:
        _atomic_write(args.markdown, text)
    return 0


def main(argv: list[str] | None = None) -> int:
    return report_cli(build_parser().parse_args(argv), run, markdown)


if __name__ == "__main__":
    sys.exit(main())
