"""benchmarks/backbones.py: its spandrel references really compute the same function as ours (otherwise the
speed ratio it prints compares different networks), and a timing cell runs under autocast."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from _zoo_testutil import randomize_
from anyrestore.archs import build_model

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.parity


@pytest.fixture(scope="module")
def bench():
    pytest.importorskip("spandrel")
    spec = importlib.util.spec_from_file_location("bench_backbones", REPO / "benchmarks" / "backbones.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("preset,overrides", [("nafnet-tiny", {}), ("restormer-tiny", {}),
                                              ("swinir-tiny", {"img_size": 128}), ("retinexformer-tiny", {})])
def test_reference_computes_the_same_function(bench, preset, overrides):
    model = randomize_(build_model(preset, **overrides)).eval()
    ref = bench.reference_model(model)
    assert ref is not None and type(ref).__module__.startswith(("spandrel", "spandrel_extra_arches"))
    x = torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref.eval()(x), rtol=1e-4, atol=1e-5)


def test_no_reference_where_none_exists(bench):
    assert bench.reference_model(build_model("promptir-tiny")) is None  # spandrel has no whole PromptIR
    assert bench.reference_model(build_model("nafnet-tiny", ln_eps=1e-5)) is None  # MaskDCPT numerics
    assert bench.reference_model(build_model("swinir-tiny")) is None  # img_size 32: no official layout
    local = build_model("nafnet_local", train_size=32, **build_model("nafnet-tiny").arch_kwargs)
    assert bench.reference_model(local, 48) is not None  # TLC inactive up to 1.5x the training size
    assert bench.reference_model(local, 64) is None  # TLC active: a different function from spandrel's NAFNet


def test_timing_cell_under_bf16_autocast(bench):
    threads = torch.get_num_threads()
    try:
        row = bench.child("retinexformer-tiny", "time", 32, 1, "cpu", threads, "bf16")
    finally:
        torch.set_num_threads(threads)  # child() sets the thread count of its (normally separate) process
    assert row["params"] == sum(p.numel() for p in build_model("retinexformer-tiny").parameters())
    assert row["ours_s"] > 0 and row["spandrel_s"] > 0
