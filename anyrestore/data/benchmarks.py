"""Named test benchmarks (conventions.md §3, ram.md §7.1) and all-in-one evaluation protocols (§4).

A :class:`Benchmark` knows where its images live under a data root — a canonical layout plus the alternates
found in the official repositories, tried in order — how LQ and GT pair, and, for sets shipped as clean images
only, how the LQ is synthesised (Gaussian noise σ, JPEG quality, Gaussian blur) with a per-image seed
``crc32(f"{protocol}/{benchmark}/{name}/{param}")`` **[decision]**. Listings are sorted; expected counts are
checked (a mismatch is a warning recorded in the result).

A :class:`EvalProtocol` bundles benchmarks with metric settings (metric protocol, border crop, Y-channel sets,
noise rule, centre crop to a multiple before inference) and how columns are grouped into task scores.
"""
from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from anyrestore.data.datasets import DatasetLayoutError, list_images, pair_folders, read_image
from anyrestore.errors import ConfigError


@dataclass(frozen=True)
class Layout:
    """One folder arrangement: ``lq`` (None for clean-only sets) and ``gt`` relative to the data root.

    A ``*`` path component matches scene sub-folders (GoPro ``test/*/blur``): pairs are formed inside each scene.
    """

    gt: str
    lq: str | None = None
    pairing: str = "name"
    gt_suffix: str | None = None
    recursive: bool = False


@dataclass(frozen=True)
class Benchmark:
    name: str
    task: str
    layouts: tuple[Layout, ...]
    expected: int | None = None
    synth: tuple[str, float] | None = None  # ("noise", sigma) | ("jpeg", quality) | ("blur", sigma)
    center_crop: int | None = None  # crop (skipped when a side is smaller) before synthesis; LSDIR-val 512
    description: str = ""


BENCHMARKS: dict[str, Benchmark] = {}


def _add(bench: Benchmark) -> None:
    if bench.name in BENCHMARKS:
        raise ValueError(f"benchmark {bench.name!r} is registered twice")
    BENCHMARKS[bench.name] = bench


_add(Benchmark("sots-outdoor", "dehaze", (
    Layout(lq="SOTS/outdoor/hazy", gt="SOTS/outdoor/gt", pairing="prefix", gt_suffix=".png"),
    Layout(lq="SOTS/outdoor/hazy", gt="SOTS/outdoor/clear", pairing="prefix", gt_suffix=".png"),
    Layout(lq="dehaze/input", gt="dehaze/target", pairing="prefix", gt_suffix=".png"),
), expected=500, description="RESIDE SOTS outdoor; GT = LQ name up to the first '_' + .png"))
for _set, _n in (("Rain100L", 100), ("Rain100H", 100)):
    _add(Benchmark(_set.lower(), "derain", (
        Layout(lq=f"{_set}/input", gt=f"{_set}/target"),
        Layout(lq=f"rain13k/test/{_set}/input", gt=f"rain13k/test/{_set}/target"),
        Layout(lq=f"{_set}/rainy", gt=f"{_set}/norain", pairing="rain", gt_suffix=None),
    ), expected=_n))
for _set, _n in (("Test100", 98), ("Test1200", 1200), ("Test2800", 2800)):
    _add(Benchmark(_set.lower(), "derain", (
        Layout(lq=f"rain13k/test/{_set}/input", gt=f"rain13k/test/{_set}/target"),
        Layout(lq=f"{_set}/input", gt=f"{_set}/target"),
    ), expected=_n))
_CBSD_GT = (Layout(gt="CBSD68/original_png"), Layout(gt="CBSD68/CBSD68/original_png"), Layout(gt="denoise/bsd68"))
for _sigma in (5, 10, 15, 25, 35, 50):
    _add(Benchmark(f"cbsd68-noisy{_sigma}", "denoise", (
        Layout(lq=f"CBSD68/noisy{_sigma}", gt="CBSD68/original_png"),
        Layout(lq=f"CBSD68/CBSD68/noisy{_sigma}", gt="CBSD68/CBSD68/original_png"),
    ), expected=68, description=f"pre-noised CBSD68 PNGs, sigma {_sigma} (RAM)"))
for _sigma in (15, 25, 50):
    _add(Benchmark(f"cbsd68-sigma{_sigma}", "denoise", _CBSD_GT, expected=68, synth=("noise", _sigma)))
    _add(Benchmark(f"kodak24-sigma{_sigma}", "denoise", (Layout(gt="Kodak24"), Layout(gt="Kodak")), expected=24,
                   synth=("noise", _sigma)))
    _add(Benchmark(f"mcmaster-sigma{_sigma}", "denoise", (Layout(gt="McMaster"), Layout(gt="McMasterHQ")), expected=18,
                   synth=("noise", _sigma)))
    _add(Benchmark(f"urban100-sigma{_sigma}", "denoise", (Layout(gt="Urban100"),), expected=100, synth=("noise", _sigma)))
for _q in (10, 20, 30, 40, 50):
    _add(Benchmark(f"live1-q{_q}", "jpeg", (Layout(gt="LIVE1"),), expected=29, synth=("jpeg", _q)))
for _set, _gts, _n in (("cbsd68", _CBSD_GT, 68), ("kodak24", (Layout(gt="Kodak24"),), 24),
                       ("mcmaster", (Layout(gt="McMaster"),), 18), ("urban100", (Layout(gt="Urban100"),), 100)):
    _add(Benchmark(f"{_set}-jpeg50", "jpeg", _gts, expected=_n, synth=("jpeg", 50)))
_add(Benchmark("gopro", "deblur", (
    Layout(lq="GoPro/test/input", gt="GoPro/test/target"),
    Layout(lq="GoPro/test/input", gt="GoPro/test/groundtruth"),
    Layout(lq="GoPro/test/*/blur", gt="GoPro/test/*/sharp"),
    Layout(lq="gopro/test/*/blur", gt="gopro/test/*/sharp"),
), expected=1111))
_add(Benchmark("lol-v1", "lowlight", (
    Layout(lq="LOL/eval15/low", gt="LOL/eval15/high"),
    Layout(lq="LOL/test/input", gt="LOL/test/target"),
    Layout(lq="enhance/lol/input", gt="enhance/lol/target"),
), expected=15))
_add(Benchmark("lol-v2-real", "lowlight", (
    Layout(lq="LOL-v2/Real_captured/Test/Low", gt="LOL-v2/Real_captured/Test/Normal", pairing="lol_real"),
), expected=100))
_add(Benchmark("lol-v2-synthetic", "lowlight", (
    Layout(lq="LOL-v2/Synthetic/Test/Low", gt="LOL-v2/Synthetic/Test/Normal"),
), expected=100))
_LSDIR = (Layout(gt="LSDIR-val", recursive=True), Layout(gt="LSDIR/val", recursive=True))
_add(Benchmark("lsdir-val-blur", "blur", _LSDIR, synth=("blur", 2.0), center_crop=512,
               description="LSDIR validation, centre crop 512, Gaussian blur k15 sigma 2.0 (RAM)"))
_add(Benchmark("lsdir-val-jpeg", "jpeg", _LSDIR, synth=("jpeg", 50), center_crop=512,
               description="LSDIR validation, centre crop 512, JPEG q50 (RAM)"))
for _s in ("S", "M", "L"):
    _add(Benchmark(f"snow100k-{_s.lower()}", "desnow", (
        Layout(lq=f"Snow100K/test/Snow100K-{_s}/synthetic", gt=f"Snow100K/test/Snow100K-{_s}/gt"),
    )))


@dataclass(frozen=True)
class EvalProtocol:
    """Benchmarks + metric settings of one paper's table.

    Attributes:
        metric: metric protocol name of :mod:`anyrestore.metrics` (``ram``, ``skimage``, ``maskdcpt``...).
        groups: ``(column, benchmarks)``: a column's score is the mean of its benchmarks' means.
        y_channel: benchmarks scored on Y.
        noise_rule: synthetic noise: ``clip`` (float, clipped), ``truncate`` (uint8 truncation, PromptIR),
            ``unclipped`` (UniRestorer).
        crop_multiple: centre-crop LQ and GT to a multiple of this before inference (PromptIR: 16).
    """

    name: str
    metric: str
    groups: tuple[tuple[str, tuple[str, ...]], ...]
    crop_border: int | None = None
    y_channel: frozenset[str] = frozenset()
    noise_rule: str = "clip"
    crop_multiple: int | None = None
    description: str = ""

    @property
    def benchmarks(self) -> list[str]:
        return [b for _, names in self.groups for b in names]


PROTOCOLS: dict[str, EvalProtocol] = {}


def _proto(p: EvalProtocol) -> None:
    for b in p.benchmarks:
        if b not in BENCHMARKS:
            raise ValueError(f"protocol {p.name!r} names unknown benchmark {b!r}")
    PROTOCOLS[p.name] = p


_RAIN13K = ("rain100l", "rain100h", "test100", "test1200", "test2800")
_proto(EvalProtocol("ram-7task", "ram", (
    ("SOTS", ("sots-outdoor",)), ("Rain13k", _RAIN13K), ("CBSD68", ("cbsd68-noisy15", "cbsd68-noisy25", "cbsd68-noisy50")),
    ("GoPro", ("gopro",)), ("LOL", ("lol-v1",)), ("LSDIR-Blur", ("lsdir-val-blur",)), ("LSDIR-JPEG", ("lsdir-val-jpeg",)),
), description="RAM Table 1: whole image, crop 4, RGB, uint8"))
_proto(EvalProtocol("promptir-3task", "skimage", (
    ("SOTS", ("sots-outdoor",)), ("Rain100L", ("rain100l",)), ("σ15", ("cbsd68-sigma15",)),
    ("σ25", ("cbsd68-sigma25",)), ("σ50", ("cbsd68-sigma50",)),
), noise_rule="truncate", crop_multiple=16, description="AirNet/PromptIR 3-task table (skimage metrics)"))
_proto(EvalProtocol("aio-5task", "skimage", (
    ("SOTS", ("sots-outdoor",)), ("Rain100L", ("rain100l",)), ("σ25", ("cbsd68-sigma25",)), ("GoPro", ("gopro",)),
    ("LOL", ("lol-v1",)),
), noise_rule="truncate", crop_multiple=16, description="IDR/AdaIR/MoCE-IR 5-task table (skimage metrics)"))
_proto(EvalProtocol("maskdcpt-5d", "maskdcpt", (
    ("Rain100L", ("rain100l",)), ("CBSD68 σ25", ("cbsd68-sigma25",)), ("SOTS", ("sots-outdoor",)), ("LOL", ("lol-v1",)),
    ("GoPro", ("gopro",)),
), description="MaskDCPT 5D (float [0,1] metrics, noise clipped)"))
_proto(EvalProtocol("maskdcpt-12d", "maskdcpt", tuple(
    [(f"{s} σ{n}", (f"{s.lower()}-sigma{n}",)) for s in ("CBSD68", "Kodak24", "McMaster", "Urban100") for n in (15, 25, 50)]
    + [("GoPro", ("gopro",))]
    + [(f"{s} JPEG50", (f"{s.lower()}-jpeg50",)) for s in ("CBSD68", "Kodak24", "McMaster", "Urban100")]
    + [("SOTS", ("sots-outdoor",))]
    + [(s, (s.lower(),)) for s in ("Rain100L", "Rain100H", "Test100", "Test1200", "Test2800")]
    + [(f"Snow100K-{s}", (f"snow100k-{s.lower()}",)) for s in ("S", "M", "L")]
    + [("LOL-v1", ("lol-v1",)), ("LOL-v2 syn", ("lol-v2-synthetic",)), ("LOL-v2 real", ("lol-v2-real",))]
), description="MaskDCPT 12D: the columns whose data layouts anyrestore knows (SIDD, HIDE, REDS, RealBlur, DPDD, "
               "RealDOF, SynRain, RealRain, CSD, LSRW, moiré, RainDrop and mosaic are not included)"))
_proto(EvalProtocol("unirestorer-7task", "restormer", (
    ("Rain100L", ("rain100l",)), ("SOTS", ("sots-outdoor",)), ("CBSD68", ("cbsd68-sigma15", "cbsd68-sigma25", "cbsd68-sigma50")),
    ("GoPro", ("gopro",)), ("LOL", ("lol-v1",)), ("Snow100K-L", ("snow100k-l",)),
    ("LIVE1", ("live1-q10", "live1-q20", "live1-q30", "live1-q40")),
), y_channel=frozenset({"rain100l"}), noise_rule="unclipped", description="UniRestorer Table 1 (restormer metrics, Y for rain)"))


# ----------------------------------------------------------------------------------------------- resolving


@dataclass
class ResolvedBenchmark:
    benchmark: Benchmark
    layout: Layout
    items: list[tuple[str, Path | None, Path]]  # (name, lq or None, gt)
    warnings: list[str] = field(default_factory=list)


def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise ConfigError(f"unknown benchmark {name!r}; known: {', '.join(sorted(BENCHMARKS))}")
    return BENCHMARKS[name]


def get_protocol(name: str) -> EvalProtocol:
    if name not in PROTOCOLS:
        raise ConfigError(f"unknown evaluation protocol {name!r}; known: {', '.join(sorted(PROTOCOLS))}")
    return PROTOCOLS[name]


def _expand(root: Path, pattern: str) -> list[Path]:
    parts = pattern.split("/")
    if "*" not in parts:
        return [root / pattern]
    star = parts.index("*")
    base = root.joinpath(*parts[:star])
    if not base.is_dir():
        return []
    return [d.joinpath(*parts[star + 1 :]) for d in sorted(base.iterdir()) if d.is_dir()]


def _try_layout(root: Path, layout: Layout) -> list[tuple[str, Path | None, Path]] | None:
    if layout.lq is None:
        gt_dir = root / layout.gt
        if not gt_dir.is_dir():
            return None
        return [(p.relative_to(gt_dir).with_suffix("").as_posix(), None, p) for p in list_images(gt_dir, recursive=layout.recursive)]
    lq_dirs, gt_dirs = _expand(root, layout.lq), _expand(root, layout.gt)
    if not lq_dirs or not all(d.is_dir() for d in lq_dirs) or not all(d.is_dir() for d in gt_dirs):
        return None
    items = []
    for lq_dir, gt_dir in zip(lq_dirs, gt_dirs):
        scene = lq_dir.parent.name + "/" if "*" in layout.lq else ""
        for lq, gt in pair_folders(lq_dir, gt_dir, rule=layout.pairing, gt_suffix=layout.gt_suffix, recursive=layout.recursive):
            items.append((scene + lq.stem, lq, gt))
    return items


def resolve_benchmark(name: str, root: str | Path) -> ResolvedBenchmark:
    """Find ``name``'s files under ``root`` (first matching layout).

    Raises:
        DatasetLayoutError: no layout matches (message lists the folders tried) or files do not pair.
    """
    bench = get_benchmark(name)
    root = Path(root)
    for layout in bench.layouts:
        items = _try_layout(root, layout)
        if items is None:
            continue
        if not items:
            raise DatasetLayoutError(f"benchmark {name}: no images in {root / (layout.lq or layout.gt)}")
        notes = []
        if bench.expected is not None and len(items) != bench.expected:
            notes.append(f"{name}: found {len(items)} images, expected {bench.expected}")
            warnings.warn(notes[-1], stacklevel=2)
        return ResolvedBenchmark(bench, layout, items, notes)
    tried = " or ".join(f"{l.lq}+{l.gt}" if l.lq else l.gt for l in bench.layouts)
    raise DatasetLayoutError(f"benchmark {name}: not found under {root} (looked for {tried})")


def check_protocol(protocol: str, root: str | Path) -> tuple[dict[str, ResolvedBenchmark], list[str]]:
    """Resolve every benchmark of ``protocol``; returns the found ones and one message per missing one."""
    found, missing = {}, []
    for name in get_protocol(protocol).benchmarks:
        try:
            found[name] = resolve_benchmark(name, root)
        except DatasetLayoutError as exc:
            missing.append(str(exc))
    return found, missing


# ----------------------------------------------------------------------------------------------- samples


def image_seed(protocol: str, benchmark: str, name: str, param: Any) -> int:
    """Per-image seed of synthesised test degradations: ``crc32(f"{protocol}/{benchmark}/{name}/{param}")``."""
    return zlib.crc32(f"{protocol}/{benchmark}/{name}/{param}".encode("utf-8"))


def _center_crop(img: torch.Tensor, size: int) -> torch.Tensor:
    _, h, w = img.shape
    if h < size or w < size:
        return img
    top, left = (h - size) // 2, (w - size) // 2
    return img[:, top : top + size, left : left + size]


def _crop_multiple(img: torch.Tensor, multiple: int) -> torch.Tensor:
    _, h, w = img.shape
    nh, nw = h - h % multiple, w - w % multiple
    top, left = (h - nh) // 2, (w - nw) // 2
    return img[:, top : top + nh, left : left + nw]


def synthesize(gt: torch.Tensor, synth: tuple[str, float], *, seed: int, noise_rule: str = "clip") -> torch.Tensor:
    """The LQ of a clean-only benchmark image (3,H,W): noise σ (0–255 scale), JPEG quality, or blur σ (15×15)."""
    from anyrestore.degradations.blur import gaussian_blur
    from anyrestore.degradations.jpeg import jpeg
    from anyrestore.degradations.noise import gaussian_noise

    kind, value = synth
    x = gt[None]
    if kind == "noise":
        gen = torch.Generator().manual_seed(seed)
        quantize = "truncate" if noise_rule == "truncate" else "none"
        return gaussian_noise(x, sigma=float(value), generator=gen, quantize=quantize, clip=noise_rule != "unclipped")[0]
    if kind == "jpeg":
        return jpeg(x, quality=int(value))[0]
    if kind == "blur":
        return gaussian_blur(x, sigma=float(value), kernel_size=15)[0]
    raise ValueError(f"unknown synthesis {kind!r}")


def iter_samples(resolved: ResolvedBenchmark, protocol: EvalProtocol,
                 loader: Callable[[Path], torch.Tensor] = read_image) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
    """``(name, lq, gt)`` (3,H,W) [0,1] of a resolved benchmark under ``protocol``'s rules, in sorted order."""
    bench = resolved.benchmark
    for name, lq_path, gt_path in resolved.items:
        gt = loader(gt_path)
        if bench.center_crop:
            gt = _center_crop(gt, bench.center_crop)
        if lq_path is None:
            param = bench.synth[1] if bench.synth else None
            lq = synthesize(gt, bench.synth, seed=image_seed(protocol.name, bench.name, name, param),
                            noise_rule=protocol.noise_rule)
        else:
            lq = loader(lq_path)
            h, w = lq.shape[-2:]
            gt = gt[:, :h, :w]  # SOTS GT is larger than its hazy image: top-left crop (ram.md §7.1)
            lq = lq[:, : gt.shape[1], : gt.shape[2]]
        if protocol.crop_multiple:
            lq, gt = _crop_multiple(lq, protocol.crop_multiple), _crop_multiple(gt, protocol.crop_multiple)
        yield name, lq, gt
