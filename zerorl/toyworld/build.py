"""Building the world's base model: a tiny Qwen2 pretrained on the corpus by a plain torch loop,
checked by the probe, and cached under a hash of its settings and seed."""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import torch
from tokenizers import Tokenizer

from zerorl.toyworld.tokenizer import build_tokenizer, hf_tokenizer, save_tokenizer
from zerorl.toyworld.world import (
    DEFAULT_SETTINGS,
    EOS,
    WORLD_SEED,
    WORLD_VERSION,
    WorldSettings,
    corpus,
    drills,
    train_prompts,
)

if TYPE_CHECKING:
    from transformers import PreTrainedModel, Qwen2Config


def model_config(settings: WorldSettings, tokenizer: Tokenizer) -> Qwen2Config:
    """A tiny Qwen2 config (tied embeddings, full multi-head attention) for ``tokenizer``."""
    from transformers import Qwen2Config

    eos_id = tokenizer.token_to_id(EOS)
    return Qwen2Config(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=settings.hidden_size,
        intermediate_size=settings.intermediate_size,
        num_hidden_layers=settings.num_layers,
        num_attention_heads=settings.num_heads,
        num_key_value_heads=settings.num_heads,
        max_position_embeddings=512,
        rope_theta=10_000.0,
        tie_word_embeddings=True,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
    )


class _Example(NamedTuple):
    """One pretraining row: prompt + response + EOS ids; the loss covers ``ids[start:]``."""

    ids: list[int]
    start: int


def _encode_pairs(
    pairs: list[tuple[str, str]], tokenizer: Tokenizer, *, skip: int = 0
) -> list[_Example]:
    """Tokenise prompt and response separately (as RL will see them), then add EOS; the loss
    leaves out the first ``skip`` response tokens."""
    eos_id = tokenizer.token_to_id(EOS)
    prompts = tokenizer.encode_batch([p for p, _ in pairs])
    responses = tokenizer.encode_batch([r for _, r in pairs])
    return [
        _Example(p.ids + r.ids + [eos_id], len(p.ids) + skip)
        for p, r in zip(prompts, responses, strict=True)
    ]


def _rows_loss(
    model: PreTrainedModel, rows: list[_Example], pad_id: int
) -> tuple[torch.Tensor, float]:
    """Summed next-token loss over the response tokens (EOS included) of right-padded rows, and
    the number of tokens it sums over."""
    width = max(len(row.ids) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    in_loss = torch.zeros((len(rows), width))
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row.ids)] = torch.tensor(row.ids)
        in_loss[i, row.start : len(row.ids)] = 1.0
        attention[i, : len(row.ids)] = 1
    logits = model(input_ids=input_ids, attention_mask=attention).logits[:, :-1]
    losses = torch.nn.functional.cross_entropy(
        logits.transpose(1, 2), input_ids[:, 1:], reduction="none"
    )
    return (losses * in_loss[:, 1:]).sum(), float(in_loss.sum())


def _length_groups(rows: list[_Example]) -> list[list[_Example]]:
    """Split rows at the largest length gap (direct vs worked) so short rows are not padded."""
    rows = sorted(rows, key=lambda r: len(r.ids))
    lengths = [len(row.ids) for row in rows]
    gaps = [lengths[i] - lengths[i - 1] for i in range(1, len(rows))]
    if not gaps or max(gaps) == 0:
        return [rows]
    cut = gaps.index(max(gaps)) + 1
    return [rows[:cut], rows[cut:]]


def _batches(examples: list[_Example], size: int, seed: int) -> Iterator[list[_Example]]:
    """Endless batches cycling through ``examples`` in a seeded shuffled order."""
    rng = random.Random(f"pretrain:{seed}")
    order: list[int] = []
    while True:
        if len(order) < size:
            order = list(range(len(examples)))
            rng.shuffle(order)
        yield [examples[order.pop()] for _ in range(size)]


def pretrain(
    model: PreTrainedModel,
    examples: list[_Example],
    drill_rows: list[_Example],
    settings: WorldSettings,
    *,
    seed: int,
    pad_id: int,
    progress: bool,
) -> float:
    """Train ``model`` in place for ``settings.steps``; return the last loss.

    Each batch is ``batch_size`` corpus examples and ``drill_batch`` drill rows, each cycling
    through its list in an order shuffled by ``seed``. AdamW, linear warm-up then cosine decay
    of ``lr`` to a tenth. With ``progress``, logs the loss and elapsed
    time to stderr every 100 steps.
    """
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.lr, betas=(0.9, 0.95), weight_decay=0.01
    )
    batches = _batches(examples, settings.batch_size, seed)
    drill_batches = _batches(drill_rows, settings.drill_batch, seed + 1)
    start, loss = time.monotonic(), 0.0
    for step in range(settings.steps):
        warm = min(1.0, (step + 1) / settings.warmup_steps)
        cosine = 0.1 + 0.45 * (1 + math.cos(math.pi * step / settings.steps))
        for group in optimizer.param_groups:
            group["lr"] = settings.lr * warm * cosine
        loss = _train_step(model, optimizer, next(batches) + next(drill_batches), pad_id)
        if progress and ((step + 1) % 100 == 0 or step == 0):
            # plain lines rather than a live bar: readable in CI logs and beside the trainer's
            elapsed = time.monotonic() - start
            print(
                f"toy world: pretraining step {step + 1}/{settings.steps}  loss {loss:.3f}  "
                f"{elapsed:.0f}s",
                file=sys.stderr,
                flush=True,
            )
    model.eval()
    return loss


def _train_step(
    model: PreTrainedModel, optimizer: torch.optim.Optimizer, batch: list[_Example], pad_id: int
) -> float:
    """One optimiser step on a batch; returns its loss."""
    model.train()
    losses = [_rows_loss(model, group, pad_id) for group in _length_groups(batch)]
    loss = sum(total for total, _ in losses) / sum(count for _, count in losses)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return float(loss.item())


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Where built worlds live: ``cache_dir``, else ``$ZERORL_CACHE/toyworld``, else
    ``~/.cache/zerorl/toyworld``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    base = os.environ.get("ZERORL_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "zerorl") / "toyworld"


def ensure_base_model(
    cache_dir: str | Path | None = None,
    *,
    seed: int = WORLD_SEED,
    progress: bool = True,
    settings: WorldSettings | None = None,
) -> Path:
    """Return the Hugging Face folder of the world's base model, building it once if needed.

    The folder (``<cache root>/<settings digest>``) holds config.json, model.safetensors,
    generation_config.json, tokenizer.json, tokenizer_config.json and world.json (settings and
    build figures); load it with ``AutoModelForCausalLM.from_pretrained`` and ``load_tokenizer``.
    The build happens in a temporary sibling folder renamed into place at the end, so a killed
    build never leaves a folder that looks complete. Deterministic for ``seed`` on a given
    machine and thread count.
    """
    settings = settings or DEFAULT_SETTINGS
    root = cache_root(cache_dir)
    final = root / settings.digest(seed)
    if (final / "world.json").exists():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".building-{final.name}-", dir=root))
    if progress:
        print(f"toy world: building the base model once, into {final}", file=sys.stderr)
    try:
        build(tmp, settings, seed=seed, progress=progress)
        try:
            tmp.rename(final)
        except OSError:
            if not (final / "world.json").exists():  # not a concurrent build that finished first
                raise
            shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def build(
    out_dir: Path, settings: WorldSettings, *, seed: int, progress: bool
) -> dict[str, object]:
    """Build the world's tokenizer and base model into ``out_dir``; return the build record.

    Health check (``zerorl.toyworld.probe.reasoning_accuracy``): what RL will face, i.e. the
    accuracy of whole responses sampled at temperature 1 on 64 RL prompts (never in the corpus),
    each made to reason. While it is under ``target_worked_accuracy``, pretraining restarts from
    a fresh initialisation, at most ``retries`` times; attempt 0 uses ``seed`` itself.
    """
    from transformers import GenerationConfig

    start, cpu_start = time.monotonic(), time.process_time()
    pairs = corpus(settings, seed)
    # A few thousand full examples are plenty for BPE: the template repeats in every one.
    tokenizer = build_tokenizer([p + r for p, r in pairs[:2000]], settings.vocab_size)
    examples = _encode_pairs(pairs, tokenizer)
    # a drill's first response token (" ", the choice to recheck) stays out of the loss
    drill_rows = _encode_pairs(drills(settings, seed), tokenizer, skip=1)
    model, loss, checks = _pretrain_healthy(
        examples, drill_rows, tokenizer, settings, seed, progress
    )
    eos_id = tokenizer.token_to_id(EOS)
    model.generation_config = GenerationConfig(
        eos_token_id=eos_id, pad_token_id=eos_id, do_sample=True, temperature=1.0, top_k=0
    )
    model.save_pretrained(out_dir)
    save_tokenizer(tokenizer, out_dir)
    record = {
        "settings": asdict(settings),
        "seed": seed,
        "world_version": WORLD_VERSION,
        "parameters": sum(p.numel() for p in model.parameters()),
        "final_loss": round(loss, 4),
        "worked_checks": checks,  # one per attempt
        "build_seconds": round(time.monotonic() - start, 1),
        "build_cpu_seconds": round(time.process_time() - cpu_start, 1),  # all threads
        "torch_threads": torch.get_num_threads(),
    }
    (out_dir / "world.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def _pretrain_healthy(
    examples: list[_Example],
    drill_rows: list[_Example],
    tokenizer: Tokenizer,
    settings: WorldSettings,
    seed: int,
    progress: bool,
) -> tuple[PreTrainedModel, float, list[float]]:
    """Pretrain until the health check passes or the retries are spent; return the model, its
    last loss and the check of every attempt (none when ``retries`` is 0)."""
    from transformers import Qwen2ForCausalLM

    from zerorl.toyworld.probe import reasoning_accuracy

    eos_id = tokenizer.token_to_id(EOS)
    # RL prompts, never eval ones: the held-out set stays unseen by anything in the build
    probe = train_prompts(64, seed, settings)
    checks: list[float] = []
    for attempt in range(settings.retries + 1):
        init_seed = seed + 1_000_003 * attempt
        torch.manual_seed(init_seed)
        model = Qwen2ForCausalLM(model_config(settings, tokenizer))
        loss = pretrain(
            model, examples, drill_rows, settings, seed=init_seed, pad_id=eos_id, progress=progress
        )
        if not settings.retries:
            return model, loss, checks
        checks.append(reasoning_accuracy(model, hf_tokenizer(tokenizer_object=tokenizer), probe))
        if checks[-1] >= settings.target_worked_accuracy:
            return model, loss, checks
        if progress and attempt < settings.retries:
            print(f"toy world: reasoning right {checks[-1]:.0%} only; restarting", file=sys.stderr)
    warnings.warn(
        f"toy world: reasoning right {checks[-1]:.0%} after every restart; "
        "RL will find little to learn in this world (try another toy.world_seed)",
        stacklevel=3,
    )
    return model, loss, checks
