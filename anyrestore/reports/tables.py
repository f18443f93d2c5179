"""Evaluation results -> paper-style tables.

Input is the dict returned by :func:`anyrestore.engine.evaluate.run_protocol` (one per model). The markdown table
has one row per model and one ``PSNR/SSIM`` cell per protocol column plus the average, with 2 decimals for PSNR
and 4 for SSIM (conventions.md §2.5); the CSV has one row per (model, benchmark); the JSON keeps everything,
per-image records included.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Sequence


def _cell(psnr: float, ssim: float) -> str:
    if math.isnan(psnr):
        return "–"
    return f"{psnr:.2f}/{ssim:.4f}"


def markdown_table(results: Sequence[dict[str, Any]]) -> str:
    """A markdown table: rows = models, columns = the protocol's task columns + Avg."""
    if not results:
        return ""
    columns = list(results[0]["columns"])
    head = "| model | " + " | ".join(columns) + " | Avg |"
    rule = "|---|" + "---|" * (len(columns) + 1)
    rows = [head, rule]
    for res in results:
        cells = []
        for column in columns:
            c = res["columns"].get(column)
            if c is None or math.isnan(c["psnr"]):
                cells.append("–")
            else:
                cells.append(_cell(c["psnr"], c["ssim"]) + ("" if c.get("complete", True) else "*"))
        avg = res["average"]
        partial = "*" if avg.get("columns", 0) < avg.get("of", 0) and not math.isnan(avg["psnr"]) else ""
        rows.append(f"| {res.get('model') or '-'} | " + " | ".join(cells) + f" | {_cell(avg['psnr'], avg['ssim'])}{partial} |")
    rec = results[0]["record"]
    notes = (f"\nprotocol {results[0]['protocol']}: metric {rec['protocol']}, crop {rec['crop_border']}, "
             f"{rec['channel']}{' (Y: ' + ', '.join(rec['y_channel']) + ')' if rec.get('y_channel') else ''}, "
             f"quantize {rec['quantize']}, SSIM {rec['ssim_variant']}")
    counts = ", ".join(f"{name} {b['count']}" for name, b in results[0]["benchmarks"].items())
    notes += f"; images: {counts}"
    if any(r["missing"] for r in results):
        notes += f"; missing: {len(results[0]['missing'])} benchmark(s)"
    if any(not c.get("complete", True) for r in results for c in r["columns"].values()):
        notes += "; * = computed on part of its benchmarks / columns, – = no data"
    return "\n".join(rows) + "\n" + notes + "\n"


def csv_text(results: Sequence[dict[str, Any]]) -> str:
    """One row per (model, benchmark) with PSNR, SSIM, image count and the metric protocol fields."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["model", "protocol", "benchmark", "psnr", "ssim", "count", "metric", "crop_border", "channel", "quantize"])
    for res in results:
        rec = res["record"]
        for name, bench in res["benchmarks"].items():
            writer.writerow([res.get("model", ""), res["protocol"], name, f"{bench['psnr']:.4f}", f"{bench['ssim']:.6f}",
                             bench["count"], rec["protocol"], rec["crop_border"], bench["channel"], rec["quantize"]])
        avg = res["average"]
        writer.writerow([res.get("model", ""), res["protocol"], "average", f"{avg['psnr']:.4f}", f"{avg['ssim']:.6f}", "",
                         rec["protocol"], rec["crop_border"], "", rec["quantize"]])
    return buffer.getvalue()


def _atomic_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_reports(results: Sequence[dict[str, Any]], out_dir: str | os.PathLike, stem: str) -> dict[str, Path]:
    """Write ``<stem>.md``, ``<stem>.csv`` and ``<stem>.json`` under ``out_dir``; returns the paths."""
    out = Path(out_dir)
    paths = {"markdown": out / f"{stem}.md", "csv": out / f"{stem}.csv", "json": out / f"{stem}.json"}
    _atomic_text(paths["markdown"], markdown_table(results))
    _atomic_text(paths["csv"], csv_text(results))
    _atomic_text(paths["json"], json.dumps(_finite(list(results)), indent=1, default=_json_default))
    return paths


def _finite(value: Any) -> Any:
    """NaN -> null and ±inf -> "inf"/"-inf", so the JSON is strict (identical images give PSNR inf)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)
