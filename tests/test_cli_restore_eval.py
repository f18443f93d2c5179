"""`anyrestore restore / eval / models`, the Python API and the classical restorer."""
import json

import cv2
import numpy as np
import pytest
import torch
from torch import nn

import anyrestore
import anyrestore.api as api
import anyrestore.cli as cli
from anyrestore.archs import registry
from anyrestore.archs.classical import ClassicalRestorer, blockiness, estimate_noise_sigma
from anyrestore.errors import UnknownModelError
from anyrestore.io import read_image, read_image_info, write_image
from anyrestore.metrics import psnr
from _cli_testutil import run_cli

SAMPLES = api.SAMPLES_DIR
OWN_COMMANDS = ("restore", "eval", "models")


@pytest.fixture
def photos(tmp_path):
    """A folder with an RGB 8-bit, a gray 16-bit and an RGBA image (small crops of the sample)."""
    src = tmp_path / "in"
    src.mkdir()
    noisy = read_image(SAMPLES / "chelsea_noise25.png")[:, :64, :80]
    write_image(src / "rgb.png", noisy)
    gray16 = np.round(noisy.mean(0).numpy() * 65535).astype(np.uint16)
    cv2.imwrite(str(src / "gray16.png"), gray16)
    bgra = np.dstack([np.round(noisy.permute(1, 2, 0).numpy()[:, :, ::-1] * 255).astype(np.uint8),
                      np.linspace(0, 255, 64 * 80).reshape(64, 80).astype(np.uint8)])
    cv2.imwrite(str(src / "alpha.png"), bgra)
    return src


# --- CLI -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", OWN_COMMANDS)
def test_help_for_every_command(capsys, command):
    assert command in cli.COMMANDS
    with pytest.raises(SystemExit) as exc:
        cli.main([command, "--help"])
    assert exc.value.code == 0
    assert f"anyrestore {command}" in capsys.readouterr().out


def test_restore_sample_reports_psnr(capsys, tmp_path):
    code, out, err = run_cli(capsys, "restore", "--sample", "-o", str(tmp_path / "out"), "--model", "classical")
    assert code == 0, err
    result = tmp_path / "out" / "chelsea_noise25.png"
    assert result.is_file() and str(result) in out
    clean = read_image(SAMPLES / "chelsea.png")
    gain = psnr(read_image(result), clean) - psnr(read_image(SAMPLES / "chelsea_noise25.png"), clean)
    assert gain > 6
    assert "PSNR" in out and f"{psnr(read_image(result), clean):.2f} dB" in out


def test_restore_folder_keeps_depth_gray_alpha(capsys, tmp_path, photos):
    out_dir = tmp_path / "out"
    code, out, err = run_cli(capsys, "restore", str(photos), "-o", str(out_dir), "--tile", "64", "--overlap", "16")
    assert code == 0, err
    assert "restored 3 image(s)" in out and str(out_dir) in out
    gray = cv2.imread(str(out_dir / "gray16.png"), cv2.IMREAD_UNCHANGED)
    assert gray.dtype == np.uint16 and gray.shape == (64, 80)
    rgba = cv2.imread(str(out_dir / "alpha.png"), cv2.IMREAD_UNCHANGED)
    src_rgba = cv2.imread(str(photos / "alpha.png"), cv2.IMREAD_UNCHANGED)
    assert rgba.shape == (64, 80, 4) and np.array_equal(rgba[:, :, 3], src_rgba[:, :, 3])
    assert read_image_info(out_dir / "rgb.png")[1].bit_depth == 8


def test_restore_refuses_existing_output_unless_overwrite(capsys, tmp_path, photos):
    out_dir = tmp_path / "out"
    rgb = str(photos / "rgb.png")
    assert run_cli(capsys, "restore", rgb, "-o", str(out_dir))[0] == 0
    before = (out_dir / "rgb.png").read_bytes()
    code, out, err = run_cli(capsys, "restore", rgb, "-o", str(out_dir))
    assert code == 2 and "output exists" in err and "--overwrite" in err and err.count("\n") == 1
    assert (out_dir / "rgb.png").read_bytes() == before
    assert run_cli(capsys, "restore", rgb, "-o", str(out_dir), "--overwrite")[0] == 0


def test_restore_never_overwrites_an_input(capsys, photos):
    before = (photos / "rgb.png").read_bytes()
    code, _, err = run_cli(capsys, "restore", str(photos / "rgb.png"), "-o", str(photos), "--overwrite")
    assert code == 2 and "overwrite an input" in err
    assert (photos / "rgb.png").read_bytes() == before


def test_restore_duplicate_stems(capsys, tmp_path, photos):
    write_image(photos / "rgb.jpg", read_image(photos / "rgb.png"))
    code, _, err = run_cli(capsys, "restore", str(photos), "-o", str(tmp_path / "out"))
    assert code == 2 and "share an output name" in err and "rgb.jpg" in err
    assert not (tmp_path / "out").exists()


def test_restore_bad_inputs(capsys, tmp_path, photos):
    code, _, err = run_cli(capsys, "restore", str(tmp_path / "nope.png"), "-o", str(tmp_path / "o"))
    assert code == 2 and "input not found" in err and err.count("\n") == 1
    (photos / "broken.png").write_bytes(b"not a png")
    code, _, err = run_cli(capsys, "restore", str(photos / "broken.png"), "-o", str(tmp_path / "o"))
    assert code == 2 and "broken.png" in err and "Traceback" not in err
    assert not (tmp_path / "o" / "broken.png").exists()
    code, _, err = run_cli(capsys, "restore", "-o", str(tmp_path / "o"))
    assert code == 2 and "no input" in err
    with pytest.raises(Exception):
        cli.main(["--debug", "restore", str(tmp_path / "nope.png"), "-o", str(tmp_path / "o")])


def test_restore_unknown_model(capsys, tmp_path, photos):
    code, _, err = run_cli(capsys, "restore", str(photos / "rgb.png"), "-o", str(tmp_path / "o"), "--model", "clasical")
    assert code == 2 and "classical" in err  # close-match suggestion
    code, _, err = run_cli(capsys, "restore", str(photos / "rgb.png"), "-o", str(tmp_path / "o"),
                           "--model", "weights/missing.pth")
    assert code == 2 and "not found" in err


def test_eval_table_json_and_missing_pairs(capsys, tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir(), gt.mkdir()
    clean = read_image(SAMPLES / "chelsea.png")[:, :64, :64]
    noisy = read_image(SAMPLES / "chelsea_noise25.png")[:, :64, :64]
    write_image(gt / "a.png", clean), write_image(gt / "b.png", clean)
    write_image(pred / "a.png", noisy), write_image(pred / "b.jpg", clean)
    code, out, err = run_cli(capsys, "eval", "--pred", str(pred), "--gt", str(gt), "--protocol", "skimage")
    assert code == 0, err
    expected_a = psnr(read_image(pred / "a.png"), clean, protocol="skimage")
    assert f"{expected_a:.2f}" in out and "mean (2)" in out
    code, out, _ = run_cli(capsys, "eval", "--pred", str(pred), "--gt", str(gt), "--json", "--y", "--crop", "2")
    record = json.loads(out)
    assert record["protocol"] == "basicsr" and record["channel"] == "y" and record["crop_border"] == 2
    assert [r["image"] for r in record["images"]] == ["a", "b"] and record["count"] == 2
    assert record["images"][0]["psnr"] == pytest.approx(psnr(read_image(pred / "a.png"), clean, y=True, crop_border=2))
    (gt / "c.png").write_bytes((gt / "a.png").read_bytes())
    code, _, err = run_cli(capsys, "eval", "--pred", str(pred), "--gt", str(gt))
    assert code == 2 and "without prediction: c" in err


def test_models_lists_registry(capsys):
    code, out, _ = run_cli(capsys, "models", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0 and set(rows) == {p.name for p in registry.list_presets()}
    assert rows["classical"]["params"] == 0
    assert sum(r["restore_default"] for r in rows.values()) == 1 and rows[api.default_model_spec()]["restore_default"]
    code, out, _ = run_cli(capsys, "models")
    assert code == 0 and "classical" in out and "* = default" in out


# --- API -----------------------------------------------------------------------------------------------------

class TinyNet(nn.Module):
    def __init__(self, *, width: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return x + 0.1 * self.conv(x)


@pytest.fixture
def tiny_preset():
    registry.register_arch("test_api_tiny")(TinyNet)
    registry.register_preset("test-api-tiny", "test_api_tiny", description="test only", pad_multiple=4, default=True)
    yield "test-api-tiny"
    registry.ARCHS.pop("test_api_tiny")
    registry.PRESETS.pop("test-api-tiny")


def test_api_restore_kinds():
    noisy = read_image(SAMPLES / "chelsea_noise25.png")[:, :48, :64]
    ref = anyrestore.restore(noisy)
    assert ref.shape == noisy.shape and ref.dtype == torch.float32
    u8 = np.round(noisy.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    out = anyrestore.restore(u8)
    assert out.dtype == np.uint8 and out.shape == u8.shape
    assert np.abs(out.astype(int) - np.round(ref.permute(1, 2, 0).numpy() * 255)).max() <= 1
    rgba = np.dstack([u8, np.full(u8.shape[:2], 7, np.uint8)])
    assert np.all(anyrestore.restore(rgba)[:, :, 3] == 7)
    assert anyrestore.restore(u8[:, :, 0]).shape == u8.shape[:2]
    assert anyrestore.restore(u8.astype(np.uint16) * 257).dtype == np.uint16
    batch = anyrestore.restore(torch.stack([noisy, noisy]).double())
    assert batch.shape == (2, 3, 48, 64) and batch.dtype == torch.float64
    assert anyrestore.restore(str(SAMPLES / "chelsea_noise25.png")).shape == (3, 300, 451)
    with pytest.raises(api.InputTypeError):
        anyrestore.restore([1, 2, 3])


def test_api_model_resolution(tmp_path, monkeypatch, tiny_preset):
    from anyrestore.checkpoints import save_model

    monkeypatch.setattr(api, "WEIGHTS_DIR", tmp_path / "no-bundled-weights")
    assert api.default_model_spec() == "classical"
    assert isinstance(anyrestore.load_model(), ClassicalRestorer)
    with pytest.raises(UnknownModelError, match="has no bundled weights; pass a checkpoint path"):
        anyrestore.load_model(tiny_preset)
    model = registry.build_model(tiny_preset)
    path = save_model(model, tmp_path / "tiny.safetensors")
    loaded = anyrestore.load_model(str(path))
    assert torch.equal(loaded.conv.weight, model.conv.weight) and loaded.meta.pad_multiple == 4
    monkeypatch.setattr(api, "WEIGHTS_DIR", tmp_path)
    save_model(model, tmp_path / f"{tiny_preset}.safetensors")  # bundled weights of a preset flagged default
    assert api.default_model_spec() == tiny_preset
    assert isinstance(anyrestore.load_model(), TinyNet) and isinstance(anyrestore.load_model("default"), TinyNet)
    assert isinstance(anyrestore.load_model(tiny_preset), TinyNet)
    x = torch.rand(3, 12, 16)
    with torch.no_grad():
        expected = model(x[None])[0].clamp(0, 1)
    assert torch.allclose(anyrestore.restore(x, model=str(path)), expected, atol=1e-6)


# --- classical restorer --------------------------------------------------------------------------------------

def test_classical_noise_estimate_and_identity_on_clean():
    clean = read_image(SAMPLES / "chelsea.png")
    g = torch.Generator().manual_seed(0)
    for sigma in (10, 25, 50):
        noisy = (clean + sigma / 255 * torch.randn(clean.shape, generator=g)).permute(1, 2, 0).numpy() * 255
        assert abs(estimate_noise_sigma(noisy) - sigma) < 0.12 * sigma
    model = ClassicalRestorer()
    assert sum(p.numel() for p in model.parameters()) == 0
    assert torch.equal(model(clean[None])[0], clean)  # estimate below threshold: left untouched


def test_classical_deblocks_jpeg():
    clean = read_image(SAMPLES / "chelsea.png")
    bgr = np.round(clean.permute(1, 2, 0).numpy()[:, :, ::-1] * 255).astype(np.uint8)
    jpeg = cv2.imdecode(cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 10])[1], cv2.IMREAD_COLOR)
    degraded = torch.from_numpy(jpeg[:, :, ::-1].astype(np.float32) / 255).permute(2, 0, 1)
    assert blockiness(degraded.permute(1, 2, 0).numpy()) > 2 > blockiness(clean.permute(1, 2, 0).numpy())
    restored = ClassicalRestorer()(degraded[None])[0]
    assert psnr(restored, clean) > psnr(degraded, clean) + 0.1


def test_restore_recursive_only_when_asked(capsys, tmp_path, photos):
    nested = photos / "sub"
    nested.mkdir()
    write_image(nested / "deep.png", read_image(photos / "rgb.png"))
    code, out, _ = run_cli(capsys, "restore", str(photos), "-o", str(tmp_path / "flat"))
    assert code == 0 and "restored 3 image(s)" in out and not (tmp_path / "flat" / "deep.png").exists()
    code, out, _ = run_cli(capsys, "restore", str(photos), "-o", str(tmp_path / "all"), "--recursive")
    assert code == 0 and "restored 4 image(s)" in out and (tmp_path / "all" / "deep.png").is_file()
