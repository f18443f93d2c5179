"""Evaluation shared by ``anyrestore train`` (periodic validation) and ``anyrestore test`` (protocols).

Images go through :func:`restore_tensor` — normalise with the model metadata, reflect-pad to its
``pad_multiple``, forward, crop, de-normalise, clamp — and are scored with :mod:`anyrestore.metrics` under a named
protocol. Per-image records and per-benchmark summaries carry the protocol fields (conventions.md §2.5).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from anyrestore.archs.registry import model_meta


@torch.no_grad()
def restore_tensor(model: nn.Module, lq: torch.Tensor) -> torch.Tensor:
    """[0,1] (B,3,H,W) -> restored [0,1] (B,3,H,W): whole-image forward with the model's padding/normalisation."""
    meta = model_meta(model)
    h, w = lq.shape[-2:]
    m = max(int(meta.pad_multiple), 1)
    ph, pw = (-h) % m, (-w) % m
    x = meta.normalize(lq)
    if ph or pw:
        rh, rw = min(ph, h - 1), min(pw, w - 1)
        if rh or rw:
            x = F.pad(x, (0, rw, 0, rh), mode="reflect")
        if ph > rh or pw > rw:
            x = F.pad(x, (0, pw - rw, 0, ph - rh), mode="replicate")
    y = model(x)[..., :h, :w]
    return meta.denormalize(y).clamp(0, 1)


def score_pairs(pairs: Iterable[tuple[str, torch.Tensor, torch.Tensor]], *, protocol: str, crop_border: int | None = None,
                y: bool = False) -> list[dict[str, Any]]:
    """Per-image PSNR/SSIM records for ``(name, restored, gt)`` (each (3,H,W) [0,1])."""
    from anyrestore.metrics import psnr, ssim

    records = []
    for name, pred, gt in pairs:
        pred_np = pred.detach().float().cpu().permute(1, 2, 0).numpy()
        gt_np = gt.detach().float().cpu().permute(1, 2, 0).numpy()
        records.append({
            "name": name,
            "psnr": float(psnr(pred_np, gt_np, protocol=protocol, crop_border=crop_border, y=y)),
            "ssim": float(ssim(pred_np, gt_np, protocol=protocol, crop_border=crop_border, y=y)),
        })
    return records


def summarize(records: list[dict[str, Any]]) -> dict[str, float]:
    """Mean PSNR/SSIM over records (infinite PSNR excluded, as :func:`anyrestore.metrics.dataset_mean`)."""
    from anyrestore.metrics import dataset_mean

    if not records:
        return {"psnr": math.nan, "ssim": math.nan, "count": 0}
    return {"psnr": dataset_mean([r["psnr"] for r in records]), "ssim": float(sum(r["ssim"] for r in records) / len(records)),
            "count": len(records)}


def validate(model: nn.Module, config: Any, *, device: torch.device) -> dict[str, float]:
    """Validation of a training run: the recipe's fixed ``val.streams`` set, or a named protocol."""
    val = config.val
    model.eval()
    if val.protocol is not None:
        result = run_protocol(model, val.protocol, root=val.root or config.data_root, device=device, progress=False)
        return {"psnr": result["average"]["psnr"], "ssim": result["average"]["ssim"]}
    from anyrestore.data.sampling import sample_generator
    from anyrestore.engine.builders import build_stream

    streams = [build_stream(s, data_root=config.data_root, crop=val.crop, augment="none", index=i)
               for i, s in enumerate(val.streams)]
    pairs = []
    for i in range(val.count):
        gen = sample_generator("val", config.seed, i)
        stream = streams[i % len(streams)]
        sample = stream.sample(int(torch.randint(len(stream), (1,), generator=gen)), gen)
        out = restore_tensor(model, sample["lq"][None].to(device))[0]
        pairs.append((f"{stream.name}_{i}", out, sample["gt"]))
    return summarize(score_pairs(pairs, protocol=val.metric))


def run_protocol(model: nn.Module, protocol: str, *, root: str | Path, device: torch.device | str = "cpu",
                 benchmarks: list[str] | None = None, skip_missing: bool = False, save_dir: str | Path | None = None,
                 limit: int | None = None, progress: bool = True, model_name: str = "") -> dict[str, Any]:
    """Evaluate ``model`` on an evaluation protocol (:mod:`anyrestore.data.benchmarks`).

    Args:
        protocol: protocol name (``ram-7task``, ``promptir-3task``...).
        root: data root holding the benchmark folders.
        benchmarks: restrict to these benchmarks of the protocol.
        skip_missing: evaluate what is present instead of failing when a benchmark's folders are missing.
        save_dir: write before/after/GT grids per image there.
        limit: evaluate at most this many images per benchmark (smoke runs; recorded).

    Returns:
        A JSON-able dict: per-benchmark means and per-image records, column scores (mean of their benchmarks'
        means), the overall average over columns, the metric record fields and what was missing.

    Raises:
        DatasetLayoutError: benchmarks are missing (all are listed) and ``skip_missing`` is false.
    """
    from anyrestore.data.benchmarks import check_protocol, get_protocol, iter_samples
    from anyrestore.data.datasets import DatasetLayoutError
    from anyrestore.metrics import get_protocol as get_metric

    proto = get_protocol(protocol)
    metric = get_metric(proto.metric)
    crop_border = proto.crop_border if proto.crop_border is not None else metric.crop_border
    found, missing = check_protocol(protocol, root)
    wanted = benchmarks or proto.benchmarks
    unknown = [b for b in wanted if b not in proto.benchmarks]
    if unknown:
        raise DatasetLayoutError(f"benchmarks {unknown} are not part of protocol {protocol}")
    missing = [m for m in missing if any(m.startswith(f"benchmark {b}:") for b in wanted)]
    if missing and not skip_missing:
        raise DatasetLayoutError(f"{len(missing)} benchmark(s) of {protocol} missing under {root}: " + "; ".join(missing))
    device = torch.device(device)
    model = model.to(device).eval()
    per_bench: dict[str, Any] = {}
    for name in wanted:
        if name not in found:
            continue
        resolved = found[name]
        y = name in proto.y_channel
        pairs, count = [], 0
        samples = iter_samples(resolved, proto)
        if progress:
            from tqdm import tqdm

            samples = tqdm(samples, total=min(len(resolved.items), limit or len(resolved.items)), desc=name, leave=False)
        for img_name, lq, gt in samples:
            if limit is not None and count >= limit:
                break
            out = restore_tensor(model, lq[None].to(device))[0].cpu()
            pairs.append((img_name, out, gt))
            if save_dir is not None:
                from anyrestore.reports.grids import save_grid

                save_grid(Path(save_dir) / name / f"{img_name.replace('/', '_')}.png", [lq, out, gt])
            count += 1
        records = score_pairs(pairs, protocol=proto.metric, crop_border=crop_border, y=y)
        per_bench[name] = {**summarize(records), "layout": resolved.layout.lq or resolved.layout.gt,
                           "warnings": resolved.warnings, "channel": "y" if y else "rgb", "images": records}
    columns = {}
    for column, names in proto.groups:
        present = [per_bench[n] for n in names if n in per_bench]
        columns[column] = {"psnr": math.nan, "ssim": math.nan, "complete": False}
        if present:
            columns[column] = {"psnr": sum(b["psnr"] for b in present) / len(present),
                               "ssim": sum(b["ssim"] for b in present) / len(present),
                               "complete": len(present) == len(names)}
    scored = [c for c in columns.values() if not math.isnan(c["psnr"])]
    average = {"psnr": math.nan, "ssim": math.nan, "columns": len(scored), "of": len(columns)}
    if scored:
        average.update(psnr=sum(c["psnr"] for c in scored) / len(scored), ssim=sum(c["ssim"] for c in scored) / len(scored))
    import anyrestore

    return {
        "protocol": protocol, "model": model_name, "root": str(root),
        "record": {**metric.record(crop_border=crop_border, y=False), "y_channel": sorted(proto.y_channel),
                   "noise_rule": proto.noise_rule, "crop_multiple": proto.crop_multiple, "pad": "reflect",
                   "tiled": None, "self_ensemble": False, "seed_rule": "crc32(protocol/benchmark/name/param)",
                   "limit": limit, "anyrestore_version": anyrestore.__version__},
        "benchmarks": per_bench, "columns": columns, "average": average, "missing": missing,
    }
