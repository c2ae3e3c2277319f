"""A verification worker process: ``python -m zerorl.reward.worker`` (started by RewardPool).

Protocol (one line per message, UTF-8):

- parent -> worker on stdin: a JSON list of ``[uid, answer, truth]`` units (a chunk);
- worker -> parent on its original stdout: ``ready``, then ``<uid> <verdict>`` per unit in
  chunk order, verdict one of ``1`` correct, ``0`` wrong, ``r`` refused, ``t`` timed out (soft
  limit), ``e`` error; or ``fail <reason>`` if the worker cannot start.

The worker's stdout is moved to its stderr before any verification, so nothing a library prints
can corrupt the protocol. Each unit runs under a soft wall-clock timer (SIGALRM) and a
CPU-time limit; the pool kills the worker if a unit outlives its hard limit anyway.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

from zerorl.reward import sandbox
from zerorl.reward.verify import check


class _SoftTimeout(BaseException):
    """Raised by the unit timer; a BaseException so math-verify's ``except Exception`` lets it
    through instead of turning it into a plain wrong answer."""


def _on_alarm(signum: int, frame: object) -> None:
    raise _SoftTimeout


def _send(fd: int, text: str) -> None:
    data = (text + "\n").encode()
    while data:
        data = data[os.write(fd, data) :]


def _run_unit(answer: str, truth: str, soft_s: float, cpu_s: float) -> str:
    """The verdict for one unit, bounded by the soft timer and the CPU limit."""
    before = sandbox.violations
    sandbox.arm_cpu_limit(cpu_s)
    signal.setitimer(signal.ITIMER_REAL, soft_s)
    try:
        verdict = check(answer, truth)
    except _SoftTimeout:
        verdict = "t"
    except Exception:  # MemoryError, RecursionError, a sandbox refusal, a sympy bug
        verdict = "e"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return "e" if sandbox.violations != before else verdict


def _warm_up() -> None:
    """First parses load the ANTLR grammar and sympy caches; pay that before ``ready``."""
    for answer, truth in (("\\frac{1}{2}", "0.5"), ("x=3", "3"), ("(1,2]", "(1, 2]")):
        check(answer, truth)


def serve(out_fd: int, soft_s: float, cpu_s: float) -> None:
    """Answer chunks from stdin until it closes."""
    for line in sys.stdin.buffer:
        try:
            chunk = json.loads(line)
        except ValueError:
            continue
        for uid, answer, truth in chunk:
            try:
                verdict = _run_unit(answer, truth, soft_s, cpu_s)
            except _SoftTimeout:  # the timer fired in the instant between check and disarm
                verdict = "t"
            _send(out_fd, f"{uid} {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--memory-mb", type=int, default=None)
    parser.add_argument("--soft-timeout", type=float, required=True)
    parser.add_argument("--cpu-limit", type=float, required=True)
    parser.add_argument("--die-with-parent", action="store_true")
    args = parser.parse_args(argv)
    out_fd = os.dup(1)
    os.dup2(2, 1)
    try:
        _warm_up()
        sandbox.harden(args.memory_mb, args.die_with_parent)
    except Exception as exc:  # a broken install: tell the parent why instead of hanging
        _send(out_fd, f"fail {type(exc).__name__}: {exc}"[:500].replace("\n", " "))
        return 1
    signal.signal(signal.SIGALRM, _on_alarm)
    _send(out_fd, "ready")
    serve(out_fd, args.soft_timeout, args.cpu_limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
