import json
from pathlib import Path

import numpy as np
import pytest
import torch

from anyrestore.cli import main
from anyrestore.methods.ram.finetune import read_ranking
from anyrestore.methods.ram.mac_data import SYNTHETIC_TASKS, centre_crop, mac_images
from engine_fixtures import smooth_image, write_png


def _ram7_tree(root, count=2):
    rng = np.random.default_rng(0)
    folders = ["OTS_ALPHA/haze/OTS", "rain13k/train/input", "LOL-v2/Real_captured/Train/Low",
               "LOL-v2/Synthetic/Train/Low", "gopro/train/sceneA/blur", "gopro/train/sceneA/sharp", "LSDIR/0001000"]
    for folder in folders:
        for i in range(count):
            write_png(root / folder / f"{i:03d}.png", smooth_image(rng, 40, 36))
    write_png(root / "LSDIR/0001000/tiny.png", smooth_image(rng, 10, 10))  # smaller than the crop: skipped


def test_centre_crop_matches_the_rule():
    img = torch.arange(3 * 7 * 9, dtype=torch.float32).view(3, 7, 9)
    crop = centre_crop(img, 4)
    assert torch.equal(crop, img[:, 1:5, 2:6])
    assert centre_crop(img, 8) is None


def test_ram7_layout_gives_seven_tasks(tmp_path):
    _ram7_tree(tmp_path)
    data = mac_images(f"ram7:{tmp_path}", count=2, crop=32, seed=0)
    tasks = [im.task for im in data.images]
    assert tasks == [t for t in ("dehaze", "derain", "lowlight", "denoise", "motion_deblur", "deblur", "dejpeg")
                     for _ in range(2)]
    lol = [im.path for im in data.images if im.task == "lowlight"]
    assert all("Real_captured" in p for p in lol)  # real captured first, in sorted order
    assert all("/blur/" in im.path for im in data.images if im.task == "motion_deblur")
    noisy = [im for im in data.images if im.task == "denoise"]
    assert noisy[0].degradation["type"] == "noise" and 0 <= noisy[0].degradation["sigma"] <= 50
    assert all(im.image.shape == (3, 32, 32) for im in data.images)
    assert data.skipped == [] and mac_images(f"ram7:{tmp_path}", count=3, crop=32).skipped[-1].endswith("tiny.png")
    again = mac_images(f"ram7:{tmp_path}", count=2, crop=32, seed=0)
    assert all(torch.equal(a.image, b.image) for a, b in zip(data.images, again.images))


def test_synthetic_spec_and_errors():
    data = mac_images("deadleaves+ram-paper", count=2, crop=16, seed=1)
    assert [im.task for im in data.images] == [t for t in SYNTHETIC_TASKS for _ in range(2)]
    jpeg = [im for im in data.images if im.task == "jpeg"]
    assert all(20 <= im.degradation["quality"] <= 90 for im in jpeg)
    from anyrestore.errors import ConfigError

    with pytest.raises(ConfigError, match="neither a folder"):
        mac_images("nowhere+ram-unknown")
    with pytest.raises(ConfigError, match="not found"):
        mac_images("ram7:/definitely/not/here")


def test_mac_command_writes_a_ranking(tmp_path, capsys):
    out = tmp_path / "rank"
    code = main(["mac", "--model", "swinir-ram-tiny", "--data", "deadleaves+ram-official-code", "--images", "1",
                 "--steps", "3", "--crop", "16", "--seed", "2", "-o", str(out)])
    assert code == 0
    assert "ranked" in capsys.readouterr().out
    ranking = read_ranking(out)
    info = json.loads((out / "ranking.json").read_text())
    assert info["passes"] == 3 * 7 and info["settings"]["total_step"] == 3 and info["settings"]["seed"] == 2
    assert len(info["images"]) == 7 and set(info["per_task"]) == set(SYNTHETIC_TASKS)
    assert len(ranking.names) == info["num_layers"] and ranking.scores[0] >= ranking.scores[-1]
    assert (out / "ranking.png").read_bytes()[:4] == b"\x89PNG"


def test_mac_command_random_and_errors(tmp_path, capsys):
    assert main(["mac", "--model", "nafnet-tiny", "--method", "random", "-o", str(tmp_path / "r")]) == 0
    assert read_ranking(tmp_path / "r").info["method"] == "random"
    assert main(["mac", "--model", "nafnet-tiny", "-o", str(tmp_path / "x")]) == 2
    assert "--data is required" in capsys.readouterr().err
    assert main(["mac", "--model", "nafnet-tiny", "--data", "bogus", "-o", str(tmp_path / "y")]) == 2
    assert not (tmp_path / "y").exists()


def test_folder_spec_uses_sorted_centre_crops(tmp_path):
    rng = np.random.default_rng(1)
    for name in ("b.png", "a.png", "c.png"):
        write_png(tmp_path / "lq" / name, smooth_image(rng, 30, 40))
    data = mac_images(str(tmp_path / "lq"), count=2, crop=16)
    assert [Path(im.path).name for im in data.images] == ["a.png", "b.png"]
    assert all(im.task == "lq" and im.image.shape == (3, 16, 16) for im in data.images)
    from anyrestore.data.datasets import read_image

    assert torch.equal(data.images[0].image, read_image(tmp_path / "lq" / "a.png")[:, 7:23, 12:28])


def test_mac_command_analyses_the_non_ema_params_of_a_checkpoint(tmp_path, capsys):
    from anyrestore.archs.registry import build_model
    from anyrestore.checkpoints import file_sha256, save_training_weights
    from anyrestore.methods.ram.mac import MacSettings, rank_layers

    torch.manual_seed(0)
    params, ema = build_model("swinir-ram-tiny"), build_model("swinir-ram-tiny")
    weights = save_training_weights(tmp_path / "pretrain.safetensors", params=params.state_dict(),
                                    params_ema=ema.state_dict(), model=params)
    out = tmp_path / "rank"
    args = ["mac", "--model", str(weights), "--data", "deadleaves+ram-paper", "--images", "1", "--steps", "3",
            "--crop", "16", "--seed", "4", "-o", str(out)]
    assert main(args) == 0
    info = json.loads((out / "ranking.json").read_text())
    assert info["weights"] == {"file": str(weights), "key": "params", "sha256": file_sha256(weights)}
    images = [im.image for im in mac_images("deadleaves+ram-paper", count=1, crop=16, seed=4).images]
    settings = MacSettings(total_step=3, seed=4)
    expected = rank_layers(params, images, settings=settings).ranking
    got = read_ranking(out)
    assert got.names == expected.names
    assert got.scores == pytest.approx(expected.scores, abs=2e-6)
    assert got.scores != pytest.approx(rank_layers(ema, images, settings=settings).ranking.scores, abs=2e-6)
    capsys.readouterr()
    assert main(args[:-2] + ["--top", "0", "-o", str(tmp_path / "bad")]) == 2
    assert "--top must be >= 1" in capsys.readouterr().err and not (tmp_path / "bad").exists()
