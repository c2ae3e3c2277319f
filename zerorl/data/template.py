"""The Open-Reasoner-Zero prompt template and stop strings.

Compatibility with the released ORZ checkpoints depends on this text byte for byte: no BOS
token, no trailing newline, lines separated by a single ``\\n``.
"""

from __future__ import annotations

_PREAMBLE = (
    "A conversation between User and Assistant. The User asks a question, and the Assistant "
    "solves it. The Assistant first thinks about the reasoning process in the mind and then "
    "provides the User with the answer. The reasoning process is enclosed within <think> </think> "
    "and answer is enclosed within <answer> </answer> tags, respectively, i.e., <think> reasoning "
    "process here </think> <answer> answer here </answer>. User: You must put your answer inside "
    "<answer> </answer> tags, i.e., <answer> answer here </answer>. And your final answer will be "
    "extracted automatically by the \\boxed{} tag."
)

TEMPLATE = _PREAMBLE + "\nThis is the problem:\n{problem}\nAssistant: <think>"

# Generation stops at any of these (the stop string stays in the output) or at EOS.
STOP_STRINGS: tuple[str, ...] = ("User:", "Human:", "Assistant:", "</answer>")


def render(problem: str) -> str:
    """Return the ORZ prompt for ``problem``; the model continues after ``<think>``."""
    return TEMPLATE.replace("{problem}", problem)
