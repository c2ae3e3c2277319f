"""``zerorl reproduce``: the ORZ paper's ablations in miniature, on the embedded toy world."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console(soft_wrap=True)

FULL = {"steps": 40, "seeds": 5, "eval_interval": 10, "eval_size": 256}
QUICK = {"steps": 10, "seeds": 2, "eval_interval": 5, "eval_size": 128}


def reproduce_command(
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="section.key=value for every run, e.g. toy.world_seed=3"),
    ] = None,
    quick: Annotated[
        bool,
        typer.Option("--quick", help="10 steps, 2 seeds, 128 eval problems: verdicts marked quick"),
    ] = False,
    seeds: Annotated[int | None, typer.Option(help="seeds per arm (default 5; --quick 2)")] = None,
    only: Annotated[
        str | None,
        typer.Option(help="comma-separated ablations: gae_lambda,gamma,kl,data_scale,algorithm"),
    ] = None,
    out: Annotated[
        Path, typer.Option(help="output folder; a finished run in it is not rerun")
    ] = Path("reproduce"),
    jobs: Annotated[
        int, typer.Option(help="runs at once, one torch thread each (default: CPU cores)")
    ] = 0,
) -> None:
    """Rerun the ORZ paper's ablations (GAE λ, γ, KL, data scale, PPO vs GRPO/Dr. GRPO/RLOO)
    as arms x seeds on the toy world: plots, an HTML page and summary.json with each effect,
    its 95% interval and a verdict (agree, disagree, inconclusive)."""
    from zerorl.eval.ablations import Plan, selected
    from zerorl.eval.reproduce import SUMMARY_HEADER, reproduce, summary_rows
    from zerorl.models import quiet_transformers

    quiet_transformers()
    base = QUICK if quick else FULL
    n = seeds if seeds is not None else base["seeds"]
    if n < 1:
        console.print("[bold red]error:[/] --seeds must be >= 1")
        raise typer.Exit(2)
    try:
        ablations = selected([x.strip() for x in only.split(",")] if only else [])
    except ValueError as e:
        console.print(f"[bold red]error:[/] {e}")
        raise typer.Exit(2) from None
    plan = Plan(
        steps=base["steps"], seeds=tuple(range(1, n + 1)), eval_interval=base["eval_interval"],
        eval_size=base["eval_size"], jobs=jobs or max(1, os.cpu_count() or 1), quick=quick,
        base=tuple(overrides or ()),
    )  # fmt: skip
    from zerorl.config import ConfigError, load_config

    try:  # a bad key stops here, not in every run
        load_config("tiny-cpu", None, plan.overrides(ablations[0].claimed, 1))
    except ConfigError as e:
        console.print(f"[bold red]error:[/] {e}")
        raise typer.Exit(2) from None
    summary = reproduce(plan, ablations, out, on_info=console.print)
    table = Table(*SUMMARY_HEADER)
    for row in summary_rows(summary):
        table.add_row(*row)
    console.print(table)
    console.print(
        f"[bold green]wrote[/] {out}/summary.json, index.html and the plots "
        f"({summary['wall_s'] / 60:.1f} min)"
    )
