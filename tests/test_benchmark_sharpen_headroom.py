"""benchmarks/sharpen_headroom.py: the model's sharpen stage against oracle unsharp masking and Wiener deblurring."""
from __future__ import annotations

import json

import pytest
import torch

from _cli_testutil import load_script, tiny_stage_model

headroom = load_script("benchmarks/sharpen_headroom.py")


@pytest.fixture(scope="module")
def identity_unet(tmp_path_factory):
    """nafnet-tiny with an unsharp-mask stage whose U-Net returns its input."""
    return tiny_stage_model(tmp_path_factory.mktemp("headroom"), identity_unet=True, sharpen=True)


def test_the_sigma_of_a_blur_spec_is_read_from_its_first_term():
    assert headroom.blur_sigma("blur:k15s1.5+noise:15+jpeg:50") == 1.5
    assert headroom.blur_sigma("blur:k15s2.0") == 2.0


def test_report_rows_and_the_oracles_deblur_an_unrestored_blur(identity_unet, tmp_path):
    weights, photos = identity_unet
    out = tmp_path / "headroom.json"
    assert headroom.main(["--model", str(weights), "--photos", str(photos), "--crops", "2",
                          "--degradations", "blur:k15s2.0", "--threads", "1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["sharpen_mode"] == "unsharp"
    (r,) = report["rows"]
    assert abs(r["unet_db"] - r["input_db"]) < 1e-6  # the U-Net is the identity here
    assert r["oracle_wiener_db"] > r["input_db"] + 1.0  # a known Gaussian blur is deconvolved
    assert r["oracle_unsharp_db"] > r["input_db"]
    assert "model_sharpen_db" in r and r["wiener_sigma"] in {s * 2.0 for s in headroom.KERNEL_SCALES}


def test_bad_arguments_are_one_line_errors(identity_unet, tmp_path, capsys):
    weights, photos = identity_unet
    assert headroom.main(["--model", str(weights), "--photos", str(photos), "--degradations", "noise:25"]) == 2
    assert "--degradations must be blur specs" in capsys.readouterr().err
    assert headroom.main(["--model", str(weights), "--photos", str(tmp_path / "none")]) == 2
    assert "no photos in" in capsys.readouterr().err
