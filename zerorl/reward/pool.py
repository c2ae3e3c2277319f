"""RewardPool: rewards for a batch, with verification isolated in worker processes.

The parent applies the rules (zerorl/reward/judge.py) and settles most responses itself; the
remaining (answer, truth) units are deduplicated and sent in chunks to worker processes
(``python -m zerorl.reward.worker``, fresh interpreters that never import the trainer). Each unit
has a hard wall-clock limit measured from when its worker starts it: a worker still busy at the
limit is killed (its whole process group) and replaced, the unit scores 0 and counts as a
timeout, and the rest of its chunk goes back to the queue. A worker that dies mid-unit counts an
error the same way. So no answer can hold a batch up for longer than its own limit; and with a
per-call budget, no call takes much longer than the budget: once it is spent, the units still
queued or being verified score 0 and count as timeouts.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from zerorl.reward.judge import BoxRule, RuleOutcome, apply_rules
from zerorl.reward.rules import DEFAULT_MAX_ANSWER_CHARS

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
_MAX_CHUNK = 32
_STARTUP_LIMIT_S = 60.0
_MAX_STARTUP_FAILURES = 3


@dataclass
class RewardResult:
    """Rewards for one batch, in the order of the responses.

    ``timeouts`` and ``errors`` count responses (not boxes) that scored 0 because a worker hit the
    wall-clock limit or failed; they feed the metrics reward/timeouts and reward/errors.
    ``reasons`` says why each response scored what it did (a rule tag, ``correct``, ``wrong``,
    ``timeout``, ``error``); ``max_unit_seconds`` is the longest single verification.
    """

    scores: list[float]
    timeouts: int
    errors: int
    extracted: list[str | None]
    reasons: list[str] = field(default_factory=list)
    max_unit_seconds: float = 0.0


class _Worker:
    """One worker process and the units it has been sent but not yet answered."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # its own process group, killed as a whole
            close_fds=True,
        )
        self.fd = self.proc.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.buffer = b""
        self.ready = False
        self.pending: deque[int] = deque()
        self.started = time.monotonic()  # spawn time, then start time of the first pending unit

    def send(self, chunk: list[list]) -> bool:
        """Send a chunk of ``[uid, answer, truth]``; False if the worker is gone."""
        try:
            self.proc.stdin.write(json.dumps(chunk).encode() + b"\n")
            self.proc.stdin.flush()
        except OSError:
            return False
        self.pending.extend(unit[0] for unit in chunk)
        self.started = time.monotonic()
        return True

    def read_lines(self) -> list[str] | None:
        """Complete lines received so far; None once the worker has closed its output."""
        try:
            data = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return []
        except OSError:
            return None
        if not data:
            return None
        *lines, self.buffer = (self.buffer + data).split(b"\n")
        return [line.decode(errors="replace") for line in lines]

    def kill(self) -> None:
        """SIGKILL the worker's process group and reap it; idempotent."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                stream.close()
        self.proc.wait()


def _kill_all(workers: list[_Worker]) -> None:
    for worker in workers:
        worker.kill()
    workers.clear()


class RewardPool:
    """Scores batches of responses; verification runs in ``num_workers`` worker processes.

    ``timeout_s`` is the hard wall-clock limit per verified answer, ``memory_mb`` the address-space
    limit per worker (None: no limit), ``max_answer_chars`` the longest box content that is
    verified (longer ones score 0), ``box_rule`` which boxes of the answer block are judged
    (``last``: ORZ's code; ``all``: every distinct box must verify). ``spare_workers`` idle,
    already started workers stand by so that a killed worker is replaced at once rather than
    after an interpreter start-up; at most ``num_workers`` verify at a time. ``call_budget_s``
    (0: none) bounds the verification time of one call: past it, the remaining answers score 0
    as timeouts. Workers start in the background at construction; the first ``score`` waits for
    them. Reuse one pool across steps; ``close()`` (or leaving the ``with`` block) kills every
    worker. Calls are serialised by a lock.
    """

    def __init__(
        self,
        num_workers: int = 2,
        timeout_s: float = 5.0,
        memory_mb: int | None = 2048,
        max_answer_chars: int = DEFAULT_MAX_ANSWER_CHARS,
        spare_workers: int = 1,
        call_budget_s: float = 0.0,
        box_rule: BoxRule = "last",
    ) -> None:
        if num_workers < 1 or spare_workers < 0 or timeout_s <= 0 or call_budget_s < 0:
            raise ValueError(
                "RewardPool needs num_workers >= 1, spare_workers >= 0, timeout_s > 0, "
                "call_budget_s >= 0"
            )
        self.num_workers = num_workers
        self.timeout_s = float(timeout_s)
        self.call_budget_s = float(call_budget_s)
        self.memory_mb = memory_mb
        self.max_answer_chars = max_answer_chars
        self.box_rule = box_rule
        # The soft timer inside the worker catches most slow answers without losing the process;
        # the CPU limit only matters for a worker whose parent is gone.
        self._command = [sys.executable, "-m", "zerorl.reward.worker"]
        self._command += ["--soft-timeout", str(0.8 * self.timeout_s)]
        self._command += ["--cpu-limit", str(2 * self.timeout_s + 1)]
        if memory_mb is not None:
            self._command += ["--memory-mb", str(int(memory_mb))]
        self._env = dict(os.environ)
        self._env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_PACKAGE_ROOT, os.environ.get("PYTHONPATH", "")) if p
        )
        self._env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        self._workers: list[_Worker] = []
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._startup_failures = 0
        self._closed = False
        self._finalizer = weakref.finalize(self, _kill_all, self._workers)
        for _ in range(num_workers + spare_workers):
            self._spawn()

    def __enter__(self) -> RewardPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pids(self) -> list[int]:
        """Process ids of the current workers (for tests and monitoring)."""
        return [worker.proc.pid for worker in self._workers]

    def close(self) -> None:
        """Kill and reap every worker; idempotent. The pool cannot score afterwards."""
        with self._lock:
            self._closed = True
            for worker in self._workers:
                self._selector.unregister(worker.fd)
            _kill_all(self._workers)
            self._selector.close()

    def wait_ready(self, timeout_s: float = _STARTUP_LIMIT_S) -> bool:
        """Block until every worker has started (True) or ``timeout_s`` passes (False)."""
        with self._lock:
            deadline = time.monotonic() + timeout_s
            while not all(worker.ready for worker in self._workers):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._poll(None, left)
            return True

    def _spawn(self) -> None:
        command = list(self._command)
        if threading.current_thread() is threading.main_thread():
            # PDEATHSIG fires when the spawning *thread* exits: only safe from the main thread.
            command.append("--die-with-parent")
        worker = _Worker(command, self._env)
        self._workers.append(worker)
        self._selector.register(worker.fd, selectors.EVENT_READ, worker)

    def _retire(self, worker: _Worker) -> None:
        """Kill ``worker`` and start its replacement."""
        self._selector.unregister(worker.fd)
        self._workers.remove(worker)
        worker.kill()
        if not worker.ready:
            self._startup_failures += 1
            if self._startup_failures >= _MAX_STARTUP_FAILURES:
                raise RuntimeError(
                    "reward workers fail to start; run `python -m zerorl.reward.worker "
                    "--soft-timeout 1 --cpu-limit 3` to see why"
                )
        self._spawn()

    def score(
        self, responses: list[str], ground_truths: list[str], finished: list[bool]
    ) -> RewardResult:
        """Rewards for a batch (same order). Worker hangs and crashes score 0 and are counted."""
        if not (len(responses) == len(ground_truths) == len(finished)):
            raise ValueError("responses, ground_truths and finished must have the same length")
        with self._lock:
            if self._closed:
                raise RuntimeError("RewardPool is closed")
            plans = [
                self._apply_rules(r, t, f)
                for r, t, f in zip(responses, ground_truths, finished, strict=True)
            ]
            uids: dict[tuple[str, str], int] = {}  # identical units are verified once
            for decided in plans:
                for unit in decided.units:
                    uids.setdefault(unit, len(uids))
            run = _Run([[uid, a, t] for (a, t), uid in uids.items()])
            self._dispatch(run)
        result = RewardResult([], 0, 0, [], [], run.longest)
        for decided in plans:
            verdicts = {run.verdicts[uids[unit]] for unit in decided.units}
            score, reason = _combine(decided.score, decided.reason, verdicts)
            result.scores.append(score)
            result.reasons.append(reason)
            result.extracted.append(decided.extracted)
            result.timeouts += reason == "timeout"
            result.errors += reason == "error"
        return result

    def _apply_rules(self, response: str, truth: str, finished: bool) -> RuleOutcome:
        """The rules for one response; a malformed input (not a string) scores 0 as an error."""
        try:
            return apply_rules(
                response, truth, bool(finished), self.max_answer_chars, self.box_rule
            )
        except Exception:
            return RuleOutcome(None, 0.0, "error")

    def verify_raw(self, answers: list[str], truths: list[str]) -> tuple[list[str], float]:
        """Verdicts (``1 0 r t e``) for raw (answer, truth) pairs, bypassing every rule.

        For tests and fuzzing of the isolation itself; returns the verdicts and the longest unit
        time in seconds. Training uses :meth:`score`.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("RewardPool is closed")
            run = _Run([[i, a, t] for i, (a, t) in enumerate(zip(answers, truths, strict=True))])
            self._dispatch(run)
        return [v or "e" for v in run.verdicts], run.longest

    def _dispatch(self, run: _Run) -> None:
        """Verify every unit of ``run``, keeping each worker fed with one chunk at a time."""
        for worker in list(self._workers):
            if worker.pending:  # left over from a call that was interrupted (KeyboardInterrupt)
                self._lost(worker, None, "e")
        budget = self.call_budget_s or math.inf
        deadline = time.monotonic() + budget
        while run.remaining:
            if time.monotonic() >= deadline:
                self._expire(run)
                return
            busy = sum(1 for worker in self._workers if worker.pending)
            for worker in list(self._workers):
                if busy < self.num_workers and worker.ready and not worker.pending and run.queue:
                    busy += 1
                    size = math.ceil(len(run.queue) / (2 * self.num_workers))
                    chunk = [run.units[run.queue.popleft()] for _ in range(min(size, _MAX_CHUNK))]
                    if not worker.send(chunk):
                        run.queue.extendleft(reversed([unit[0] for unit in chunk]))
                        self._lost(worker, run, "e")
            self._poll(run, min(self.timeout_s, max(0.0, deadline - time.monotonic())))

    def _expire(self, run: _Run) -> None:
        """The call's budget is spent: every unit not yet answered is a timeout; the workers
        still busy with one are replaced."""
        for worker in list(self._workers):
            if worker.pending:
                for uid in worker.pending:
                    run.record(uid, "t", time.monotonic() - worker.started)
                worker.pending.clear()
                self._retire(worker)
        while run.queue:
            run.record(run.queue.popleft(), "t", 0.0)

    def _poll(self, run: _Run | None, max_wait: float) -> None:
        """Wait for worker output (at most ``max_wait`` s, less if a limit falls due), handle it,
        then kill every worker past its limit (a unit's time limit, or the startup limit)."""
        now = time.monotonic()
        for worker in self._workers:
            if worker.pending or not worker.ready:
                max_wait = min(max_wait, worker.started + self._limit(worker) - now)
        for key, _ in self._selector.select(max(0.0, max_wait)):
            worker = key.data
            if worker not in self._workers:
                continue
            lines = worker.read_lines()
            if lines is None:
                self._lost(worker, run, "e")
                continue
            for line in lines:
                if not self._receive(worker, line, run):
                    self._lost(worker, run, "e")
                    break
        now = time.monotonic()
        for worker in list(self._workers):
            if (worker.pending or not worker.ready) and now - worker.started >= self._limit(worker):
                self._lost(worker, run, "t")

    def _limit(self, worker: _Worker) -> float:
        return self.timeout_s if worker.ready else _STARTUP_LIMIT_S

    def _receive(self, worker: _Worker, line: str, run: _Run | None) -> bool:
        """Handle one protocol line; False if it makes no sense (the worker is then replaced)."""
        now = time.monotonic()
        if line == "ready":
            worker.ready = True
            worker.started = now
            self._startup_failures = 0
            return True
        if line.startswith("fail "):
            raise RuntimeError(f"reward worker cannot start: {line[5:]}")
        uid_text, _, verdict = line.partition(" ")
        if run is None or not worker.pending or uid_text != str(worker.pending[0]):
            return False
        if verdict not in _VERDICTS:
            return False
        run.record(worker.pending.popleft(), verdict, now - worker.started)
        worker.started = now
        return True

    def _lost(self, worker: _Worker, run: _Run | None, verdict: str) -> None:
        """Replace ``worker``; its current unit gets ``verdict``, the rest of its chunk waits."""
        if worker.pending and run is not None:
            run.record(worker.pending.popleft(), verdict, time.monotonic() - worker.started)
            run.queue.extendleft(reversed(worker.pending))
        worker.pending.clear()
        self._retire(worker)


_VERDICTS = frozenset("10rte")


class _Run:
    """The state of one dispatch: units, their verdicts and the queue of unsent units."""

    def __init__(self, units: list[list]) -> None:
        self.units = units
        self.verdicts: list[str | None] = [None] * len(units)
        self.queue = deque(range(len(units)))
        self.remaining = len(units)
        self.longest = 0.0

    def record(self, uid: int, verdict: str, seconds: float) -> None:
        if self.verdicts[uid] is None:
            self.remaining -= 1
        self.verdicts[uid] = verdict
        self.longest = max(self.longest, seconds)


def _combine(decided: float | None, reason: str, verdicts: set[str | None]) -> tuple[float, str]:
    """A response's score and reason from the rules' decision or its units' verdicts."""
    if decided is not None:
        return decided, reason
    if verdicts == {"1"}:
        return 1.0, "correct"
    for verdict, name in (("t", "timeout"), ("e", "error"), ("r", "refused")):
        if verdict in verdicts:
            return 0.0, name
    return 0.0, "wrong"
