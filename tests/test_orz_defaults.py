"""ORZ's released code as zerorl's defaults: warm-up schedule and value-head initialisation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from zerorl.config import Config
from zerorl.models import init_value_head
from zerorl.workers import OptimSettings, make_optimizer


def _lrs(settings: OptimSettings, steps: int) -> list[float]:
    """The lr each of the first ``steps`` optimiser steps runs with."""
    weight = nn.Parameter(torch.zeros(1))
    opt, sched = make_optimizer([weight], settings)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        weight.grad = torch.ones(1)
        opt.step()
        sched.step()
    return lrs


def test_warmup_from_zero_is_orz_constant_with_warmup() -> None:
    """ORZ (transformers' constant_with_warmup, N = 50): lr * k / 50, full lr from k = 50."""
    assert Config().optim.warmup_from_zero
    lrs = _lrs(OptimSettings(lr=1.0, warmup_steps=50), 52)
    expected = {0: 0.0, 1: 1 / 50, 49: 49 / 50, 50: 1.0, 51: 1.0}
    for k, value in expected.items():
        assert lrs[k] == pytest.approx(value, abs=1e-12), k


def test_warmup_from_one_reaches_full_lr_a_step_earlier() -> None:
    lrs = _lrs(OptimSettings(lr=1.0, warmup_steps=50, warmup_from_zero=False), 51)
    expected = {0: 1 / 50, 1: 2 / 50, 48: 49 / 50, 49: 1.0, 50: 1.0}
    for k, value in expected.items():
        assert lrs[k] == pytest.approx(value, abs=1e-12), k


def test_no_warmup_is_full_lr_at_once() -> None:
    assert _lrs(OptimSettings(lr=0.5, warmup_steps=0), 2) == [0.5, 0.5]


@pytest.mark.parametrize("hidden", [896, 1536])
def test_value_head_default_is_orz_normal(hidden: int) -> None:
    """ORZ: normal(0, 1/(H+1)), no bias; the sample std matches within sampling error."""
    assert Config().model.value_head_init == "normal"
    head = nn.Linear(hidden, 1, bias=False)
    init_value_head(head, "normal", torch.Generator().manual_seed(0))
    std = head.weight.std().item()
    target = 1 / (hidden + 1)
    # the sample std of H normals has a relative standard error of 1/sqrt(2H) < 2.4%
    assert abs(std / target - 1) < 5 / (2 * hidden) ** 0.5
    assert abs(head.weight.mean().item()) < 5 * target / hidden**0.5


def test_value_head_kaiming_option_is_uniform_1_over_sqrt_h() -> None:
    hidden = 1024
    head = nn.Linear(hidden, 1, bias=False)
    init_value_head(head, "kaiming", torch.Generator().manual_seed(0))
    bound = hidden**-0.5
    assert head.weight.abs().max().item() <= bound
    # U(-b, b) has std b / sqrt(3)
    assert head.weight.std().item() == pytest.approx(bound / 3**0.5, rel=0.1)
