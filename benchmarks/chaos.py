"""Chaos: SIGKILL a training run at random moments, resume it after each kill, and check that it
ends bit-identical to an uninterrupted run (metrics and final weights).

``python -m benchmarks.chaos --kills 20`` (also ``scripts/chaos``) runs an uninterrupted
reference, then trials of ``--per-trial`` kills each until ``--kills`` kills are done, and prints
kills, resumes and identical runs. A kill lands anywhere in [0, the reference's wall time]: during
start-up, a step, an evaluation, a metrics line or a checkpoint write.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from zerorl.rundir import MANIFEST, RunDir, read_jsonl

ROOT = Path(__file__).resolve().parents[1]
NOT_COMPARED = ("time/", "throughput/")
DEFAULT_ARGS = ["--preset", "tiny-cpu", "train.steps=6", "train.save_interval=2"]


@dataclass
class ChaosResult:
    kills: int = 0
    resumes: int = 0
    runs: int = 0
    identical: int = 0
    where: Counter = field(default_factory=Counter)  # what each kill interrupted

    def line(self) -> str:
        where = ", ".join(f"{n} {what}" for what, n in sorted(self.where.items()))
        return (
            f"kills {self.kills} ({where}), resumes {self.resumes}, "
            f"identical runs {self.identical}/{self.runs}"
        )


def progress(run: Path) -> str:
    """How far a killed run had come: before its folder had a config, or its last logged step."""
    if not (run / "config.yaml").exists():
        return "during start-up (no config yet)"
    steps = [m["step"] for m in read_jsonl(run / "metrics.jsonl", warn=lambda m: None)]
    return f"with step {max(steps)} logged" if steps else "before any step was logged"


def train(args: list[str], log: Path, kill_after: float | None) -> int | None:
    """``zerorl train ARGS`` in a fresh process; SIGKILLed after ``kill_after`` seconds (then
    None) unless it ends first (its exit code)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    with open(log, "a") as out:
        out.write(f"\n$ zerorl train {' '.join(args)} (kill after {kill_after})\n")
        out.flush()
        command = [sys.executable, "-m", "zerorl.cli", "train", *args]
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            return proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            proc.kill()  # SIGKILL: no handler runs, no file is closed
            proc.wait()
            return None


def fingerprint(run: Path) -> tuple[list[dict], dict[str, str]]:
    """The run's metrics without timings, and the checksums of its final weights."""
    metrics = [
        {k: v for k, v in m.items() if not k.startswith(NOT_COMPARED)}
        for m in read_jsonl(run / "metrics.jsonl")
    ]
    checkpoint = RunDir(run).latest_checkpoint()
    files = json.loads((checkpoint / MANIFEST).read_text())["files"]
    weights = {k: f["sha256"] for k, f in files.items() if k.endswith(".safetensors")}
    return metrics, weights


def trial(
    run: Path, args: list[str], kills: int, window: float, rng: random.Random, log: Path
) -> tuple[int, int, Counter]:
    """Train into ``run`` until it finishes, killing it ``kills`` times; (kills, resumes, where
    the kills landed). A resume is ``--resume``, or ``--out`` again when the kill came before the
    folder had a config."""
    done_kills = resumes = 0
    where: Counter = Counter()
    while True:
        started = (run / "config.yaml").exists()
        step_args = ["--resume", str(run)] if started else ["--out", str(run), *args]
        resumes += done_kills > 0
        kill_after = rng.uniform(0.0, window) if done_kills < kills else None
        code = train(step_args, log, kill_after)
        if code is None:
            done_kills += 1
            where[progress(run)] += 1
        elif code != 0:
            raise RuntimeError(f"zerorl train exited with {code}; see {log}")
        else:
            return done_kills, resumes, where


def chaos(kills: int, per_trial: int, workdir: Path, args: list[str], seed: int = 0) -> ChaosResult:
    """The reference run, then trials until ``kills`` kills; see the module docstring."""
    log = workdir / "chaos.log"
    start = time.monotonic()
    if train(["--out", str(workdir / "reference"), *args], log, None) != 0:
        raise RuntimeError(f"the reference run failed; see {log}")
    window = time.monotonic() - start
    want = fingerprint(workdir / "reference")
    rng, result = random.Random(seed), ChaosResult()
    while result.kills < kills:
        run = workdir / f"run{result.runs}"
        k, r, where = trial(run, args, min(per_trial, kills - result.kills), window, rng, log)
        result.where.update(where)
        result.kills, result.resumes, result.runs = (
            result.kills + k,
            result.resumes + r,
            result.runs + 1,
        )
        same = fingerprint(run) == want
        result.identical += same
        print(f"run {result.runs}: {k} kills, {r} resumes, {'identical' if same else 'DIFFERENT'}")
        if same:
            shutil.rmtree(run)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chaos", description=__doc__)
    parser.add_argument("--kills", type=int, default=20, help="random SIGKILLs in all")
    parser.add_argument("--per-trial", type=int, default=4, help="kills per run before it ends")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the runs here")
    parser.add_argument("train_args", nargs="*", help=f"zerorl train arguments ({DEFAULT_ARGS})")
    a = parser.parse_args(argv)
    workdir = a.workdir or Path(tempfile.mkdtemp(prefix="zerorl-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    result = chaos(a.kills, a.per_trial, workdir, a.train_args or DEFAULT_ARGS, a.seed)
    print(result.line())
    return 0 if result.identical == result.runs else 1


if __name__ == "__main__":
    sys.exit(main())
