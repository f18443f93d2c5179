"""`anyrestore restore --model PATH` with every supported checkpoint container/family (issue #3 item 4), its
error paths, and tiled inference through a real NAFNet (pooled channel attention, issue #2 item 5)."""
import argparse

import pytest
import torch

import anyrestore.cli as cli
from _zoo_testutil import randomize_
from anyrestore.api import SAMPLES_DIR
from anyrestore.archs import build_model
from anyrestore.checkpoints import export_state_dict
from anyrestore.inference import Predictor
from anyrestore.io import read_image, read_image_info, write_image
from anyrestore.metrics import psnr
from _cli_testutil import run_cli


@pytest.fixture
def photo(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "cat.png", read_image(SAMPLES_DIR / "chelsea_noise25.png")[:, 40:77, 100:153])  # 37x53
    return src / "cat.png"


def _basicsr_pth(model, path, family):
    sd = export_state_dict(model, family)
    torch.save({"params": sd, "params_ema": sd}, path)


def _lightning_ckpt(model, path, family):
    torch.save({"epoch": 1, "global_step": 7, "pytorch-lightning_version": "2.1",
                "state_dict": {f"net.{k}": v for k, v in export_state_dict(model, family).items()}}, path)


def _module_prefixed_bare(model, path, family):
    torch.save({f"module.{k}": v for k, v in export_state_dict(model, family).items()}, path)


CASES = [  # preset, overrides, family, writer, suffix
    ("nafnet-tiny", {}, "official", _basicsr_pth, ".pth"),
    ("nafnet-tiny", {"ln_eps": 1e-5, "pad_mode": "reflect"}, "maskdcpt", _basicsr_pth, ".pth"),
    ("promptir-tiny", {}, "official", _lightning_ckpt, ".ckpt"),
    ("promptir-ram-tiny", {}, "ram", _basicsr_pth, ".pth"),  # ImageNet-normalised input
    ("swinir-ram-tiny", {}, "ram", _module_prefixed_bare, ".pt"),  # ImageNet-normalised input
    ("restormer-tiny", {}, "official", _module_prefixed_bare, ".pth"),
]


@pytest.mark.parametrize("preset,overrides,family,writer,suffix", CASES,
                         ids=[f"{c[0]}-{c[2]}-{c[3].__name__.strip('_')}" for c in CASES])
def test_restore_cli_with_checkpoint_file(capsys, tmp_path, photo, preset, overrides, family, writer, suffix):
    model = randomize_(build_model(preset, **overrides), std=0.02).eval()
    ckpt = tmp_path / f"weights{suffix}"
    writer(model, ckpt, family)

    code, out, err = run_cli(capsys, "restore", photo, "-o", tmp_path / "out", "--model", ckpt, "--device", "cpu")
    assert code == 0, err
    assert f"restored 1 image(s) with model '{ckpt}'" in out

    # independent expectation: the original in-memory model (with its preset's normalisation) through the predictor
    image, info = read_image_info(photo)
    with torch.no_grad():
        expected = Predictor(model, device="cpu")(image)
    write_image(tmp_path / "expected.png", expected, info=info)
    got = read_image(tmp_path / "out" / "cat.png")
    assert got.shape == image.shape
    assert torch.equal(got, read_image(tmp_path / "expected.png"))
    assert not torch.equal(got, image)  # the model really ran


def test_restore_cli_normalisation_matters_for_ram_checkpoints(tmp_path, photo):
    """Guards the test above: a RAM model run without its ImageNet normalisation gives a different image."""
    model = randomize_(build_model("promptir-ram-tiny"), std=0.02).eval()
    image = read_image(photo)
    raw = build_model("promptir-tiny")  # any model-like object would do; we only need the meta switched off
    with torch.no_grad():
        normalised = Predictor(model, device="cpu")(image)
        model.meta, keep = raw.meta, model.meta
        plain = Predictor(model, device="cpu")(image)
        model.meta = keep
    assert keep.mean is not None and raw.meta.mean is None
    assert (torch.round(normalised * 255) != torch.round(plain * 255)).float().mean() > 0.05  # visible in 8 bits


def test_restore_cli_refuses_pickled_code(capsys, tmp_path, photo):
    ckpt = tmp_path / "unsafe.pth"
    torch.save({"params": build_model("nafnet-tiny").state_dict(), "opt": argparse.Namespace(lr=1)}, ckpt)
    code, out, err = run_cli(capsys, "restore", photo, "-o", tmp_path / "out", "--model", ckpt)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "refused global: argparse.Namespace" in err and "--trust-checkpoint" in err
    assert not (tmp_path / "out" / "cat.png").exists()


def test_restore_help_mentions_trust_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["restore", "--help"])
    assert exc.value.code == 0
    assert "--trust-checkpoint" in capsys.readouterr().out


def test_restore_cli_mismatched_checkpoint_is_one_line_error(capsys, tmp_path, photo):
    sd = export_state_dict(randomize_(build_model("nafnet-tiny")).eval(), "official")
    key = next(k for k, v in sd.items() if v.ndim == 4)
    sd[key] = torch.zeros(sd[key].shape[0] + 1, *sd[key].shape[1:])
    ckpt = tmp_path / "broken.pth"
    torch.save({"params": sd}, ckpt)
    code, out, err = run_cli(capsys, "restore", photo, "-o", tmp_path / "out", "--model", ckpt)
    assert code == 2 and "Traceback" not in err
    assert err.startswith("anyrestore restore: error:") and "broken.pth" in err
    assert not (tmp_path / "out" / "cat.png").exists()


def test_restore_cli_junk_model_file(capsys, tmp_path, photo):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"definitely not a checkpoint")
    code, out, err = run_cli(capsys, "restore", photo, "-o", tmp_path / "out", "--model", junk)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "junk.pth" in err
    assert "not a PyTorch weights file" in err
    assert "weights_only" not in err  # torch's generic advice to switch the safety off must not reach the user
    (tmp_path / "empty.pth").write_bytes(b"")
    code, out, err = run_cli(capsys, "restore", photo, "-o", tmp_path / "out", "--model", tmp_path / "empty.pth")
    assert code == 2 and "empty.pth" in err and "empty or truncated" in err
    code, out, err = run_cli(capsys, "convert", photo, tmp_path / "x.safetensors")  # an image is no checkpoint
    assert code == 2 and "cat.png: not a PyTorch weights file" in err and not (tmp_path / "x.safetensors").exists()


def test_real_nafnet_tiled_at_default_tile_has_invisible_seams():
    """NAFNet's simplified channel attention pools over the whole input, so tiles see different statistics;
    at the default tile (256) and overlap (32) the blended result must stay >= 40 dB from the whole-image one."""
    model = randomize_(build_model("nafnet-tiny"), std=0.1).eval()
    with torch.no_grad():  # strengthen the pooled attention so that the global statistics really matter
        for name, p in model.named_parameters():
            if ".sca." in name:
                p.mul_(20)
    g = torch.Generator().manual_seed(3)
    base = torch.rand(1, 3, 24, 36, generator=g)
    img = torch.nn.functional.interpolate(base, size=(320, 480), mode="bicubic", align_corners=False)[0].clamp(0, 1)
    whole = Predictor(model, device="cpu", tile=0)(img)
    pred = Predictor(model, device="cpu", max_whole_pixels=0)
    tiled = pred(img)
    assert pred.last_run["mode"] == "tiled" and pred.last_run["tile"] == 256 and pred.last_run["overlap"] == 32
    score = psnr(tiled, whole, protocol="skimage")
    assert 40 <= score < 90, score  # tiles really differ (global op, ~62 dB measured), yet no visible seams


TINY_BASE = {"nafnet": "nafnet-tiny", "restormer": "restormer-tiny", "promptir": "promptir-tiny",
             "swinir": "swinir-tiny", "retinexformer": "retinexformer-tiny"}
ARCH_BASES = [("nafnet", "nafnet"), ("nafnet_local", "nafnet"), ("restormer", "restormer"),
              ("lora_restormer", "restormer"), ("promptir", "promptir"), ("ram_promptir", "promptir"),
              ("maskdcpt_promptir", "promptir"), ("swinir", "swinir"), ("ram_swinir", "swinir"),
              ("maskdcpt_swinir", "swinir"), ("retinexformer", "retinexformer")]


@pytest.mark.parametrize("arch,base", ARCH_BASES, ids=[a for a, _ in ARCH_BASES])
def test_every_architecture_by_registry_name_restores_odd_sizes_and_trains(arch, base):
    """Built by architecture name (neutral metadata, no preset), every backbone goes through the predictor on a
    37x53 image and returns that size; gradients reach every trainable parameter that upstream uses."""
    model = randomize_(build_model(arch, **build_model(TINY_BASE[base]).arch_kwargs)).eval()
    x = torch.rand(3, 37, 53, generator=torch.Generator().manual_seed(0))
    y = Predictor(model, device="cpu", tile=0)(x)
    assert y.shape == x.shape and torch.isfinite(y).all() and not torch.equal(y, x)

    from anyrestore.inference import pad_to_multiple

    model.train()
    model(pad_to_multiple(x[None], model.meta.pad_multiple)).square().mean().backward()
    unused = ("chnl_reduce", "reduce_noise_channel_")  # upstream PromptIR's never-called convs
    for name, p in model.named_parameters():
        if p.requires_grad and not name.startswith(unused):
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_api_restore_rereads_a_rewritten_checkpoint(tmp_path):
    import os

    import anyrestore
    from anyrestore.checkpoints import save_model

    path = tmp_path / "run.safetensors"
    x = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    outputs = []
    for seed in (0, 1):
        model = randomize_(build_model("nafnet-tiny"), seed=seed, std=0.02).eval()
        save_model(model, path)
        os.utime(path, ns=(10**18 + seed, 10**18 + seed))  # distinct mtimes even on coarse-clock file systems
        with torch.no_grad():
            expected = Predictor(model, device="cpu")(x)
        outputs.append(anyrestore.restore(x, model=str(path), device="cpu"))
        assert torch.equal(outputs[-1], expected)
    assert not torch.equal(outputs[0], outputs[1])


def test_tiles_are_aligned_to_the_model_multiple():
    from anyrestore.archs.registry import ModelMeta

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.meta, self.shapes = ModelMeta(pad_multiple=16), []

        def forward(self, x):
            self.shapes.append(tuple(x.shape[-2:]))
            return x * 0.5

    model = Recorder()
    x = torch.rand(3, 151, 233, generator=torch.Generator().manual_seed(0))
    y = Predictor(model, device="cpu", tile=100, overlap=20)(x)  # 100 is not a multiple of 16
    assert len(model.shapes) > 1 and all(h % 16 == 0 and w % 16 == 0 for h, w in model.shapes)
    assert torch.allclose(y, x * 0.5, atol=1e-6)
