"""Policy and critic construction from a Hugging Face checkpoint.

The policy is any causal LM. The critic is the same base's backbone plus a value head
(``Linear(hidden, 1, bias=False)``); the two share no weights. Both save and load in Hugging Face
format; the critic's directory holds the backbone and ``value_head.safetensors``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

VALUE_HEAD_FILE = "value_head.safetensors"
GENERIC_TOKENIZERS = ("PreTrainedTokenizerFast", "TokenizersBackend")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def quiet_transformers() -> None:
    """No per-load progress bars or info logs from transformers (zerorl prints its own lines)."""
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()


class ModelPathError(FileNotFoundError):
    """A model path that is neither a local checkpoint nor a plausible hub id."""


def resolve_model_path(path: str) -> tuple[str, str | None]:
    """Return ``(directory_or_hub_id, gguf_file_or_None)`` for a model reference.

    ``toy`` builds (or reuses) the embedded toy-world base model; a ``.gguf`` file is loaded through
    transformers' GGUF support; anything that looks like a local path must exist.
    """
    if path == "toy":
        from zerorl.toyworld import ensure_base_model

        return str(ensure_base_model()), None
    p = Path(path).expanduser()
    if p.suffix == ".gguf":
        if not p.is_file():
            raise ModelPathError(f"model file not found: {path}")
        return str(p.parent), p.name
    if p.exists():
        if not (p / "config.json").exists():
            raise ModelPathError(f"{path} is not a Hugging Face model directory (no config.json)")
        return str(p), None
    looks_local = path.startswith(("/", ".", "~")) or path.count("/") != 1
    if looks_local:
        raise ModelPathError(
            f"model path not found: {path} (expected a local directory or org/name)"
        )
    return path, None


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; ``cpu``/``cuda`` as given."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device=cuda but torch sees no CUDA device (zerorl doctor says why)")
    return name


def load_tokenizer(path: str) -> PreTrainedTokenizerBase:
    """Load the tokenizer of a model directory; ensures a pad token (EOS if none).

    A directory whose ``tokenizer_config.json`` names a generic fast tokenizer is loaded with
    ``PreTrainedTokenizerFast`` directly: ``AutoTokenizer`` would follow the model type (e.g.
    qwen2) and silently replace a custom pre-tokenizer.
    """
    location, gguf = resolve_model_path(path)
    config_file = Path(location) / "tokenizer_config.json"
    explicit = False
    if config_file.exists():
        # transformers 5 saves a PreTrainedTokenizerFast as "TokenizersBackend".
        explicit = json.loads(config_file.read_text()).get("tokenizer_class") in GENERIC_TOKENIZERS
    if explicit:
        tok = PreTrainedTokenizerFast.from_pretrained(location)
    else:
        tok = (
            AutoTokenizer.from_pretrained(location, gguf_file=gguf)
            if gguf
            else (AutoTokenizer.from_pretrained(location))
        )
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_policy(
    path: str, dtype: str = "float32", attn_implementation: str = "sdpa"
) -> PreTrainedModel:
    """The policy: a causal LM from ``path`` (directory, hub id, ``.gguf`` file or ``toy``)."""
    location, gguf = resolve_model_path(path)
    kwargs = {"gguf_file": gguf} if gguf else {}
    model = AutoModelForCausalLM.from_pretrained(
        location, dtype=DTYPES[dtype], attn_implementation=attn_implementation, **kwargs
    )
    return _without_gguf_quantizer(model)


def _without_gguf_quantizer(model: PreTrainedModel) -> PreTrainedModel:
    """A GGUF checkpoint is de-quantized at load into ordinary float weights, but transformers
    keeps its GGUF quantizer attached and ``save_pretrained`` then refuses to save. Detach it, so
    checkpoints save (and load back) as plain Hugging Face models."""
    if getattr(model, "hf_quantizer", None) is None:
        return model
    if any(not p.is_floating_point() for p in model.parameters()):
        raise ValueError("this GGUF checkpoint kept quantized weights: it cannot be trained")
    model.hf_quantizer, model.is_quantized, model.quantization_method = None, False, None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model


class Critic(nn.Module):
    """Backbone + value head: ``forward`` maps (B, T) tokens to (B, T) values.

    Output position t is the value after reading tokens 0..t (``core.logprobs.shift_right`` aligns
    it with the token it precedes).
    """

    def __init__(self, backbone: PreTrainedModel, value_head: nn.Linear) -> None:
        super().__init__()
        self.backbone = backbone
        self.value_head = value_head

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        # attention_mask=None + restarting position ids: transformers isolates packed samples.
        out = self.backbone(input_ids=input_ids, position_ids=position_ids, use_cache=False)
        hidden = out.last_hidden_state
        return self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1).float()

    def save_pretrained(
        self, directory: str | Path, state_dict: dict[str, torch.Tensor] | None = None
    ) -> None:
        """The backbone in Hugging Face format and the value head beside it; from
        ``state_dict`` (this module's names, e.g. gathered from FSDP shards) when given."""
        directory = Path(directory)
        state = self.state_dict() if state_dict is None else state_dict
        prefix = "backbone."
        backbone = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        self.backbone.save_pretrained(directory, state_dict=backbone)
        head = state["value_head.weight"].detach().contiguous()
        save_file({"weight": head}, directory / VALUE_HEAD_FILE)


def init_value_head(head: nn.Linear, how: str, generator: torch.Generator) -> None:
    """``normal``: ORZ code's normal(0, 1/(H+1)) (the default); ``kaiming``: PyTorch's default
    Linear init (kaiming-uniform, a=√5, i.e. U(±1/√H)), zerorl's reading of the paper."""
    with torch.no_grad():
        if how == "normal":
            head.weight.normal_(0.0, 1.0 / (head.in_features + 1), generator=generator)
        else:
            bound = 1.0 / math.sqrt(head.in_features)  # kaiming_uniform(a=√5) on a (1, H) weight
            head.weight.uniform_(-bound, bound, generator=generator)


def _backbone_of(lm: PreTrainedModel) -> PreTrainedModel:
    return getattr(lm, lm.base_model_prefix)


def load_critic(
    path: str,
    dtype: str = "float32",
    attn_implementation: str = "sdpa",
    value_head_init: str = "normal",
    seed: int = 0,
) -> Critic:
    """A critic from a base model (fresh value head) or from a saved critic directory."""
    location, gguf = resolve_model_path(path)
    head_file = Path(location) / VALUE_HEAD_FILE
    kwargs = {"gguf_file": gguf} if gguf else {}
    common = {"dtype": DTYPES[dtype], "attn_implementation": attn_implementation, **kwargs}
    if head_file.exists():
        backbone = AutoModel.from_pretrained(location, **common)
    else:
        lm = _without_gguf_quantizer(AutoModelForCausalLM.from_pretrained(location, **common))
        backbone = _backbone_of(lm)
    hidden = backbone.config.get_text_config().hidden_size
    head = nn.Linear(hidden, 1, bias=False, dtype=torch.float32)
    if head_file.exists():
        head.weight.data.copy_(load_file(str(head_file))["weight"])
    else:
        init_value_head(head, value_head_init, torch.Generator().manual_seed(seed))
    return Critic(backbone, head)
