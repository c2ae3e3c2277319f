"""Curation throughput on a synthetic collection of ORZ's size (57k) with planted defects.

    python -m benchmarks.bench_curate [--n 60000] [--no-semantic]

Builds ``n`` word problems: unique base problems plus planted exact duplicates, near duplicates
(typos, a prefix, a reworded question), paraphrases (another wording of the same problem and
numbers), multiple-choice, proof, unparseable-answer, missing-answer and contaminated items
(copies of a separate synthetic evaluation set, some embedded in longer text or edited). Runs
the whole pipeline (pass-rate excluded: it needs a model) and prints, per stage, the items/s and
seconds, and per planted kind the fraction removed (recall) and the base problems removed
(false positives). The baseline is the target of the issue: the dedup stages finish 60k items
in a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zerorl.data.curate import CurateSpec, DecontamSpec, FilterSpec, SemanticSpec, curate
from zerorl.types import Prompt

TARGET_SECONDS = 300.0  # "a few minutes" for the dedup stages on 2 cores
# Planted kinds and their share of the collection; the rest are base problems.
PLANTED: dict[str, float] = {
    "exact_dup": 0.04,
    "near_dup": 0.03,
    "paraphrase": 0.02,
    "multiple_choice": 0.015,
    "proof": 0.015,
    "contaminated": 0.01,
    "unparseable": 0.01,
    "missing_answer": 0.005,
}
EXPECTED_STAGE: dict[str, str] = {
    "exact_dup": "exact_dedup",
    "near_dup": "near_dedup",
    "paraphrase": "semantic_dedup",
    "multiple_choice": "verifiable",
    "proof": "verifiable",
    "contaminated": "decontaminate",
    "unparseable": "verifiable",
    "missing_answer": "verifiable",
}

NAMES = (
    "Ava", "Ben", "Chloe", "Dmitri", "Elena", "Farah", "Gus", "Hana", "Ivan", "Jonas", "Keiko",
    "Liam", "Maya", "Nikhil", "Olga", "Pablo", "Quinn", "Rosa", "Sami", "Tariq", "Uma", "Victor",
    "Wen", "Ximena", "Yusuf", "Zoe", "Amara", "Bruno", "Chen", "Dalia", "Emeka", "Freya", "Goran",
    "Hugo", "Ines", "Jae", "Kofi", "Lena", "Mateo", "Noor", "Oren", "Priya", "Rafael", "Sven",
    "Tomas", "Ulla", "Vera", "Wiktor", "Yara", "Zain",
)  # fmt: skip
ROLES = (
    "baker", "farmer", "pilot", "teacher", "nurse", "chemist", "tailor", "gardener", "plumber",
    "painter", "librarian", "carpenter", "sculptor", "florist", "mechanic", "cashier", "courier",
    "jeweler", "potter", "weaver",
)  # fmt: skip
CITIES = (
    "Lisbon", "Oslo", "Quito", "Nairobi", "Hanoi", "Lima", "Perth", "Riga", "Tunis", "Dakar",
    "Kyoto", "Porto", "Cusco", "Accra", "Bergen", "Malmo", "Split", "Tartu", "Mendoza", "Daegu",
    "Izmir", "Cebu", "Sapporo", "Arequipa", "Graz", "Bilbao", "Leeds", "Cork",
)  # fmt: skip
THINGS = (
    "marbles", "stamps", "buttons", "shells", "coins", "pebbles", "beads", "cards", "tickets",
    "stickers", "ribbons", "candles", "jars", "books", "cups", "plates", "bottles", "kites",
    "puzzles", "lanterns",
)  # fmt: skip
EVENTS = (
    "a market day", "a rainy afternoon", "a school fair", "a long weekend", "a winter festival",
    "a museum visit", "a bake sale", "a chess tournament", "a harvest week", "a science camp",
)  # fmt: skip

Template = Callable[[random.Random, dict[str, str]], tuple[str, str, str]]


def _story(rng: random.Random) -> dict[str, str]:
    return {
        "name": rng.choice(NAMES),
        "role": rng.choice(ROLES),
        "city": rng.choice(CITIES),
        "thing": rng.choice(THINGS),
        "event": rng.choice(EVENTS),
    }


def _shop(rng: random.Random, s: dict[str, str]) -> tuple[str, str, str]:
    a, price, bill = rng.randint(3, 40), rng.randint(11, 97), rng.choice((50, 100, 200))
    bill = max(bill, (a * price) // 100 + 1)
    a_text = (
        f"{s['name']}, a {s['role']} from {s['city']}, buys {a} {s['thing']} at {price} "
        f"cents each during {s['event']} and pays with a {bill}-dollar bill. How much "
        f"change, in cents, does {s['name']} receive?"
    )
    b_text = (
        f"During {s['event']} in {s['city']}, the {s['role']} {s['name']} purchases {a} "
        f"{s['thing']} that cost {price} cents apiece, handing over a {bill}-dollar bill. "
        f"Find the amount of change in cents."
    )
    return a_text, b_text, str(bill * 100 - a * price)


def _rectangle(rng: random.Random, s: dict[str, str]) -> tuple[str, str, str]:
    w, d = rng.randint(3, 300), rng.randint(1, 90)
    p = 2 * (2 * w + d)
    a_text = (
        f"{s['name']} the {s['role']} fences a rectangular garden in {s['city']} with "
        f"{p} meters of fence; its length is {d} meters more than its width. What is the "
        f"area of the garden, in square meters?"
    )
    b_text = (
        f"In {s['city']}, a rectangular garden of the {s['role']} {s['name']} has a "
        f"perimeter of {p} meters, and the length exceeds the width by {d} meters. "
        f"Compute the garden's area in square meters."
    )
    return a_text, b_text, str(w * (w + d))


def _coins(rng: random.Random, s: dict[str, str]) -> tuple[str, str, str]:
    nickels, dimes = rng.randint(1, 400), rng.randint(1, 400)
    total, value = nickels + dimes, 5 * nickels + 10 * dimes
    a_text = (
        f"After {s['event']}, {s['name']} the {s['role']} has {total} coins, all nickels "
        f"and dimes, worth {value} cents in total. How many dimes does {s['name']} have?"
    )
    b_text = (
        f"A jar kept by {s['name']}, a {s['role']} in {s['city']}, holds {total} nickels "
        f"and dimes whose combined value is {value} cents. Determine the number of dimes."
    )
    return a_text, b_text, str(dimes)


def _sequence(rng: random.Random, s: dict[str, str]) -> tuple[str, str, str]:
    a, d, n = rng.randint(1, 500), rng.randint(2, 60), rng.randint(10, 400)
    a_text = (
        f"{s['name']} stacks {s['thing']} in rows: the first row has {a} {s['thing']} "
        f"and each row has {d} more than the row before. How many {s['thing']} are in "
        f"row {n}?"
    )
    b_text = (
        f"Rows of {s['thing']} built by the {s['role']} {s['name']} start with {a} in the "
        f"first row and grow by {d} per row. Find the count in row number {n}."
    )
    return a_text, b_text, str(a + (n - 1) * d)


def _workers(rng: random.Random, s: dict[str, str]) -> tuple[str, str, str]:
    n1, n2, rate = rng.randint(2, 30), rng.randint(2, 30), rng.randint(1, 9)
    days, answer = rng.randint(2, 40), rng.randint(2, 60)
    boxes1, boxes2 = n1 * rate * days, n2 * rate * answer
    a_text = (
        f"In {s['city']}, {n1} {s['role']}s can pack {boxes1} boxes of {s['thing']} in "
        f"{days} days. At the same rate, how many days do {n2} {s['role']}s need to pack "
        f"{boxes2} boxes?"
    )
    b_text = (
        f"Working at equal speed, {n1} {s['role']}s in {s['city']} fill {boxes1} boxes "
        f"with {s['thing']} over {days} days. Determine how long {n2} of them take to "
        f"fill {boxes2} boxes, in days."
    )
    return a_text, b_text, str(answer)


def _ages(rng: random.Random, s: dict[str, str]) -> tuple[str, str, str]:
    child, k, y = rng.randint(2, 30), rng.randint(2, 5), rng.randint(1, 25)
    total = child * (k + 1) + 2 * y
    other = rng.choice(NAMES)
    a_text = (
        f"{s['name']} the {s['role']} is {k} times as old as {other}. In {y} years the "
        f"sum of their ages will be {total}. How old is {other} now?"
    )
    b_text = (
        f"The age of {s['name']}, a {s['role']}, is {k} times the age of {other}; {y} "
        f"years from now their ages will add up to {total}. Find {other}'s current age."
    )
    return a_text, b_text, str(child)


def _trip(rng: random.Random, s: dict[str, str]) -> tuple[str, str, str]:
    speed, hours, extra = rng.randint(20, 120), rng.randint(2, 12), rng.randint(1, 9)
    a_text = (
        f"A train leaves {s['city']} carrying {s['name']} and travels at {speed} kilometers "
        f"per hour for {hours} hours, then stops for {extra} hours. How many kilometers "
        f"has it covered when it stops?"
    )
    return a_text, a_text, str(speed * hours)


def _dice(rng: random.Random, s: dict[str, str]) -> tuple[str, str, str]:
    sides, target = rng.randint(4, 30), rng.randint(2, 12)
    a_text = (
        f"{s['name']} rolls two fair dice with {sides} faces each, numbered 1 to {sides}. "
        f"In how many of the {sides * sides} equally likely outcomes is the sum exactly "
        f"{target}?"
    )
    count = sum(1 for x in range(1, sides + 1) if 1 <= target - x <= sides)
    return a_text, a_text, str(count)


TEMPLATES: tuple[Template, ...] = (_shop, _rectangle, _coins, _sequence, _workers, _ages)
# The evaluation set has templates of its own, as a benchmark would.
EVAL_TEMPLATES: tuple[Template, ...] = (_trip, _dice)


@dataclass
class Collection:
    prompts: list[Prompt]
    kinds: dict[str, str]  # prompt id -> planted kind ("base" for base problems)
    references: tuple[Prompt, ...]


def _typo(rng: random.Random, text: str) -> str:
    words = text.split(" ")
    long_words = [i for i, w in enumerate(words) if len(w) > 5 and w.isalpha()]
    i = rng.choice(long_words) if long_words else 0
    w = words[i]
    words[i] = w[:2] + w[3] + w[2] + w[4:] if len(w) > 4 else w + "s"
    return " ".join(words)


def _plant(kind: str, rng: random.Random, base: Prompt, alt: str, ref: Prompt) -> tuple[str, str]:
    q, a = base.question, base.ground_truth
    if kind == "exact_dup":
        return rng.choice([q.lower(), "  " + q.replace(" ", "  "), q.rstrip("?.") + " ?"]), a
    if kind == "near_dup":
        return rng.choice(
            [
                _typo(rng, q),
                "Solve the following problem. " + q,
                q.replace("How many", "Find how many", 1) + " Explain briefly.",
            ]
        ), a
    if kind == "paraphrase":
        return alt, a
    if kind == "multiple_choice":
        options = " ".join(
            f"({c}) {int(a) + d}" for c, d in zip("ABCDE", (-2, 0, 1, 3, 5), strict=True)
        )
        return f"{q} {options}", rng.choice([a, "B", "\\text{(B)}"])
    if kind == "proof":
        k = rng.randint(2, 9)
        return rng.choice(
            [
                f"Prove that for every positive integer $n$, {k} divides $n^{k}-n$ "
                f"whenever {k} is prime.",
                f"{q} Show that your answer is unique.",
            ]
        ), a
    if kind == "contaminated":
        return rng.choice(
            [
                ref.question,
                f"Here is a problem. {ref.question} Think carefully.",
                ref.question.replace("How many", "Find how many"),
            ]
        ), ref.ground_truth
    if kind == "unparseable":
        return q, rng.choice(["}{", "\\frac{1}{", "\\sqrt", "^^"])
    return q, ""  # missing_answer


def make_collection(n: int, seed: int = 0, n_references: int = 500) -> Collection:
    """``n`` prompts: base problems plus the PLANTED kinds in their shares, shuffled."""
    rng = random.Random(seed)
    references = tuple(
        Prompt(f"eval-{i}", *_problem(rng, EVAL_TEMPLATES)[::2], source="synthetic-eval")
        for i in range(n_references)
    )
    counts = {kind: int(n * share) for kind, share in PLANTED.items()}
    n_base = n - sum(counts.values())
    bases = [_problem(rng) for _ in range(n_base)]
    prompts = [Prompt(f"base-{i}", a, ans, "synthetic") for i, (a, _, ans) in enumerate(bases)]
    kinds = {p.id: "base" for p in prompts}
    for kind, count in counts.items():
        for i in range(count):
            j = rng.randrange(n_base)
            question, answer = _plant(kind, rng, prompts[j], bases[j][1], rng.choice(references))
            prompts.append(Prompt(f"{kind}-{i}", question, answer, "synthetic"))
            kinds[prompts[-1].id] = kind
    # Originals come first, so the first occurrence kept by every dedup stage is the base one.
    tail = prompts[n_base:]
    rng.shuffle(tail)
    return Collection(prompts[:n_base] + tail, kinds, references)


def _problem(
    rng: random.Random, templates: tuple[Template, ...] = TEMPLATES
) -> tuple[str, str, str]:
    return rng.choice(templates)(rng, _story(rng))


def _cpu_seconds() -> float:
    """CPU time of this process (all threads) and of its reaped children (math-verify workers).

    Unlike wall time it barely moves with machine load: on an idle machine a stage takes about
    its CPU time divided by the cores it keeps busy."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run(n: int, semantic: bool = True, seed: int = 0) -> dict[str, Any]:
    """Build the collection, curate it, return per-stage and per-kind figures."""
    t0 = time.perf_counter()
    collection = make_collection(n, seed)
    build_seconds = time.perf_counter() - t0
    encoder, load_seconds, encode_rate = None, 0.0, 0.0
    if semantic:
        from zerorl.data.dedup import load_encoder

        t0 = time.perf_counter()
        encoder = load_encoder(None)
        load_seconds = time.perf_counter() - t0
        sample = [p.question for p in collection.prompts[:512]]
        t0 = time.perf_counter()
        encoder(sample)
        encode_rate = len(sample) / (time.perf_counter() - t0)
    config = CurateSpec(
        filters=FilterSpec(workers=2),
        semantic=SemanticSpec(encoder=encoder) if semantic else None,
        decontam=DecontamSpec(references=collection.references),
    )
    cpu_marks = [_cpu_seconds()]
    kept, report = curate(
        collection.prompts, config, on_stage=lambda _: cpu_marks.append(_cpu_seconds())
    )
    cpu = [after - before for before, after in itertools.pairwise(cpu_marks)]
    kept_ids = {p.id for p in kept}
    recall: dict[str, dict[str, Any]] = {}
    for kind in ["base", *PLANTED]:
        members = [pid for pid, k in collection.kinds.items() if k == kind]
        removed = sum(pid not in kept_ids for pid in members)
        recall[kind] = {"n": len(members), "removed": removed}
    return {
        "n": n,
        "build_seconds": build_seconds,
        "model_load_seconds": load_seconds,
        "encoder_items_per_second": encode_rate,
        "stages": [
            {
                "name": s.name,
                "n_in": s.n_in,
                "n_removed": s.n_removed,
                "seconds": s.seconds,
                "items_per_second": s.items_per_second,
                "reasons": s.reasons,
                "skipped": s.skipped,
                "stats": s.stats,
                "cpu_seconds": cpu_s,
            }
            for s, cpu_s in zip(report.stages, cpu, strict=True)
        ],
        "kinds": recall,
        "n_out": report.n_out,
        "dedup_seconds": sum(s.seconds for s in report.stages if "dedup" in s.name),
        "load_average": os.getloadavg(),
    }


def print_result(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"curation of {result['n']} synthetic prompts -> {result['n_out']}")
    for column in ("stage", "in", "removed", "seconds", "items/s", "CPU s"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for s in result["stages"]:
        table.add_row(
            s["name"],
            str(s["n_in"]),
            str(s["n_removed"]),
            f"{s['seconds']:.1f}",
            f"{s['items_per_second']:,.0f}" if not s["skipped"] else "skipped",
            f"{s['cpu_seconds']:.1f}",
        )
    console.print(table)
    kinds = Table(title="planted kinds removed (base: false positives)")
    for column in ("kind", "planted", "removed", "share", "expected stage"):
        kinds.add_column(
            column, justify="left" if column in ("kind", "expected stage") else "right"
        )
    for kind, figures in result["kinds"].items():
        share = figures["removed"] / figures["n"] if figures["n"] else 0.0
        kinds.add_row(
            kind,
            str(figures["n"]),
            str(figures["removed"]),
            f"{share:.1%}",
            EXPECTED_STAGE.get(kind, "-"),
        )
    console.print(kinds)
    ratio = result["dedup_seconds"] / TARGET_SECONDS
    console.print(
        f"dedup stages: {result['dedup_seconds']:.1f} s = {ratio:.2f} x the {TARGET_SECONDS:.0f} s "
        f"baseline (few minutes on 2 cores); model load {result['model_load_seconds']:.1f} s; "
        f"load average {', '.join(f'{x:.1f}' for x in result['load_average'])}"
    )
    semantic = [s for s in result["stages"] if s["name"] == "semantic_dedup"]
    if semantic and result["encoder_items_per_second"]:
        rate, encoded = result["encoder_items_per_second"], semantic[0]["stats"]["n_encoded"]
        n_in = semantic[0]["n_in"]
        console.print(
            f"embeddings: {encoded} of {n_in} prompts share answer and numbers with another and "
            f"were encoded; encoder {rate:.0f} texts/s, so encoding all {n_in} (no guards) would "
            f"take about {n_in / rate:.0f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-semantic", action="store_true", help="leave out the embeddings")
    args = parser.parse_args()
    print_result(run(args.n, semantic=not args.no_semantic, seed=args.seed))


if __name__ == "__main__":
    main()
