"""What a run writes, and reads back to resume.

```
runs/<name>/
  config.yaml                  the resolved config
  metrics.jsonl                one JSON object per step
  tb/                          TensorBoard events with the same scalars
  rollouts/step_<N>.jsonl      every sample of step N
  checkpoints/step_<N>/        policy/ and critic/ (Hugging Face format) + trainer_state.pt
  checkpoints/latest           name of the newest complete checkpoint
```
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from zerorl.config import Config, config_from_dict, to_yaml

CHECKPOINTS = "checkpoints"


@dataclass
class RolloutRecord:
    """One line of ``rollouts/step_N.jsonl``."""

    step: int
    prompt_id: str
    question: str
    response: str
    ground_truth: str
    reward: float
    finish_reason: str
    response_length: int


class RunDir:
    """A run directory: metrics, TensorBoard scalars, rollouts and checkpoints."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._tb = None

    @classmethod
    def create(cls, path: str | Path, cfg: Config) -> RunDir:
        run = cls(path)
        if (run.path / "metrics.jsonl").exists():
            raise FileExistsError(
                f"{run.path} already holds a run; use --resume {run.path} or another --out/run_name"
            )
        run.path.mkdir(parents=True, exist_ok=True)
        (run.path / "config.yaml").write_text(to_yaml(cfg))
        return run

    def load_config(self) -> Config:
        import yaml

        return config_from_dict(yaml.safe_load((self.path / "config.yaml").read_text()))

    # ------------------------------------------------------------------ metrics and rollouts

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Append one step's metrics to metrics.jsonl and TensorBoard."""
        record = {"step": step, **{k: _jsonable(v) for k, v in metrics.items()}}
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        writer = self._writer(step)
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                writer.add_scalar(key, value, step)
        writer.flush()

    def _writer(self, step: int):
        if self._tb is None:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events past a resumed checkpoint, so curves never double back.
            self._tb = SummaryWriter(str(self.path / "tb"), purge_step=step)
        return self._tb

    def read_metrics(self) -> list[dict[str, Any]]:
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def truncate_metrics(self, last_step: int) -> None:
        """Forget metrics logged after ``last_step`` (they are recomputed when resuming)."""
        kept = [m for m in self.read_metrics() if m["step"] <= last_step]
        (self.path / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in kept))

    def write_rollouts(self, step: int, records: list[RolloutRecord]) -> None:
        folder = self.path / "rollouts"
        folder.mkdir(exist_ok=True)
        with open(folder / f"step_{step}.jsonl", "w") as f:
            for r in records:
                f.write(json.dumps(asdict(r)) + "\n")

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self, step: int, policy, critic, tokenizer, state: dict[str, Any]) -> Path:
        """Write policy/, critic/ (each worker's ``save``) and trainer_state.pt into a temporary
        directory, rename it into place, then point ``latest`` at it: a crash never leaves a
        half-written checkpoint behind ``latest``."""
        root = self.path / CHECKPOINTS
        final = root / f"step_{step}"
        tmp = root / f".tmp_step_{step}_{time.time_ns()}"
        tmp.mkdir(parents=True)
        for name, worker in (("policy", policy), ("critic", critic)):
            worker.save(tmp / name)
            tokenizer.save_pretrained(tmp / name)
        torch.save(state, tmp / "trainer_state.pt")
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        (root / "latest").write_text(final.name)
        return final

    def latest_checkpoint(self) -> Path | None:
        marker = self.path / CHECKPOINTS / "latest"
        if not marker.exists():
            return None
        return self.path / CHECKPOINTS / marker.read_text().strip()


def load_trainer_state(checkpoint: Path) -> dict[str, Any]:
    # Our own file: it holds optimiser states and RNG states, not only tensors.
    return torch.load(checkpoint / "trainer_state.pt", weights_only=False)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
