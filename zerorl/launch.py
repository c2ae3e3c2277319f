"""Start or resume a training run from a config: the edge where files, data and roles are built."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from zerorl.config import Config, ConfigError
from zerorl.data.stream import PromptStream
from zerorl.resume import resumed_config
from zerorl.roles import Roles, build_local_roles
from zerorl.rundir import RunDir, load_trainer_state
from zerorl.trainer import Trainer
from zerorl.types import Prompt

TOY = "toy"


def training_prompts(cfg: Config, on_info: Callable[[str], None] = print) -> list[Prompt]:
    """The configured training data (files or names such as ``orz-math-57k``, fetched once into
    the cache), or the toy world's problems when none is set. Data that cannot be had is an
    error naming what was tried, never a fall-back to the toy world. Prompts with an empty ground
    truth could only ever score 0: they are dropped and counted, and a file without a usable
    prompt is an error naming it."""
    if not cfg.data.train_files:
        from zerorl.toyworld import train_prompts

        return train_prompts(cfg.data.toy_train_size, seed=cfg.train.seed)
    from zerorl.data.loaders import PromptLoadError, load_prompts
    from zerorl.data.sources import DataNotFound, resolve

    prompts: list[Prompt] = []
    for name in cfg.data.train_files:
        try:
            path = resolve(name)
        except DataNotFound as e:
            raise ConfigError(f"data.train_files: {e}") from None
        loaded = load_prompts(path)
        usable = [p for p in loaded if p.ground_truth.strip()]
        if not usable:
            raise PromptLoadError(path, None, "every prompt has an empty ground truth")
        if len(usable) < len(loaded):
            first = next(p.id for p in loaded if not p.ground_truth.strip())
            on_info(
                f"{path}: dropped {len(loaded) - len(usable)} of {len(loaded)} prompts with an "
                f"empty ground truth (first: {first}); they could only ever score 0"
            )
        prompts.extend(usable)
    return prompts


def eval_sets(cfg: Config) -> dict[str, list[Prompt]]:
    """Benchmarks by name: ``toy`` (held-out toy problems), a file, or a name resolved as
    ``zerorl eval`` does (``eval.data_dir``, the cache, then a download)."""
    from zerorl.data.sources import DataNotFound
    from zerorl.eval.benchmarks import load_benchmark

    sets: dict[str, list[Prompt]] = {}
    for name in cfg.eval.benchmarks:
        if name == TOY:
            from zerorl.toyworld import eval_prompts

            prompts = eval_prompts(cfg.data.toy_eval_size, seed=cfg.train.seed)
        else:
            try:
                name, prompts = load_benchmark(name, cfg.eval.data_dir or None)
            except DataNotFound as e:
                raise ConfigError(f"eval.benchmarks: {e}") from None
        sets[name] = prompts[: cfg.eval.limit] if cfg.eval.limit else prompts
    return sets


def drop_long_prompts(prompts: list[Prompt], roles: Roles, max_tokens: int) -> list[Prompt]:
    """Prompts whose rendered template fits ``max_tokens``; an error if none does."""
    from zerorl.data.template import render

    lengths = [len(roles.tokenizer.encode(render(p.question))) for p in prompts]
    kept = [p for p, n in zip(prompts, lengths) if n <= max_tokens]
    if prompts and not kept:
        raise ConfigError(
            f"all {len(prompts)} prompts are longer than data.max_prompt_tokens={max_tokens} "
            f"once rendered with the ORZ template (shortest: {min(lengths)} tokens)"
        )
    return kept


def toy_model_resolved(cfg: Config) -> Config:
    """``cfg`` with model paths ``toy`` replaced by the base model built for ``toy.world_seed``
    (the saved run config keeps ``toy``, so a resume rebuilds or reuses the same world)."""
    if TOY not in (cfg.model.path, cfg.model.critic_path):
        return cfg
    from zerorl.toyworld import ensure_base_model

    built = str(ensure_base_model(seed=cfg.toy.world_seed))
    model = dataclasses.replace(
        cfg.model,
        path=built if cfg.model.path == TOY else cfg.model.path,
        critic_path=built if cfg.model.critic_path == TOY else cfg.model.critic_path,
    )
    return dataclasses.replace(cfg, model=model)


def total_steps(cfg: Config, n_prompts: int) -> int:
    if cfg.train.steps:
        return cfg.train.steps
    return max(1, cfg.train.episodes * n_prompts // cfg.rollout.prompts_per_step)


def run_training(
    cfg: Config,
    run_path: Path | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    on_info: Callable[[str], None] = print,
) -> RunDir:
    """Train a new run to ``cfg.train.steps`` in ``run_path`` (default out_dir/run_name)."""
    # Data first: a run whose data cannot be had stops before any folder or model is made.
    data = (training_prompts(cfg, on_info), eval_sets(cfg))
    name = cfg.train.run_name or time.strftime("%Y%m%d-%H%M%S")
    run = RunDir.create(run_path or Path(cfg.train.out_dir) / name, cfg, on_info)
    return _train(cfg, run, None, on_step, on_info, data=data)


def resume_training(
    path: Path,
    overrides: Sequence[str] = (),
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    on_info: Callable[[str], None] = print,
) -> RunDir:
    """Continue the run in ``path`` from its newest good checkpoint, with its own config changed
    by ``overrides`` (zerorl.resume says which keys may change; each change is printed and kept
    in the config history). A run stopped before its first checkpoint starts again from step 0."""
    run = RunDir.open(path, on_info)
    try:
        cfg, changes = resumed_config(run.load_config(), overrides)
        checkpoint = run.good_checkpoint(on_info)
        done = load_trainer_state(checkpoint)["step"] if checkpoint else 0
        if 0 < cfg.train.steps < done:  # refused before config.yaml records it
            raise ConfigError(f"train.steps={cfg.train.steps}: the checkpoint is at step {done}")
        for key, (old, new) in changes.items():
            on_info(f"resume: {key} {old!r} -> {new!r}")
        start = checkpoint.name if checkpoint else "step 0"
        run.save_config(cfg, f"resume from {start}", changes)
        if checkpoint is None:
            on_info(f"{path} has no checkpoint yet: starting it again from step 0 in that folder")
    except BaseException:
        run.close()
        raise
    return _train(cfg, run, checkpoint, on_step, on_info, resumed=True)


def _train(
    cfg: Config,
    run: RunDir,
    checkpoint: Path | None,
    on_step: Callable[[int, dict[str, float]], None] | None,
    on_info: Callable[[str], None],
    resumed: bool = False,
    data: tuple[list[Prompt], dict[str, list[Prompt]]] | None = None,
) -> RunDir:
    roles: Roles | None = None
    cfg = toy_model_resolved(cfg)
    try:
        if cfg.train.backend == "ray":
            from zerorl.distributed.builder import build_ray_roles

            roles = build_ray_roles(cfg, checkpoint)
        else:
            roles = build_local_roles(cfg, checkpoint)
        prompts, benchmarks = data or (training_prompts(cfg, on_info), eval_sets(cfg))
        kept = drop_long_prompts(prompts, roles, cfg.data.max_prompt_tokens)
        if len(kept) < len(prompts):
            on_info(f"dropped {len(prompts) - len(kept)} prompts over data.max_prompt_tokens")
        stream = PromptStream(kept, cfg.train.seed, cfg.data.shuffle)
        trainer = Trainer(cfg, roles, stream, benchmarks, run, on_step)
        total = total_steps(cfg, len(kept))
        if checkpoint is not None:
            trainer.load_state_dict(load_trainer_state(checkpoint))
            roles.policy.load_optim(checkpoint / "policy")
            if roles.critic is not None:
                roles.critic.load_optim(checkpoint / "critic")
            if trainer.step > total:
                raise ConfigError(f"train.steps={total}: the checkpoint is at step {trainer.step}")
            on_info(f"resumed {run.path} at step {trainer.step} of {total}")
        if resumed:  # metrics past the checkpoint are recomputed (all of them without one)
            run.truncate_metrics(trainer.step if checkpoint is not None else -1)
        try:
            trainer.fit(total)
        except KeyboardInterrupt:
            on_info(
                f"interrupted at step {trainer.step}; {run.progress()}. Continue with "
                f"`zerorl train --resume {run.path}`"
            )
            raise
    finally:
        if roles is not None:
            roles.close()
        run.close()
    return run
