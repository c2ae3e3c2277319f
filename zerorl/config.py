"""The one zerorl configuration: typed dataclasses with the Open-Reasoner-Zero values as defaults.

A run's config is resolved in this order, each layer overriding the one before: defaults (the
ORZ paper) -> preset (``zerorl/presets/NAME.yaml``) -> ``--config FILE`` -> ``key=value``.
Every field carries its help text once, in its ``metadata``; ``zerorl config --keys`` prints it.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

PRESET_DIR = Path(__file__).parent / "presets"


class ConfigError(ValueError):
    """A config that cannot be used; the message names the offending key."""


def _f(default: Any, help: str) -> Any:
    """A dataclass field with its one-line help text."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class ModelConfig:
    path: str = _f(
        "Qwen/Qwen2.5-7B", "policy base model: HF hub id, local dir, or 'toy' (embedded)"
    )
    critic_path: str | None = _f(None, "critic base model; defaults to model.path (as ORZ)")
    value_head_init: Literal["normal", "kaiming"] = _f(
        "normal", "value head init: normal(0, 1/(H+1)) (ORZ code) or U(±1/√H) (paper's reading)"
    )
    dtype: Literal["float32", "bfloat16"] = _f("bfloat16", "parameter/compute dtype of both nets")
    gradient_checkpointing: bool = _f(True, "recompute activations in backward to save memory")
    attn_implementation: str = _f("sdpa", "transformers attention kernel: sdpa, eager, ...")


@dataclass
class DataConfig:
    train_files: list[str] = _f(
        [], "training prompt files (ORZ JSON, JSONL, ...); empty = toy world"
    )
    toy_train_size: int = _f(4096, "toy world: number of synthetic training prompts")
    toy_eval_size: int = _f(256, "toy world: number of held-out evaluation problems")
    max_prompt_tokens: int = _f(2048, "prompts longer than this (tokens) are dropped and counted")
    shuffle: bool = _f(True, "shuffle the prompts at every pass over the data")


@dataclass
class RolloutConfig:
    engine: Literal["hf", "fast", "vllm"] = _f(
        "hf", "generation engine: hf (generate), fast (zerorl's, built for CPU), vllm (GPU, Ray)"
    )
    prompts_per_step: int = _f(128, "unique prompts sampled per PPO step")
    samples_per_prompt: int = _f(64, "responses generated per prompt")
    temperature: float = _f(1.0, "sampling temperature")
    top_p: float = _f(1.0, "nucleus sampling threshold (1.0 = off)")
    max_new_tokens: int = _f(8000, "generation length limit; a response reaching it scores 0")
    max_total_tokens: int = _f(
        8192, "cap on prompt + response (ORZ: vLLM max_len 8192); a response cut by it scores 0"
    )
    batch_size: int = _f(256, "sequences generated at once by the hf and fast engines")
    vllm_tensor_parallel: int = _f(1, "vllm: tensor-parallel size of each engine")
    num_engines: int = _f(
        1, "rollout engines, any kind (Ray; colocated: one per device / TP group)"
    )
    vllm_gpu_memory_utilization: float = _f(0.5, "vllm: fraction of GPU memory for the engine")
    vllm_max_num_seqs: int = _f(128, "vllm: sequences decoded at once per engine (ORZ: 128)")


@dataclass
class RewardConfig:
    num_workers: int = _f(2, "verification worker processes")
    timeout_s: float = _f(5.0, "hard wall-clock limit per answer; a hung worker is replaced")
    call_budget_s: float = _f(
        0.0, "limit on verification per reward call; then the rest score 0 as timeouts (0 = off)"
    )
    memory_mb: int = _f(2048, "address-space limit per verification worker (MiB)")
    box_rule: Literal["last", "all"] = _f(
        "last", "boxes judged: last of the answer block (ORZ code); all: each distinct box verifies"
    )


@dataclass
class PPOConfig:
    gamma: float = _f(1.0, "GAE discount γ (ORZ: 1.0; γ < 1 shortens responses)")
    lam: float = _f(1.0, "GAE λ (ORZ: 1.0; 0.95 was slower and unstable)")
    clip_eps: float = _f(0.2, "PPO ratio clip ε")
    clip_eps_high: float = _f(0.0, "upper ratio clip, DAPO's clip-higher (e.g. 0.28); 0 = clip_eps")
    value_clip: float = _f(0.2, "critic value clip")
    normalize_advantages: bool = _f(True, "whiten advantages over all response tokens of the batch")
    policy_steps: int = _f(1, "policy optimiser steps (mini-batches) per generation (ORZ: 1)")
    recompute_logprobs: bool = _f(
        False, "one policy step: compute old log-probs in their own forward anyway (same numbers)"
    )
    critic_steps: int = _f(
        12, "critic optimiser steps per generation: the samples cut into this many mini-batches"
    )
    kl_penalty_coef: float = _f(0.0, "ablation: KL-to-reference penalty in the reward (ORZ: off)")
    kl_loss_coef: float = _f(0.0, "ablation: KL-to-reference loss term (ORZ: off)")
    entropy_coef: float = _f(0.0, "entropy bonus (ORZ: off)")
    tis_cap: float = _f(
        0.0,
        "truncated importance sampling: weight each token's loss by min(p_train/p_engine, cap) "
        "to correct the engine/trainer log-prob mismatch (0 = off, ORZ; e.g. 2.0)",
    )
    loss_aggregation: Literal[
        "row-mean", "token-mean", "seq-mean-token-mean", "seq-mean-token-sum"
    ] = _f(
        "row-mean",
        "row-mean: token mean per packed row, averaged over rows (ORZ); token-mean: over all "
        "response tokens of the (mini-)batch; seq-mean-token-mean/-sum: per sample, then the mean",
    )


@dataclass
class AlgoConfig:
    advantage: Literal["gae", "grpo", "grpo_orz", "dr_grpo", "rloo", "reinforce_pp"] = _f(
        "gae",
        "advantage estimator: gae (PPO with a critic, ORZ) or critic-free, from each sample's "
        "reward and its prompt's group (no critic is built): grpo, grpo_orz, dr_grpo, rloo, "
        "reinforce_pp",
    )
    dynamic_sampling: bool = _f(
        False, "DAPO: drop prompts whose samples all got one reward; draw more to fill the step"
    )
    max_draws: int = _f(4, "dynamic sampling: generation rounds per step at most (the cap)")
    overlong_buffer: int = _f(
        0, "DAPO's soft overlong penalty: over the last N tokens before rollout.max_new_tokens "
        "the reward falls linearly by up to 1 (0 = off)",
    )  # fmt: skip

    @property
    def needs_critic(self) -> bool:
        return self.advantage == "gae"


@dataclass
class OptimConfig:
    policy_lr: float = _f(1e-6, "policy AdamW learning rate")
    critic_lr: float = _f(5e-6, "critic AdamW learning rate")
    betas: list[float] = _f([0.9, 0.95], "AdamW betas")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    warmup_steps: int = _f(50, "linear warm-up optimiser steps, then constant")
    warmup_from_zero: bool = _f(
        True, "warm-up multiplier k/N from k=0, first update at lr 0 (ORZ code); false: (k+1)/N"
    )
    grad_clip: float = _f(1.0, "gradient-norm clip")


@dataclass
class TrainConfig:
    steps: int = _f(0, "PPO steps; 0 = episodes x prompts / prompts_per_step")
    episodes: int = _f(20, "passes over the prompt set when steps is 0")
    seed: int = _f(42, "seed for data order, sampling and initialisation")
    pack_length: int = _f(10048, "tokens per packed training row")
    packing: Literal["next-fit", "first-fit-decreasing"] = _f(
        "next-fit",
        "row filling: next-fit in ORZ's shuffled order (ORZ code), or first-fit-decreasing",
    )
    micro_rows: int = _f(1, "packed rows per forward/backward")
    save_interval: int = _f(50, "checkpoint every N steps (the last step is always saved)")
    keep_checkpoints: int = _f(0, "keep the N newest checkpoints, delete older ones (0 = all)")
    out_dir: str = _f("runs", "parent directory of run directories")
    run_name: str = _f("", "run directory name; empty = a timestamp")
    backend: Literal["local", "ray"] = _f("local", "local: one process; ray: Ray workers")
    device: Literal["auto", "cpu", "cuda"] = _f(
        "auto", "local backend: where both models live (auto: cuda when available, else cpu)"
    )
    num_threads: int = _f(0, "torch CPU threads (0 = torch default)")
    log_rollouts: bool = _f(True, "write rollouts/step_N.jsonl each step")


@dataclass
class EvalConfig:
    benchmarks: list[str] = _f(
        [], "benchmark names (aime2024, math500, ..., toy) or ORZ eval files"
    )
    data_dir: str = _f("", "directory holding <name>.json benchmark files")
    interval: int = _f(
        10, "evaluate every N steps; the first and last steps always (0 = only those)"
    )
    samples: int = _f(16, "samples per problem (avg@K, the paper's metric, uses K = samples)")
    temperature: float = _f(1.0, "evaluation sampling temperature")
    top_p: float = _f(1.0, "evaluation nucleus sampling threshold")
    max_new_tokens: int = _f(8000, "evaluation generation length limit")
    limit: int = _f(0, "evaluate only the first N problems of each benchmark (0 = all)")


@dataclass
class DistConfig:
    address: str = _f("", "Ray: '' starts Ray in this process; 'auto' or HOST:PORT joins a cluster")
    num_nodes: int = _f(1, "nodes the Ray layout spans")
    num_gpus_per_node: int = _f(0, "GPUs per node for Ray workers; 0 = CPU workers (gloo)")
    colocate: bool = _f(True, "generation and training share devices, offloaded between phases")
    policy_ranks: int = _f(0, "policy FSDP2 ranks; 0 = every device when colocated, else 1")
    critic_ranks: int = _f(0, "critic FSDP2 ranks; 0 = same rule as policy_ranks")
    cpus_per_slot: float = _f(1.0, "CPUs reserved per placement bundle (per GPU or CPU slot)")
    reward_cpus: float = _f(1.0, "CPUs reserved for the reward actor")
    call_timeout_s: float = _f(
        3600.0, "limit on any remote call or collective, then stop naming it"
    )
    start_timeout_s: float = _f(900.0, "limit on placing the actors and loading the models")


@dataclass
class ToyConfig:
    world_seed: int = _f(1, "toy world: seed of its base model's build (one world per seed)")


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    dist: DistConfig = field(default_factory=DistConfig)
    toy: ToyConfig = field(default_factory=ToyConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- loading and overrides


def _fields(obj: Any) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(obj)}


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against the type ``hint``; return it (ints widen to floats)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(key, value, inner[0])
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {list(args)}")
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value)]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:  # YAML 1.1 reads "2e-4" (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if hint in (int, float, str) and (not isinstance(value, hint) or isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {hint.__name__}, got {value!r}")
    return value


def set_key(cfg: Config, key: str, value: Any) -> None:
    """Set a dotted key such as ``rollout.temperature``; unknown keys and wrong types raise."""
    section, _, name = key.partition(".")
    if section not in _fields(cfg) or not name:
        sections = ", ".join(_fields(cfg))
        raise ConfigError(f"unknown config key {key!r} (sections: {sections})")
    sub = getattr(cfg, section)
    if name not in _fields(sub):
        close = difflib.get_close_matches(name, list(_fields(sub)), n=1)
        hint = f"did you mean {section}.{close[0]}? " if close else ""
        raise ConfigError(
            f"unknown config key {key!r}; {hint}{section} has: {', '.join(_fields(sub))}"
        )
    hints = typing.get_type_hints(type(sub))
    setattr(sub, name, _coerce(key, value, hints[name]))


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and "." not in key:
            flat.update(_flatten(v, key + "."))
        else:
            flat[key] = v
    return flat


def apply_mapping(cfg: Config, mapping: dict[str, Any], origin: str) -> None:
    """Apply nested (``{section: {key: v}}``) or dotted (``{"a.b": v}``) settings."""
    for key, value in _flatten(mapping).items():
        try:
            set_key(cfg, key, value)
        except ConfigError as e:
            raise ConfigError(f"{origin}: {e}") from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys to values")
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """``"a.b=3"`` -> ``("a.b", 3)``; the value is read as YAML (numbers, bools, lists)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} must look like section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_config(
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> Config:
    """Resolve defaults -> preset -> file -> overrides, then validate."""
    cfg = Config()
    if preset:
        path = PRESET_DIR / f"{preset}.yaml"
        if not path.exists():
            raise ConfigError(f"unknown preset {preset!r}; available: {', '.join(presets())}")
        apply_mapping(cfg, _read_yaml(path), f"preset {preset}")
    if config_file:
        apply_mapping(cfg, _read_yaml(Path(config_file)), str(config_file))
    for text in overrides:
        key, value = parse_override(text)
        apply_mapping(cfg, {key: value}, "command line")
    validate(cfg)
    return cfg


def config_from_dict(tree: dict[str, Any]) -> Config:
    """Rebuild a config from ``Config.to_dict()`` output (e.g. a run's config.yaml)."""
    cfg = Config()
    apply_mapping(cfg, tree, "saved config")
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Reject impossible combinations, naming the keys involved."""
    checks = [
        (cfg.rollout.prompts_per_step > 0, "rollout.prompts_per_step must be positive"),
        (cfg.rollout.samples_per_prompt > 0, "rollout.samples_per_prompt must be positive"),
        (cfg.rollout.temperature > 0, "rollout.temperature must be > 0"),
        (0 < cfg.rollout.top_p <= 1, "rollout.top_p must be in (0, 1]"),
        (cfg.rollout.max_new_tokens > 0, "rollout.max_new_tokens must be positive"),
        (
            0 <= cfg.ppo.gamma <= 1 and 0 <= cfg.ppo.lam <= 1,
            "ppo.gamma and ppo.lam must be in [0, 1]",
        ),
        (cfg.ppo.clip_eps > 0, "ppo.clip_eps must be > 0"),
        (cfg.ppo.policy_steps >= 1, "ppo.policy_steps must be >= 1"),
        (cfg.ppo.critic_steps >= 1, "ppo.critic_steps must be >= 1"),
        (cfg.ppo.tis_cap >= 0, "ppo.tis_cap must be >= 0 (0 = off)"),
        (cfg.ppo.clip_eps_high >= 0, "ppo.clip_eps_high must be >= 0 (0 = ppo.clip_eps)"),
        (cfg.algo.max_draws >= 1, "algo.max_draws must be >= 1"),
        (
            0 <= cfg.algo.overlong_buffer <= cfg.rollout.max_new_tokens,
            "algo.overlong_buffer must be in [0, rollout.max_new_tokens]",
        ),
        (
            cfg.algo.needs_critic or cfg.ppo.kl_penalty_coef == 0,
            "ppo.kl_penalty_coef shapes GAE's token rewards: it needs algo.advantage=gae "
            "(use ppo.kl_loss_coef with a critic-free estimator)",
        ),
        (len(cfg.optim.betas) == 2, "optim.betas must hold two numbers"),
        (cfg.optim.warmup_steps >= 0, "optim.warmup_steps must be >= 0"),
        (cfg.train.steps >= 0 and cfg.train.episodes > 0, "train.steps >= 0, train.episodes > 0"),
        (cfg.train.micro_rows >= 1, "train.micro_rows must be >= 1"),
        (cfg.train.save_interval >= 1, "train.save_interval must be >= 1"),
        (cfg.train.keep_checkpoints >= 0, "train.keep_checkpoints must be >= 0"),
        (cfg.reward.call_budget_s >= 0, "reward.call_budget_s must be >= 0"),
        (cfg.reward.timeout_s > 0, "reward.timeout_s must be > 0"),
        (cfg.eval.samples >= 1, "eval.samples must be >= 1"),
        (cfg.eval.interval >= 0, "eval.interval must be >= 0"),
        (cfg.dist.call_timeout_s > 0, "dist.call_timeout_s must be > 0"),
        (cfg.dist.start_timeout_s > 0, "dist.start_timeout_s must be > 0"),
        (cfg.dist.num_gpus_per_node >= 0, "dist.num_gpus_per_node must be >= 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    need = cfg.data.max_prompt_tokens + cfg.rollout.max_new_tokens
    if cfg.rollout.max_total_tokens > 0:
        need = min(need, cfg.rollout.max_total_tokens)
    if cfg.train.pack_length < need:
        raise ConfigError(
            f"train.pack_length={cfg.train.pack_length} cannot hold one sample: it must be at "
            f"least data.max_prompt_tokens + rollout.max_new_tokens (capped by "
            f"rollout.max_total_tokens) = {need}"
        )
    if cfg.rollout.engine == "vllm" and cfg.train.backend != "ray":
        raise ConfigError("rollout.engine=vllm needs train.backend=ray")


def help_rows() -> list[tuple[str, str, str]]:
    """(key, default, help) for every field, for ``zerorl config --help-keys``."""
    rows = []
    cfg = Config()
    for section in dataclasses.fields(cfg):
        for f in dataclasses.fields(getattr(cfg, section.name)):
            default = getattr(getattr(cfg, section.name), f.name)
            rows.append((f"{section.name}.{f.name}", repr(default), f.metadata["help"]))
    return rows


def to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
