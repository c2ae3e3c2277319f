"""Stage 5: decontamination against evaluation sets by token n-gram overlap.

ORZ did not describe one; without it a benchmark number cannot be trusted. A training prompt is
contaminated by an evaluation problem when it contains at least ``threshold`` of that problem's
distinct token ``ngram``-grams (so an evaluation problem copied into a longer text, or lightly
edited, is caught; a shared stock phrase such as "find the number of ordered pairs" is not).
Problems shorter than ``ngram`` tokens match only when their whole token sequence is equal.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from zerorl.data.dedup import ngrams, tokens
from zerorl.data.report import Removals, StageReport
from zerorl.types import Prompt


@dataclass(frozen=True)
class DecontamSpec:
    """``references``: the evaluation problems (any loader output, e.g. AIME 2024, MATH500)."""

    references: tuple[Prompt, ...] = ()
    ngram: int = 8
    threshold: float = 0.5


class NgramIndex:
    """Distinct ``n``-grams of reference texts, each mapped to the references that contain it."""

    def __init__(self, references: list[Prompt], n: int):
        self.references = references
        self.n = n
        self.sizes: list[int] = []
        self.postings: dict[str, list[int]] = {}
        for index, prompt in enumerate(references):
            grams = set(ngrams(tokens(prompt.question), n))
            self.sizes.append(len(grams))
            for gram in grams:
                self.postings.setdefault(gram, []).append(index)

    def best_match(self, text: str) -> tuple[int, float]:
        """``(reference index, fraction of its n-grams found in text)`` of the most covered
        reference, or ``(-1, 0.0)`` when no n-gram is shared."""
        shared: Counter[int] = Counter()
        for gram in set(ngrams(tokens(text), self.n)):
            shared.update(self.postings.get(gram, ()))
        if not shared:
            return -1, 0.0
        return max(
            ((index, count / self.sizes[index]) for index, count in shared.items()),
            key=lambda pair: pair[1],
        )


def decontaminate(prompts: list[Prompt], params: DecontamSpec) -> tuple[list[Prompt], StageReport]:
    """Drop prompts that contain an evaluation problem (see the module docstring).

    With no references the stage is skipped (``StageReport.skipped`` says so).
    """
    if not params.references:
        return prompts, StageReport(
            name="decontaminate",
            n_in=len(prompts),
            skipped="no evaluation sets given (--eval-set FILE)",
        )
    index = NgramIndex(list(params.references), params.ngram)
    removals = Removals()
    kept: list[Prompt] = []
    for prompt in prompts:
        ref, coverage = index.best_match(prompt.question)
        if ref >= 0 and coverage >= params.threshold:
            match = index.references[ref]
            removals.add(
                prompt,
                "contaminated",
                matches=match.id,
                eval_source=match.source,
                coverage=round(coverage, 3),
            )
        else:
            kept.append(prompt)
    return kept, removals.report(
        "decontaminate", len(prompts), stats={"n_references": len(params.references)}
    )
