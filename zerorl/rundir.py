"""What a run writes, and reads back to resume (the guarantees: docs/rundir.md).

```
runs/<name>/
  run.lock                     held by the process training in this folder (zerorl.runlock)
  config.yaml                  the resolved config (rewritten when a resume changes it)
  config_history.jsonl         one line per start and resume, with the keys each one changed
  metrics.jsonl                one JSON object per step
  tb/                          TensorBoard events with the same scalars
  rollouts/step_<N>.jsonl      every sample of step N
  checkpoints/step_<N>/        policy/ and critic/ (Hugging Face format) + trainer_state.pt
                               + manifest.json (size and sha256 of every other file)
  checkpoints/latest           name of the newest complete checkpoint
```
Every file a resume reads is written whole or not at all (a temporary file or folder renamed into
place); checkpoints are checked against their manifest when read.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from zerorl.config import Config, config_from_dict, to_yaml
from zerorl.runlock import RunLock

CHECKPOINTS = "checkpoints"
MANIFEST = "manifest.json"
HISTORY = "config_history.jsonl"
_TMP_PREFIX = ".tmp_step_"
_OLD_PREFIX = ".old_step_"
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError):
    """No room on the disk for what the run writes; the message names the path and the bytes."""


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
    """A run directory: metrics, TensorBoard scalars, rollouts and checkpoints.

    ``create`` and ``open`` take the folder's lock (released by ``close`` or when the process
    ends); a plain ``RunDir(path)`` only reads.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._tb = None
        self._lock: RunLock | None = None

    @classmethod
    def create(
        cls, path: str | Path, cfg: Config, on_info: Callable[[str], None] = print
    ) -> RunDir:
        run = cls(path)
        run.path.mkdir(parents=True, exist_ok=True)
        run._take_lock(on_info)
        if (run.path / "metrics.jsonl").exists():
            run.close()
            raise FileExistsError(
                f"{run.path} already holds a run ({run.progress()}); continue it with "
                f"`zerorl train --resume {run.path}`, or train into another --out/train.run_name"
            )
        run.save_config(cfg, "create", {})
        return run

    @classmethod
    def open(cls, path: str | Path, on_info: Callable[[str], None] = print) -> RunDir:
        """An existing run, locked, with the leftovers of an interrupted save removed."""
        run = cls(path)
        run.load_config()  # a clear error where there is no run
        run._take_lock(on_info)
        run.remove_partial_saves(on_info)
        return run

    def _take_lock(self, on_info: Callable[[str], None]) -> None:
        self._lock = RunLock(self.path)
        note = self._lock.acquire()
        if note:
            on_info(note)

    def progress(self) -> str:
        """``last checkpoint: step_N`` or ``no checkpoint yet``, for messages."""
        checkpoint = self.latest_checkpoint()
        return f"last checkpoint: {checkpoint.name}" if checkpoint else "no checkpoint yet"

    def load_config(self) -> Config:
        import yaml

        if not (self.path / "config.yaml").is_file():
            raise FileNotFoundError(
                f"{self.path} is not a run folder (it has no config.yaml); to start a run there: "
                f"zerorl train --out {self.path}"
            )
        return config_from_dict(yaml.safe_load((self.path / "config.yaml").read_text()))

    def save_config(self, cfg: Config, event: str, changes: dict[str, list[Any]]) -> None:
        """Write config.yaml and add the event (with its changed keys) to the history; both
        atomically (the history is rewritten whole: a few lines per run)."""
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "event": event, "changes": changes}
        history = [*self.config_history(), record]
        with self._disk("config.yaml"):
            atomic_write(self.path / "config.yaml", to_yaml(cfg))
            atomic_write(self.path / HISTORY, "".join(json.dumps(r) + "\n" for r in history))

    def config_history(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path / HISTORY)

    # ------------------------------------------------------------------ metrics and rollouts

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Append one step's metrics to metrics.jsonl and TensorBoard."""
        record = {"step": step, **{k: _jsonable(v) for k, v in metrics.items()}}
        with self._disk("metrics.jsonl"), open(self.path / "metrics.jsonl", "a") as f:
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
        return read_jsonl(self.path / "metrics.jsonl")

    def truncate_metrics(self, last_step: int) -> None:
        """Forget metrics logged after ``last_step`` (they are recomputed when resuming)."""
        kept = [m for m in self.read_metrics() if m["step"] <= last_step]
        with self._disk("metrics.jsonl"):
            atomic_write(self.path / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in kept))

    def write_rollouts(self, step: int, records: list[RolloutRecord]) -> None:
        folder = self.path / "rollouts"
        folder.mkdir(exist_ok=True)
        text = "".join(json.dumps(asdict(r)) + "\n" for r in records)
        with self._disk(f"rollouts/step_{step}.jsonl", len(text)):
            atomic_write(folder / f"step_{step}.jsonl", text, sync=False)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    @contextmanager
    def _disk(self, what: str, needed: int | None = None) -> Iterator[None]:
        """Turn a full disk while writing ``what`` into a :class:`DiskFullError` naming it."""
        try:
            yield
        except Exception as e:  # each writer says "disk full" its own way (see _disk_full)
            if isinstance(e, DiskFullError) or not _disk_full(e, self.path, needed):
                raise
            raise self._full(what, needed) from None

    def _full(self, what: str, needed: int | None) -> DiskFullError:
        free = shutil.disk_usage(self.path).free
        size = f"about {_size(needed)}" if needed else "more space"
        return DiskFullError(
            errno.ENOSPC,
            f"disk full: writing {what} under {self.path} needs {size} ({_size(free)} free). "
            f"The run stopped and can continue from its {self.progress()}: free space, then "
            f"`zerorl train --resume {self.path}`",
        )

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(
        self, step: int, policy, critic, tokenizer, state: dict[str, Any], keep: int = 0
    ) -> Path:
        """Write policy/, critic/ (each worker's ``save``; no critic/ without a critic, ``None``),
        trainer_state.pt and a manifest into a
        temporary folder, rename it into place, then point ``latest`` at it: a crash never leaves
        a half-written checkpoint under a ``step_N`` name. Checks free space first (as much as
        the previous checkpoint took); a failed save removes its temporary folder. Then only the
        ``keep`` newest checkpoints stay (0 keeps every one)."""
        root = self.path / CHECKPOINTS
        root.mkdir(parents=True, exist_ok=True)
        needed = self._checkpoint_bytes()
        if needed and shutil.disk_usage(root).free < needed:
            raise self._full(f"checkpoint step_{step}", needed)
        tmp = root / f"{_TMP_PREFIX}{step}_{time.time_ns()}"
        try:
            with self._disk(f"checkpoint step_{step}", needed):
                tmp.mkdir()
                for name, worker in (("policy", policy), ("critic", critic)):
                    if worker is None:
                        continue
                    worker.save(tmp / name)
                    tokenizer.save_pretrained(tmp / name)
                torch.save(state, tmp / "trainer_state.pt")
                write_manifest(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        final = root / f"step_{step}"
        if final.exists():  # re-saved after a resume from an earlier checkpoint
            old = root / f"{_OLD_PREFIX}{step}_{time.time_ns()}"
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old)
        else:
            tmp.rename(final)
        atomic_write(root / "latest", final.name)
        for old in self.checkpoints()[keep:] if keep > 0 else []:
            shutil.rmtree(old)
        return final

    def checkpoints(self) -> list[Path]:
        """Every ``checkpoints/step_N`` folder, newest first."""
        root = self.path / CHECKPOINTS
        found = [p for p in root.glob("step_*") if p.is_dir() and p.name[5:].isdigit()]
        return sorted(found, key=lambda p: int(p.name[5:]), reverse=True)

    def latest_checkpoint(self) -> Path | None:
        """The checkpoint ``latest`` names (None when it is missing or empty)."""
        marker = self.path / CHECKPOINTS / "latest"
        name = marker.read_text().strip() if marker.exists() else ""
        return self.path / CHECKPOINTS / name if name else None

    def good_checkpoint(self, on_info: Callable[[str], None] = print) -> Path | None:
        """The newest checkpoint that matches its manifest; each damaged one is reported by name
        and skipped. None when there is no good checkpoint."""
        for checkpoint in self.checkpoints():
            problem = checkpoint_problem(checkpoint)
            if problem is None:
                return checkpoint
            on_info(f"checkpoint {checkpoint} is damaged ({problem}); trying the one before")
        return None

    def remove_partial_saves(self, on_info: Callable[[str], None] = print) -> None:
        """Delete the temporary folders of saves that were interrupted (only with the lock)."""
        root = self.path / CHECKPOINTS
        for partial in [*root.glob(f"{_TMP_PREFIX}*"), *root.glob(f"{_OLD_PREFIX}*")]:
            size = sum(f.stat().st_size for f in partial.rglob("*") if f.is_file())
            shutil.rmtree(partial, ignore_errors=True)
            on_info(f"removed {partial.name}, an interrupted save ({_size(size)})")

    def _checkpoint_bytes(self) -> int:
        """What the newest checkpoint took on disk (0 when there is none yet)."""
        for checkpoint in self.checkpoints():
            manifest = checkpoint / MANIFEST
            if manifest.exists():
                files = json.loads(manifest.read_text())["files"]
                return sum(f["size"] for f in files.values())
        return 0


def load_trainer_state(checkpoint: Path) -> dict[str, Any]:
    # Our own file: it holds optimiser states and RNG states, not only tensors.
    return torch.load(checkpoint / "trainer_state.pt", weights_only=False)


# ---------------------------------------------------------------------- files


def atomic_write(path: Path, text: str, sync: bool = True) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old file or the new one, never a
    part (a temporary file beside it, flushed, then renamed over it)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_jsonl(path: Path, warn: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """The records of a JSON Lines file ([] if absent). A torn last line (the writer was killed
    mid-line) is dropped with a warning; a bad line before it is an error naming the line."""
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            if number < len(lines):
                raise ValueError(f"{path}: line {number} is not JSON ({e})") from None
            message = f"{path}: dropped its last line, cut short when the run was stopped"
            (warn or (lambda m: warnings.warn(m, stacklevel=3)))(message)
    return records


def write_manifest(folder: Path) -> None:
    """Record the size and sha256 of every file under ``folder``, each fsynced to disk."""
    files = {}
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        with open(f, "rb") as handle:
            os.fsync(handle.fileno())
        files[str(f.relative_to(folder))] = {"size": f.stat().st_size, "sha256": _sha256(f)}
    atomic_write(folder / MANIFEST, json.dumps({"files": files}, indent=1))


def checkpoint_problem(folder: Path) -> str | None:
    """Why ``folder`` is not a complete checkpoint, or None. A checkpoint written before
    manifests existed passes when its trainer_state.pt is there."""
    manifest = folder / MANIFEST
    if not manifest.exists():
        return None if (folder / "trainer_state.pt").exists() else "no trainer_state.pt"
    try:
        files = json.loads(manifest.read_text())["files"]
    except (ValueError, KeyError):
        return f"{MANIFEST} is unreadable"
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != expected["size"]:
            return f"{name} has {size} bytes, {expected['size']} were written"
        if _sha256(path) != expected["sha256"]:
            return f"{name} does not match its checksum"
    return None


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _disk_full(error: BaseException, path: Path, needed: int | None) -> bool:
    """Whether ``error`` comes from a full disk. torch's writer reports ENOSPC as a bare
    ``RuntimeError`` (``basic_ios::clear``), safetensors as its own ``SafetensorError``: the free
    space decides for errors without an errno."""
    if isinstance(error, OSError) and error.errno is not None:
        return error.errno in _DISK_FULL
    return shutil.disk_usage(path).free < max(needed or 0, 1 << 20)


def _size(n: int | None) -> str:
    n = float(n or 0)
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
