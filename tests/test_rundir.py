"""The run folder survives kills, concurrent use, full disks and damaged files (docs/rundir.md)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from test_trainer import comparable, tiny_config

from zerorl.config import ConfigError
from zerorl.launch import resume_training, run_training
from zerorl.rundir import DiskFullError, RunDir, read_jsonl
from zerorl.runlock import RunLockedError

pytestmark = pytest.mark.timeout(600)


class Notes(list):
    """An ``on_info`` that keeps every message."""

    def __call__(self, message: str) -> None:
        self.append(message)

    def text(self) -> str:
        return "\n".join(self)


def stop_at(step: int):
    """An ``on_step`` that stops the run like Ctrl-C once ``step`` is done (and saved)."""

    def on_step(done: int, metrics: dict) -> None:
        if done == step:
            raise KeyboardInterrupt

    return on_step


@pytest.fixture(scope="module")
def reference(tiny_model_dir, tiny_train_file, tmp_path_factory) -> Path:
    """An uninterrupted 3-step run with a checkpoint after every step."""
    cfg = tiny_config(tiny_model_dir, tiny_train_file, "train.steps=3", "train.save_interval=1")
    return run_training(cfg, tmp_path_factory.mktemp("ref") / "run", on_info=Notes()).path


def copy_back_to(reference: Path, step: int, dest: Path) -> Path:
    """``reference`` as it was when stopped right after saving ``step``."""
    shutil.copytree(reference, dest)
    run = RunDir(dest)
    for checkpoint in run.checkpoints():
        if int(checkpoint.name[5:]) > step:
            shutil.rmtree(checkpoint)
    (dest / "checkpoints/latest").write_text(f"step_{step}")
    return dest


def test_resume_continues_to_the_runs_length_with_recorded_changes(
    tiny_model_dir, tiny_train_file, tmp_path
):
    cfg = tiny_config(tiny_model_dir, tiny_train_file, "train.steps=3", "train.save_interval=1")
    notes = Notes()
    with pytest.raises(KeyboardInterrupt):
        run_training(cfg, tmp_path / "run", on_step=stop_at(2), on_info=notes)
    assert f"interrupted at step 2; last checkpoint: step_2. Continue with `zerorl train " \
        f"--resume {tmp_path / 'run'}`" in notes.text()  # fmt: skip
    notes = Notes()
    run = resume_training(tmp_path / "run", ["optim.policy_lr=2e-3"], on_info=notes)
    metrics = run.read_metrics()
    assert [m["step"] for m in metrics] == [1, 2, 3]  # the run's 3 steps, no more
    assert metrics[1]["policy/lr"] == 1e-3 and metrics[2]["policy/lr"] == 2e-3
    assert "resume: optim.policy_lr 0.001 -> 0.002" in notes.text()
    assert run.load_config().optim.policy_lr == 2e-3
    history = run.config_history()
    assert [h["event"] for h in history] == ["create", "resume from step_2"]
    assert history[1]["changes"] == {"optim.policy_lr": [1e-3, 2e-3]}


def test_resume_refuses_keys_that_a_checkpoint_fixes(reference, tmp_path):
    run = copy_back_to(reference, 2, tmp_path / "run")
    before = (run / "config.yaml").read_text()
    with pytest.raises(ConfigError) as e:
        resume_training(run, ["model.path=other", "train.seed=7", "rollout.temperature=0.5"])
    assert "model.path (the checkpoint holds the weights" in str(e.value)
    assert "train.seed (every step's sampling" in str(e.value)
    assert "temperature" not in str(e.value)
    with pytest.raises(ConfigError, match=r"train\.steps=1: the checkpoint is at step 2"):
        resume_training(run, ["train.steps=1"])
    assert (run / "config.yaml").read_text() == before
    RunDir.open(run).close()  # the refusal released the lock


def test_a_second_process_is_refused_and_a_dead_holders_lock_taken_over(reference, tmp_path):
    run = copy_back_to(reference, 2, tmp_path / "run")
    code = "import sys, time; from zerorl.runlock import RunLock; RunLock(sys.argv[1]).acquire();"
    code += "print('held', flush=True); time.sleep(120)"
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match=f"in use by pid {holder.pid} on "):
            resume_training(run, [], on_info=Notes())
        with pytest.raises(RunLockedError):
            run_training(RunDir(run).load_config(), run, on_info=Notes())
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    notes = Notes()
    RunDir.open(run, notes).close()
    assert f"left by pid {holder.pid} on " in notes.text()
    assert "(no longer running)" in notes.text()


def test_damaged_files_fall_back_to_the_previous_good_checkpoint(reference, tmp_path):
    run = copy_back_to(reference, 2, tmp_path / "run")
    state = run / "checkpoints/step_2/trainer_state.pt"
    state.write_bytes(state.read_bytes()[:100])  # truncated
    (run / "checkpoints/latest").write_text("")  # an empty marker
    partial = run / "checkpoints/.tmp_step_3_123"
    partial.mkdir()
    (partial / "trainer_state.pt").write_bytes(b"x" * 1000)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "reward/me')  # killed mid-line
    notes = Notes()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed = resume_training(run, [], on_info=notes)
    assert f"checkpoint {run}/checkpoints/step_2 is damaged (trainer_state.pt has 100 bytes" in (
        notes.text()
    )
    assert "resumed" in notes.text() and "at step 1 of 3" in notes.text()
    assert "removed .tmp_step_3_123, an interrupted save" in notes.text()
    assert not partial.exists()
    assert any("metrics.jsonl: dropped its last line" in str(w.message) for w in caught)
    want = comparable(RunDir(reference).read_metrics())
    assert comparable(resumed.read_metrics()) == want


def test_a_flipped_byte_is_caught_by_the_checksum(reference, tmp_path):
    run = copy_back_to(reference, 3, tmp_path / "run")
    weights = run / "checkpoints/step_3/policy/model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    notes = Notes()
    assert RunDir(run).good_checkpoint(notes).name == "step_2"
    assert "policy/model.safetensors does not match its checksum" in notes.text()


def test_reports_drop_a_torn_last_line_with_a_warning(reference, tmp_path):
    from zerorl.eval.report import load_run

    run = copy_back_to(reference, 3, tmp_path / "run")
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "rew')
    with pytest.warns(UserWarning, match=r"metrics\.jsonl: dropped its last line"):
        data = load_run(run)
    assert [m["step"] for m in data.metrics] == [1, 2, 3]
    (run / "metrics.jsonl").write_text('{"step": 1}\n{"st\n{"step": 3}\n')
    with pytest.raises(ValueError, match=r"metrics\.jsonl: line 2 is not JSON"):
        read_jsonl(run / "metrics.jsonl")


def test_keep_checkpoints(tiny_model_dir, tiny_train_file, tmp_path):
    cfg = tiny_config(
        tiny_model_dir, tiny_train_file, "train.steps=3", "train.save_interval=1",
        "train.keep_checkpoints=2",
    )  # fmt: skip
    run = run_training(cfg, tmp_path / "run", on_info=Notes())
    assert [c.name for c in run.checkpoints()] == ["step_3", "step_2"]
    with pytest.raises(ConfigError, match="keep_checkpoints"):
        tiny_config(tiny_model_dir, tiny_train_file, "train.keep_checkpoints=-1")


def test_a_run_killed_before_its_first_checkpoint_starts_again(reference, tmp_path):
    run = copy_back_to(reference, 3, tmp_path / "run")
    shutil.rmtree(run / "checkpoints")
    with pytest.raises(FileExistsError, match=f"no checkpoint yet.*--resume {run}"):
        run_training(RunDir(run).load_config(), run, on_info=Notes())
    notes = Notes()
    resumed = resume_training(run, [], on_info=notes)
    assert "has no checkpoint yet: starting it again from step 0" in notes.text()
    assert comparable(resumed.read_metrics()) == comparable(RunDir(reference).read_metrics())


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MiB tmpfs (needs root); skipped where it cannot be mounted."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
                          capture_output=True)  # fmt: skip
    if made.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave: int) -> Path:
    filler = disk / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, shutil.disk_usage(disk).free - leave))
    return filler


@pytest.mark.parametrize("first_save", [True, False])
def test_a_full_disk_names_path_and_bytes_and_leaves_the_run_resumable(
    first_save, tiny_model_dir, tiny_train_file, small_disk
):
    """The first save fails inside the writers (no size to check against yet); a later one is
    refused by the free-space check before anything is written."""
    interval = 2 if first_save else 1
    cfg = tiny_config(
        tiny_model_dir, tiny_train_file, "train.steps=2", f"train.save_interval={interval}"
    )
    filled: list[Path] = []

    def fill_after_step_1(step: int, metrics: dict) -> None:
        if step == 1:
            filled.append(fill(small_disk, leave=64 << 10))

    with pytest.raises(DiskFullError) as e:
        run_training(cfg, small_disk / "run", on_step=fill_after_step_1, on_info=Notes())
    message = e.value.strerror
    assert f"writing checkpoint step_2 under {small_disk / 'run'} needs" in message
    assert ("needs more space" if first_save else "needs about ") in message
    assert f"`zerorl train --resume {small_disk / 'run'}`" in message
    assert not list((small_disk / "run/checkpoints").glob(".tmp_step_*"))
    filled[0].unlink()
    notes = Notes()
    resumed = resume_training(small_disk / "run", [], on_info=notes)
    assert [m["step"] for m in resumed.read_metrics()] == [1, 2]
    assert ("step 0" if first_save else "at step 1 of 2") in notes.text()


def test_save_interval_zero_is_refused(tiny_model_dir, tiny_train_file):
    with pytest.raises(ConfigError, match=r"train\.save_interval must be >= 1"):
        tiny_config(tiny_model_dir, tiny_train_file, "train.save_interval=0")


def test_unusable_data_files_are_named(tiny_model_dir, tmp_path):
    from typer.testing import CliRunner

    from zerorl.cli import app
    from zerorl.data.loaders import PromptLoadError
    from zerorl.launch import training_prompts

    latin = tmp_path / "latin.json"
    latin.write_bytes('[[{"from": "human", "value": "caf\xe9"}]]'.encode("latin-1"))
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    blank = tmp_path / "blank.json"
    items = [[{"from": "human", "value": f"{i}+1?"}, {"from": "assistant",
              "ground_truth": {"value": "" if i else "1"}}] for i in range(3)]  # fmt: skip
    blank.write_text(json.dumps(items))
    for path, reason in [(latin, "not UTF-8 text"), (empty, "holds no prompts")]:
        with pytest.raises(PromptLoadError, match=f"{path}: {reason}"):
            training_prompts(tiny_config(tiny_model_dir, path))
        out = CliRunner().invoke(app, ["data", "curate", str(path), "--out", str(tmp_path / "o")])
        assert out.exit_code != 0 and f"{path.name}: {reason}" in " ".join(out.output.split())
        assert "Traceback" not in out.output
    notes = Notes()
    kept = training_prompts(tiny_config(tiny_model_dir, blank), notes)
    assert len(kept) == 1
    assert f"{blank}: dropped 2 of 3 prompts with an empty ground truth" in notes.text()
    blank.write_text(json.dumps(items[1:]))
    with pytest.raises(PromptLoadError, match="every prompt has an empty ground truth"):
        training_prompts(tiny_config(tiny_model_dir, blank))


def test_a_dead_ray_worker_is_one_line_without_a_traceback(monkeypatch, tmp_path):
    pytest.importorskip("ray")
    from typer.testing import CliRunner

    from zerorl import launch
    from zerorl.cli import app
    from zerorl.distributed.groups import WorkerFailure

    def dies(*args, **kwargs):
        raise WorkerFailure("policy rank 0 died during train; continue with --resume RUN")

    monkeypatch.setattr(launch, "run_training", dies)
    out = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "r")])
    assert out.exit_code == 2
    assert "policy rank 0 died during train; continue with --resume RUN" in out.output
    assert "Traceback" not in out.output


def test_cli_resume_takes_no_preset(tmp_path):
    from typer.testing import CliRunner

    from zerorl.cli import app

    out = CliRunner().invoke(app, ["train", "--resume", str(tmp_path), "--preset", "tiny-cpu"])
    assert out.exit_code == 2 and "give changes as key=value" in out.output
    out = CliRunner().invoke(app, ["train", "--resume", str(tmp_path / "none")])
    assert out.exit_code == 2 and "Traceback" not in out.output
    assert "is not a run folder (it has no config.yaml)" in " ".join(out.output.split())
