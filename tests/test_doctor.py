"""``zerorl doctor``: the report on this machine, and a preset's needs against an environment."""

from __future__ import annotations

import torch
from typer.testing import CliRunner

from zerorl.cli import app
from zerorl.config import load_config
from zerorl.doctor import FIX_CUDA, FIX_RAY, Environment, choice_checks, preset_checks

FULL = {"transformers": "5", "math-verify": "0.9", "ray": "2", "vllm": "0.11", "flash-attn": None}
H200 = [("NVIDIA H200", 139.0, 139.8)]


def test_doctor_reports_this_machine_and_starts_the_reward_pool():
    result = CliRunner().invoke(app, ["doctor"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert torch.__version__ in result.output
    assert "verdicts ['1', '0']" in result.output  # math-verify ran in a pool worker
    for choice in ("train.backend=local", "rollout.engine=fast", "rollout.engine=vllm"):
        assert choice in result.output


def test_doctor_fails_for_a_preset_this_machine_cannot_run():
    result = CliRunner().invoke(app, ["doctor", "--preset", "orz-7b"], env={"COLUMNS": "200"})
    if torch.cuda.is_available():  # a GPU machine may have vLLM too; then it must say so
        assert "vLLM" in result.output
        return
    assert result.exit_code == 1, result.output
    assert "missing a GPU" in result.output
    assert "pip install torch" in result.output  # the fix is named


def test_preset_needs_against_environments():
    cfg = load_config("orz-7b")
    gpu = Environment("2.11", "13.0", H200, "2.27.7", FULL)
    assert all(c.ok for c in preset_checks(cfg, gpu))
    no_ray = Environment("2.11", "13.0", H200, "2.27.7", {**FULL, "ray": None})
    failed = [c for c in preset_checks(cfg, no_ray) if not c.ok]
    assert [c.fix for c in failed] == [FIX_RAY]
    cpu = Environment("2.11", None, [], None, FULL)
    assert FIX_CUDA in [c.fix for c in preset_checks(cfg, cpu) if not c.ok]
    tiny = load_config("tiny-cpu")
    assert all(c.ok for c in preset_checks(tiny, Environment("2.11", None, [], None, FULL)))


def test_engine_choices_say_why_not():
    bare = Environment("2.11", None, [], None, {**FULL, "ray": None, "vllm": None})
    by_name = {c.name: c for c in choice_checks(bare)}
    assert by_name["train.backend=local"].ok and by_name["rollout.engine=hf"].ok
    assert not by_name["train.backend=ray"].ok and by_name["train.backend=ray"].fix == FIX_RAY
    assert not by_name["rollout.engine=vllm"].ok and "vllm" in by_name["rollout.engine=vllm"].fix
