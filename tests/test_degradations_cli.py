"""`anyrestore degrade`: degraded copies with label sidecars, --list, --sheet, one-line errors."""
import json

import numpy as np
import pytest
import torch

from anyrestore.cli import main
from anyrestore.io import read_image, write_image


@pytest.fixture
def photo(tmp_path):
    img = torch.rand(3, 40, 52, generator=torch.Generator().manual_seed(0))
    (tmp_path / "in").mkdir()
    return write_image(tmp_path / "in" / "photo.png", img)


def test_list_prints_catalog(capsys):
    assert main(["degrade", "--list"]) == 0
    out = capsys.readouterr().out
    for name in ("noise", "jpeg", "haze", "rain", "snow", "low_light", "default-model", "H-N-R"):
        assert name in out


def test_degrade_writes_image_and_label(tmp_path, photo):
    out = tmp_path / "out"
    assert main(["degrade", str(photo), "-o", str(out), "--type", "noise", "--level", "25", "--seed", "3"]) == 0
    lq = read_image(out / "photo.png")
    clean = read_image(photo)
    assert lq.shape == clean.shape
    est = float((lq - clean).std()) * 255
    assert 20 < est < 30
    label = json.loads((out / "photo.json").read_text())
    assert label["type"] == "noise" and label["params"] == {"sigma": 25.0} and label["level"] == "25"
    assert label["source"].endswith("photo.png") and isinstance(label["seed"], int)
    # same seed -> same output; existing output is protected
    assert main(["degrade", str(photo), "-o", str(out), "--type", "noise:25", "--seed", "3"]) == 2
    assert main(["degrade", str(photo.parent), "-o", str(out), "--type", "noise:25", "--seed", "3",
                 "--overwrite"]) == 0
    assert torch.equal(read_image(out / "photo.png"), lq)


def test_degrade_params_and_mixtures(tmp_path, photo):
    out = tmp_path / "o"
    assert main(["degrade", str(photo), "-o", str(out), "--type", "jpeg", "--param", "quality=20"]) == 0
    assert json.loads((out / "photo.json").read_text())["params"] == {"quality": 20.0}
    assert main(["degrade", str(photo), "-o", str(out), "--type", "blur+noise+jpeg", "--overwrite"]) == 0
    label = json.loads((out / "photo.json").read_text())
    assert [s["type"] for s in label["steps"]] == ["blur", "noise", "jpeg"]


@pytest.mark.parametrize("argv,needle", [
    (["--type", "fog"], "unknown degradation type"),
    (["--type", "noise", "--param", "sigma=400"], "out of range"),
    (["--type", "jpeg", "--level", "loud"], "unknown level"),
    (["--type", "noise", "--param", "sigma"], "K=V"),
    (["--type", "noise", "--level", "25", "--param", "sigma=3"], "fixed by level '25'"),
    (["--type", "blur+noise", "--level", "high"], "--level works with a single type name"),
    (["--type", "default-model", "--level", "25"], "preset 'default-model' takes no ':' argument"),
])
def test_errors_are_one_line_exit_2(tmp_path, photo, capsys, argv, needle):
    code = main(["degrade", str(photo), "-o", str(tmp_path / "x")] + argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and needle in err and "\n" not in err
    assert not (tmp_path / "x" / "photo.png").exists()


def test_missing_input_is_an_error(tmp_path, capsys):
    assert main(["degrade", str(tmp_path / "nope.png"), "-o", str(tmp_path), "--type", "noise"]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    assert main(["degrade", str(tmp_path / "empty"), "-o", str(tmp_path / "out"), "--type", "noise"]) == 2
    assert "no images found in" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_sheet_renders_every_type(tmp_path, photo):
    from anyrestore.degradations import list_types

    sheet = tmp_path / "sheet.png"
    assert main(["degrade", "--sheet", str(photo), "-o", str(sheet), "--tile", "48"]) == 0
    img = read_image(sheet)
    rows = len(list_types()) - 1  # identity has no row
    assert img.shape == (3, rows * 48, 4 * 48)
    tiles = img.reshape(3, rows, 48, 4, 48)
    # each row's degraded tiles differ from its clean tile (below the label band)
    for r in range(rows):
        clean = tiles[:, r, 20:, 0]
        assert any(float((tiles[:, r, 20:, c] - clean).abs().mean()) > 1e-3 for c in (1, 2, 3))
    assert np.isfinite(img.numpy()).all()
