"""Helpers for tests/test_distributed_ray.py (imported by Ray workers, so kept dependency-free)."""

from __future__ import annotations

import time


class Sleeper:
    """An actor whose ``nap`` outlasts a caller's timeout."""

    def nap(self, seconds: float) -> float:
        time.sleep(seconds)
        return seconds


class Recorder:
    """Stands in for a training group or the engines in tests of ``Phases``."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    def offload(self) -> None:
        self.log.append(f"{self.name}.offload")

    def reload(self) -> None:
        self.log.append(f"{self.name}.reload")

    def sleep(self) -> None:
        self.log.append(f"{self.name}.sleep")

    def wake(self) -> None:
        self.log.append(f"{self.name}.wake")
