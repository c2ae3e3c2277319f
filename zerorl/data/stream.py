"""The prompt stream: epochs of seeded shuffles, with a position that checkpoints can save."""

from __future__ import annotations

import random
from dataclasses import dataclass

from zerorl.types import Prompt


@dataclass
class StreamState:
    epoch: int = 0
    index: int = 0


class PromptStream:
    """Yields batches of unique prompts; pass ``e`` is a shuffle seeded by ``(seed, e)``.

    A batch that crosses the end of a pass is completed from the next pass, so every prompt is
    seen once per pass and batches always hold ``k`` prompts.
    """

    def __init__(self, prompts: list[Prompt], seed: int, shuffle: bool = True) -> None:
        if not prompts:
            raise ValueError("the prompt set is empty")
        self.prompts = prompts
        self.seed = seed
        self.shuffle = shuffle
        self.state = StreamState()
        self._order = self._epoch_order(0)

    def _epoch_order(self, epoch: int) -> list[int]:
        order = list(range(len(self.prompts)))
        if self.shuffle:
            random.Random(f"{self.seed}-{epoch}").shuffle(order)
        return order

    def next_batch(self, k: int) -> list[Prompt]:
        batch = []
        while len(batch) < k:
            if self.state.index == len(self._order):
                self.state = StreamState(self.state.epoch + 1, 0)
                self._order = self._epoch_order(self.state.epoch)
            batch.append(self.prompts[self._order[self.state.index]])
            self.state.index += 1
        return batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.state.epoch, "index": self.state.index}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.state = StreamState(state["epoch"], state["index"])
        self._order = self._epoch_order(self.state.epoch)
