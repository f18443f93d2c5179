"""Checks against the released RAM files (ram.md §13 items 4 and 12). Skipped unless the files are present:

* ``ANYRESTORE_RAM_MAC_DIR``: the official ``mac_analysis_result`` folder (``ram_swinir_mac/``, ``ram_promptir_mac/``);
* ``ANYRESTORE_RAM_WEIGHTS``: folder with ``ram_swinir_pretrain.pth`` (slow MAC reproduction, GPU advised);
* ``ANYRESTORE_DATASETS``: dataset root with the ``ram7:`` layout (for the MAC reproduction).
"""
import os
from pathlib import Path

import pytest
import torch

from anyrestore.archs.registry import build_model
from anyrestore.methods.ram.finetune import apply_ranking, enumerate_layers, read_ranking

MAC_DIR = Path(os.environ.get("ANYRESTORE_RAM_MAC_DIR", "mac_analysis_result"))
WEIGHTS = Path(os.environ.get("ANYRESTORE_RAM_WEIGHTS", "weights"))
DATASETS = Path(os.environ.get("ANYRESTORE_DATASETS", "datasets"))


@pytest.mark.parametrize("preset, folder, ratio, layers, params", [
    ("swinir-ram", "ram_swinir_mac", 0.1, 26, 2_155_053),
    ("swinir-ram", "ram_swinir_mac", 0.2, 52, 2_948_043),
    ("promptir-ram", "ram_promptir_mac", 0.3, 133, 3_938_755),
    ("promptir-ram", "ram_promptir_mac", 0.1, 44, 616_007),
])
def test_official_rankings_select_the_published_sets(preset, folder, ratio, layers, params):
    directory = MAC_DIR / folder
    if not (directory / "filter_name.txt").is_file():
        pytest.skip(f"official ranking {directory} not present")
    with torch.device("meta"):
        model = build_model(preset)
    ranking = read_ranking(directory)
    assert set(ranking.names) == set(enumerate_layers(model))
    report = apply_ranking(model, directory, ratio)
    assert (report.trainable_layers, report.trainable_params) == (layers, params)


@pytest.mark.slow
def test_mac_on_released_swinir_pretrain_reproduces_the_shipped_ranking():
    weights, shipped = WEIGHTS / "ram_swinir_pretrain.pth", MAC_DIR / "ram_swinir_mac"
    if not (weights.is_file() and (shipped / "filter_name.txt").is_file() and DATASETS.is_dir()):
        pytest.skip("released weights, shipped ranking or datasets not present")
    from scipy.stats import spearmanr

    from anyrestore.checkpoints import load_model
    from anyrestore.methods.ram.mac import MacSettings, rank_layers
    from anyrestore.methods.ram.mac_data import mac_images

    model = load_model(weights, param_key="params")
    model = model.to("cuda" if torch.cuda.is_available() else "cpu")
    data = mac_images(f"ram7:{DATASETS}", count=10, crop=64, seed=0)
    ours = rank_layers(model, [im.image for im in data.images], settings=MacSettings(batch_size=10)).ranking
    theirs = read_ranking(shipped)
    assert ours.names[:3] == theirs.names[:3] == ["conv_last", "patch_embed.norm", "conv_first"]
    overlap = len(set(ours.select(0.1)) & set(theirs.select(0.1))) / 26
    rank_of = {n: i for i, n in enumerate(theirs.names)}
    rho = spearmanr(range(len(ours.names)), [rank_of[n] for n in ours.names]).statistic
    assert overlap >= 0.8 and rho >= 0.9, (overlap, rho)
    assert ours.scores[0] == pytest.approx(83.939728, rel=0.25)
