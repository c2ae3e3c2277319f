"""Shared fixtures: a tiny, randomly initialised Qwen2 model with a character tokenizer."""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

SPECIALS = ["<pad>", "<eos>"]


def char_tokenizer() -> PreTrainedTokenizerFast:
    chars = sorted(set(string.printable) - set("\x0b\x0c"))
    vocab = {tok: i for i, tok in enumerate(SPECIALS + chars)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>")


def build_tiny_model(
    path: Path, seed: int = 0, hidden_size: int = 32, heads: int = 4, kv_heads: int = 2
) -> Path:
    """A random 2-layer Qwen2 with the character tokenizer, saved as a HF model directory."""
    tokenizer = char_tokenizer()
    torch.manual_seed(seed)
    cfg = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=1024,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    Qwen2ForCausalLM(cfg).save_pretrained(path)
    tokenizer.save_pretrained(path)
    config_file = path / "tokenizer_config.json"
    tok_cfg = json.loads(config_file.read_text())
    tok_cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_file.write_text(json.dumps(tok_cfg))
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def tiny_train_file(tmp_path_factory) -> Path:
    """A small ORZ-format training file of 2-digit additions."""
    path = tmp_path_factory.mktemp("data") / "train.json"
    items = [
        [
            {"from": "human", "value": f"What is {a} + {b}?"},
            {"from": "assistant", "ground_truth": {"value": str(a + b)}},
        ]
        for a, b in [(i * 7 % 90 + 10, i * 13 % 90 + 10) for i in range(32)]
    ]
    path.write_text(json.dumps(items))
    return path


def check_completions(engine, prompts: list[str], out, n: int, max_new_tokens: int) -> None:
    """What every rollout engine returns: ``n`` completions per prompt, in prompt order, with the
    prompt's ids (no BOS), the decoded text, at most ``max_new_tokens`` tokens, and a finish
    reason (``length`` exactly at the limit)."""
    assert [len(cs) for cs in out] == [n] * len(prompts)
    for i, cs in enumerate(out):
        for c in cs:
            assert c.prompt_index == i
            assert c.prompt_ids == engine.tokenizer.encode(prompts[i], add_special_tokens=False)
            assert 0 < len(c.token_ids) <= max_new_tokens
            assert c.text == engine.tokenizer.decode(c.token_ids, skip_special_tokens=True)
            assert c.finish_reason in ("stop", "length")
            if c.finish_reason == "length":
                assert len(c.token_ids) == max_new_tokens


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"
