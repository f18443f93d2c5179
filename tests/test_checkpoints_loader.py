"""checkpoints.py: safe reading, unwrapping, prefixes, family detection, mismatch report, our format, convert CLI
(conventions.md §1, backbones.md §8, §10.2-10.3)."""
import argparse
import json
import warnings

import pytest
import torch

from _zoo_testutil import image, meta_model, randomize_
from anyrestore import checkpoints as C
from anyrestore.archs import build_model
from anyrestore.archs.registry import FAMILIES
from anyrestore.errors import CheckpointMismatchError, UnsafeCheckpointError


def rnd(name, seed=0, **kw):
    return randomize_(build_model(name, **kw), seed=seed).eval()


def same_output(a, b, size=(32, 32)):
    x = image(*size)
    with torch.no_grad():
        return torch.equal(a(x), b(x))


# ------------------------------------------------------------------ our format


def test_save_and_load_our_format(tmp_path):
    model = rnd("promptir-ram-tiny")
    path = C.save_model(model, tmp_path / "m.safetensors", weights="ema", source_sha256="ab" * 32)
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temp file left behind
    sd, meta = C.load_state_dict_file(path)
    assert set(sd) == set(model.state_dict())
    assert meta["anyrestore_format"] == "1" and meta["arch"] == "ram_promptir" and meta["weights"] == "ema"
    assert json.loads(meta["arch_kwargs"])["prompt_dims"] == [8, 8, 16]
    assert json.loads(meta["normalization"])["mean"] == [0.485, 0.456, 0.406]
    assert meta["source_sha256"] == "ab" * 32 and meta["preset"] == "promptir-ram-tiny"
    loaded = C.load_model(path)
    assert not loaded.training and type(loaded).__name__ == "RAMPromptIR"
    assert loaded.meta == model.meta
    assert same_output(loaded, model)


def test_save_model_refuses_other_suffix(tmp_path):
    with pytest.raises(ValueError, match="safetensors"):
        C.save_model(build_model("nafnet-tiny"), tmp_path / "m.pth")


def test_training_weights_pick_ema_then_raw(tmp_path):
    raw, ema = rnd("nafnet-tiny", seed=1), rnd("nafnet-tiny", seed=2)
    path = C.save_training_weights(tmp_path / "iter_10.safetensors", params=raw.state_dict(),
                                   params_ema=ema.state_dict(), model=raw, iteration=10)
    assert same_output(C.load_model(path), ema)
    assert same_output(C.load_model(path, param_key="params"), raw)
    sd, meta = C.load_state_dict_file(path, param_key="params")
    assert meta["weight_sets"] == "params,params_ema" and meta["iteration"] == "10"
    assert all(torch.equal(sd[k], v) for k, v in raw.state_dict().items())


# ------------------------------------------------------------------ containers, prefixes, safety


def test_basicsr_wrappers_and_fallback_both_ways(tmp_path):
    raw, ema = rnd("nafnet-tiny", seed=1), rnd("nafnet-tiny", seed=2)
    both = tmp_path / "both.pth"
    torch.save({"params": raw.state_dict(), "params_ema": ema.state_dict()}, both)
    assert same_output(C.load_model(both), ema)
    assert same_output(C.load_model(both, param_key="params"), raw)
    only_raw, only_ema = tmp_path / "raw.pth", tmp_path / "ema.pth"
    torch.save({"params": raw.state_dict()}, only_raw)
    torch.save({"params_ema": ema.state_dict()}, only_ema)
    with pytest.warns(UserWarning, match="no 'params_ema' weights; using 'params'"):
        assert same_output(C.load_model(only_raw, param_key="params_ema"), raw)
    with pytest.warns(UserWarning, match="no 'params' weights; using 'params_ema'"):
        assert same_output(C.load_model(only_ema, param_key="params"), ema)
    with pytest.raises(C.CheckpointReadError, match="no 'weights' entry"):
        C.load_model(only_raw, param_key="weights")


def test_prefixes_stripped_only_when_all_keys_have_them(tmp_path):
    model = rnd("nafnet-tiny")
    sd = model.state_dict()
    path = tmp_path / "p.pt"
    torch.save({"state_dict": {f"module._orig_mod.{k}": v for k, v in sd.items()}}, path)
    loaded = C.load_model(path)
    assert loaded.checkpoint_info["stripped"] == ["module.", "_orig_mod."]
    assert same_output(loaded, model)
    partial = {(f"module.{k}" if i % 2 else k): v for i, (k, v) in enumerate(sd.items())}
    torch.save(partial, path)
    with pytest.raises(CheckpointMismatchError, match="module."):
        C.load_model(path, arch="nafnet")


def test_lightning_checkpoint_is_promptir_lightning(tmp_path):
    model = rnd("promptir-tiny")
    path = tmp_path / "model.ckpt"
    torch.save({"epoch": 3, "global_step": 10, "pytorch-lightning_version": "2.1",
                "state_dict": {f"net.{k}": v for k, v in model.state_dict().items()}}, path)
    loaded = C.load_model(path)
    assert loaded.checkpoint_info["family"] == "promptir_lightning" and loaded.arch_name == "promptir"
    assert same_output(loaded, model)
    assert same_output(C.load_model(path, family="promptir_lightning"), model)


def test_unsafe_pickle_is_refused_with_the_global_named(tmp_path):
    path = tmp_path / "bad.pth"
    torch.save({"params": build_model("nafnet-tiny").state_dict(), "opt": argparse.Namespace(lr=1)}, path)
    for param_key in ("auto", "params"):  # no silent fallback to full unpickling, whatever is asked
        with pytest.raises(UnsafeCheckpointError, match=r"refused global: argparse\.Namespace.*allow_globals"):
            C.load_model(path, param_key=param_key)
    with pytest.raises(UnsafeCheckpointError):
        C.load_state_dict_file(path)


def test_unreadable_files(tmp_path):
    with pytest.raises(C.CheckpointReadError, match="not found"):
        C.load_model(tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(C.CheckpointReadError, match="cannot read"):
        C.load_model(junk)
    bad_st = tmp_path / "junk.safetensors"
    bad_st.write_bytes(b"\x00" * 16)
    with pytest.raises(C.CheckpointReadError):
        C.load_model(bad_st)


def test_half_precision_file_is_cast(tmp_path):
    model = rnd("nafnet-tiny")
    path = tmp_path / "half.pth"
    torch.save({k: v.half() for k, v in model.state_dict().items()}, path)
    loaded = C.load_model(path)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = image(32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=5e-3)


# ------------------------------------------------------------------ families: round trips on tiny models

ROUND_TRIPS = [
    ("nafnet-tiny", {}, "official", "nafnet"),
    ("nafnet-tiny", {"ln_eps": 1e-5, "pad_mode": "reflect"}, "maskdcpt", "nafnet"),
    ("restormer-tiny", {}, "official", "restormer"),
    ("restormer-tiny", {"layernorm": "BiasFree"}, "official", "restormer"),
    ("restormer-tiny", {"layernorm": "torch"}, "maskdcpt", "restormer"),
    ("promptir-tiny", {}, "official", "promptir"),
    ("promptir-ram-tiny", {}, "ram", "ram_promptir"),
    ("restormer-tiny", {"lora_rank": 2}, "official", "restormer"),
]


@pytest.mark.parametrize("preset,kwargs,family,arch", ROUND_TRIPS)
def test_family_export_detect_load_round_trip(tmp_path, preset, kwargs, family, arch):
    if "lora_rank" in kwargs:  # LoRA-Restormer: the tiny Restormer config through the lora_restormer arch
        base = dict(build_model(preset).arch_kwargs)
        model = randomize_(build_model("lora_restormer", **base, **kwargs)).eval()
        arch = "lora_restormer"
    else:
        model = rnd(preset, **kwargs)
    exported = C.export_state_dict(model, family)
    path = tmp_path / "f.pth"
    torch.save({"params": exported}, path)
    loaded = C.load_model(path)
    assert loaded.arch_name == arch and loaded.checkpoint_info["family"] == family
    for key, value in model.arch_kwargs.items():
        got = loaded.arch_kwargs[key]
        assert (list(got) if isinstance(got, (list, tuple)) else got) == \
            (list(value) if isinstance(value, (list, tuple)) else value), key
    assert same_output(loaded, model)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


def test_maskdcpt_promptir_round_trip(tmp_path):
    tiny = dict(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 1, 2, 2),
                prompt_dims=(8, 8, 16), prompt_sizes=(8, 4, 2))
    model = randomize_(build_model("maskdcpt_promptir", **tiny)).eval()
    path = tmp_path / "promptir_maskdcpt_5d.pth"
    torch.save({"params_ema": C.export_state_dict(model, "maskdcpt")}, path)
    loaded = C.load_model(path)
    assert loaded.arch_name == "maskdcpt_promptir" and loaded.checkpoint_info["family"] == "maskdcpt"
    assert same_output(loaded, model)


def test_official_promptir_into_ram_and_back(tmp_path):
    official = rnd("promptir-tiny")
    path = tmp_path / "official.pth"
    torch.save(official.state_dict(), path)
    with pytest.warns(UserWarning, match="never-used"):
        ram = C.load_model(path, arch="ram_promptir")
    assert ram.meta.mean is not None and same_output(ram, official)
    ram_path = tmp_path / "ram.pth"
    torch.save({"params": ram.state_dict()}, ram_path)
    back = C.load_model(ram_path, arch="promptir")
    assert back.arch_name == "promptir" and same_output(back, official)


def test_corrupted_dict_fails_with_report(tmp_path):
    model = rnd("nafnet-tiny")
    sd = dict(model.state_dict())
    sd["encoders.0.0.conv9.weight"] = sd.pop("encoders.0.0.conv3.weight")
    sd["decoders.1.0.conv1.weight"] = torch.zeros(3, 3, 1, 1)
    path = tmp_path / "corrupt.pth"
    torch.save({"params": sd}, path)
    with pytest.raises(CheckpointMismatchError) as info:
        C.load_model(path)
    text = str(info.value)
    assert "corrupt.pth (sha256 " in text and "nafnet (family official)" in text
    assert "1 missing, 1 unexpected, 1 shape-mismatched" in text
    assert "missing: encoders.0.0.conv3.weight 8x8x1x1" in text
    assert "unexpected: encoders.0.0.conv9.weight" in text
    assert "decoders.1.0.conv1.weight 64x32x1x1 vs 3x3x1x1" in text
    assert "closest family by key overlap: nafnet" in text and "hint:" in text
    with pytest.warns(UserWarning, match="strict=False"):
        loose = C.load_model(path, strict=False)
    assert torch.equal(loose.encoders[0][0].conv1.weight, model.encoders[0][0].conv1.weight)


def test_unknown_layout_names_closest_family(tmp_path):
    sd = {f"encoder_level1.blocks.0.norm1.{n}": torch.ones(4) for n in ("weight", "bias")}
    sd["something.else"] = torch.zeros(2)
    path = tmp_path / "odd.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointMismatchError, match="no known checkpoint family.*closest family"):
        C.load_model(path)


# ------------------------------------------------------------------ full-size layouts (meta device)

FULL = [
    ("nafnet-w64", "official", "nafnet_local", {"train_size": 256}),
    ("nafnet-sidd-w64", "official", "nafnet", {}),
    ("nafnet-maskdcpt", "maskdcpt", "nafnet", {"ln_eps": 1e-5, "pad_mode": "reflect"}),
    ("restormer", "official", "restormer", {"layernorm": "WithBias", "ffn_expansion_factor": 2.66}),
    ("restormer-biasfree", "official", "restormer", {"layernorm": "BiasFree"}),
    ("restormer-maskdcpt", "maskdcpt", "restormer", {"layernorm": "torch", "bias": False}),
    ("promptir", "official", "promptir", {"unused_modules": True}),
    ("promptir-ram", "ram", "ram_promptir", {}),
    ("promptir-maskdcpt", "maskdcpt", "maskdcpt_promptir", {"bias": True}),
    ("restormer-lora", "official", "lora_restormer", {"lora_rank": 8, "lora_alpha": 16.0}),
]


@pytest.mark.parametrize("preset,family,arch,expect", FULL)
def test_full_size_layouts_detect_and_match_strictly(preset, family, arch, expect):
    """A state dict with the spec's key list (built on the meta device) is detected and matches key-for-key."""
    model = meta_model(preset)
    file_sd = C.export_state_dict(model, family)
    fam = C._select_family(file_sd, family="auto", arch=None)
    assert (fam.arch, fam.family) == (arch, family)
    kwargs = fam.infer_kwargs(file_sd)
    for key, value in expect.items():
        assert kwargs[key] == value, key
    with torch.device("meta"):
        rebuilt = build_model(arch, **kwargs)
    _, missing, unexpected, mismatched, _ = C._compare(rebuilt, fam.to_canonical(file_sd))
    assert (missing, unexpected, mismatched) == ([], [], [])


def test_every_family_of_this_zoo_is_registered():
    names = {(f.arch, f.family) for f in FAMILIES}
    assert {("nafnet", "official"), ("nafnet_local", "official"), ("nafnet", "maskdcpt"), ("restormer", "official"),
            ("restormer", "maskdcpt"), ("promptir", "official"), ("ram_promptir", "ram"),
            ("maskdcpt_promptir", "maskdcpt"), ("lora_restormer", "official")} <= names


# ------------------------------------------------------------------ convert CLI


def _convert(argv):
    from anyrestore.cli import convert

    parser = argparse.ArgumentParser()
    convert.add_parser(parser.add_subparsers())
    return convert.run(parser.parse_args(["convert", *argv]))


def test_convert_cli_writes_our_format(tmp_path, capsys):
    model = rnd("nafnet-tiny", ln_eps=1e-5, pad_mode="reflect")
    src = tmp_path / "nafnet_maskdcpt_5d.pth"
    torch.save({"params": model.state_dict(), "params_ema": C.export_state_dict(model, "maskdcpt")}, src)
    out = tmp_path / "out.safetensors"
    assert _convert([str(src), str(out), "--param-key", "params_ema"]) == 0
    assert "family maskdcpt" in capsys.readouterr().out
    sd, meta = C.load_state_dict_file(out)
    assert meta["family_origin"] == "maskdcpt" and meta["weights"] == "ema"
    assert meta["source_sha256"] == C.file_sha256(src)
    assert json.loads(meta["arch_kwargs"])["ln_eps"] == 1e-5
    assert same_output(C.load_model(out), model)
    from anyrestore.errors import ConfigError

    with pytest.raises(ConfigError, match="exists"):
        _convert([str(src), str(out)])
    with pytest.raises(ConfigError, match="safetensors"):
        _convert([str(src), str(tmp_path / "out.pth")])


def test_convert_cli_exports_a_family_layout(tmp_path):
    model = rnd("nafnet-tiny", ln_eps=1e-5, pad_mode="reflect")
    src = tmp_path / "ours.safetensors"
    C.save_model(model, src)
    out = tmp_path / "nafnet_maskdcpt.pth"
    assert _convert([str(src), str(out), "--to", "maskdcpt"]) == 0
    raw = torch.load(out, weights_only=True)
    assert set(raw) == {"params"} and "encoders.0.blocks.0.conv1.weight" in raw["params"]
    back = C.load_model(out)
    assert back.checkpoint_info["family"] == "maskdcpt" and same_output(back, model)
    official = tmp_path / "plain.safetensors"
    C.save_model(rnd("nafnet-tiny"), official)
    from anyrestore.errors import AnyRestoreError

    with pytest.raises(AnyRestoreError, match="ln_eps=1e-06 .*implies 1e-05"):
        _convert([str(official), str(tmp_path / "x.pth"), "--to", "maskdcpt"])
    with pytest.raises(AnyRestoreError, match="cannot export 'nafnet' as family 'ram'"):
        _convert([str(official), str(tmp_path / "y.safetensors"), "--to", "ram"])
