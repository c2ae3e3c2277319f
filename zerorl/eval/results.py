"""What ``zerorl eval`` writes: summary.json, summary.md and samples.jsonl.

- ``summary.json``: ``{"settings": {...}, "wall_time_s": s, "benchmarks": {name: {...}}}``; each
  benchmark has ``problems``, ``samples_per_problem``, ``avg@K``, ``pass@k`` for k in
  :func:`zerorl.eval.metrics.pass_ks`, ``maj@K`` (fractions), ``mean_length`` (tokens),
  ``truncated_frac`` and ``seconds``.
- ``summary.md``: the same as a Markdown table, in percent.
- ``samples.jsonl``: one line per sample: benchmark, problem_id, sample_index, response,
  extracted, ground_truth, correct (0/1), length (tokens), finish_reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zerorl.eval.runner import EvalResult


def benchmark_summary(result: EvalResult) -> dict[str, Any]:
    """The summary.json entry of one benchmark."""
    return {
        "problems": result.scores.problems,
        "samples_per_problem": result.samples_per_problem,
        **result.scores.as_metrics(),
        "mean_length": result.mean_length,
        "truncated_frac": result.truncated_frac,
        "seconds": result.seconds,
    }


def summary_markdown(results: list[EvalResult], settings: dict[str, Any]) -> str:
    """A Markdown table: one row per benchmark, scores in percent."""
    if not results:
        return "No benchmark was evaluated.\n"
    score_keys = list(results[0].scores.as_metrics())
    header = ["benchmark", "problems", *score_keys, "mean length", "truncated", "seconds"]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for r in results:
        scores = r.scores.as_metrics()
        cells = [
            r.name,
            str(r.scores.problems),
            *(f"{100 * scores[k]:.1f}" if k in scores else "–" for k in score_keys),
            f"{r.mean_length:.0f}",
            f"{100 * r.truncated_frac:.1f}%",
            f"{r.seconds:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    described = ", ".join(f"{k}={v}" for k, v in settings.items())
    return "\n".join(lines) + f"\n\nScores in percent. Settings: {described}.\n"


def sample_lines(result: EvalResult) -> list[str]:
    """The samples.jsonl lines of one benchmark."""
    return [
        json.dumps(
            {
                "benchmark": result.name,
                "problem_id": s.prompt.id,
                "sample_index": s.sample_index,
                "response": s.completion.text,
                "extracted": s.extracted,
                "ground_truth": s.prompt.ground_truth,
                "correct": s.correct,
                "length": len(s.completion.token_ids),
                "finish_reason": s.completion.finish_reason,
            },
            ensure_ascii=False,
        )
        for s in result.samples
    ]


def write_results(
    out: Path, results: list[EvalResult], settings: dict[str, Any], wall_time_s: float
) -> dict[str, Any]:
    """Write the three files into ``out`` (created if needed); return the summary dict."""
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "settings": settings,
        "wall_time_s": wall_time_s,
        "benchmarks": {r.name: benchmark_summary(r) for r in results},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "summary.md").write_text(summary_markdown(results, settings))
    with open(out / "samples.jsonl", "w") as f:
        for r in results:
            f.writelines(line + "\n" for line in sample_lines(r))
    return summary
