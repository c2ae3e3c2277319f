"""The curation pipeline: raw prompt collections in, a clean RL prompt set and a report out.

Stages, in this order, each a function ``(prompts, params) -> (kept, StageReport)``:

1. ``verifiable``      drop what a rule-based reward cannot judge (filters.py)
2. ``exact_dedup``     exact duplicates after normalisation (dedup.py)
3. ``near_dedup``      near duplicates by MinHash LSH (dedup.py)
4. ``semantic_dedup``  paraphrases by sentence embeddings, optional (dedup.py)
5. ``decontaminate``   n-gram overlap with evaluation sets (decontam.py)
6. ``pass_rate``       k samples per prompt with a model, optional (passrate.py)

The pipeline binds each stage to its parameters and runs them in order, timing each one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from zerorl.data.decontam import DecontamSpec, decontaminate
from zerorl.data.dedup import (
    NearDupSpec,
    SemanticSpec,
    exact_dedup,
    near_dedup,
    semantic_dedup,
)
from zerorl.data.filters import FilterSpec, filter_verifiable
from zerorl.data.loaders import Errors, load_prompts_report, save_jsonl, save_orz_train
from zerorl.data.passrate import (
    PassRateSpec,
    pass_rate_filter,
    select_by_pass_rate,
)
from zerorl.data.report import CurateReport, StageReport, render_report
from zerorl.types import Prompt

__all__ = [
    "CurateReport",
    "CurateSpec",
    "DecontamSpec",
    "FilterSpec",
    "NearDupSpec",
    "PassRateSpec",
    "SemanticSpec",
    "Stage",
    "StageReport",
    "build_stages",
    "curate",
    "curate_files",
    "decontaminate",
    "exact_dedup",
    "filter_verifiable",
    "load_references",
    "near_dedup",
    "pass_rate_filter",
    "render_report",
    "run_stages",
    "select_by_pass_rate",
    "semantic_dedup",
]

Stage = Callable[[list[Prompt]], tuple[list[Prompt], StageReport]]
STAGE_NAMES: tuple[str, ...] = (
    "verifiable",
    "exact_dedup",
    "near_dedup",
    "semantic_dedup",
    "decontaminate",
    "pass_rate",
)


@dataclass(frozen=True)
class CurateSpec:
    """Parameters of every stage; ``None`` leaves a stage out.

    ``pass_rate`` is a ready stage (see ``zerorl.cli.data.pass_rate_stage``, or bind
    ``pass_rate_filter`` to an engine and a reward pool with ``functools.partial``) because it
    needs a model; it is off by default.
    """

    filters: FilterSpec | None = field(default_factory=FilterSpec)
    exact: bool = True
    near: NearDupSpec | None = field(default_factory=NearDupSpec)
    semantic: SemanticSpec | None = field(default_factory=SemanticSpec)
    decontam: DecontamSpec | None = field(default_factory=DecontamSpec)
    pass_rate: Stage | None = None


def build_stages(config: CurateSpec) -> list[tuple[str, Stage]]:
    """The enabled stages of ``config``, in pipeline order, bound to their parameters."""
    stages: list[tuple[str, Stage]] = []
    if config.filters is not None:
        stages.append(("verifiable", partial(filter_verifiable, params=config.filters)))
    if config.exact:
        stages.append(("exact_dedup", exact_dedup))
    if config.near is not None:
        stages.append(("near_dedup", partial(near_dedup, params=config.near)))
    if config.semantic is not None:
        stages.append(("semantic_dedup", partial(semantic_dedup, params=config.semantic)))
    if config.decontam is not None:
        stages.append(("decontaminate", partial(decontaminate, params=config.decontam)))
    if config.pass_rate is not None:
        stages.append(("pass_rate", config.pass_rate))
    return stages


def run_stages(
    prompts: list[Prompt],
    stages: Sequence[tuple[str, Stage]],
    on_stage: Callable[[StageReport], None] | None = None,
) -> tuple[list[Prompt], list[StageReport]]:
    """Run ``stages`` in order; each report gets its wall time in ``seconds``.

    ``on_stage`` is called with each report as soon as its stage ends (for progress output).
    """
    reports: list[StageReport] = []
    for _, stage in stages:
        start = time.perf_counter()
        prompts, report = stage(prompts)
        report.seconds = time.perf_counter() - start
        reports.append(report)
        if on_stage is not None:
            on_stage(report)
    return prompts, reports


def curate(
    prompts: list[Prompt],
    config: CurateSpec = CurateSpec(),
    inputs: list[dict[str, object]] | None = None,
    on_stage: Callable[[StageReport], None] | None = None,
) -> tuple[list[Prompt], CurateReport]:
    """Run the pipeline of ``config`` over ``prompts``; the kept prompts keep their input order."""
    start = time.perf_counter()
    kept, reports = run_stages(prompts, build_stages(config), on_stage)
    report = CurateReport(
        inputs=inputs or [],
        stages=reports,
        n_in=len(prompts),
        n_out=len(kept),
        seconds=time.perf_counter() - start,
    )
    return kept, report


def load_inputs(
    paths: Sequence[str | Path],
    question_field: str | None = None,
    answer_field: str | None = None,
    errors: Errors = "raise",
) -> tuple[list[Prompt], list[dict[str, object]]]:
    """Load and concatenate ``paths``; also return one summary per file for the report."""
    prompts: list[Prompt] = []
    inputs: list[dict[str, object]] = []
    for path in paths:
        loaded, load = load_prompts_report(
            path, question_field=question_field, answer_field=answer_field, errors=errors
        )
        prompts.extend(loaded)
        inputs.append(
            {
                "path": load.path,
                "format": load.format,
                "n_items": load.n_items,
                "n_loaded": load.n_loaded,
                "n_skipped": len(load.skipped),
                "skipped_examples": [f"item {i}: {why}" for i, why in load.skipped[:5]],
            }
        )
    return prompts, inputs


def load_references(paths: Sequence[str | Path]) -> tuple[Prompt, ...]:
    """Evaluation problems of ``paths`` (files, or directories of .json/.jsonl/.parquet files)."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir() and not (path / "dataset_info.json").exists():
            files.extend(
                sorted(f for f in path.iterdir() if f.suffix in (".json", ".jsonl", ".parquet"))
            )
        else:
            files.append(path)
    references: list[Prompt] = []
    for file in files:
        references.extend(load_prompts_report(file, errors="skip")[0])
    return tuple(references)


def output_paths(out: str | Path, jsonl: str | Path | None = None) -> tuple[Path | None, Path]:
    """``(ORZ training JSON, JSONL)`` paths: ``out`` ending in .jsonl is JSONL only; otherwise
    ORZ's format goes to ``out`` and JSONL to ``jsonl`` (default: ``out`` with suffix .jsonl)."""
    out = Path(out)
    if out.suffix == ".jsonl":
        return None, out
    return out, Path(jsonl) if jsonl else out.with_suffix(".jsonl")


def curate_files(
    paths: Sequence[str | Path],
    out: str | Path,
    config: CurateSpec = CurateSpec(),
    *,
    jsonl: str | Path | None = None,
    report_path: str | Path | None = None,
    question_field: str | None = None,
    answer_field: str | None = None,
    errors: Errors = "raise",
    on_stage: Callable[[StageReport], None] | None = None,
) -> CurateReport:
    """Load ``paths``, curate, write the outputs (see :func:`output_paths`) and the JSON report."""
    prompts, inputs = load_inputs(paths, question_field, answer_field, errors)
    kept, report = curate(prompts, config, inputs, on_stage)
    orz_path, jsonl_path = output_paths(out, jsonl)
    if orz_path is not None:
        save_orz_train(kept, orz_path)
    save_jsonl(kept, jsonl_path)
    if report_path is not None:
        Path(report_path).parent.mkdir(parents=True, exist_ok=True)
        Path(report_path).write_text(report.to_json() + "\n", encoding="utf-8")
    return report
