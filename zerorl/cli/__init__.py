"""The ``zerorl`` command: every command-line edge of the package, in one place.

``train``, ``config`` and ``presets`` are here; ``data synth``/``data curate`` in ``cli.data``;
``eval``, ``analyze`` and ``report`` in ``cli.eval``. Run as ``zerorl ...`` or
``python -m zerorl.cli ...``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from zerorl.config import ConfigError, help_rows, load_config, presets, to_yaml

app = typer.Typer(
    help="zerorl: zero-RL for base language models (the Open-Reasoner-Zero PPO recipe).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()

DEFAULT_PRESET = "tiny-cpu"
STAGES = ("generate", "reward", "logprobs", "values", "critic_update", "policy_update")


def _quiet_libraries() -> None:
    """Our own progress lines replace transformers' per-load progress bars."""
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(2)


def _step_line(total: int) -> Callable[[int, dict[str, float]], None]:
    def show(step: int, m: dict[str, float]) -> None:
        stages = " ".join(f"{s.split('_')[0]} {m.get(f'time/{s}', 0):.1f}s" for s in STAGES)
        evals = " ".join(f"{k.removeprefix('eval/')} {v:.3f}" for k, v in m.items() if "avg@" in k)
        console.print(
            f"[bold]step {step}/{total}[/] reward [green]{m['reward/mean']:.3f}[/] "
            f"len {m['response_length/mean']:.1f} trunc {m['finish/truncated_frac']:.2f} | "
            f"{stages} | {m['time/step']:.1f}s/step" + (f" | [cyan]{evals}[/]" if evals else "")
        )

    return show


@app.command()
def train(
    overrides: Annotated[
        list[str] | None, typer.Argument(help="section.key=value overrides")
    ] = None,
    preset: Annotated[
        str, typer.Option(help=f"preset name ({', '.join(presets())})")
    ] = DEFAULT_PRESET,
    config: Annotated[Path | None, typer.Option(help="YAML config file")] = None,
    steps: Annotated[int | None, typer.Option(help="PPO steps (train.steps)")] = None,
    seed: Annotated[int | None, typer.Option(help="seed (train.seed)")] = None,
    out: Annotated[
        Path | None, typer.Option(help="run directory (default runs/<timestamp>)")
    ] = None,
    resume: Annotated[
        Path | None, typer.Option(help="continue this run from its last checkpoint")
    ] = None,
    backend: Annotated[str | None, typer.Option(help="local or ray (train.backend)")] = None,
    address: Annotated[str | None, typer.Option(help="Ray cluster address (dist.address)")] = None,
) -> None:
    """Train with ORZ's PPO. With no arguments: the embedded tiny-cpu toy world (no download)."""
    from zerorl.launch import run_training
    from zerorl.models import ModelPathError

    _quiet_libraries()
    extra = list(overrides or [])
    if steps is not None:
        extra.append(f"train.steps={steps}")
    if seed is not None:
        extra.append(f"train.seed={seed}")
    if backend is not None:
        extra.append(f"train.backend={backend}")
    if address is not None:
        extra.append(f"dist.address={address}")
    try:
        cfg = load_config(preset, config, extra)
        total = cfg.train.steps
        console.print(
            f"[bold]zerorl train[/] preset={preset} model={cfg.model.path} steps={total or 'auto'}"
        )
        run = run_training(cfg, out, resume, on_step=_step_line(total), on_info=console.print)
    except (ConfigError, ModelPathError, FileExistsError, FileNotFoundError) as e:
        _fail(str(e))
    except ValueError as e:  # data files that do not parse name the file and item
        _fail(str(e))
    console.print(f"[bold green]done[/]: {run.path} (metrics.jsonl, tb/, rollouts/, checkpoints/)")


@app.command("config")
def show_config(
    overrides: Annotated[
        list[str] | None, typer.Argument(help="section.key=value overrides")
    ] = None,
    preset: Annotated[str | None, typer.Option(help="preset name")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML config file")] = None,
    keys: Annotated[bool, typer.Option("--keys", help="list every key with its help")] = False,
) -> None:
    """Print the resolved config as YAML, or every key with its default and help."""
    if keys:
        table = Table("key", "default", "help")
        for row in help_rows():
            table.add_row(*row)
        console.print(table)
        return
    try:
        console.print(to_yaml(load_config(preset, config, list(overrides or []))), end="")
    except ConfigError as e:
        _fail(str(e))


@app.command("presets")
def list_presets() -> None:
    """List the presets and what each is for."""
    from zerorl.config import PRESET_DIR

    for name in presets():
        first = (PRESET_DIR / f"{name}.yaml").read_text().splitlines()[0].lstrip("# ")
        console.print(f"[bold]{name}[/]: {first}")


def _mount_subcommands() -> None:
    from zerorl.cli.data import data_app
    from zerorl.cli.eval import analyze_command, eval_command, report_command

    app.command("eval")(eval_command)
    app.command("analyze")(analyze_command)
    app.command("report")(report_command)
    app.add_typer(data_app, name="data", help="Prepare prompt sets: synthesise and curate.")


_mount_subcommands()
