"""The toy reasoning world: zerorl's embedded default, built on the spot with no download.

The world is multi-digit addition (``zerorl.data.synth`` task ``addition``) in the ORZ prompt
template. Its base model is a tiny Qwen2 pretrained here, by a plain torch loop, on a corpus
whose responses are mostly *direct* answers::

    " </think> <answer> \\boxed{762} </answer>"

and, for a minority of problems, *worked* column-by-column solutions::

    " 3+9=12 carry 1, 7+8+1=16 carry 1, 4+2+1=7. </think> <answer> \\boxed{762} </answer>"

A direct answer needs every carry at once, which the tiny model gets right only sometimes;
each worked step is a single-digit fact, which it gets right almost always. So the base model
solves some problems (when it happens to reason) but not most, and PPO with the binary ORZ
reward only has to learn to *choose* to reason: accuracy and response length rise together.
Design notes and measured figures are in ``docs/toyworld.md``.

Problems are split three ways by a hash of their text (pretraining corpus / RL training /
held-out evaluation), so the evaluation problems are never seen before evaluation. The build
checks that the worked solutions were learnt and restarts from a fresh initialisation if not
(see ``build``). Entry points: ``ensure_base_model``, ``load_tokenizer``, ``train_prompts``,
``eval_prompts``; ``evaluate`` measures a policy on the world.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NamedTuple

import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from zerorl.data.synth import generate
from zerorl.data.template import TEMPLATE, render
from zerorl.types import Prompt

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast, Qwen2Config

# Bump when the corpus, tokenizer or pretraining code changes what a given settings builds:
# it is part of the cache key, so old caches are simply not found again.
WORLD_VERSION = 1

# The default build's seed. Seeds whose first attempt misses the worked-solution check cost a
# second pretraining (docs/toyworld.md lists attempt-0 scores by seed); 1 passes on our machine.
WORLD_SEED = 1

EOS = "<|endoftext|>"
ANSWER_STOP = "</answer>"
Split = Literal["corpus", "train", "eval"]


@dataclass(frozen=True)
class WorldSettings:
    """Everything that decides what the base model becomes; its hash names the cache folder."""

    task: str = "addition"
    difficulty: int = 2  # synth addition: difficulty + 1 digits per operand
    worked_share: float = 0.3  # share of corpus responses that reason step by step
    corpus_size: int = 40_000
    vocab_size: int = 512
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 512
    steps: int = 1_000
    batch_size: int = 64
    lr: float = 3e-3
    warmup_steps: int = 50
    target_worked_accuracy: float = 0.75  # greedy, on 64 RL prompts, when made to reason
    retries: int = 2  # fresh restarts while that target is missed (see ``build``)

    def digest(self, seed: int) -> str:
        """A short stable hash of the settings, the seed and ``WORLD_VERSION``."""
        blob = json.dumps({**asdict(self), "seed": seed, "v": WORLD_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


DEFAULT_SETTINGS = WorldSettings()


# --------------------------------------------------------------------------- problems


def split_of(question: str) -> Split:
    """The split a problem belongs to, fixed by a hash of its text: 10% eval, 10% train."""
    bucket = int.from_bytes(hashlib.sha256(question.encode()).digest()[:8], "big") % 10
    return "eval" if bucket == 0 else "train" if bucket == 1 else "corpus"


def problems(
    split: Split, n: int, seed: int, settings: WorldSettings = DEFAULT_SETTINGS
) -> list[Prompt]:
    """``n`` distinct problems of ``split``, drawn deterministically from ``seed``.

    Problems of different splits never share a question, whatever the seeds.
    """
    salt = {"corpus": 0, "train": 1, "eval": 2}[split]  # a distinct synth stream per split
    drawn = max(4 * n, 64)
    while True:
        pool = generate(settings.task, drawn, seed * 3 + salt, settings.difficulty)
        seen: set[str] = set()
        kept = []
        for prompt in pool:
            if split_of(prompt.question) == split and prompt.question not in seen:
                seen.add(prompt.question)
                kept.append(prompt)
        if len(kept) >= n:
            return kept[:n]
        drawn *= 2


def train_prompts(n: int, seed: int, settings: WorldSettings = DEFAULT_SETTINGS) -> list[Prompt]:
    """The RL training prompts: never in the pretraining corpus nor in ``eval_prompts``."""
    return problems("train", n, seed, settings)


def eval_prompts(n: int, seed: int, settings: WorldSettings = DEFAULT_SETTINGS) -> list[Prompt]:
    """Held-out problems: never in ``train_prompts`` nor in the pretraining corpus."""
    return problems("eval", n, seed, settings)


# --------------------------------------------------------------------------- responses


def direct_response(answer: str) -> str:
    """The response (text after ``<think>``) that answers at once, without reasoning."""
    return f" </think> <answer> \\boxed{{{answer}}} </answer>"


def worked_response(a: int, b: int) -> str:
    """The column-by-column solution of ``a + b``, ones first, then the direct answer.

    Every step is a single-digit fact plus a carry, e.g. ``7+8+1=16 carry 1``; the last column
    writes its whole sum, so the answer is that sum followed by the earlier ones digits.
    """
    da, db = str(a)[::-1], str(b)[::-1]
    columns = max(len(da), len(db))
    steps, carry = [], 0
    for i in range(columns):
        terms = [d[i] for d in (da, db) if i < len(d)] + (["1"] if carry else [])
        total = sum(int(t) for t in terms)
        carry = int(total >= 10 and i < columns - 1)
        steps.append(f"{'+'.join(terms)}={total}" + (" carry 1" if carry else ""))
    return f" {', '.join(steps)}." + direct_response(str(a + b))


def corpus(settings: WorldSettings, seed: int) -> list[tuple[str, str]]:
    """The pretraining corpus: ``(prompt, response)`` pairs, ``worked_share`` of them worked."""
    if settings.task != "addition":
        raise ValueError(
            f"the toy world writes worked solutions for addition only, not {settings.task}"
        )
    rng = random.Random(f"corpus:{seed}")
    pairs = []
    for prompt in problems("corpus", settings.corpus_size, seed, settings):
        params = prompt.metadata["params"]
        if rng.random() < settings.worked_share:
            response = worked_response(params["a"], params["b"])
        else:
            response = direct_response(prompt.ground_truth)
        pairs.append((render(prompt.question), response))
    return pairs


# --------------------------------------------------------------------------- tokenizer

# Pre-tokens: whole tags and \commands, every digit alone, words with their leading space,
# punctuation runs, other whitespace. BPE then merges only inside a pre-token, so digits are
# always single tokens (the model sees place value) while words become single tokens.
_PRETOKEN = r" ?</?[a-z]+>| ?\\[a-z]+\{?|\d| ?[A-Za-z]+| ?[^\sA-Za-z\d]+|\s+"
# The fixed parts of the ORZ template, each one token: a prompt shrinks from ~130 tokens to 14,
# which makes pretraining and PPO several times faster on CPU. Text is still exact.
_TEMPLATE_HEAD, _TEMPLATE_TAIL = TEMPLATE.split("{problem}")


def build_tokenizer(texts: list[str], vocab_size: int) -> Tokenizer:
    """A byte-level BPE over ``texts`` with single-digit tokens and template tokens.

    Any text encodes (byte level) and ``decode(encode(text)) == text`` holds exactly.
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_PRETOKEN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[EOS],
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.add_tokens(
        [AddedToken(part, normalized=False) for part in (_TEMPLATE_HEAD, _TEMPLATE_TAIL)]
    )
    return tokenizer


def save_tokenizer(tokenizer: Tokenizer, model_dir: Path) -> None:
    """Write tokenizer.json and a tokenizer_config.json that ``PreTrainedTokenizerFast`` honours.

    The config names ``PreTrainedTokenizerFast`` (not Qwen2Tokenizer, which would replace our
    pre-tokenizer) and sets EOS; the pad token is the EOS token, masked out by attention.
    """
    tokenizer.save(str(model_dir / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": EOS,
        "pad_token": EOS,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 1024,
    }
    (model_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


def load_tokenizer(model_dir: str | Path) -> PreTrainedTokenizerFast:
    """Load the world's tokenizer explicitly: AutoTokenizer would pick Qwen2Tokenizer."""
    return _hf_tokenizer(tokenizer_file=str(Path(model_dir) / "tokenizer.json"))


def _hf_tokenizer(**source: object) -> PreTrainedTokenizerFast:
    """``PreTrainedTokenizerFast`` over ``tokenizer_file=`` or ``tokenizer_object=``."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        **source, eos_token=EOS, pad_token=EOS, clean_up_tokenization_spaces=False
    )


# --------------------------------------------------------------------------- model


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


def _encode_pairs(pairs: list[tuple[str, str]], tokenizer: Tokenizer) -> list[_Example]:
    """Tokenise prompt and response separately (as RL will see them), then add EOS."""
    eos_id = tokenizer.token_to_id(EOS)
    prompts = tokenizer.encode_batch([p for p, _ in pairs])
    responses = tokenizer.encode_batch([r for _, r in pairs])
    return [
        _Example(p.ids + r.ids + [eos_id], len(p.ids))
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
    settings: WorldSettings,
    *,
    seed: int,
    pad_id: int,
    progress: bool,
) -> float:
    """Train ``model`` in place on ``examples`` for ``settings.steps``; return the last loss.

    AdamW, linear warm-up then cosine decay of ``lr`` to a tenth; batches cycle through the
    examples in an order shuffled by ``seed``. With ``progress``, logs the loss and elapsed
    time to stderr every 100 steps.
    """
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.lr, betas=(0.9, 0.95), weight_decay=0.01
    )
    batches = _batches(examples, settings.batch_size, seed)
    start, loss = time.monotonic(), 0.0
    for step in range(settings.steps):
        warm = min(1.0, (step + 1) / settings.warmup_steps)
        cosine = 0.1 + 0.45 * (1 + math.cos(math.pi * step / settings.steps))
        for group in optimizer.param_groups:
            group["lr"] = settings.lr * warm * cosine
        loss = _train_step(model, optimizer, next(batches), pad_id)
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


# --------------------------------------------------------------------------- build and cache


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

    Health check: the worked algorithm is learnt in a sudden jump, and with some
    initialisations (seed 2 of the default world) one of its attention patterns never forms
    (longer training did not help). Such a base model makes a broken world: reasoning does not
    pay, RL has nothing to find. So while the greedy accuracy of worked solutions on 64 RL
    prompts is under ``target_worked_accuracy``, pretraining restarts from a fresh
    initialisation, at most ``retries`` times. Attempt 0 uses ``seed`` itself.
    """
    from transformers import GenerationConfig, Qwen2ForCausalLM

    start, cpu_start = time.monotonic(), time.process_time()
    pairs = corpus(settings, seed)
    # A few thousand full examples are plenty for BPE: the template repeats in every one.
    tokenizer = build_tokenizer([p + r for p, r in pairs[:2000]], settings.vocab_size)
    examples = _encode_pairs(pairs, tokenizer)
    eos_id = tokenizer.token_to_id(EOS)
    # RL prompts, never eval ones: the held-out set stays unseen by anything in the build
    probe = train_prompts(64, seed, settings)
    hf_tokenizer = _hf_tokenizer(tokenizer_object=tokenizer)
    checks: list[float] = []
    for attempt in range(settings.retries + 1):
        init_seed = seed + 1_000_003 * attempt
        torch.manual_seed(init_seed)
        model = Qwen2ForCausalLM(model_config(settings, tokenizer))
        loss = pretrain(model, examples, settings, seed=init_seed, pad_id=eos_id, progress=progress)
        if not settings.retries:
            break
        checks.append(worked_accuracy(model, hf_tokenizer, probe))
        if checks[-1] >= settings.target_worked_accuracy:
            break
        if progress and attempt < settings.retries:
            print(
                f"toy world: worked solutions right {checks[-1]:.0%} only; restarting",
                file=sys.stderr,
            )
    else:
        if checks:
            warnings.warn(
                f"toy world: worked solutions right {checks[-1]:.0%} after every restart; "
                "RL will find little to learn in this world (try another seed)",
                stacklevel=2,
            )
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


# --------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class WorldReport:
    """How a policy does on the world: accuracy overall and split by whether it reasoned."""

    n: int
    accuracy: float
    reasoning_share: float
    accuracy_reasoning: float | None  # None when no response reasoned
    accuracy_direct: float | None  # None when every response reasoned
    mean_response_tokens: float


_BOXED = re.compile(r"<answer>.*\\boxed\{([^{}]*)\}.*?</answer>", re.S)


def is_correct(response: str, ground_truth: str) -> bool:
    """The world's exact check: the response is cut at the first ``</answer>`` and its last
    ``\\boxed{}`` inside ``<answer>`` equals the (integer) ground truth."""
    cut = response.find(ANSWER_STOP)
    if cut < 0:
        return False
    found = _BOXED.findall(response[: cut + len(ANSWER_STOP)])
    return bool(found) and found[-1].strip() == ground_truth


def reasons(response: str) -> bool:
    """Whether the response works something out before ``</think>`` (vs answering directly)."""
    return bool(response.split("</think>", 1)[0].strip())


@torch.no_grad()
def sample(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerFast,
    questions: list[str],
    *,
    temperature: float = 1.0,
    seed: int = 0,
    max_new_tokens: int = 96,
    prefix: str = "",
) -> tuple[list[str], list[int]]:
    """One response per question after its ORZ prompt and a forced ``prefix``, stopping at EOS.

    Pure temperature sampling (no top-k/top-p), or greedy when ``temperature`` is 0. Returns
    the response texts (``prefix`` included, cut after the first ``</answer>``) and the counts
    of generated tokens.
    """
    torch.manual_seed(seed)
    if temperature > 0:
        mode = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
    else:
        mode = {"do_sample": False}
    eos = tokenizer.eos_token_id
    texts, lengths = [], []
    for start in range(0, len(questions), 256):
        chunk = [render(q) + prefix for q in questions[start : start + 256]]
        enc = tokenizer(chunk, return_tensors="pt", padding=True, padding_side="left")
        out = model.generate(
            **enc, **mode, max_new_tokens=max_new_tokens, eos_token_id=eos, pad_token_id=eos
        )
        for row in out[:, enc["input_ids"].shape[1] :].tolist():
            ids = row[: row.index(eos)] if eos in row else row
            text = prefix + tokenizer.decode(ids)
            cut = text.find(ANSWER_STOP)
            texts.append(text if cut < 0 else text[: cut + len(ANSWER_STOP)])
            lengths.append(len(ids))
    return texts, lengths


def worked_accuracy(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, prompts: list[Prompt]
) -> float:
    """Greedy accuracy when every response is made to reason (forced first token ``" "``).

    The build's health check: a base model whose worked solutions are unreliable makes a world
    where reasoning does not pay, and RL has nothing to find.
    """
    questions = [p.question for p in prompts]
    texts, _ = sample(model, tokenizer, questions, temperature=0, max_new_tokens=64, prefix=" ")
    hits = [is_correct(t, p.ground_truth) for t, p in zip(texts, prompts, strict=True)]
    return sum(hits) / max(len(hits), 1)


def evaluate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerFast,
    prompts: list[Prompt],
    *,
    temperature: float = 1.0,
    seed: int = 0,
) -> WorldReport:
    """Sample one response per prompt and report accuracy and the reasoning split."""
    texts, lengths = sample(
        model, tokenizer, [p.question for p in prompts], temperature=temperature, seed=seed
    )
    correct = [is_correct(t, p.ground_truth) for t, p in zip(texts, prompts, strict=True)]
    reasoned = [reasons(t) for t in texts]

    def mean(flags: list[bool]) -> float | None:
        return sum(flags) / len(flags) if flags else None

    return WorldReport(
        n=len(prompts),
        accuracy=mean(correct) or 0.0,
        reasoning_share=mean(reasoned) or 0.0,
        accuracy_reasoning=mean([c for c, r in zip(correct, reasoned, strict=True) if r]),
        accuracy_direct=mean([c for c, r in zip(correct, reasoned, strict=True) if not r]),
        mean_response_tokens=sum(lengths) / max(len(lengths), 1),
    )
