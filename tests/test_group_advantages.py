"""Reference tests for the outcome-advantage estimators: plain loops over groups, as each
method's paper or code writes them."""

import math
import random

import numpy as np
import pytest
import torch

from zerorl.core.advantages import OUTCOME_ESTIMATORS, group_advantages


def loop_estimate(rewards, groups, estimator, eps=1e-6):
    """Each estimator written as a plain loop over samples and their group's members."""
    out = []
    n_all = len(rewards)
    batch_mean = sum(rewards) / n_all
    batch_std = math.sqrt(sum((x - batch_mean) ** 2 for x in rewards) / n_all)
    for i, r in enumerate(rewards):
        members = [rewards[j] for j in range(n_all) if groups[j] == groups[i]]
        others = [rewards[j] for j in range(n_all) if groups[j] == groups[i] and j != i]
        mean = sum(members) / len(members)
        if estimator == "reinforce_pp":
            out.append((r - batch_mean) / (batch_std + eps))
        elif estimator in ("grpo_orz", "dr_grpo"):
            out.append(r - mean)
        elif estimator == "rloo":
            out.append(r - sum(others) / len(others) if others else 0.0)
        else:  # grpo, sample std
            if len(members) == 1:
                out.append(0.0)
                continue
            std = math.sqrt(sum((x - mean) ** 2 for x in members) / (len(members) - 1))
            out.append((r - mean) / (std + eps))
    return out


def orz_code(rewards, groups):
    """ORZ's released GRPO normalisation, line for line (playground/orz_7b_ppo.py)."""
    pass_at_n: dict[int, list[float]] = {}
    for r, g in zip(rewards, groups):
        pass_at_n.setdefault(g, []).append(r)
    scores = list(rewards)
    for i, g in enumerate(groups):
        scores[i] -= np.mean(pass_at_n[g])
        if std := np.std(pass_at_n[g]) > 0:  # the bug, reproduced on purpose
            scores[i] /= std
    return scores


def random_case(seed, binary):
    rng = random.Random(seed)
    n_groups = rng.randint(1, 6)
    groups, rewards = [], []
    for g in range(n_groups):
        size = rng.randint(1, 8)
        gid = rng.randint(-1000, 1000) * 10 + g  # arbitrary, unsorted ids
        for _ in range(size):
            groups.append(gid)
            rewards.append(float(rng.random() < 0.4) if binary else rng.gauss(0, 2))
    order = list(range(len(rewards)))
    rng.shuffle(order)  # members of a group need not be adjacent
    return [rewards[i] for i in order], [groups[i] for i in order]


@pytest.mark.parametrize("estimator", OUTCOME_ESTIMATORS)
@pytest.mark.parametrize("seed", range(12))
def test_estimators_match_plain_loops(estimator, seed):
    rewards, groups = random_case(seed, binary=seed % 2 == 0)
    got = group_advantages(
        torch.tensor(rewards, dtype=torch.float64), torch.tensor(groups), estimator
    )
    want = loop_estimate(rewards, groups, estimator)
    assert got.tolist() == pytest.approx(want, abs=1e-9)


@pytest.mark.parametrize("seed", range(8))
def test_grpo_orz_is_orz_code_as_it_behaves(seed):
    rewards, groups = random_case(seed, binary=True)
    got = group_advantages(torch.tensor(rewards), torch.tensor(groups), "grpo_orz")
    assert got.tolist() == pytest.approx(orz_code(rewards, groups), abs=1e-6)
    # ... which is mean-centring only: dividing by the bound boolean leaves the scale alone.
    dr = group_advantages(torch.tensor(rewards), torch.tensor(groups), "dr_grpo")
    assert torch.equal(got, dr)


@pytest.mark.parametrize("estimator", ["grpo", "grpo_orz", "dr_grpo", "rloo"])
def test_group_baselines_sum_to_zero_and_ignore_constant_groups(estimator):
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    groups = torch.tensor([7, 7, 7, 7, 3, 3, 3, 9, 9, 9])
    adv = group_advantages(rewards, groups, estimator)
    for g in (7, 3, 9):
        assert float(adv[groups == g].sum()) == pytest.approx(0.0, abs=1e-6)
    # group 9 got the same reward everywhere: nothing to learn from it
    assert torch.all(adv[groups == 9] == 0)


def test_rloo_is_a_rescaled_mean_centring():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0])
    groups = torch.zeros(4, dtype=torch.long)
    assert group_advantages(rewards, groups, "rloo").tolist() == pytest.approx(
        (4 / 3 * (rewards - 0.5)).tolist()
    )


def test_reinforce_pp_whitens_the_batch_and_ignores_groups():
    rewards = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    a = group_advantages(rewards, torch.tensor([0, 0, 1, 1, 2, 2]), "reinforce_pp")
    b = group_advantages(rewards, torch.arange(6), "reinforce_pp")
    assert torch.equal(a, b)
    assert float(a.mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(a.std(correction=0)) == pytest.approx(1.0, abs=1e-5)


def test_bad_inputs_are_errors():
    with pytest.raises(ValueError, match="unknown estimator"):
        group_advantages(torch.ones(3), torch.zeros(3), "ppo")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\(N,\)"):
        group_advantages(torch.ones(3), torch.zeros(4), "grpo")


def test_overlong_penalty_as_dapo_writes_it():
    from zerorl.core.advantages import overlong_penalty

    def dapo(length, max_length, buffer):  # DAPO eq. 13
        expected = max_length - buffer
        if length <= expected:
            return 0.0
        if length <= max_length:
            return (expected - length) / buffer
        return -1.0

    lengths = list(range(0, 130, 3))
    got = overlong_penalty(torch.tensor(lengths), max_length=100, buffer=20)
    assert got.tolist() == pytest.approx([dapo(n, 100, 20) for n in lengths])
    with pytest.raises(ValueError, match="buffer"):
        overlong_penalty(torch.tensor([1]), max_length=10, buffer=0)
