"""Predictor / `anyrestore restore` / api speed options: fast paths on/off, channels-last, compile opt-in."""
from __future__ import annotations

import pytest
import torch

import anyrestore.api as api
import anyrestore.archs.fastpaths as fastpaths
import anyrestore.cli as cli
from _zoo_testutil import randomize_
from anyrestore.archs import build_model
from anyrestore.archs.fastpaths import fast_path_state
from anyrestore.errors import ConfigError
from anyrestore.inference import Predictor
from anyrestore.io import read_image

PRESETS = ("nafnet-tiny", "restormer-tiny", "promptir-tiny", "swinir-ram-tiny", "retinexformer-tiny")


def _model(preset: str):
    return randomize_(build_model(preset)).eval()


def _image(h: int, w: int) -> torch.Tensor:
    return torch.rand(3, h, w, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("preset,tile", [(p, 0) for p in PRESETS] + [("nafnet-tiny", 32), ("swinir-ram-tiny", 32)])
def test_fast_and_channels_last_match_the_plain_predictor(preset, tile):
    image = _image(37, 53)  # odd size: padding, shifted-window masks at a new size, partial tiles
    plain = Predictor(_model(preset), device="cpu", tile=tile, overlap=8, fast=False, channels_last=False)(image)
    for options in ({"fast": True, "channels_last": False}, {"fast": True}, {"fast": False, "channels_last": True}):
        out = Predictor(_model(preset), device="cpu", tile=tile, overlap=8, **options)(image)
        assert out.shape == image.shape
        torch.testing.assert_close(out, plain, rtol=0, atol=1e-4, msg=f"{preset} {options}")


@pytest.mark.parametrize("name,paths", [("restormer-tiny", ("fused_layernorm", "sdpa")),
                                        ("nafnet-tiny", ("fused_layernorm", "folded_scales"))])
def test_fast_option_switches_the_layers_in_place(name, paths):
    model = _model(name)
    Predictor(model, device="cpu", fast=False)
    state = fast_path_state(model)
    assert all(state[p][1] > 0 and state[p][0] == 0 for p in paths), state
    assert all(on == 0 for on, _ in state.values())
    Predictor(model, device="cpu", fast=True)
    state = fast_path_state(model)
    assert all(state[p][0] == state[p][1] > 0 for p in paths), state


def test_device_fast_paths_follow_the_gpu_ablation():
    """CPU: every path. CUDA: fused LayerNorm only under bf16, SDPA on for transposed attention and off for Swin
    window attention, folded scales on (benchmarks/results/fastpath-ablation-cuda-h100-2026-11-22.md)."""
    from anyrestore.archs.fastpaths import set_device_fast_paths
    from anyrestore.archs.swinir import WindowAttention

    for preset in PRESETS:
        model = _model(preset)
        fastpaths.set_fast_paths(model, False)
        assert set_device_fast_paths(model, "cpu") is model
        assert all(on == n for on, n in fast_path_state(model).values()), preset
        for precision in ("fp32", "fp16", "bf16"):
            set_device_fast_paths(model, torch.device("cuda"), precision)
            for module in model.modules():
                if isinstance(getattr(module, "fused_layernorm", None), bool):
                    assert module.fused_layernorm == (precision == "bf16"), (preset, precision)
                if isinstance(getattr(module, "sdpa", None), bool):
                    assert module.sdpa, (preset, module)
                if isinstance(getattr(module, "window_sdpa", None), bool):
                    assert isinstance(module, WindowAttention) and not module.window_sdpa, (preset, module)
                if isinstance(getattr(module, "folded_scales", None), bool):
                    assert module.folded_scales
    swin = _model("swinir-ram-tiny")
    set_device_fast_paths(swin, "cuda:0")
    assert fast_path_state(swin)["window_sdpa"][0] == 0 < fast_path_state(swin)["window_sdpa"][1]
    restormer = _model("restormer-tiny")
    set_device_fast_paths(restormer, "cuda", "fp16")
    assert fast_path_state(restormer)["sdpa"][0] == fast_path_state(restormer)["sdpa"][1] > 0
    assert fast_path_state(restormer)["fused_layernorm"][0] == 0


def test_predictor_default_applies_the_device_choice_and_explicit_values_override_it(monkeypatch):
    calls = []
    real = fastpaths.set_device_fast_paths
    monkeypatch.setattr("anyrestore.inference.predictor.set_device_fast_paths",
                        lambda model, device, precision: calls.append((str(device), precision)) or real(model, device,
                                                                                                       precision))
    model = _model("restormer-tiny")
    Predictor(model, device="cpu", precision="bf16")
    assert calls == [("cpu", "bf16")]
    Predictor(model, device="cpu", fast=False)
    Predictor(model, device="cpu", fast=True)
    assert len(calls) == 1  # True/False set every switch themselves
    assert all(on == n for on, n in fast_path_state(model).values())


def test_channels_last_converts_the_weights_and_keeps_meta():
    model = _model("nafnet-tiny")
    predictor = Predictor(model, device="cpu", channels_last=True, tile=0)
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not conv.weight.is_contiguous()  # really converted, not a 1x1 kernel that is both
    assert predictor.model is not model and predictor.meta.pad_multiple == 16
    assert predictor.options == {"fast": None, "channels_last": True, "compile": False}
    assert all(on == n for on, n in fast_path_state(model).values())  # the CPU default: every fast path
    assert predictor(_image(20, 20)).shape == (3, 20, 20)


def test_channels_last_is_the_cpu_default_and_can_be_turned_off():
    assert Predictor(_model("nafnet-tiny"), device="cpu").options["channels_last"] is True
    predictor = Predictor(_model("nafnet-tiny"), device="cpu", channels_last=False)
    assert predictor.options["channels_last"] is False
    conv = next(m for m in predictor.model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))
    assert conv.weight.is_contiguous()


def test_prefer_whole_image_is_read_from_the_model_not_the_wrapper():
    model = _model("nafnet-tiny")
    model.prefer_whole_image = True
    predictor = Predictor(model, device="cpu", channels_last=True, max_whole_pixels=16)
    predictor(_image(40, 40))
    assert predictor.last_run["mode"] == "whole"
    model = _model("nafnet-tiny")
    model.whole_image_pixels = 40 * 40
    predictor = Predictor(model, device="cpu", channels_last=True, max_whole_pixels=16)
    predictor(_image(40, 40))
    assert predictor.last_run["mode"] == "whole" and predictor.model.whole_image_pixels == 40 * 40


def test_compile_unusable_is_a_config_error(monkeypatch):
    def unusable(device="cpu"):
        raise ConfigError("torch.compile is unusable on cpu: no compiler; run without --compile")

    monkeypatch.setattr(fastpaths, "check_compile_usable", unusable)
    with pytest.raises(ConfigError, match="torch.compile is unusable"):
        Predictor(_model("nafnet-tiny"), device="cpu", compile=True)


@pytest.mark.slow
def test_compiled_predictor_matches_plain():
    image = _image(32, 32)
    plain = Predictor(_model("nafnet-tiny"), device="cpu", tile=0, fast=False)(image)
    out = Predictor(_model("nafnet-tiny"), device="cpu", tile=0, compile=True)(image)
    torch.testing.assert_close(out, plain, rtol=0, atol=1e-4)


def test_api_restore_fast_and_channels_last_options():
    model = _model("promptir-tiny")
    image = _image(24, 40)
    plain = api.restore(image, model=model, device="cpu", fast=False, channels_last=False)
    fast = api.restore(image, model=model, device="cpu", fast=True, channels_last=True)
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-4)


def test_cli_help_lists_the_speed_flags(capsys):
    with pytest.raises(SystemExit):
        cli.main(["restore", "--help"])
    out = capsys.readouterr().out
    for flag in ("--channels-last", "--no-channels-last", "--compile", "--plain"):
        assert flag in out
    assert "fast paths" in out


def test_cli_flags_give_the_same_restoration(capsys, tmp_path):
    results = {}
    for name, flags in (("default", []), ("plain", ["--plain", "--no-channels-last"]), ("cl", ["--channels-last"])):
        code = cli.main(["restore", "--sample", "--device", "cpu", "-o", str(tmp_path / name), *flags])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert "restored 1 image(s)" in out
        results[name] = read_image(tmp_path / name / "chelsea_noise25.png")
    # bundled default model, 8-bit outputs: equal up to one rounding step where values sit on a boundary
    assert (results["plain"] - results["default"]).abs().max() <= 1 / 255 + 1e-6
    assert (results["cl"] - results["default"]).abs().max() <= 1 / 255 + 1e-6


def test_cli_compile_failure_is_one_line(capsys, tmp_path, monkeypatch):
    def unusable(device="cpu"):
        raise ConfigError("torch.compile is unusable on cpu: no compiler; run without --compile")

    monkeypatch.setattr(fastpaths, "check_compile_usable", unusable)
    code = cli.main(["restore", "--sample", "--device", "cpu", "--compile", "-o", str(tmp_path / "c")])
    out, err = capsys.readouterr()
    assert code == 2
    assert "torch.compile is unusable" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "c" / "chelsea_noise25.png").exists()
