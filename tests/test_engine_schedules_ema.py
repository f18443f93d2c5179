import math

import pytest
import torch
from torch import nn

from anyrestore.engine.config import ScheduleConfig
from anyrestore.engine.ema import ModelEMA
from anyrestore.engine.schedules import lr_at


def test_cosine_with_warmup_follows_basicsr_rule():
    sched = ScheduleConfig(type="cosine", warmup=10, eta_min=6e-5)
    base, total = 1e-4, 400
    assert lr_at(1, base, sched, total) == pytest.approx(1e-5)
    assert lr_at(9, base, sched, total) == pytest.approx(9e-5)
    for t in (10, 11, 200, 400):
        expected = 6e-5 + 0.5 * (base - 6e-5) * (1 + math.cos(math.pi * (t - 1) / total))
        assert lr_at(t, base, sched, total) == pytest.approx(expected, rel=1e-12)


def test_cosine_restarts_and_weights():
    sched = ScheduleConfig(type="cosine", periods=[4, 6], restart_weights=[1.0, 0.5], eta_min=0.0)
    lrs = [lr_at(t, 1.0, sched, 10) for t in range(1, 12)]
    assert lrs[0] == pytest.approx(1.0)  # x = 0, first period starts
    assert lrs[4] == pytest.approx(0.0, abs=1e-12)  # x = 4: end of the first period
    assert lrs[5] == pytest.approx(0.5 * 0.5 * (1 + math.cos(math.pi * 1 / 6)))  # x = 5 in the second period
    assert lrs[10] == pytest.approx(0.0, abs=1e-12)


def test_multistep_and_constant():
    sched = ScheduleConfig(type="multistep", milestones=[3, 5], gamma=0.1)
    assert [lr_at(t, 1.0, sched, 10) for t in (1, 3, 4, 5, 6, 7)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    assert lr_at(7, 2.0, ScheduleConfig(type="constant"), 10) == 2.0


def test_ema_matches_closed_form_and_copies_buffers():
    model = nn.BatchNorm1d(3)
    ema = ModelEMA(model, decay=0.9)
    start = model.weight.detach().clone()
    targets = [torch.full((3,), float(v)) for v in (2.0, 4.0, -1.0)]
    expected = start.clone()
    for target in targets:
        with torch.no_grad():
            model.weight.copy_(target)
            model.running_mean.add_(1.0)
        ema.update(model)
        expected = 0.9 * expected + 0.1 * target
    torch.testing.assert_close(ema.module.weight, expected)
    torch.testing.assert_close(ema.module.running_mean, model.running_mean)
    assert not any(p.requires_grad for p in ema.module.parameters())
    with pytest.raises(ValueError):
        ModelEMA(model, decay=1.0)
