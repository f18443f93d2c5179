"""The JPEG refiner (anyrestore.archs.jpeg_refiner) inside the JPEG projection, and its training script."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from skimage import data as skdata

from _cli_testutil import load_script, randomize_parameters
from anyrestore.archs import build_model
from anyrestore.archs.jpeg_projection import JpegProjection, block_dct, interval_centres, luma_levels
from anyrestore.archs.jpeg_refiner import JpegRefiner
from anyrestore.checkpoints import load_model, save_model
from anyrestore.degradations.jpeg import jpeg_uint8


def _photo_and_jpeg(quality: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    rgb = np.ascontiguousarray(skdata.astronaut()[128:384, 64:448])
    to_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float() / 255.0  # noqa: E731
    return to_tensor(rgb), to_tensor(jpeg_uint8(rgb, quality))


def test_an_untrained_refiner_is_the_identity():
    degraded, restored = torch.rand(2, 3, 37, 45), torch.rand(2, 3, 37, 45)
    out = JpegRefiner()(degraded, restored, torch.tensor([8.0, 40.0]))
    assert torch.equal(out, restored)


def test_the_cells_stay_on_the_block_grid():
    # padding goes to the bottom and right: a window's correction does not depend on how much is cut off there
    refiner = randomize_parameters(JpegRefiner(width=8, depth=3), seed=0, scale=0.05).eval()
    degraded, restored = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    step = torch.tensor([20.0])
    whole = refiner(degraded, restored, step)
    cut = refiner(degraded[..., :62, :61], restored[..., :62, :61], step)
    assert cut.shape == (1, 3, 62, 61)
    # away from the cut (the receptive field is 3 cells of 4 pixels) the two agree
    torch.testing.assert_close(cut[..., :48, :48], whole[..., :48, :48])
    assert not torch.allclose(refiner(degraded, restored, torch.tensor([80.0])), whole)  # the step is an input


def test_it_needs_the_projection_and_adds_its_keys():
    with pytest.raises(ValueError, match="jpeg_refiner needs jpeg_projection"):
        build_model("nafnet-tiny", jpeg_refiner=True)
    plain = build_model("nafnet-tiny", jpeg_projection=True)
    refined = build_model("nafnet-tiny", jpeg_projection=True, jpeg_refiner=True)
    added = set(refined.state_dict()) - set(plain.state_dict())
    assert added and all(k.startswith("jpeg_projection.refiner.") for k in added)
    assert set(plain.state_dict()) <= set(refined.state_dict())


def test_it_runs_only_where_the_gate_passes_and_its_output_is_projected():
    clean, degraded = _photo_and_jpeg(30)
    plain, stage = JpegProjection(), JpegProjection(refiner=True)
    stage.requires_grad_(False)
    with torch.no_grad():
        stage.refiner.tail.bias[:16].fill_(0.05)  # the 16 red values of each cell: red up by about 13 levels
    # a JPEG restored as itself: the gate passes, the refiner runs, then the luma goes back into its intervals
    out = stage(degraded[None], degraded[None])[0]
    assert not torch.equal(out, plain(degraded[None], degraded[None])[0])
    table = stage.table_for(degraded)
    c_in, c_out = block_dct(luma_levels(degraded)), block_dct(luma_levels(out))
    step = table.to(c_in)
    unclipped = ((out > 0.002) & (out < 0.998)).all(0)[: c_in.shape[0] * 8, : c_in.shape[1] * 8]
    blocks = unclipped.reshape(c_in.shape[0], 8, c_in.shape[1], 8).all(3).all(1)
    distance = (c_out - interval_centres(c_in, step)).abs()[blocks]
    assert bool(blocks.any()) and float((distance - step / 2).max()) < 0.5  # decoder rounding
    # the colour the refiner gave stays (the projection moves R, G and B alike): red gained on green by 0.05
    red_over_green = lambda img: (img[0] - img[1]).mean().item()  # noqa: E731
    assert red_over_green(out) - red_over_green(degraded) == pytest.approx(0.05, abs=0.005)
    # a non-JPEG input (the clean photo) is left exactly as restored
    noisy = (clean + 0.02 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    assert torch.equal(stage(noisy[None], clean[None])[0], clean)


def _tiny_unet(path, **kwargs):
    """nafnet-tiny whose U-Net returns its input (zero ending), so the gate passes the JPEG windows."""
    model = build_model("nafnet-tiny", **kwargs)
    with torch.no_grad():
        model.ending.weight.zero_()
        model.ending.bias.zero_()
    return save_model(model, path)


def test_the_training_script_trains_only_the_refiner(tmp_path, capsys):
    torch.manual_seed(0)
    weights = _tiny_unet(tmp_path / "projection.safetensors", jpeg_projection=True)
    out = tmp_path / "refined.safetensors"
    script = load_script("scripts/train_jpeg_refiner.py")
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(skdata.chelsea()).save(photos / "chelsea.png")
    options = ["--samples", "6", "--steps", "3", "--batch", "2", "--photos", str(photos)]
    with pytest.raises(SystemExit) as refused:
        script.main(["--weights", str(weights), "-o", str(out), "--release", "0", *options])
    assert refused.value.code == 2 and not out.exists()
    cache = tmp_path / "set.pt"
    assert script.main(["--weights", str(weights), "-o", str(out), "--release", "16", "--cache", str(cache),
                        *options]) == 0
    before, after = load_model(weights), load_model(out)
    assert after.jpeg_projection.refiner is not None
    for key, value in before.state_dict().items():
        assert torch.equal(after.state_dict()[key], value), key
    trained = [v for k, v in after.state_dict().items() if k.startswith("jpeg_projection.refiner.tail.")]
    assert any(bool(v.abs().sum() > 0) for v in trained)  # it learnt something: the tail started at zero
    with safe_open(out, "pt") as f:
        meta = f.metadata()
    assert json.loads(meta["arch_kwargs"])["jpeg_refiner"] is True
    assert (meta["run"], meta["stage"], meta["release"]) == ("default-jpeg-refiner", "jpeg_refiner", "16")
    assert meta["previous_sha256"] == before.checkpoint_info["sha256"]
    data = torch.load(cache, weights_only=True)
    assert data["degraded"].shape == (6, 3, 160, 160) and data["degraded"].dtype == torch.uint8
    assert bool((data["mean_step"] >= 1).all())
    # a second run reads the set back; it is keyed by the U-Net alone, not by the refiner's random start
    capsys.readouterr()
    assert script.main(["--weights", str(weights), "-o", str(tmp_path / "second.safetensors"), "--cache",
                        str(cache), *options]) == 0
    assert f"training set from {cache}" in capsys.readouterr().out
    assert script.unet_sha256(after) == script.unet_sha256(before)
    with pytest.raises(SystemExit, match="already has a JPEG refiner"):
        script.main(["--weights", str(out), "-o", str(tmp_path / "again.safetensors"), *options])
    without = _tiny_unet(tmp_path / "plain.safetensors")
    with pytest.raises(SystemExit, match="has no JPEG projection"):
        script.main(["--weights", str(without), "-o", str(tmp_path / "again.safetensors"), *options])
