"""The training progress line stays one line when output is not a terminal (a log file)."""

from __future__ import annotations

from zerorl import cli


def test_step_line_is_not_folded_in_a_log(capsys) -> None:
    metrics = {
        "reward/mean": 0.5,
        "response_length/mean": 36.3,
        "finish/truncated_frac": 0.0,
        "time/step": 2.4,
        "eval/toy/avg@2": 0.81,
        **{f"time/{stage}": 0.4 for stage in cli.STAGES},
    }
    cli._step_line(40)(7, metrics)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and len(lines[0]) > 80, lines
    assert lines[0].startswith("step 7/40 reward 0.500 len 36.3") and "toy/avg@2 0.810" in lines[0]
