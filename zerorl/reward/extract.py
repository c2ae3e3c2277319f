"""Answer extraction: the boxed answers of the last ``<answer>`` block that has one.

Contract (docs/reward.md, "Extraction"):

- A block starts at ``<answer>`` and ends at the first ``</answer>`` (or the next ``<answer>``)
  after it. A final block that is never closed runs to the end of the text: ORZ generation
  stops *at* ``</answer>`` and keeps it, so a finished response normally ends with one, but a
  response that ends by EOS (or by another stop string) right after its box is still read.
  Truncated responses never score, whatever extraction returns (``finished=False``).
- The blocks are searched from the last to the first; the first one (from the end) that holds a
  balanced ``\\boxed{...}`` is the answer block. Boxes outside it (in the reasoning, in earlier
  blocks, after the final ``</answer>``) are ignored.
- Boxes are the top-level ``\\boxed{...}`` / ``\\boxed {...}`` groups with balanced braces; an
  escaped ``\\{`` or ``\\}`` does not count as a brace. A box nested in another box belongs to
  the outer one, and a box whose whole content is another box is unwrapped.
"""

from __future__ import annotations

import re

_OPEN, _CLOSE = "<answer>", "</answer>"
_BOX_RE = re.compile(r"\\boxed\s*\{")
_BRACE_TOKEN_RE = re.compile(r"\\.|[{}]", re.DOTALL)


def answer_blocks(response: str) -> list[str]:
    """All ``<answer>`` blocks of ``response``, in order (the last one may be unclosed).

    A block ends at the first ``</answer>`` or the next ``<answer>``, whichever comes first, so
    blocks never overlap (a response full of opening tags costs linear time and memory).
    """
    blocks = []
    start = response.find(_OPEN)
    close = -2  # position of the next ``</answer>``; -2 = not searched yet, -1 = none left
    while start != -1:
        body = start + len(_OPEN)
        if close != -1 and close < body:
            close = response.find(_CLOSE, body)
        nxt = response.find(_OPEN, body)
        ends = [pos for pos in (close, nxt) if pos != -1]
        blocks.append(response[body : min(ends) if ends else len(response)])
        start = nxt
    return blocks


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
    """The boxes of the last ``<answer>`` block that has at least one; ``[]`` if none."""
    for block in reversed(answer_blocks(response)):
        if "\\boxed" in block:
            boxes = find_boxes(block)
            if boxes:
                return boxes
    return []


def extract_answer(response: str) -> str | None:
    """The content of the last box in the last ``<answer>`` block that holds a box, else None.

    ``response`` is the generated text after the prompt's ``<think>``. Never raises for a string.
    """
    boxes = final_boxes(response)
    return boxes[-1] if boxes else None
