"""Generalised advantage estimation and batch-level whitening.

Shape legend: B batch (rows), T tokens. ``mask`` is 1 on response tokens, 0 elsewhere.
Position t of ``rewards``/``values`` belongs to the t-th token: ``values[:, t]`` is the critic's
estimate before that token is produced and ``rewards[:, t]`` the reward for producing it.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch


def packed_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    segment_ids: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE on packed rows: the recursion restarts wherever ``segment_ids`` changes.

    ``segment_ids`` (B, T) numbers the samples packed in a row (any distinct integers per sample);
    masked-out positions inside a segment (its prompt) are skipped. With ``gamma == lam == 1``
    a closed form (reward-to-go minus value) replaces the loop; both are tested to agree.
    Returns ``(advantages, returns)``, both (B, T) float, zero where ``mask`` is 0.
    """
    valid = mask > 0
    rewards = torch.where(valid, rewards, torch.zeros_like(rewards)).float()
    values = torch.where(valid, values, torch.zeros_like(values)).float()
    if gamma == 1.0 and lam == 1.0:
        advantages = _reward_to_go(rewards, segment_ids) - values
    else:
        advantages = _gae_scan(rewards, values, valid, segment_ids, gamma, lam)
    advantages = torch.where(valid, advantages, torch.zeros_like(advantages))
    returns = torch.where(valid, advantages + values, torch.zeros_like(advantages))
    return advantages, returns


def _reward_to_go(rewards: torch.Tensor, segment_ids: torch.Tensor) -> torch.Tensor:
    """Sum of rewards from each position to the end of its segment, (B, T)."""
    suffix = rewards.flip(-1).cumsum(-1).flip(-1)
    # Subtract what lies beyond the segment's last position: the suffix sum just after it.
    B, T = rewards.shape
    idx = torch.arange(T, device=rewards.device).expand(B, T)
    boundary = torch.ones_like(segment_ids, dtype=torch.bool)
    boundary[:, :-1] = segment_ids[:, 1:] != segment_ids[:, :-1]
    # Index of the last position of each token's segment: first boundary at or after t.
    last = torch.where(boundary, idx, torch.full_like(idx, T)).flip(-1).cummin(-1).values.flip(-1)
    after = torch.cat([suffix, torch.zeros(B, 1, dtype=suffix.dtype, device=suffix.device)], 1)
    return suffix - after.gather(1, last + 1)


def _gae_scan(
    rewards: torch.Tensor,
    values: torch.Tensor,
    valid: torch.Tensor,
    segment_ids: torch.Tensor,
    gamma: float,
    lam: float,
) -> torch.Tensor:
    """The backward GAE recursion, vectorised over rows, resetting at segment ends."""
    B, T = rewards.shape
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros(B, dtype=rewards.dtype, device=rewards.device)
    next_gae = torch.zeros_like(next_value)
    for t in reversed(range(T)):
        if t < T - 1:
            same = segment_ids[:, t] == segment_ids[:, t + 1]
            next_value = torch.where(same, next_value, torch.zeros_like(next_value))
            next_gae = torch.where(same, next_gae, torch.zeros_like(next_gae))
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        current = delta + gamma * lam * next_gae
        advantages[:, t] = current
        next_value = torch.where(valid[:, t], values[:, t], next_value)
        next_gae = torch.where(valid[:, t], current, next_gae)
    return advantages


def normalize(advantages: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Whiten ``advantages`` over all masked tokens of the batch: mean 0, (population) std 1.

    (B, T) in, (B, T) out; masked-out positions are 0.
    """
    valid = mask > 0
    selected = advantages[valid]
    if selected.numel() == 0:
        return torch.zeros_like(advantages)
    mean = selected.mean()
    var = selected.var(correction=0)
    out = (advantages - mean) * torch.rsqrt(var + eps)
    return torch.where(valid, out, torch.zeros_like(out))


# Outcome-advantage estimators of the critic-free methods: one scalar reward per sample (N,), and
# the prompt each sample answers as a group id (N,). The advantage is then broadcast to every
# response token of that sample by the caller.
OutcomeEstimator = Literal["grpo", "grpo_orz", "dr_grpo", "rloo", "reinforce_pp"]
OUTCOME_ESTIMATORS: tuple[str, ...] = get_args(OutcomeEstimator)


def group_advantages(
    rewards: torch.Tensor, groups: torch.Tensor, estimator: OutcomeEstimator, eps: float = 1e-6
) -> torch.Tensor:
    """Per-sample advantages (N,) from rewards (N,) and group ids (N,) (any integers).

    - ``grpo``: ``(r - mean_g) / (std_g + eps)``, the group's sample std (``correction=1``, as TRL
      and verl); a group of one sample gets 0.
    - ``grpo_orz``: ORZ's released GRPO path as it behaves: ``if std := np.std(x) > 0`` binds the
      boolean, so the mean-centred score is divided by 1 (or left as is): ``r - mean_g``.
    - ``dr_grpo``: Dr. GRPO, mean-centred without the std: ``r - mean_g`` (equal to ``grpo_orz``).
    - ``rloo``: leave-one-out baseline ``r_i - mean_{j != i} r_j``; a group of one sample gets 0.
    - ``reinforce_pp``: REINFORCE++'s outcome form: rewards whitened over the whole batch of
      samples (population std), no group baseline.
    """
    if rewards.shape != groups.shape or rewards.dim() != 1:
        raise ValueError(
            f"rewards and groups must both be (N,), got {rewards.shape}, {groups.shape}"
        )
    r = rewards.double()
    if estimator == "reinforce_pp":
        return ((r - r.mean()) / (r.std(correction=0) + eps)).to(rewards.dtype)
    if estimator not in OUTCOME_ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; one of {', '.join(OUTCOME_ESTIMATORS)}")
    _, inverse = torch.unique(groups, return_inverse=True)
    size = torch.zeros(int(inverse.max()) + 1, dtype=r.dtype).index_add_(
        0, inverse, torch.ones_like(r)
    )
    total = torch.zeros_like(size).index_add_(0, inverse, r)
    n, mean = size[inverse], (total / size)[inverse]
    if estimator in ("grpo_orz", "dr_grpo"):
        out = r - mean
    elif estimator == "rloo":
        # r_i - (S - r_i) / (n - 1) = n / (n - 1) * (r_i - mean); zero for a lone sample.
        out = torch.where(n > 1, (r - mean) * n / (n - 1).clamp(min=1), torch.zeros_like(r))
    else:
        squares = torch.zeros_like(size).index_add_(0, inverse, (r - mean) ** 2)[inverse]
        std = (squares / (n - 1).clamp(min=1)).sqrt()
        out = torch.where(n > 1, (r - mean) / (std + eps), torch.zeros_like(r))
    return out.to(rewards.dtype)


def overlong_penalty(lengths: torch.Tensor, max_length: int, buffer: int) -> torch.Tensor:
    """DAPO's soft overlong punishment, added to the reward: 0 up to ``max_length - buffer``
    tokens, then falling linearly to -1 at ``max_length`` (and -1 beyond). (N,) in, (N,) out."""
    if not 0 < buffer <= max_length:
        raise ValueError(f"buffer must be in (0, max_length], got {buffer} for {max_length}")
    over = (lengths.double() - (max_length - buffer)).clamp(min=0) / buffer
    return -over.clamp(max=1.0)
