"""Answer extraction as ORZ's released code does it: the last box of the closed answer block.

Contract (docs/reward.md, "Extraction"; ORZ: ``playground/orz_*_ppo.py``, the regex
``<answer>.*?(\\boxed{.*}).*?</answer>`` then ``math_utils.last_boxed_only_string``):

- The answer block runs from the first ``<answer>`` to the last ``</answer>``; without a closing
  ``</answer>`` there is no answer (ORZ generation stops *at* ``</answer>`` and keeps it, so a
  finished answer ends with one). Boxes outside the block are ignored.
- A box opens with ``\\boxed{`` exactly: ``\\boxed {5}`` (a space before the brace) is not a box,
  as in ORZ's regex. Braces balance, and an escaped ``\\{`` or ``\\}`` is not a brace.
- :func:`extract_answer` returns the last box of the block: the last ``\\boxed{`` that opens
  before the block's last ``}``, if its braces close there (a box in a box: the inner one,
  ``\\boxed{\\boxed{5}}`` is ``5``); otherwise None. :func:`final_boxes` lists the block's
  top-level boxes, for the option that judges every box (``reward.box_rule=all``).
"""

from __future__ import annotations

import re

_OPEN, _CLOSE, _BOX = "<answer>", "</answer>", "\\boxed{"
_BOX_RE = re.compile(r"\\boxed\{")
_BRACE_TOKEN_RE = re.compile(r"\\.|[{}]", re.DOTALL)


def answer_block(response: str) -> str | None:
    """The text from the first ``<answer>`` to the last ``</answer>``; None if not closed."""
    start = response.find(_OPEN)
    end = response.rfind(_CLOSE)
    if start == -1 or end < start + len(_OPEN):
        return None
    return response[start + len(_OPEN) : end]


def brace_pairs(text: str) -> dict[int, int]:
    r"""Map each balanced ``{`` of ``text`` to its ``}`` in one linear pass.

    An escaped character (``\{``, ``\}``, ``\\``) never opens or closes a group.
    """
    pairs: dict[int, int] = {}
    stack: list[int] = []
    for token in _BRACE_TOKEN_RE.finditer(text):
        ch = token.group()
        if ch == "{":
            stack.append(token.start())
        elif ch == "}" and stack:
            pairs[stack.pop()] = token.start()
    return pairs


def _unwrap(content: str) -> str:
    r"""Strip whitespace, and boxes that wrap the whole content (``\boxed{\boxed{x}}`` -> x)."""
    content = content.strip()
    while True:
        match = _BOX_RE.match(content)
        if not match or brace_pairs(content).get(match.end() - 1) != len(content) - 1:
            return content
        content = content[match.end() : -1].strip()


def find_boxes(text: str) -> list[str]:
    """Contents of the top-level balanced boxes of ``text``, in order of appearance."""
    pairs = brace_pairs(text)
    boxes = []
    pos = 0
    while True:
        match = _BOX_RE.search(text, pos)
        if not match:
            return boxes
        close = pairs.get(match.end() - 1, -1)
        if close == -1:
            # Unbalanced box: skip its opening and keep looking (a later box may be complete).
            pos = match.end()
            continue
        boxes.append(_unwrap(text[match.end() : close]))
        pos = close + 1


def final_boxes(response: str) -> list[str]:
    """The top-level boxes of the answer block, in order; ``[]`` if none."""
    block = answer_block(response)
    return find_boxes(block) if block else []


def extract_answer(response: str) -> str | None:
    """The content of the last box of the answer block (ORZ's rule), else None.

    ``response`` is the generated text after the prompt's ``<think>``. Never raises for a string.
    """
    block = answer_block(response)
    if not block:
        return None
    block = block[: block.rfind("}") + 1]  # ORZ's greedy match ends at the block's last brace
    start = block.rfind(_BOX)
    if start == -1:
        return None
    close = brace_pairs(block[start:]).get(len(_BOX) - 1)
    return None if close is None else _unwrap(block[start + len(_BOX) : start + close])
