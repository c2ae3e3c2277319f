"""Answer extraction and verification: strings in, floats and counts out.

Pure of the rest of zerorl (no Ray, vLLM, config or trainer); the rules, limits and the audit of
code-execution paths are in docs/reward.md.

- :func:`extract_answer` - the last box of the last ``<answer>`` block that has one.
- :func:`score` - one reward, verified in this process (evaluation, tests).
- :class:`RewardPool` - a batch of rewards, verified in isolated worker processes (training).
"""

from zerorl.reward.extract import extract_answer
from zerorl.reward.judge import score
from zerorl.reward.pool import RewardPool, RewardResult

__all__ = ["RewardPool", "RewardResult", "extract_answer", "score"]
