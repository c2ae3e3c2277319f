"""Loaders: every input format into Prompt records, errors that name the file and item, writers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zerorl.data.loaders import (
    PromptLoadError,
    detect_format,
    load_prompts,
    load_prompts_report,
    save_jsonl,
    save_orz_train,
)
from zerorl.types import Prompt

EVAL_DIR = Path("/work/shared/data/eval")
needs_eval = pytest.mark.skipif(not EVAL_DIR.is_dir(), reason=f"{EVAL_DIR} is absent")


def orz_item(question: str, answer: object) -> list[dict]:
    return [
        {"from": "human", "value": question},
        {"from": "assistant", "ground_truth": {"value": answer}},
    ]


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_orz_training_json(tmp_path):
    path = write_json(tmp_path / "orz.json", [orz_item("What is 2+3?", "5"), orz_item("Q2", 7)])
    prompts = load_prompts(path)
    assert detect_format(path) == "json"
    assert prompts == [
        Prompt("orz-0", "What is 2+3?", "5", "orz", {}),
        Prompt("orz-1", "Q2", "7", "orz", {}),  # numbers become strings
    ]
    assert load_prompts(path, source="mine")[0].source == "mine"


@needs_eval
def test_orz_eval_json_aime_and_math500():
    aime = load_prompts(EVAL_DIR / "aime2024.json")
    math500 = load_prompts(EVAL_DIR / "math500.json")
    assert len(aime) == 30 and len(math500) == 500
    assert aime[0].ground_truth == "73"
    assert aime[0].question.startswith("Among the $900$ residents of Aimeville")
    assert aime[0].id == "aime2024-0" and aime[0].source == "aime2024"
    assert math500[0].ground_truth == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert len({p.id for p in math500}) == 500
    assert all(p.question.strip() and p.ground_truth for p in aime + math500)


def test_eval_format_written_here(tmp_path):
    rows = [{"prompt": [{"from": "user", "value": "Compute 6*7."}], "final_answer": "42"}]
    assert load_prompts(write_json(tmp_path / "ev.json", rows)) == [
        Prompt("ev-0", "Compute 6*7.", "42", "ev", {})
    ]


def test_jsonl_default_and_custom_fields(tmp_path):
    rows = [
        {"problem": "P0", "answer": "1", "level": 3, "id": "a"},
        {"problem": "P1", "answer": 2.5, "source": "amc"},
    ]
    prompts = load_prompts(write_jsonl(tmp_path / "d.jsonl", rows))
    assert prompts[0] == Prompt("a", "P0", "1", "d", {"level": 3})
    assert prompts[1] == Prompt("d-1", "P1", "2.5", "amc", {})

    custom = [{"q": "Q", "sol": {"final": "9"}, "extra": "x"}]
    path = write_jsonl(tmp_path / "c.jsonl", custom)
    (p,) = load_prompts(path, question_field="q", answer_field="sol.final")
    assert (p.question, p.ground_truth, p.metadata) == ("Q", "9", {"extra": "x"})


def test_chat_list_question_field(tmp_path):
    rows = [
        {
            "prompt": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "What is 1+1?"},
            ],
            "reward_model": {"ground_truth": "2"},
        }
    ]
    path = write_jsonl(tmp_path / "verl.jsonl", rows)
    (p,) = load_prompts(path, answer_field="reward_model.ground_truth")
    assert (p.question, p.ground_truth) == ("What is 1+1?", "2")


def test_json_suffix_holding_jsonl_is_detected(tmp_path):
    path = write_jsonl(tmp_path / "lines.json", [{"question": "Q", "answer": "1"}] * 2)
    assert detect_format(path) == "jsonl"
    assert len(load_prompts(path)) == 2


def test_parquet_with_configurable_fields(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({"text": ["Q0", "Q1"], "label": ["3", "4"], "level": [1, 2]})
    pq.write_table(table, tmp_path / "t.parquet")
    prompts = load_prompts(tmp_path / "t.parquet", question_field="text", answer_field="label")
    assert [(p.id, p.question, p.ground_truth, p.metadata) for p in prompts] == [
        ("t-0", "Q0", "3", {"level": 1}),
        ("t-1", "Q1", "4", {"level": 2}),
    ]
    # The magic bytes identify Parquet whatever the suffix.
    (tmp_path / "t.parquet").rename(tmp_path / "t.bin")
    assert detect_format(tmp_path / "t.bin") == "parquet"


def test_datasets_save_to_disk(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"question": ["Q0", "Q1"], "answer": ["1", "2"]})
    ds.save_to_disk(str(tmp_path / "single"))
    prompts = load_prompts(tmp_path / "single")
    assert [(p.id, p.question, p.ground_truth) for p in prompts] == [
        ("single-0", "Q0", "1"),
        ("single-1", "Q1", "2"),
    ]
    dd = datasets.DatasetDict({"train": ds, "test": ds.select([0])})
    dd.save_to_disk(str(tmp_path / "dict"))
    prompts, report = load_prompts_report(tmp_path / "dict")
    assert report.format == "hf_disk" and report.n_loaded == 3
    assert {p.id for p in prompts} == {"dict-train-0", "dict-train-1", "dict-test-0"}


def test_malformed_item_names_file_and_index(tmp_path):
    path = write_json(tmp_path / "bad.json", [orz_item("ok", "1"), [{"from": "human"}]])
    with pytest.raises(PromptLoadError) as err:
        load_prompts(path)
    assert err.value.index == 1 and str(path) in str(err.value) and "item 1" in str(err.value)

    path = write_json(tmp_path / "nogt.json", [orz_item("ok", "1"), [{"value": "Q"}, {}]])
    with pytest.raises(PromptLoadError, match=r"nogt\.json: item 1: .*ground_truth"):
        load_prompts(path)


def test_malformed_jsonl_line_and_missing_field(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"question": "Q", "answer": "1"}\n\n{"question": \n')
    with pytest.raises(PromptLoadError, match=r"broken\.jsonl: item 1: invalid JSON on line 3"):
        load_prompts(path)
    path = write_jsonl(tmp_path / "fields.jsonl", [{"prompt_text": "Q", "answer": "1"}])
    with pytest.raises(PromptLoadError, match=r"item 0: no question field.*prompt_text"):
        load_prompts(path)
    with pytest.raises(PromptLoadError, match="item 0: no field 'nope'"):
        load_prompts(path, question_field="nope")


def test_malformed_files(tmp_path):
    with pytest.raises(PromptLoadError, match="invalid JSON"):
        load_prompts(_write(tmp_path / "a.json", "[1, 2"))
    with pytest.raises(PromptLoadError, match="expected a JSON list"):
        load_prompts(_write(tmp_path / "b.json", '"text"'))
    with pytest.raises(PromptLoadError, match="cannot detect"):
        load_prompts(_write(tmp_path / "c.txt", "hello"))
    with pytest.raises(PromptLoadError, match="no such file"):
        load_prompts(tmp_path / "missing.json")
    with pytest.raises(PromptLoadError, match="invalid Parquet"):
        load_prompts(_write(tmp_path / "d.parquet", "PAR1 not really"))
    with pytest.raises(PromptLoadError, match="save_to_disk"):
        load_prompts(tmp_path)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_skip_counts_every_dropped_item(tmp_path):
    items = [orz_item("ok", "1"), "junk", orz_item("", "2"), orz_item("fine", ["x"])]
    path = write_json(tmp_path / "mixed.json", items)
    with pytest.warns(UserWarning, match="skipped 3 malformed item"):
        prompts, report = load_prompts_report(path, errors="skip")
    assert [p.question for p in prompts] == ["ok"]
    assert (report.n_items, report.n_loaded) == (4, 1)
    assert [index for index, _ in report.skipped] == [1, 2, 3]
    assert "empty question" in report.skipped[1][1]


def test_null_answer_loads_as_empty_for_the_filter_to_count(tmp_path):
    path = write_jsonl(tmp_path / "n.jsonl", [{"question": "Q", "answer": None}])
    assert load_prompts(path)[0].ground_truth == ""


def test_writers_round_trip(tmp_path):
    prompts = [
        Prompt("x1", "What is $\\frac{1}{2}$ of 8?", "4", "src", {"pass_rate": 0.25}),
        Prompt("x2", "Ünïcode question", "\\sqrt{2}", "src", {}),
    ]
    save_jsonl(prompts, tmp_path / "out" / "p.jsonl")
    assert load_prompts(tmp_path / "out" / "p.jsonl") == prompts

    save_orz_train(prompts, tmp_path / "orz.json")
    raw = json.loads((tmp_path / "orz.json").read_text(encoding="utf-8"))
    assert raw[0] == orz_item("What is $\\frac{1}{2}$ of 8?", "4")
    loaded = load_prompts(tmp_path / "orz.json")
    assert [(p.question, p.ground_truth) for p in loaded] == [
        (p.question, p.ground_truth) for p in prompts
    ]
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary files
