"""The ``zerorl`` command: every command-line edge of the package, in one place.

``train``, ``config`` and ``presets`` are here; ``data synth``/``data curate`` in ``cli.data``;
``eval``, ``analyze`` and ``report`` in ``cli.eval``; ``reproduce`` in ``cli.reproduce``. Run
as ``zerorl ...`` or ``python -m zerorl.cli ...``.
"""

from __future__ import annotations

import sys
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
# soft_wrap: a line is never folded mid-field (a log file is not 80 columns wide); a terminal
# wraps long lines itself.
console = Console(soft_wrap=True)

DEFAULT_PRESET = "tiny-cpu"
STAGES = ("generate", "reward", "logprobs", "values", "critic_update", "policy_update")


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
        str | None, typer.Option(help=f"preset name ({', '.join(presets())}; default tiny-cpu)")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="YAML config file")] = None,
    steps: Annotated[int | None, typer.Option(help="PPO steps (train.steps)")] = None,
    seed: Annotated[int | None, typer.Option(help="seed (train.seed)")] = None,
    out: Annotated[
        Path | None, typer.Option(help="run directory (default runs/<timestamp>)")
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(help="continue this run from its last good checkpoint, with its own config"),
    ] = None,
    backend: Annotated[str | None, typer.Option(help="local or ray (train.backend)")] = None,
    address: Annotated[str | None, typer.Option(help="Ray cluster address (dist.address)")] = None,
) -> None:
    """Train with ORZ's PPO. With no arguments: the embedded tiny-cpu toy world (no download).

    With --resume RUN, RUN's own config is used; key=value (and --steps ...) change it where a
    resumed run may change (each change is printed and kept in RUN/config_history.jsonl)."""
    from zerorl.models import quiet_transformers

    quiet_transformers()
    extra = list(overrides or [])
    for key, value in (("train.steps", steps), ("train.seed", seed), ("train.backend", backend)):
        if value is not None:
            extra.append(f"{key}={value}")
    if address is not None:
        extra.append(f"dist.address={address}")
    if resume is not None and (preset or config or out):
        _fail(f"--resume continues {resume} with its own config; give changes as key=value "
              "(--preset, --config and --out are for new runs)")  # fmt: skip
    _run_train(preset or DEFAULT_PRESET, config, extra, out, resume)


def _run_train(
    preset: str, config: Path | None, extra: list[str], out: Path | None, resume: Path | None
) -> None:
    from zerorl.launch import resume_training, run_training
    from zerorl.models import ModelPathError
    from zerorl.rundir import DiskFullError, RunDir
    from zerorl.runlock import RunLockedError

    run = out or resume
    try:
        if resume is None:
            cfg = load_config(preset, config, extra)
            header = f"preset={preset}"
        else:
            from zerorl.resume import resumed_config

            cfg, _ = resumed_config(RunDir(resume).load_config(), extra)
            header = f"--resume {resume}"
        total = cfg.train.steps
        console.print(
            f"[bold]zerorl train[/] {header} model={cfg.model.path} steps={total or 'auto'}"
        )
        show = {"on_step": _step_line(total), "on_info": console.print}
        if resume is None:
            run = run_training(cfg, out, **show).path
        else:
            run = resume_training(resume, extra, **show).path
    except (ConfigError, ModelPathError, FileExistsError, FileNotFoundError, RunLockedError) as e:
        _fail(str(e))
    except DiskFullError as e:  # names its path and the bytes it needs
        _fail(e.strerror)
    except ValueError as e:  # data files that do not parse name the file and item
        _fail(str(e))
    except KeyboardInterrupt:  # the run printed where it stopped and how to continue
        raise typer.Exit(130) from None
    except RuntimeError as e:
        groups = sys.modules.get("zerorl.distributed.groups")  # loaded by the Ray backend only
        if groups is None or not isinstance(e, groups.WorkerFailure):
            raise
        _fail(str(e))  # a dead Ray worker: its message names it and says how to resume
    console.print(f"[bold green]done[/]: {run} (metrics.jsonl, tb/, rollouts/, checkpoints/)")


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


@app.command()
def doctor(
    preset: Annotated[
        str | None, typer.Option(help="also check what this preset needs; exit 1 if missing")
    ] = None,
) -> None:
    """Check this machine: torch/CUDA, GPUs, NCCL, optional installs, the reward pool."""
    from zerorl.config import ConfigError
    from zerorl.doctor import run

    try:
        code = run(preset, console)
    except ConfigError as e:
        _fail(str(e))
    raise typer.Exit(code)


def _mount_subcommands() -> None:
    from zerorl.cli.data import data_app
    from zerorl.cli.eval import analyze_command, eval_command, report_command
    from zerorl.cli.reproduce import reproduce_command

    app.command("eval")(eval_command)
    app.command("reproduce")(reproduce_command)
    app.command("analyze")(analyze_command)
    app.command("report")(report_command)
    app.add_typer(data_app, name="data", help="Prepare prompt sets: synthesise and curate.")


_mount_subcommands()
