"""Start or resume a training run from a config: the edge where files, data and roles are built."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

from zerorl.config import Config, ConfigError
from zerorl.data.stream import PromptStream
from zerorl.roles import Roles, build_local_roles
from zerorl.rundir import RunDir, load_trainer_state
from zerorl.trainer import Trainer
from zerorl.types import Prompt

TOY = "toy"


def training_prompts(cfg: Config) -> list[Prompt]:
    """The configured training files, or the toy world's synthetic problems when none are set."""
    if not cfg.data.train_files:
        from zerorl.toyworld import train_prompts

        return train_prompts(cfg.data.toy_train_size, seed=cfg.train.seed)
    from zerorl.data.loaders import load_prompts

    prompts: list[Prompt] = []
    for path in cfg.data.train_files:
        prompts.extend(load_prompts(path))
    return prompts


def eval_sets(cfg: Config) -> dict[str, list[Prompt]]:
    """Benchmarks by name: ``toy`` (held-out toy problems), a file or ``<data_dir>/<name>.json``."""
    sets: dict[str, list[Prompt]] = {}
    for name in cfg.eval.benchmarks:
        if name == TOY:
            from zerorl.toyworld import eval_prompts

            prompts = eval_prompts(cfg.data.toy_eval_size, seed=cfg.train.seed)
        else:
            from zerorl.data.loaders import load_prompts

            path = Path(name)
            if not path.exists():
                path = Path(cfg.eval.data_dir or ".") / f"{name}.json"
            if not path.exists():
                raise ConfigError(f"eval.benchmarks: no file for {name!r} (looked for {path})")
            prompts = load_prompts(str(path))
            name = path.stem if name == str(path) else name
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
    resume: Path | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    on_info: Callable[[str], None] = print,
) -> RunDir:
    """Train to ``cfg.train.steps``; with ``resume``, continue that run from its last checkpoint
    (its saved config is used, except ``train.steps`` which ``cfg`` may raise)."""
    if resume is not None:
        run = RunDir(resume)
        steps = cfg.train.steps
        cfg = run.load_config()
        cfg.train.steps = steps or cfg.train.steps
        checkpoint = run.latest_checkpoint()
        if checkpoint is None:
            raise FileNotFoundError(f"{resume} has no checkpoint to resume from")
    else:
        name = cfg.train.run_name or time.strftime("%Y%m%d-%H%M%S")
        run = RunDir.create(run_path or Path(cfg.train.out_dir) / name, cfg)
        checkpoint = None
    cfg = toy_model_resolved(cfg)
    if cfg.train.backend == "ray":
        from zerorl.distributed.builder import build_ray_roles

        roles = build_ray_roles(cfg, checkpoint)
    else:
        roles = build_local_roles(cfg, checkpoint)
    try:
        prompts = training_prompts(cfg)
        kept = drop_long_prompts(prompts, roles, cfg.data.max_prompt_tokens)
        if len(kept) < len(prompts):
            on_info(f"dropped {len(prompts) - len(kept)} prompts over data.max_prompt_tokens")
        stream = PromptStream(kept, cfg.train.seed, cfg.data.shuffle)
        trainer = Trainer(cfg, roles, stream, eval_sets(cfg), run, on_step)
        if checkpoint is not None:
            trainer.load_state_dict(load_trainer_state(checkpoint))
            roles.policy.load_optim(checkpoint / "policy")
            roles.critic.load_optim(checkpoint / "critic")
            run.truncate_metrics(trainer.step)
            on_info(f"resumed {run.path} at step {trainer.step}")
        trainer.fit(total_steps(cfg, len(kept)))
    finally:
        roles.close()
        run.close()
    return run
