"""benchmarks/training.py: the parts it times and its table."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def keep_torch_threads():
    threads = torch.get_num_threads()  # main() sets the process-wide count from --threads
    yield
    torch.set_num_threads(threads)


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_training", REPO / "benchmarks" / "training.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_data_part_alone_runs_past_an_epoch_and_prints_its_row(monkeypatch, capsys):
    bench = load_bench()
    recipe = REPO / "configs" / "tiny" / "smoke.yaml"
    # more batches than one epoch of the smoke recipe holds: the timer must move on to the next epoch
    monkeypatch.setattr(sys, "argv", ["training.py", "--recipe", str(recipe), "--parts", "data", "--iterations", "40",
                                      "--threads", "1", "data.epoch_length=16", "data.batch_size=2"])
    bench.main()
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| part")]
    assert len(rows) == 1 and rows[0].startswith("| data pipeline alone |")
    assert float(rows[0].split("|")[2]) > 0
    assert "data/model time ratio" not in out


def test_unknown_part_is_rejected(monkeypatch, capsys):
    bench = load_bench()
    monkeypatch.setattr(sys, "argv", ["training.py", "--parts", "data,gpu"])
    with pytest.raises(SystemExit) as exc:
        bench.main()
    assert exc.value.code == 2 and "--parts takes data, model and/or trainer" in capsys.readouterr().err
