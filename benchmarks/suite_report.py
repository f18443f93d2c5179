"""Markdown rendering, target verdicts and merging of ``benchmarks/run.py`` results (plain dicts, JSON-ready)."""
from __future__ import annotations

import json
import re
from pathlib import Path

from anyrestore.errors import ConfigError

TILING_TARGET_GB = 4.0


BUSY = "The CPU was busy"


def busy_note(low: float, high: float, cpus: int) -> str:
    """The warning printed when the load average at the start exceeded the CPU count (``low``-``high`` if merged)."""
    load = f"{low:.1f}" if low == high else f"{low:.1f}-{high:.1f}"
    return (f"{BUSY} (load average {load} on {cpus} CPUs): absolute times are inflated; ratios between "
            "implementations timed round-robin in one process are the reliable figures.")


def _f(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


BACKBONE_COLUMNS = (
    ("preset", "preset", "s"), ("params", "params (M)", None), ("size", "size", None), ("run", "run", "s"),
    ("ours_s", "ours s", ".3f"), ("ours_mp_per_s", "ours MP/s", ".3f"), ("ours_peak_mb", "ours peak MB", ".0f"),
    ("reference_s", "ref s", ".3f"), ("reference_peak_mb", "ref peak MB", ".0f"),
    ("speedup_vs_reference", "speed-up vs ref", ".2f"), ("max_abs_diff_vs_reference", "max abs Δ vs ref", ".1e"),
    ("plain_s", "plain s", ".3f"), ("speedup_vs_plain", "speed-up vs plain", ".2f"),
    ("max_abs_diff_vs_plain", "max abs Δ vs plain", ".1e"),
)


def backbone_cell(row: dict, key: str, fmt: str | None) -> str:
    if key == "params":
        return f"{row['params'] / 1e6:.1f}"
    if key == "size":
        return f"{row['size']}²"
    return _f(row.get(key), fmt)


def render_markdown(result: dict) -> str:
    """The whole result as one markdown document."""
    m, s = result["machine"], result["settings"]
    gpu = f"{m['gpu']} ({m['gpu_memory_gb']} GB, CUDA {m['cuda']})" if m["gpu"] else "none used"
    lines = [f"# anyrestore performance suite — {result['kind']}, {m['date_utc']} UTC", "",
             f"- command: `{result['command']}`",
             f"- CPU: {m['cpu']}, {m['logical_cpus']} logical CPUs, torch threads {m['torch_threads']}; GPU: {gpu}",
             f"- torch {m['torch']}, Python {m['python']}, {m['os']}; reference packages: "
             + ", ".join(f"{k} {v or 'not installed'}" for k, v in m["reference_packages"].items()),
             f"- load average at start {m['load_average_start']}, at end {m.get('load_average_end')}; "
             f"suite wall time {result['wall_s'] / 60:.1f} min",
             f"- device {s['device']}, precision {s['precision']}, channels-last {s['channels_last']}, "
             f"compile {s['compile']}{', TF32 ' + str(s.get('tf32', False)) if s['device'].startswith('cuda') else ''}; median of {s['repeat']} timed forward(s) after {s['warmup']} warm-up, "
             "batch 1, random weights, eval, inference mode", ""]
    for note in result["notes"]:
        lines.append(f"> {note}")
    if result["notes"]:
        lines.append("")
    rows = result.get("backbones") or []
    if rows:
        lines += ["## Backbones", "",
                  "ours = the default fast paths for the device (every path on CPU); plain = same weights, "
                  "plain official formulas; ref = spandrel / spandrel_extra_arches with the same weights in the "
                  "same process (\"-\" = no reference computes this variant). **Speed-up = reference time / our "
                  "time (> 1 = ours faster).** max abs Δ = largest absolute output difference on the same input. "
                  "Peak MB = memory above the loaded weights during one forward.", "",
                  "| " + " | ".join(h for _, h, _ in BACKBONE_COLUMNS) + " |",
                  "|" + "---|" * len(BACKBONE_COLUMNS)]
        for row in rows:
            if "error" in row:
                lines.append(f"| {row['preset']} | | {row['size']}² | error: {row['error']} |")
                continue
            lines.append("| " + " | ".join(backbone_cell(row, k, f) for k, _, f in BACKBONE_COLUMNS) + " |")
        lines.append("")
        amp_rows = [(r, p, a) for r in rows if "error" not in r for p, a in r["amp"].items()]
        if amp_rows:
            lines += ["## Autocast (AMP)", "", "| preset | size | precision | ours s | MP/s | peak MB | "
                      "speed-up vs ref fp32 | speed-up vs ours fp32 | max abs Δ vs ours fp32 |", "|" + "---|" * 9]
            for r, p, a in amp_rows:
                lines.append(f"| {r['preset']} | {r['size']}² | {p} | {a['s']:.3f} | {a['mp_per_s']:.2f} | "
                             f"{_f(a['peak_mb'], '.0f')} | {_f(a['speedup_vs_reference_fp32'], '.2f')} | "
                             f"{_f(a['speedup_vs_ours_fp32'], '.2f')} | {_f(a['max_abs_diff_vs_ours_fp32'], '.1e')} |")
            lines.append("")
    if result.get("amp_quality"):
        lines += ["## AMP quality on `anyrestore/samples/chelsea_noise25.png` (PSNR vs `chelsea.png`, basicsr)", "",
                  "| preset | weights | precision | PSNR fp32 | PSNR AMP | drop dB | PSNR AMP vs fp32 output | "
                  "max abs Δ |", "|" + "---|" * 8]
        for q in result["amp_quality"]:
            lines.append(f"| {q['preset']} | {q['weights']} | {q['precision']} | {q['psnr_fp32']:.3f} | "
                         f"{q['psnr_amp']:.3f} | {q['psnr_drop']:.3f} | {q['psnr_amp_vs_fp32_output']:.2f} | "
                         f"{q['max_abs_diff']:.1e} |")
        lines.append("")
    if result.get("training"):
        t = result["training"]
        lines += ["## Training step", "", "| preset | batch | crop | objective | s/step | samples/s |",
                  "|---|---|---|---|---|---|",
                  f"| {t['preset']} | {t['batch']} | {t['crop']}² | {t['objective']} + {t['optimizer']} | "
                  f"{t['s_per_step']:.3f} | {t['samples_per_s']:.2f} |", ""]
    if result.get("mac"):
        c = result["mac"]
        lines += ["## MAC layer analysis (RAM stage 2)", "",
                  "| preset | crop | images | path steps | layers | s/image | s/step | est. s/image at 200 steps |",
                  "|---|---|---|---|---|---|---|---|",
                  f"| {c['preset']} | {c['size']}² | {c['images']} | {c['steps']} | {c['layers']} | "
                  f"{c['s_per_image']:.2f} | {c['s_per_step']:.3f} | {c['est_s_per_image_at_200_steps']:.0f} |", "",
                  "Each path step is one forward + one backward over all layers at once; the 200-step figure is "
                  "the measured s/step × 200 (after an untimed 2-step warm-up).", ""]
    if result.get("tiling"):
        lines += ["## Tiled restore of large images (Predictor, fresh process per size)", "",
                  "| preset | megapixels | image | tile/overlap | seconds | MP/s | peak RSS GB |",
                  "|---|---|---|---|---|---|---|"]
        for t in result["tiling"]:
            if "error" in t:
                lines.append(f"| {t['preset']} | {t['megapixels']:g} | | {t['tile']} | error: {t['error']} | | |")
                continue
            lines.append(f"| {t['preset']} | {t['megapixels']:g} | {t['image']} | {t['tile']}/{t['overlap']} | "
                         f"{t['seconds']:.2f} | {t['mp_per_s']:.3f} | {t['peak_rss_gb']:.2f} |")
        est = result.get("tiling_12mp")
        if est:
            extra = f" ({est['gb_per_megapixel'] * 1024:.0f} MB per extra megapixel)" if "gb_per_megapixel" in est else ""
            lines += ["", f"Peak RSS at 12 MP: {est['peak_rss_gb']:.2f} GB, {est['how']}{extra}. The tile bounds the "
                          "model's activations; what grows with the image is only its input/output/weight buffers."]
        lines.append("")
    if result.get("targets"):
        lines += ["## Targets (issue #8)", ""] + [f"- {t}" for t in result["targets"]] + [""]
    return "\n".join(lines)


def target_lines(result: dict) -> list[str]:
    """Met / missed per issue-#8 target that this run measured."""
    out = []
    dev = result["settings"]["device"]
    for r in result.get("backbones") or []:
        if "error" in r or r["precision"] != "fp32":
            continue
        if r["speedup_vs_reference"] is not None and not dev.startswith("cuda"):
            ok = r["speedup_vs_reference"] >= 1.3 and r["max_abs_diff_vs_reference"] <= 1e-4
            out.append(f"CPU fp32 {r['preset']} {r['size']}²: {r['speedup_vs_reference']:.2f}× vs reference at "
                       f"max abs Δ {r['max_abs_diff_vs_reference']:.1e} (target ≥ 1.3× at ≤ 1e-4): "
                       f"{'met' if ok else 'missed'}")
        elif r["speedup_vs_reference"] is None:
            out.append(f"{r['preset']} {r['size']}²: no independent reference; {_f(r['speedup_vs_plain'], '.2f')}× vs "
                       f"our plain path at max abs Δ {_f(r['max_abs_diff_vs_plain'], '.1e')}")
        for p, a in r["amp"].items():
            if a["speedup_vs_reference_fp32"] is None or not dev.startswith("cuda"):
                continue  # the AMP target is a GPU target; CPU autocast rows are informative only
            drops = [q["psnr_drop"] for q in result.get("amp_quality") or []
                     if q["precision"] == p and q["preset"] == r["preset"]]
            drop = drops[0] if drops else None
            ok = a["speedup_vs_reference_fp32"] >= 2 and drop is not None and drop <= 0.05
            out.append(f"{dev} {p} {r['preset']} {r['size']}²: {a['speedup_vs_reference_fp32']:.2f}× the fp32 "
                       f"reference, PSNR drop {_f(drop, '.3f')} dB (target ≥ 2× at ≤ 0.05 dB): "
                       f"{'met' if ok else 'missed'}")
    if result.get("mac"):
        c = result["mac"]
        out.append(f"MAC {c['preset']} at {c['size']}²: {c['s_per_step']:.3f} s per step (one forward + backward), "
                   f"{c['est_s_per_image_at_200_steps']:.0f} s per image at 200 steps")
    est = result.get("tiling_12mp")
    if est:
        out.append(f"tiled 12 MP {result['settings']['tiling']['preset']} on {dev}: peak RSS {est['peak_rss_gb']:.2f} GB "
                   f"({est['how']}; target ≤ {TILING_TARGET_GB:g} GB): "
                   f"{'met' if est['peak_rss_gb'] <= TILING_TARGET_GB else 'missed'}")
    return out


def merge_results(paths: list[str]) -> dict:
    """One result from several part runs on the same machine: rows and extras concatenated in the given order."""
    parts = []
    for path in paths:
        try:
            parts.append(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read suite result {path}: {exc}") from None
    kinds = {p.get("kind") for p in parts}
    if len(kinds) != 1:
        raise ConfigError(f"results come from different machine kinds ({', '.join(map(str, sorted(kinds, key=str)))}); "
                          "merge one machine at a time")
    merged = {**parts[0], "command": " ; ".join(p["command"] for p in parts), "notes": [], "backbones": [],
              "amp_quality": [], "tiling": [], "wall_s": sum(p["wall_s"] for p in parts)}
    merged["machine"] = {**parts[0]["machine"], "load_average_end": parts[-1]["machine"].get("load_average_end")}
    for part in parts:
        merged["backbones"] += part.get("backbones") or []
        merged["amp_quality"] += part.get("amp_quality") or []
        merged["tiling"] += part.get("tiling") or []
        merged["notes"] += [n for n in part["notes"] if n not in merged["notes"] and not n.startswith(BUSY)]
        for key in ("training", "mac", "tiling_12mp"):
            if part.get(key):
                merged[key] = part[key]
                if key == "tiling_12mp":
                    merged["settings"] = {**merged["settings"], "tiling": part["settings"]["tiling"]}
    loads = [float(m.group(1)) for p in parts for n in p["notes"] if (m := re.match(BUSY + r" \(load average ([\d.]+)", n))]
    if loads:
        merged["notes"].insert(0, busy_note(min(loads), max(loads), merged["machine"]["logical_cpus"]))
    merged["targets"] = target_lines(merged)
    return merged
