"""``zerorl eval``, ``zerorl analyze`` and ``zerorl report``: plain functions with typer parameters.

zerorl/cli/__init__.py registers them: ``app.command("eval")(eval_command)`` and likewise for the
others.
"""

from __future__ import annotations

import json
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from zerorl.config import EvalConfig, RewardConfig, TrainConfig
from zerorl.eval.analysis import MOMENT_K

console = Console()


class Template(str, Enum):
    orz = "orz"
    chat = "chat"


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(2)


def _model_path(model: str | None, run: Path | None) -> str:
    """The model to evaluate: ``--model``, or the policy of ``--run``'s latest checkpoint."""
    if (model is None) == (run is None):
        _fail("give exactly one of --model DIR and --run RUN_DIR")
    if model is not None:
        return model
    from zerorl.rundir import RunDir

    checkpoint = RunDir(run).latest_checkpoint()
    if checkpoint is None:
        _fail(f"{run} has no checkpoint (checkpoints/latest is missing)")
    return str(checkpoint / "policy")


def _default_out(model_path: str, run: Path | None) -> Path:
    if run is not None:
        return run / "eval" / Path(model_path).parent.name
    return Path("eval") / Path(model_path).stem


def eval_command(
    benchmarks: Annotated[
        list[str] | None,
        typer.Argument(help="benchmark names (aime2024, aime2025, math500, gpqa-diamond) or files"),
    ] = None,
    model: Annotated[str | None, typer.Option(help="model dir, .gguf file or 'toy'")] = None,
    run: Annotated[Path | None, typer.Option(help="evaluate this run's latest checkpoint")] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="dir of <name>.json benchmarks, tried before the cache and a download"),
    ] = None,
    samples: Annotated[
        int, typer.Option(help="samples per problem: K of avg@K")
    ] = EvalConfig.samples,
    temperature: Annotated[
        float, typer.Option(help="sampling temperature")
    ] = EvalConfig.temperature,
    top_p: Annotated[float, typer.Option(help="nucleus sampling threshold")] = EvalConfig.top_p,
    max_new_tokens: Annotated[
        int, typer.Option(help="generation length limit")
    ] = EvalConfig.max_new_tokens,
    limit: Annotated[
        int, typer.Option(help="only the first N problems of each (0 = all)")
    ] = EvalConfig.limit,
    template: Annotated[Template, typer.Option(help="orz (training) or chat")] = Template.orz,
    boxed_fallback: Annotated[
        bool | None,
        typer.Option(help="without an <answer> box, read the last \\boxed{} (default: chat only)"),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="output directory")] = None,
    batch_size: Annotated[int, typer.Option(help="sequences generated at once")] = 64,
    engine: Annotated[str, typer.Option(help="hf (generate) or fast (zerorl's CPU engine)")] = "hf",
    dtype: Annotated[str, typer.Option(help="float32 or bfloat16")] = "float32",
    seed: Annotated[int, typer.Option(help="sampling seed")] = 0,
    reward_workers: Annotated[
        int, typer.Option(help="answer verification processes")
    ] = RewardConfig.num_workers,
    threads: Annotated[
        int, typer.Option(help="torch CPU threads (0 = torch default)")
    ] = TrainConfig.num_threads,
    device: Annotated[str, typer.Option(help="auto (cuda if available), cpu, cuda, ...")] = "auto",
) -> None:
    """Evaluate a model: avg@K, pass@k, maj@K, length and truncation per benchmark."""
    from zerorl.data.sources import DataNotFound
    from zerorl.eval.benchmarks import default_data_dir, load_benchmark
    from zerorl.models import ModelPathError

    model_path = _model_path(model, run)
    names = list(benchmarks or []) or _run_benchmarks(run)
    if not names:
        _fail("name at least one benchmark (e.g. math500) or a benchmark file")
    if samples < 1 or limit < 0 or max_new_tokens < 1:
        _fail("--samples and --max-new-tokens must be >= 1, --limit >= 0")
    directory = data_dir or default_data_dir()
    try:
        sets = [load_benchmark(name, directory, limit) for name in names]
    except (DataNotFound, ValueError) as e:
        _fail(str(e))
    settings = {
        "model": model_path, "template": template.value, "samples": samples,
        "temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens,
        "limit": limit, "seed": seed, "dtype": dtype, "device": _device(device),
        "engine": engine,
    }  # fmt: skip
    if threads:
        # On a shared CPU, fewer threads than torch's default avoid stalls at every small op.
        import torch

        torch.set_num_threads(threads)
    start = time.perf_counter()
    try:
        engine, fmt = _load(settings, boxed_fallback, batch_size)
    except (ModelPathError, ValueError, OSError) as e:
        _fail(str(e))
    settings["boxed_fallback"] = fmt.boxed_fallback
    results = _run_eval(sets, engine, fmt, settings, reward_workers)
    from zerorl.eval.results import write_results

    destination = out or _default_out(model_path, run)
    summary = write_results(destination, results, settings, time.perf_counter() - start)
    _print_summary(summary)
    console.print(f"[bold green]wrote[/] {destination}/summary.json, summary.md, samples.jsonl")


def _device(name: str) -> str:
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _run_benchmarks(run: Path | None) -> list[str]:
    """A run's own eval.benchmarks (so ``zerorl eval --run DIR`` needs no names)."""
    if run is None or not (run / "config.yaml").exists():
        return []
    from zerorl.rundir import RunDir

    return [b for b in RunDir(run).load_config().eval.benchmarks if b != "toy"]


def _load(settings: dict[str, Any], boxed_fallback: bool | None, batch_size: int):
    """(engine, PromptFormat) for the model and template of ``settings``. The boxed fallback
    defaults to on for the chat template and off for the ORZ one (as in training)."""
    import dataclasses

    from zerorl.eval.benchmarks import ORZ_FORMAT, chat_format
    from zerorl.models import load_policy, load_tokenizer
    from zerorl.rollout import local_engine

    tokenizer = load_tokenizer(settings["model"])
    if settings["template"] == Template.chat.value:
        fmt = chat_format(tokenizer, True if boxed_fallback is None else boxed_fallback)
    else:
        fmt = dataclasses.replace(ORZ_FORMAT, boxed_fallback=bool(boxed_fallback))
    model = load_policy(settings["model"], settings["dtype"]).to(settings["device"])
    return local_engine(settings["engine"], model, tokenizer, batch_size), fmt


def _run_eval(sets, engine, fmt, settings: dict[str, Any], reward_workers: int) -> list:
    """Evaluate every benchmark with the same engine and reward pool, one progress bar each.

    Problems go to the engine ``batch_size // K`` at a time so that the bar moves.
    """
    from zerorl.eval.runner import evaluate
    from zerorl.reward import RewardPool
    from zerorl.types import SamplingParams

    k = settings["samples"]
    params = SamplingParams(
        n=k, temperature=settings["temperature"], top_p=settings["top_p"],
        max_new_tokens=settings["max_new_tokens"], seed=settings["seed"],
    )  # fmt: skip
    results = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    chunk = max(1, engine.batch_size // k)
    with (
        RewardPool(num_workers=reward_workers) as reward,
        Progress(*columns, console=console) as bar,
    ):
        for name, prompts in sets:
            _warn_context(name, [fmt.render(p.question) for p in prompts], engine)
            task = bar.add_task(f"{name} ({k} samples)", total=len(prompts))

            def advance(done: int, task: int = task) -> None:
                bar.update(task, completed=done)

            result = evaluate(
                name,
                prompts,
                engine,
                reward,
                params,
                fmt=fmt,
                chunk_problems=chunk,
                on_progress=advance,
            )
            results.append(result)
    return results


def _warn_context(name: str, texts: list[str], engine) -> None:
    """Say how many prompts fill the model's context by themselves (their responses are empty
    and score 0): a small model on a long-prompt benchmark, e.g. the toy model on GPQA."""
    from zerorl.rollout.base import fitting_prompts

    ids = engine.encode(texts)
    lost = len(ids) - len(fitting_prompts(engine.model, ids))
    if lost:
        context = engine.model.config.max_position_embeddings
        console.print(
            f"[yellow]warning:[/] {name}: {lost} of {len(ids)} prompts are longer than the "
            f"model's context ({context} tokens); their responses are empty and score 0"
        )


def _print_summary(summary: dict[str, Any]) -> None:
    benchmarks = summary["benchmarks"]
    if not benchmarks:
        return
    first = next(iter(benchmarks.values()))
    score_keys = [k for k in first if "@" in k]
    table = Table("benchmark", "problems", *score_keys, "mean len", "trunc", "s")
    for name, b in benchmarks.items():
        table.add_row(
            name, str(b["problems"]), *(f"{100 * b[k]:.1f}" for k in score_keys),
            f"{b['mean_length']:.0f}", f"{100 * b['truncated_frac']:.0f}%", f"{b['seconds']:.0f}",
        )  # fmt: skip
    console.print(table)
    console.print(f"wall time {summary['wall_time_s']:.0f} s (model load included)")


def analyze_command(
    sources: Annotated[list[Path], typer.Argument(help="run directory or rollout JSONL files")],
    out: Annotated[Path | None, typer.Option(help="output file or directory")] = None,
    window: Annotated[int | None, typer.Option(help="step-moment window W (default: auto)")] = None,
    k: Annotated[float, typer.Option(help="step-moment threshold (z)")] = MOMENT_K,
) -> None:
    """Reflection statistics per step and the run's step moments -> analysis.json."""
    from zerorl.eval.analysis import analyze

    try:
        result = analyze(sources, window, k)
    except (FileNotFoundError, ValueError, KeyError) as e:
        _fail(f"cannot analyze {', '.join(map(str, sources))}: {e}")
    target = _analysis_path(sources, out)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=2) + "\n")
    metrics_file = target.with_name(target.stem + "_metrics.jsonl")
    metrics_file.write_text("".join(json.dumps(m) + "\n" for m in result["metrics"]))
    _print_analysis(result)
    console.print(f"[bold green]wrote[/] {target} and {metrics_file}")


def _analysis_path(sources: list[Path], out: Path | None) -> Path:
    if out is not None:
        return out / "analysis.json" if out.is_dir() or not out.suffix else out
    first = sources[0]
    return (first if first.is_dir() else first.parent) / "analysis.json"


def _print_analysis(result: dict[str, Any]) -> None:
    steps = result["steps"]
    shown = steps if len(steps) <= 20 else steps[:: max(1, len(steps) // 20)] + steps[-1:]
    table = Table("step", "samples", "reward", "length", "reflect %", "correct refl. len")
    for s in shown:
        correct = s["correct_reflection_length"]
        table.add_row(
            str(s["step"]), str(s["samples"]), f"{s['reward_mean']:.3f}",
            f"{s['response_length_mean']:.1f}", f"{100 * s['reflection_frac']:.1f}",
            "–" if correct is None else f"{correct:.1f}",
        )  # fmt: skip
    console.print(table)
    moments = [m["step"] for m in result["step_moments"]]
    rule = result["rule"]
    console.print(f"step moments (W={rule['window']}, k={rule['k']}): {moments or 'none'}")


def report_command(
    run_dir: Annotated[Path, typer.Argument(help="run directory")],
    out: Annotated[Path | None, typer.Option(help="output dir (default RUN_DIR/report)")] = None,
    embed: Annotated[bool, typer.Option(help="embed the plots in the HTML as base64")] = True,
) -> None:
    """An HTML page and PNG plots showing a run the way the ORZ paper does."""
    from zerorl.eval.report import write_report

    try:
        page = write_report(run_dir, out, embed)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    console.print(f"[bold green]wrote[/] {page} (and the PNGs beside it)")
