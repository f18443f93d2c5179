"""benchmarks/run.py: the suite runs end to end in a tiny mode and writes markdown + JSON whose numbers come from
real outputs; its helpers compute ratios, differences, memory and extrapolations correctly."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import run as suite  # noqa: E402
from benchmarks import suite_report  # noqa: E402

ROW_KEYS = {"preset", "params", "size", "run", "precision", "ours_s", "ours_mp_per_s", "ours_peak_mb", "reference_s",
            "reference_peak_mb", "speedup_vs_reference", "max_abs_diff_vs_reference", "plain_s", "speedup_vs_plain",
            "max_abs_diff_vs_plain", "amp"}
TINY = ["--presets", "nafnet-tiny,promptir-tiny", "--sizes", "32,48", "--max-whole", "1600", "--tile", "32",
        "--overlap", "8", "--threads", "1", "--no-memory", "--amp", "bf16", "--quality-presets", "",
        "--train-preset", "nafnet-tiny", "--train-batch", "1", "--train-crop", "32", "--train-steps", "1",
        "--mac-preset", "swinir-ram-tiny", "--mac-size", "32", "--mac-steps", "2",
        "--tiling-preset", "nafnet-tiny", "--tiling-mp", "0.01,0.03", "--tiling-tile", "64"]


@pytest.fixture
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    pytest.importorskip("spandrel")
    out = tmp_path_factory.mktemp("suite")
    threads = torch.get_num_threads()
    try:
        code = suite.main([*TINY, "--out", str(out), "--name", "tiny"])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    return json.loads((out / "tiny.json").read_text()), (out / "tiny.md").read_text(), out


def test_tiny_suite_writes_every_part(tiny_run):
    result, markdown, _ = tiny_run
    m = result["machine"]
    assert m["cpu"] and m["logical_cpus"] >= 1 and m["torch_threads"] == 1 and m["torch"] == torch.__version__
    assert result["kind"] == f"cpu-{m['logical_cpus']}core"
    rows = result["backbones"]
    assert [(r["preset"], r["size"]) for r in rows] == [("nafnet-tiny", 32), ("nafnet-tiny", 48),
                                                          ("promptir-tiny", 32), ("promptir-tiny", 48)]
    for row in rows:
        assert set(row) == ROW_KEYS
        assert row["ours_s"] > 0 and row["plain_s"] > 0
        assert row["ours_mp_per_s"] == pytest.approx(row["size"] ** 2 / 1e6 / row["ours_s"])
        assert row["speedup_vs_plain"] == pytest.approx(row["plain_s"] / row["ours_s"])
        assert row["max_abs_diff_vs_plain"] <= 1e-4
        assert row["run"] == ("whole" if row["size"] == 32 else "tiled 32/8")
        assert set(row["amp"]) == {"bf16"} and 0 < row["amp"]["bf16"]["max_abs_diff_vs_ours_fp32"] < 0.1
    naf = [r for r in rows if r["preset"] == "nafnet-tiny"]
    assert all(r["reference_s"] > 0 and r["speedup_vs_reference"] == pytest.approx(r["reference_s"] / r["ours_s"])
               for r in naf)
    assert all(r["reference_s"] is None and r["speedup_vs_reference"] is None  # spandrel has no PromptIR
               for r in rows if r["preset"] == "promptir-tiny")
    assert {q["preset"] for q in result["amp_quality"]} == {"nafnet-tiny", "promptir-tiny"}
    assert result["training"]["s_per_step"] > 0 and result["training"]["batch"] == 1
    mac = result["mac"]
    assert mac["steps"] == 2 and mac["layers"] > 10
    assert mac["est_s_per_image_at_200_steps"] == pytest.approx(mac["s_per_step"] * 200)
    assert [t["image"] for t in result["tiling"]] == ["116x87", "200x150"]
    assert all(t["finite"] and t["peak_rss_gb"] > 0 for t in result["tiling"])
    assert result["tiling_12mp"]["how"].startswith("linear extrapolation")
    header = "| " + " | ".join(h for _, h, _ in suite_report.BACKBONE_COLUMNS) + " |"
    assert header in markdown and "speed-up vs ref" in markdown and "Speed-up = reference time / our time" in markdown
    for title in ("## Autocast (AMP)", "## AMP quality", "## Training step", "## MAC layer analysis",
                  "## Tiled restore", "## Targets"):
        assert title in markdown
    for row in rows:
        assert f"| {row['preset']} | {row['params'] / 1e6:.1f} | {row['size']}² | {row['run']} | {row['ours_s']:.3f} |" in markdown
    assert m["cpu"] in markdown


def test_max_abs_diff_column_is_the_real_output_difference(tiny_run):
    from benchmarks.backbones import reference_model

    result, _, _ = tiny_run
    row = result["backbones"][0]
    ours = suite.bench_model("nafnet-tiny").eval()
    ref = reference_model(ours, 32).eval()
    x = suite.bench_input(32, 16)
    with torch.inference_mode():
        expected = float((ours(x) - ref(x)).abs().max())
    assert row["max_abs_diff_vs_reference"] == pytest.approx(expected, rel=1e-3, abs=1e-9)
    assert row["max_abs_diff_vs_reference"] <= 1e-4


def test_bench_model_perturbs_every_parameter():
    from anyrestore.archs import build_model

    torch.manual_seed(0)
    plain = dict(build_model("nafnet-tiny").named_parameters())
    noisy = dict(suite.bench_model("nafnet-tiny").named_parameters())
    assert all(not torch.equal(plain[k], noisy[k]) for k in plain)  # NAFNet's zero β/γ now matter
    again = dict(suite.bench_model("nafnet-tiny").named_parameters())
    assert all(torch.equal(noisy[k], again[k]) for k in noisy)


def test_cell_row_ratios_and_differences():
    s = suite.Settings(amp=("fp16",))
    outputs = {"ours": torch.zeros(1, 3, 4, 4), "reference": torch.zeros(1, 3, 4, 4), "plain": torch.zeros(1, 3, 4, 4),
               "ours_fp16": torch.zeros(1, 3, 4, 4)}
    outputs["reference"][0, 1, 2, 3] = -0.25
    outputs["ours_fp16"][0, 0, 0, 0] = 0.5
    median = {"ours": 2.0, "reference": 3.0, "plain": 4.0, "ours_fp16": 0.5}
    row = suite.cell_row("p", 100, {"params": 7}, None, s, median, outputs, {"ours": 10.0})
    assert row["speedup_vs_reference"] == 1.5 and row["speedup_vs_plain"] == 2.0
    assert row["max_abs_diff_vs_reference"] == 0.25 and row["max_abs_diff_vs_plain"] == 0.0
    assert row["ours_mp_per_s"] == pytest.approx(0.01 / 2.0) and row["ours_peak_mb"] == 10.0
    assert row["amp"]["fp16"]["speedup_vs_reference_fp32"] == 6.0 and row["amp"]["fp16"]["speedup_vs_ours_fp32"] == 4.0
    assert row["amp"]["fp16"]["max_abs_diff_vs_ours_fp32"] == 0.5
    del outputs["reference"], median["reference"]
    row = suite.cell_row("p", 100, {"params": 7}, 64, s, median, outputs, {})
    assert row["reference_s"] is None and row["speedup_vs_reference"] is None and row["run"] == "tiled 64/32"


def test_tile_for_rounds_to_the_pad_multiple():
    s = suite.Settings(max_whole=256 * 256, tile=500)
    assert suite.tile_for(256, s, 16) is None
    assert suite.tile_for(512, s, 16) == 496 and suite.tile_for(512, s, 7) == 497


def test_cpu_memory_subprocess_grows_with_the_input():
    s = suite.Settings(threads=1, plain=False, reference=False)
    small = suite.memory_subprocess("nafnet-tiny", 32, "ours", s)
    large = suite.memory_subprocess("nafnet-tiny", 256, "ours", s)
    assert small is not None and large is not None and 0 <= small < large
    assert large > 4  # 256² x 8 channels x fp32 = 2 MiB per feature map; a forward holds several


def test_rss_at_measured_and_extrapolated():
    rows = [{"megapixels": 1.0, "peak_rss_gb": 1.5}, {"megapixels": 2.0, "peak_rss_gb": 1.7},
            {"megapixels": 4.0, "error": "killed"}]
    est = suite.rss_at(rows, 12.0)
    assert est["peak_rss_gb"] == pytest.approx(1.7 + 0.2 * 10) and est["gb_per_megapixel"] == pytest.approx(0.2)
    assert suite.rss_at(rows, 2.0) == {"megapixels": 2.0, "peak_rss_gb": 1.7, "how": "measured"}
    assert suite.rss_at(rows[:1], 12.0) is None


def test_target_lines_met_and_missed():
    base = {"precision": "fp32", "size": 256, "amp": {}, "speedup_vs_plain": 1.1, "max_abs_diff_vs_plain": 0.0}
    result = {"settings": {"device": "cpu", "tiling": {"preset": "promptir"}},
              "backbones": [{**base, "preset": "a", "speedup_vs_reference": 1.4, "max_abs_diff_vs_reference": 5e-5},
                            {**base, "preset": "b", "speedup_vs_reference": 1.4, "max_abs_diff_vs_reference": 2e-4},
                            {**base, "preset": "c", "speedup_vs_reference": 1.1, "max_abs_diff_vs_reference": 0.0},
                            {**base, "preset": "d", "speedup_vs_reference": None, "max_abs_diff_vs_reference": None}],
              "tiling_12mp": {"peak_rss_gb": 3.2, "how": "measured"}}
    lines = suite_report.target_lines(result)
    assert lines[0].startswith("CPU fp32 a 256²") and lines[0].endswith("met")
    assert lines[1].endswith("missed") and lines[2].endswith("missed")
    assert "no independent reference" in lines[3]
    assert lines[4].startswith("tiled 12 MP promptir") and lines[4].endswith("met")


@pytest.mark.parametrize("argv,message", [
    (["--sizes", "abc"], "--sizes must be a comma-separated list of numbers"),
    (["--sizes", "0"], "--sizes must be positive"),
    (["--presets", "nafnet-tinyy"], "nafnet-tiny"),
    (["--only", "backbones,speed"], "unknown part(s) speed"),
    (["--amp", "fp8"], "--amp takes fp16 and/or bf16"),
    (["--overlap", "300"], "--overlap must be between 0 and half the tile"),
    (["--warmup", "-1"], "--warmup must be >= 0 on CPU"),
    (["--device", "cuda"], "CUDA is not available"),
])
def test_bad_arguments_fail_with_one_line(capsys, tmp_path, keep_threads, argv, message):
    if argv[0] == "--device" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert suite.main([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())  # nothing written


def test_entry_points_still_work():
    for cmd in ([sys.executable, "-m", "benchmarks.run", "--help"], [sys.executable, "benchmarks/run.py", "--help"],
                [sys.executable, "benchmarks/backbones.py", "--help"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        assert proc.returncode == 0, proc.stderr
        assert "--presets" in proc.stdout


def test_merge_part_runs_into_one_table(tiny_run, tmp_path, capsys):
    result, _, out = tiny_run
    part = {**result, "backbones": result["backbones"][:1], "training": None, "mac": None, "tiling": [],
            "tiling_12mp": None, "amp_quality": []}
    (tmp_path / "part.json").write_text(json.dumps(part))
    assert suite.main(["--merge", str(tmp_path / "part.json"), str(out / "tiny.json"), "--out", str(tmp_path),
                       "--name", "merged", "--note", "a training job shared the CPU"]) == 0
    merged = json.loads((tmp_path / "merged.json").read_text())
    assert merged["backbones"] == result["backbones"][:1] + result["backbones"]
    assert merged["mac"] == result["mac"] and merged["tiling"] == result["tiling"]
    assert merged["wall_s"] == pytest.approx(2 * result["wall_s"])
    assert len(merged["targets"]) == len(result["targets"]) + 1
    assert (tmp_path / "merged.md").read_text().count("| nafnet-tiny | ") >= 3
    assert "> a training job shared the CPU" in (tmp_path / "merged.md").read_text()
    other = {**part, "kind": "cuda-h100"}
    (tmp_path / "gpu.json").write_text(json.dumps(other))
    capsys.readouterr()
    assert suite.main(["--merge", str(tmp_path / "part.json"), str(tmp_path / "gpu.json"), "--out", str(tmp_path),
                       "--name", "bad"]) == 2
    assert "different machine kinds" in capsys.readouterr().err


def test_peak_rss_of_a_subprocess_does_not_include_its_parent():
    from benchmarks.backbones import peak_rss_mb, rss_mb

    ballast = b"\x01" * (800 * 2**20)  # a big parent, as the suite is after building large models
    code = "from benchmarks.backbones import peak_rss_mb; print(peak_rss_mb())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    child = float(proc.stdout.strip())
    assert rss_mb() > 800 and peak_rss_mb() >= rss_mb()
    assert child < rss_mb() - 500, (child, rss_mb())
    del ballast


def test_channels_last_cell_matches_plain(keep_threads):
    s = suite.Settings(threads=1, memory=False, reference=False, channels_last=True, repeat=2)
    row = suite.bench_cell("restormer-tiny", 40, s)
    assert row["ours_s"] > 0 and row["plain_s"] > 0 and row["reference_s"] is None
    assert 0 < row["max_abs_diff_vs_plain"] <= 1e-4  # different kernels, same function


def test_cell_without_warm_up_compares_the_first_timed_outputs(keep_threads):
    rows = [suite.bench_cell("restormer-tiny", 40, suite.Settings(threads=1, memory=False, reference=False,
                                                                  channels_last=True, warmup=warmup, repeat=2))
            for warmup in (0, 1)]
    assert all(row["ours_s"] > 0 and row["plain_s"] > 0 for row in rows)
    assert 0 < rows[0]["max_abs_diff_vs_plain"] == rows[1]["max_abs_diff_vs_plain"] <= 1e-4


def test_fastpath_ablation_times_every_variant(tmp_path, keep_threads):
    from benchmarks import fastpath_ablation as ablation

    from anyrestore.archs.fastpaths import fast_path_state, set_fast_paths

    model = suite.bench_model("nafnet-tiny")
    found = ablation.variants(model)
    assert set(found) == {"plain", "all", "only fused_layernorm", "only folded_scales"}  # NAFNet has no attention
    state = fast_path_state(set_fast_paths(model, **found["only folded_scales"]))
    assert state["folded_scales"][0] == state["folded_scales"][1] > 0 and state["fused_layernorm"][0] == 0

    assert ablation.main(["--presets", "nafnet-tiny", "--sizes", "32", "--repeat", "1", "--threads", "1",
                          "--out", str(tmp_path), "--name", "abl"]) == 0
    rows = json.loads((tmp_path / "abl.json").read_text())["rows"]
    assert len(rows) == 5 * 2  # (variants + device default) x (NCHW, channels-last), fp32 only on CPU
    assert all(r["finite"] and r["s"] > 0 for r in rows)
    assert sum(r["variant"] == "device default" for r in rows) == 2  # on CPU: every path, like "all"
    plain = [r for r in rows if (r["variant"], r["layout"]) == ("plain", "NCHW")]
    assert plain[0]["speedup_vs_plain_fp32"] == 1.0
    assert "| only folded_scales |" in (tmp_path / "abl.md").read_text()
    assert "| device default |" in (tmp_path / "abl.md").read_text()


def test_tf32_is_off_unless_asked():
    assert suite.settings_from_args(suite.parse_args([])).tf32 is False
    assert suite.settings_from_args(suite.parse_args(["--tf32"])).tf32 is True
