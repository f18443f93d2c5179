"""The performance suite of issue #8: one table per machine, written as markdown + JSON.

    python -m benchmarks.run                        # quick (default): 5 presets at 256², 1 repeat, small extras
    python -m benchmarks.run --full                 # 256², 512², 1024² (tiled on CPU), 3 repeats, 1 + 2 MP tiling
    python -m benchmarks.run --device cuda --full   # GPU: adds fp16/bf16 autocast rows and the PSNR check
    python -m benchmarks.run --presets restormer,swinir-denoise --sizes 512 --repeat 5 --threads 2
    python -m benchmarks.run --only tiling --tiling-mp 12   # the real 12 MP PromptIR run (30+ min on 2 CPU cores)
    python -m benchmarks.run --merge a.json b.json --name suite-cpu-2core-2026-11-22   # one table from part runs

Backbones: for each preset and size, our model (the Predictor's default fast paths for the device, plus
``--channels-last``/``--compile`` if given),
our model with the plain official formulas, and the independent reference implementation (spandrel /
spandrel_extra_arches, where one computes the same function) are built with the **same random weights in this
process**, run once each as warm-up (those outputs give max |Δ|), then timed round-robin ``--repeat`` times in a
rotating order so that a background load hits all of them alike; time = median. Speed-up = reference time / our
time (> 1: ours is faster). Peak memory: CUDA from ``torch.cuda.max_memory_allocated`` around one forward; CPU from
one forward in a fresh subprocess (rise of the resident set, weights excluded). Sizes above ``--max-whole`` pixels
run tiled (``--tile``, ``--overlap``, feather blend) for every implementation alike.

Extras: training step time (forward + loss + backward + Adam), MAC layer-analysis time per image (RAM stage 2,
``--mac-steps`` path steps, each one forward + backward; extrapolated linearly to the paper's 200 steps), and tiled
restore of a large image with PromptIR through the Predictor (peak RSS and megapixels/s, each size in its own
subprocess via ``benchmarks/tiling_memory.py``). On CUDA (or with ``--amp``) our model also runs under fp16/bf16
autocast: throughput vs the fp32 reference and the PSNR drop vs fp32 on the shipped photo.

Weights are random (speed does not depend on them) except in the PSNR check, which adds the bundled default model:
the preset's own initialisation plus N(0, 0.02²) noise on every parameter, so that zero-initialised layers (NAFNet's
β/γ, for one) take part in the output and in max |Δ|.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import json
import math
import os
import functools
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python benchmarks/run.py` puts benchmarks/ itself on the path, not the repo
    sys.path.insert(0, str(REPO))

from benchmarks.backbones import peak_rss_mb, reference_model, rss_mb  # noqa: E402
from benchmarks.suite_report import busy_note, merge_results, render_markdown, target_lines  # noqa: E402

from anyrestore.errors import AnyRestoreError, ConfigError  # noqa: E402

DEFAULT_PRESETS = ("nafnet-w64", "restormer", "promptir", "swinir-ram", "retinexformer")
PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
EXTRAS = ("backbones", "training", "mac", "tiling", "amp-quality")
PAPER_MAC_STEPS = 200


@dataclass(frozen=True)
class Settings:
    """What every measurement of one suite run shares (recorded in the JSON)."""

    device: str = "cpu"
    precision: str = "fp32"
    repeat: int = 1
    warmup: int = 1
    threads: int = 1
    plain: bool = True
    reference: bool = True
    memory: bool = True
    amp: tuple[str, ...] = ()
    channels_last: bool = False
    compile: bool = False
    tf32: bool = False  # CUDA: let fp32 convs/matmuls use TF32 (cuDNN's own default); off = strict fp32
    max_whole: int = 512 * 512
    tile: int = 512
    overlap: int = 32
    extras: tuple[str, ...] = EXTRAS
    train: dict = field(default_factory=lambda: {"preset": "nafnet-default", "batch": 4, "crop": 96, "steps": 2})
    mac: dict = field(default_factory=lambda: {"preset": "swinir-ram", "size": 64, "images": 1, "steps": 2})
    tiling: dict = field(default_factory=lambda: {"preset": "promptir", "megapixels": (0.1, 0.2), "tile": 256})
    quality_presets: tuple[str, ...] = ("nafnet-default",)


# -- machine ---------------------------------------------------------------------------------------------------
def machine_info(device: torch.device) -> dict:
    """CPU model, cores, torch threads and version, GPU name, load average and date of this run."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {"cpu": cpu, "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "os": platform.platform(),
            "device": str(device), "gpu": None, "gpu_memory_gb": None, "cuda": torch.version.cuda,
            "load_average_start": [round(v, 2) for v in os.getloadavg()],
            "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
            "reference_packages": _package_versions("spandrel", "spandrel_extra_arches")}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1))
    return info


def machine_kind(info: dict) -> str:
    """Short file-name tag: ``cpu-2core`` or ``cuda-<gpu name>``."""
    if info["gpu"]:
        name = re.sub(r"[^a-z0-9]+", "-", info["gpu"].lower()).strip("-")
        return f"cuda-{name.removeprefix('nvidia-')}"
    return f"cpu-{info['logical_cpus']}core"


def _package_versions(*names: str) -> dict:
    from importlib import metadata

    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


# -- backbones -------------------------------------------------------------------------------------------------
def build_impls(preset: str, size: int, s: Settings, only: str | None = None) -> tuple[dict, dict]:
    """The implementations compared in one cell, as ``{name: (module, autocast dtype or None)}``, plus facts.

    ``ours`` = our model with the fast paths the Predictor picks for the device and precision
    (:func:`~anyrestore.archs.fastpaths.set_device_fast_paths`: every path on CPU) and channels-last/compile if
    set; ``plain`` = the same weights with the plain official formulas; ``reference`` = the spandrel module loaded
    with the same state dict; ``ours_fp16``/``ours_bf16`` = ``ours`` (on CUDA with that precision's fast paths)
    under autocast. ``only`` builds just one of them (memory subprocesses).
    """
    from anyrestore.archs.fastpaths import optimize_model, set_device_fast_paths
    from anyrestore.archs.registry import model_meta

    device = torch.device(s.device)
    ours = bench_model(preset).eval()
    facts = {"params": sum(p.numel() for p in ours.parameters()), "pad_multiple": max(1, int(model_meta(ours).pad_multiple))}
    tile = tile_for(size, s, facts["pad_multiple"])
    base = PRECISIONS[s.precision]
    found: dict[str, tuple[nn.Module, torch.dtype | None]] = {}
    if s.reference and only in (None, "reference"):
        ref = reference_model(ours, tile or size)
        if ref is not None:
            found["reference"] = (ref.eval().to(device), base)
    if s.plain and only in (None, "plain"):
        found["plain"] = (optimize_model(copy.deepcopy(ours), fast=False).to(device), base)
    impls: dict[str, tuple[nn.Module, torch.dtype | None]] = {}
    if only is None or only.startswith("ours"):
        def ours_for(precision: str) -> nn.Module:  # the fast paths the Predictor picks for this device and precision
            model = set_device_fast_paths(copy.deepcopy(ours), device, precision).to(device)
            return optimize_model(model, fast=None, channels_last=s.channels_last, compile=s.compile)

        fast = ours_for(s.precision)
        impls["ours"] = (fast, base)
        for name in s.amp:  # on CUDA the choice depends on the precision (fused LayerNorm only under bf16)
            impls[f"ours_{name}"] = (ours_for(name) if device.type == "cuda" else fast, PRECISIONS[name])
    impls.update(found)
    if only is not None:
        impls = {k: v for k, v in impls.items() if k == only}
    return impls, facts


def bench_model(preset: str) -> nn.Module:
    """``preset`` with its default initialisation plus seeded N(0, 0.02²) noise on every parameter (the same in
    every process)."""
    from anyrestore.archs import build_model

    torch.manual_seed(0)  # build_model initialises from the global generator
    model = build_model(preset)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.is_floating_point():
                p.add_(0.02 * torch.randn(p.shape, generator=gen))
    return model


def tile_for(size: int, s: Settings, multiple: int) -> int | None:
    """Tile size for a ``size``² input (None = whole image), rounded down to the model's pad multiple."""
    if size * size <= s.max_whole:
        return None
    return max(multiple, s.tile // multiple * multiple)


def bench_input(size: int, multiple: int) -> torch.Tensor:
    """A fixed random (1, 3, size, size) image, reflect-padded to ``multiple``."""
    from anyrestore.inference.tiling import pad_to_multiple

    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    return pad_to_multiple(x, multiple)


def forward(module: nn.Module, x: torch.Tensor, dtype: torch.dtype | None, device: torch.device,
            tile: int | None, overlap: int) -> torch.Tensor:
    """One inference pass (whole or tiled), synchronised, output float32 on ``device``."""
    from anyrestore.inference.tiling import tiled_apply

    ctx = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    with torch.inference_mode(), ctx:
        if tile:
            out = tiled_apply(module, x, tile=tile, overlap=overlap, compute_device=device, accumulate_device=device)
        else:
            out = module(x.to(device)).float()  # no copy when x is already there
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out


def round_robin_medians(calls: dict[str, Callable[[], Any]], repeat: int,
                        first_results: dict[str, Any] | None = None) -> dict[str, float]:
    """Median seconds of each call over ``repeat`` rounds; the order rotates each round so that a background load
    hits all of them alike. Each call's first result is stored in ``first_results`` when one is given."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for r in range(repeat):
        for name in names[r % len(names):] + names[: r % len(names)]:
            start = time.perf_counter()
            result = calls[name]()
            times[name].append(time.perf_counter() - start)
            if first_results is not None and r == 0:
                first_results[name] = result
            del result
    return {name: statistics.median(t) for name, t in times.items()}


def bench_cell(preset: str, size: int, s: Settings) -> dict:
    """Time, compare and (on CUDA) measure memory of all implementations of ``preset`` at ``size``²."""
    device = torch.device(s.device)
    impls, facts = build_impls(preset, size, s)
    tile = tile_for(size, s, facts["pad_multiple"])
    x = bench_input(size, facts["pad_multiple"]).to(device)  # the host-to-device copy is not part of a forward
    outputs, peaks = {}, {}
    for name, (module, dtype) in impls.items():
        for i in range(s.warmup):
            if device.type == "cuda" and i == 0:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
                before = torch.cuda.memory_allocated(device)
            out = forward(module, x, dtype, device, tile, s.overlap)
            if i == 0:
                outputs[name] = out.cpu()
                if device.type == "cuda":
                    peaks[name] = (torch.cuda.max_memory_allocated(device) - before) / 2**20
            del out
    timed = {name: functools.partial(forward, module, x, dtype, device, tile, s.overlap)
             for name, (module, dtype) in impls.items()}
    # without a warm-up the outputs compared are those of the first timed round
    first = None if s.warmup else {}
    median = round_robin_medians(timed, s.repeat, first)
    if first is not None:
        outputs = {name: out.cpu() for name, out in first.items()}
    if device.type != "cuda" and s.memory:
        for name in ("ours", "reference"):
            if name in impls:
                peaks[name] = memory_subprocess(preset, size, name, s)
    return cell_row(preset, size, facts, tile, s, median, outputs, peaks)


def cell_row(preset: str, size: int, facts: dict, tile: int | None, s: Settings, median: dict, outputs: dict,
             peaks: dict) -> dict:
    """The flat JSON row of one cell (``None`` where an implementation is absent)."""

    def diff(a: str, b: str) -> float | None:
        if a not in outputs or b not in outputs:
            return None
        return float((outputs[a] - outputs[b]).abs().max())

    def ratio(slow: str, fast: str) -> float | None:
        return median[slow] / median[fast] if slow in median and fast in median else None

    ours = median["ours"]
    row = {"preset": preset, "params": facts["params"], "size": size,
           "run": f"tiled {tile}/{s.overlap}" if tile else "whole", "precision": s.precision,
           "ours_s": ours, "ours_mp_per_s": size * size / 1e6 / ours, "ours_peak_mb": peaks.get("ours"),
           "reference_s": median.get("reference"), "reference_peak_mb": peaks.get("reference"),
           "speedup_vs_reference": ratio("reference", "ours"), "max_abs_diff_vs_reference": diff("ours", "reference"),
           "plain_s": median.get("plain"), "speedup_vs_plain": ratio("plain", "ours"),
           "max_abs_diff_vs_plain": diff("ours", "plain"), "amp": {}}
    for name in s.amp:
        key = f"ours_{name}"
        row["amp"][name] = {"s": median[key], "mp_per_s": size * size / 1e6 / median[key],
                            "peak_mb": peaks.get(key),
                            "speedup_vs_reference_fp32": ratio("reference", key) if s.precision == "fp32" else None,
                            "speedup_vs_ours_fp32": ratio("ours", key) if s.precision == "fp32" else None,
                            "max_abs_diff_vs_ours_fp32": diff(key, "ours")}
    return row


def memory_subprocess(preset: str, size: int, impl: str, s: Settings) -> float | None:
    """Peak CPU memory (MiB above the loaded model) of one forward of ``impl``, measured in a fresh process."""
    cmd = [sys.executable, "-m", "benchmarks.run", "--child-memory", preset, str(size), impl,
           "--settings-json", json.dumps(asdict(s))]
    env = {**os.environ, "OMP_NUM_THREADS": str(s.threads),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    if proc.returncode != 0:
        print(f"  memory of {impl} failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak_mb"]


def child_memory(preset: str, size: int, impl: str, s: Settings) -> dict:
    """Body of the memory subprocess: build one implementation, run one forward, report the RSS rise."""
    device = torch.device(s.device)
    impls, facts = build_impls(preset, size, s, only=impl)
    module, dtype = impls[impl]
    x = bench_input(size, facts["pad_multiple"])
    tile = tile_for(size, s, facts["pad_multiple"])
    with _RssSampler() as sampler:
        forward(module, x, dtype, device, tile, s.overlap)
    return {"peak_mb": sampler.peak_mb}


class _RssSampler:
    """Peak RSS rise over a block: the high-water mark when the block raised it, else 1 ms samples of the RSS."""

    def __enter__(self) -> "_RssSampler":
        self.base = rss_mb()
        self.hwm_before = peak_rss_mb()
        self.sampled = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            self.sampled = max(self.sampled, rss_mb())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        hwm = peak_rss_mb()
        top = hwm if hwm > self.hwm_before else self.sampled
        self.peak_mb = max(top - self.base, 0.0)


# -- extras ----------------------------------------------------------------------------------------------------
def training_step(s: Settings) -> dict:
    """Seconds per training step of ``s.train['preset']`` (L1 objective, Adam) via ``benchmarks/training.py``."""
    from benchmarks.training import REPO as _repo, time_model

    from anyrestore.engine.config import load_config

    t = s.train
    cfg = load_config(str(_repo / "configs" / "tiny" / "smoke.yaml"),
                      [f"model.name={t['preset']}", f"data.batch_size={t['batch']}", f"data.crop={t['crop']}"])
    sec = time_model(cfg, t["steps"], device=s.device)
    return {**t, "objective": "l1", "optimizer": "adam", "s_per_step": sec, "samples_per_s": t["batch"] / sec}


def mac_timing(s: Settings) -> dict:
    """MAC layer analysis (``rank_layers``) on 64² crops of the shipped noisy photo: seconds per image."""
    from anyrestore.io import read_image
    from anyrestore.methods.ram.mac import MacSettings, rank_layers

    m = s.mac
    model = bench_model(m["preset"]).to(s.device)
    photo = read_image(REPO / "anyrestore" / "samples" / "chelsea_noise25.png")
    size = m["size"]
    ys = torch.linspace(0, photo.shape[1] - size, m["images"]).long().tolist()
    xs = torch.linspace(0, photo.shape[2] - size, m["images"]).long().tolist()
    crops = [photo[:, y:y + size, x:x + size] for y, x in zip(ys, xs)]
    rank_layers(model, crops[:1], settings=MacSettings(total_step=2, batch_size=1))  # warm-up: one-off costs
    start = time.perf_counter()
    analysis = rank_layers(model, crops, settings=MacSettings(total_step=m["steps"], batch_size=1))
    if s.device.startswith("cuda"):
        torch.cuda.synchronize()
    sec = time.perf_counter() - start
    per_step = sec / (m["images"] * m["steps"])
    return {**m, "layers": len(analysis.ranking.names), "s_per_image": sec / m["images"], "s_per_step": per_step,
            "est_s_per_image_at_200_steps": per_step * PAPER_MAC_STEPS}


def tiling_runs(s: Settings) -> list[dict]:
    """Tiled Predictor restore of ``megapixels``-sized images, each in a fresh ``tiling_memory.py`` worker."""
    t = s.tiling
    rows = []
    for mp in t["megapixels"]:
        cmd = [sys.executable, str(REPO / "benchmarks" / "tiling_memory.py"), "--worker", "--model", t["preset"],
               "--megapixels", str(mp), "--tile", str(t["tile"]), "--device", s.device, "--threads", str(s.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": str(s.threads)})
        if proc.returncode != 0:
            reason = "killed (out of memory?)" if proc.returncode < 0 else (proc.stderr.strip().splitlines() or ["?"])[-1]
            rows.append({"preset": t["preset"], "megapixels": mp, "tile": t["tile"], "error": reason})
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        w, h = (int(v) for v in r["size"].split("x"))
        rows.append({"preset": t["preset"], "megapixels": mp, "image": r["size"], "tile": t["tile"], "overlap": 32,
                     "seconds": r["seconds"], "mp_per_s": w * h / 1e6 / r["seconds"],
                     "peak_rss_gb": r["peak_rss_mib"] / 1024, "gpu_peak_gb": (r["gpu_peak_mib"] or 0) / 1024 or None,
                     "finite": r["finite"]})
    return rows


def rss_at(rows: list[dict], megapixels: float) -> dict | None:
    """Peak RSS at ``megapixels``: measured if that size ran, else a linear fit through the measured sizes."""
    ok = [r for r in rows if "error" not in r]
    for r in ok:
        if math.isclose(r["megapixels"], megapixels):
            return {"megapixels": megapixels, "peak_rss_gb": r["peak_rss_gb"], "how": "measured"}
    if len(ok) < 2:
        return None
    lo, hi = min(ok, key=lambda r: r["megapixels"]), max(ok, key=lambda r: r["megapixels"])
    slope = (hi["peak_rss_gb"] - lo["peak_rss_gb"]) / (hi["megapixels"] - lo["megapixels"])
    return {"megapixels": megapixels, "peak_rss_gb": hi["peak_rss_gb"] + slope * (megapixels - hi["megapixels"]),
            "gb_per_megapixel": slope, "how": f"linear extrapolation from {lo['megapixels']:g} and "
                                              f"{hi['megapixels']:g} MP"}


def amp_quality(s: Settings, presets: list[str]) -> list[dict]:
    """PSNR vs the clean photo of fp32 and each autocast precision on the shipped noisy photo (whole image)."""
    from anyrestore.api import load_model
    from anyrestore.inference import Predictor
    from anyrestore.io import read_image
    from anyrestore.metrics import psnr

    samples = REPO / "anyrestore" / "samples"
    noisy, clean = read_image(samples / "chelsea_noise25.png"), read_image(samples / "chelsea.png")
    rows = []
    for name in list(dict.fromkeys([*s.quality_presets, *presets])):
        trained = name in s.quality_presets
        model = load_model(name, device=s.device) if trained else bench_model(name)
        predictor = Predictor(model, device=s.device, tile=0, channels_last=s.channels_last)
        ref = predictor(noisy)
        base = psnr(ref, clean)
        for precision in s.amp:
            predictor.precision = precision
            out = predictor(noisy)
            value = psnr(out, clean)
            rows.append({"preset": name, "weights": "bundled" if trained else "random", "precision": precision,
                         "psnr_fp32": base, "psnr_amp": value, "psnr_drop": base - value,
                         "psnr_amp_vs_fp32_output": psnr(out, ref), "max_abs_diff": float((out - ref).abs().max())})
    return rows


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# -- command line ----------------------------------------------------------------------------------------------
def _csv(kind, text: str, what: str) -> tuple:
    try:
        values = tuple(kind(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{what} must be a comma-separated list of numbers, got {text!r}") from None
    if kind is not str and any(v <= 0 for v in values):
        raise ConfigError(f"{what} must be positive, got {text!r}")
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0],
                                epilog="Targets and conventions: see the module docstring (python -m pydoc benchmarks.run).")
    p.add_argument("--full", action="store_true",
                   help="bigger run: sizes 256,512,1024, 3 repeats, tiling at 1 and 2 MP, 10 MAC steps, 5 train steps")
    p.add_argument("--presets", default=",".join(DEFAULT_PRESETS), help="comma-separated presets (default: the five)")
    p.add_argument("--sizes", help="square input sizes (default 256; --full 256,512,1024)")
    p.add_argument("--repeat", type=int, help="timed forwards per implementation (default 1; --full 3)")
    p.add_argument("--warmup", type=int, default=1,
                   help="untimed forwards before timing (default 1; 0 only on CPU, for cells whose one forward takes "
                        "minutes, where one-time costs do not show)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--precision", choices=tuple(PRECISIONS), default="fp32",
                   help="precision of ours, plain and reference alike (default fp32)")
    p.add_argument("--amp", default=None,
                   help="extra autocast precisions for ours, e.g. fp16,bf16 (default: fp16,bf16 on CUDA, none on CPU)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's default)")
    p.add_argument("--channels-last", action="store_true", help="run ours in channels-last memory format")
    p.add_argument("--compile", action="store_true", help="run ours through torch.compile (compiles in the warm-up)")
    p.add_argument("--tf32", action="store_true",
                   help="CUDA: allow TF32 in fp32 convs and matmuls for every implementation (default off: strict "
                        "fp32, so max abs Δ stays meaningful; cuDNN itself defaults to TF32 for convs)")
    p.add_argument("--no-plain", action="store_true", help="skip the plain-formula column (saves time)")
    p.add_argument("--no-reference", action="store_true", help="skip the reference implementation")
    p.add_argument("--no-memory", action="store_true", help="skip CPU peak-memory subprocesses")
    p.add_argument("--max-whole", type=int, default=None,
                   help="largest input (pixels) run whole; larger ones are tiled (default 512² on CPU, 1024² on CUDA)")
    p.add_argument("--tile", type=int, default=512, help="tile size for tiled sizes (default 512)")
    p.add_argument("--overlap", type=int, default=32, help="tile overlap (default 32)")
    p.add_argument("--only", default=",".join(EXTRAS),
                   help=f"parts to run, comma-separated from {','.join(EXTRAS)} (default all; amp-quality needs --amp "
                        "or CUDA)")
    p.add_argument("--train-preset", default="nafnet-default")
    p.add_argument("--train-batch", type=int, default=4)
    p.add_argument("--train-crop", type=int, default=96)
    p.add_argument("--train-steps", type=int, help="timed training steps after one warm-up (default 2; --full 5)")
    p.add_argument("--mac-preset", default="swinir-ram")
    p.add_argument("--mac-size", type=int, default=64)
    p.add_argument("--mac-images", type=int, default=1)
    p.add_argument("--mac-steps", type=int, help="MAC path steps actually run (default 2; --full 10; paper 200)")
    p.add_argument("--tiling-preset", default="promptir")
    p.add_argument("--tiling-mp", help="image sizes in megapixels (default 0.1,0.2; --full 1,2; the target is 12)")
    p.add_argument("--tiling-tile", type=int, default=None, help="tile for the tiling runs (default 256 CPU, 512 GPU)")
    p.add_argument("--quality-presets", default="nafnet-default",
                   help="models with bundled weights added to the AMP PSNR check (default nafnet-default)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="folder for the .md and .json")
    p.add_argument("--name", default=None, help="file stem (default suite-<machine kind>-<date>[-quick])")
    p.add_argument("--note", action="append", default=[], metavar="TEXT",
                   help="a remark to print with the results (repeatable), e.g. what else ran on the machine")
    p.add_argument("--merge", nargs="+", metavar="JSON",
                   help="combine the JSON results of earlier part runs (same machine) into one table; runs nothing")
    p.add_argument("--child-memory", nargs=3, metavar=("PRESET", "SIZE", "IMPL"), help=argparse.SUPPRESS)
    p.add_argument("--settings-json", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> Settings:
    from anyrestore.inference.predictor import select_device

    device = select_device(args.device)
    cuda = device.type == "cuda"
    full = args.full
    extras = _csv(str, args.only, "--only")
    unknown = sorted(set(extras) - set(EXTRAS))
    if unknown:
        raise ConfigError(f"unknown part(s) {', '.join(unknown)} in --only; choose from {', '.join(EXTRAS)}")
    amp = _csv(str, args.amp, "--amp") if args.amp is not None else (("fp16", "bf16") if cuda else ())
    bad = sorted(set(amp) - {"fp16", "bf16"})
    if bad:
        raise ConfigError(f"--amp takes fp16 and/or bf16, got {', '.join(bad)}")
    for name in ("tile", "train_batch", "train_crop", "mac_size", "mac_images"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.warmup < (1 if cuda else 0):
        # CUDA's first forward pays for kernel selection and allocation, and its peak memory is read in the warm-up
        raise ConfigError(f"--warmup must be >= {1 if cuda else 0} on {device.type.upper()}, got {args.warmup}")
    if args.overlap < 0 or 2 * args.overlap > args.tile:
        raise ConfigError(f"--overlap must be between 0 and half the tile ({args.tile // 2}), got {args.overlap}")
    threads = args.threads or torch.get_num_threads()
    return Settings(
        device=str(device), precision=args.precision, repeat=_positive(args.repeat, 3 if full else 1, "--repeat"),
        warmup=args.warmup, threads=threads, plain=not args.no_plain, reference=not args.no_reference,
        memory=not args.no_memory, amp=amp, channels_last=args.channels_last, compile=args.compile,
        tf32=args.tf32, max_whole=args.max_whole or (1024 * 1024 if cuda else 512 * 512), tile=args.tile,
        overlap=args.overlap,
        extras=extras,
        train={"preset": args.train_preset, "batch": args.train_batch, "crop": args.train_crop,
               "steps": _positive(args.train_steps, 5 if full else 2, "--train-steps")},
        mac={"preset": args.mac_preset, "size": args.mac_size, "images": args.mac_images,
             "steps": _positive(args.mac_steps, 10 if full else 2, "--mac-steps")},
        tiling={"preset": args.tiling_preset,
                "megapixels": _csv(float, args.tiling_mp, "--tiling-mp") if args.tiling_mp else
                ((1.0, 2.0) if full else (0.1, 0.2)),
                "tile": args.tiling_tile or (512 if cuda else 256)},
        quality_presets=_csv(str, args.quality_presets, "--quality-presets"))


def _positive(value: int | None, default: int, flag: str) -> int:
    if value is None:
        return default
    if value < 1:
        raise ConfigError(f"{flag} must be >= 1, got {value}")
    return value


def run_suite(args: argparse.Namespace, s: Settings, argv: list[str]) -> dict:
    """Run every requested part, printing rows as they finish; returns the JSON-ready result."""
    from anyrestore.archs.registry import get_preset

    presets = list(_csv(str, args.presets, "--presets"))
    for name in (*presets, s.train["preset"], s.mac["preset"], s.tiling["preset"]):
        get_preset(name)  # unknown names fail now, with close matches, not after an hour
    sizes = _csv(int, args.sizes, "--sizes") if args.sizes else ((256, 512, 1024) if args.full else (256,))
    torch.set_num_threads(s.threads)
    device = torch.device(s.device)
    if device.type == "cuda":
        torch.backends.cudnn.allow_tf32 = s.tf32
        torch.backends.cuda.matmul.allow_tf32 = s.tf32
    result = {"kind": None, "command": "python -m benchmarks.run " + " ".join(argv), "machine": machine_info(device),
              "settings": asdict(s), "notes": [], "backbones": [], "amp_quality": [], "training": None, "mac": None,
              "tiling": [], "tiling_12mp": None}
    result["kind"] = machine_kind(result["machine"])
    load = os.getloadavg()[0]
    if load > 0.75 * (os.cpu_count() or 1) and device.type == "cpu":
        result["notes"].append(busy_note(load, load, os.cpu_count() or 1))
    if s.compile and device.type == "cpu":
        result["notes"].append("torch.compile ran on CPU: compilation time is excluded (warm-up).")
    start = time.perf_counter()
    if "backbones" in s.extras:
        for preset in presets:
            for size in sizes:
                print(f"backbone {preset} {size}² ...", flush=True)
                try:
                    row = bench_cell(preset, size, s)
                except (RuntimeError, AnyRestoreError) as exc:  # e.g. CUDA out of memory: keep the other cells
                    row = {"preset": preset, "size": size, "error": str(exc).strip().splitlines()[0][:200]}
                result["backbones"].append(row)
                print("  " + json.dumps({k: v for k, v in row.items() if k != "amp"}, default=str), flush=True)
    if "amp-quality" in s.extras and s.amp:
        print("AMP quality ...", flush=True)
        result["amp_quality"] = amp_quality(s, presets)
    if "training" in s.extras:
        print(f"training step {s.train} ...", flush=True)
        result["training"] = training_step(s)
    if "mac" in s.extras:
        print(f"MAC {s.mac} ...", flush=True)
        result["mac"] = mac_timing(s)
    if "tiling" in s.extras:
        print(f"tiling {s.tiling} ...", flush=True)
        result["tiling"] = tiling_runs(s)
        result["tiling_12mp"] = rss_at(result["tiling"], 12.0)
        if result["tiling_12mp"] and result["tiling_12mp"]["how"] != "measured":
            result["notes"].append("The 12 MP tiling figure is extrapolated from the smaller images measured here; "
                                   "run `--only tiling --tiling-mp 12` for the real one (30+ minutes on 2 CPU cores).")
    result["wall_s"] = time.perf_counter() - start
    result["machine"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    result["targets"] = target_lines(result)
    return result


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    try:
        if args.child_memory:
            preset, size, impl = args.child_memory
            raw = json.loads(args.settings_json)
            s = replace(Settings(), **{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
            torch.set_num_threads(s.threads)
            print(json.dumps(child_memory(preset, int(size), impl, s)))
            return 0
        if args.merge:
            if not args.name:
                raise ConfigError("--merge needs --name for the combined files")
            result = merge_results(args.merge)
        else:
            result = run_suite(args, settings_from_args(args), argv)
        result["notes"] += args.note
    except AnyRestoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = args.name or f"suite-{result['kind']}-{result['machine']['date_utc'][:10]}{'' if args.full else '-quick'}"
    markdown = render_markdown(result)
    write_atomic(out / f"{stem}.json", json.dumps(result, indent=1) + "\n")
    write_atomic(out / f"{stem}.md", markdown + "\n")
    print()
    print(markdown)
    print(f"written: {out / stem}.md and .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
