"""Datasets by name (zerorl/data/sources.py), offline: local files, the cache, file:// downloads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zerorl.config import ConfigError, load_config
from zerorl.data import sources
from zerorl.data.sources import DataNotFound, Source, resolve
from zerorl.eval.benchmarks import load_benchmark
from zerorl.launch import run_training, training_prompts

REPO = Path(__file__).resolve().parents[1]


def orz_eval_file(path: Path, answers: list[str]) -> Path:
    items = [
        {"prompt": [{"from": "user", "value": f"Question {i}?"}], "final_answer": a}
        for i, a in enumerate(answers)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(items))
    return path


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty private cache, downloads allowed unless a test switches them off."""
    monkeypatch.setenv("ZERORL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ZERORL_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return tmp_path / "cache" / "data"


def test_a_path_is_used_as_it_is(tmp_path: Path, cache: Path) -> None:
    path = orz_eval_file(tmp_path / "mine.json", ["1"])
    assert resolve(str(path)) == path
    name, prompts = load_benchmark(str(path), None)
    assert (name, [p.ground_truth for p in prompts]) == ("mine", ["1"])


def test_data_dir_comes_before_the_cache(tmp_path: Path, cache: Path) -> None:
    orz_eval_file(cache / "math500.json", ["cached"])
    orz_eval_file(tmp_path / "dir" / "math500.json", ["local"])
    _, prompts = load_benchmark("math500", tmp_path / "dir")
    assert [p.ground_truth for p in prompts] == ["local"]
    _, prompts = load_benchmark("math500", None)
    assert [p.ground_truth for p in prompts] == ["cached"]


def test_prefilled_cache_any_spelling(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZERORL_OFFLINE", "1")
    orz_eval_file(cache / "gpqa_diamond.json", ["A"])
    assert resolve("gpqa-diamond") == cache / "gpqa_diamond.json"
    assert resolve("GPQA_Diamond") == cache / "gpqa_diamond.json"


def test_a_locally_saved_hub_dataset_in_the_cache(cache: Path) -> None:
    """A ``datasets`` folder (what a hub download leaves in the cache) with integer answers."""
    datasets = pytest.importorskip("datasets")
    data = datasets.Dataset.from_dict({"problem": ["p1", "p2"], "answer": [70, 588]})
    data.save_to_disk(str(cache / "aime2025"))
    name, prompts = load_benchmark("aime2025", None, download=False)
    assert name == "aime2025"
    assert [(p.question, p.ground_truth) for p in prompts] == [("p1", "70"), ("p2", "588")]


def test_download_once_then_the_cache(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    published = orz_eval_file(tmp_path / "published" / "math500.json", ["7", "8"])
    source = Source((published.as_uri(),), what="test")
    monkeypatch.setitem(sources.SOURCES, "math500", source)
    first = resolve("math500")
    assert first == cache / "math500.json"
    published.unlink()  # a second resolution must not need the source any more
    assert resolve("math500") == first
    assert [p.ground_truth for p in load_benchmark("math500", None)[1]] == ["7", "8"]


def test_failed_download_names_what_was_tried_and_leaves_nothing(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = (tmp_path / "nowhere.json").as_uri()
    monkeypatch.setitem(sources.SOURCES, "math500", Source((missing,), what="test"))
    with pytest.raises(DataNotFound) as err:
        resolve("math500", tmp_path)
    message = str(err.value)
    assert "'math500'" in message and str(tmp_path) in message
    assert str(cache) in message and missing in message
    assert not list(cache.glob("*")), "a failed download left a file in the cache"


def test_offline_and_unknown_names(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZERORL_OFFLINE", "1")
    with pytest.raises(DataNotFound, match="download: skipped"):
        resolve("aime2024")
    with pytest.raises(DataNotFound, match=r"not a known dataset name .*orz-math-57k"):
        resolve("aime2031")


@pytest.mark.parametrize("preset", ["orz-0.5b", "orz-1.5b", "orz-7b", "orz-32b"])
def test_orz_presets_name_orz_data_and_fail_without_it(
    preset: str, tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never the toy world: without its data an ORZ preset stops, naming what it tried, before
    a run folder or a model is made."""
    monkeypatch.setenv("ZERORL_OFFLINE", "1")
    cfg = load_config(preset, None, [f"train.out_dir={tmp_path / 'runs'}"])
    assert cfg.data.train_files == ["orz-math-57k"]
    with pytest.raises(ConfigError, match=r"orz-math-57k.*\n.*\n.*cache"):
        training_prompts(cfg)
    with pytest.raises(ConfigError, match=r"data\.train_files"):
        run_training(cfg)
    assert not (tmp_path / "runs").exists()


def test_orz_preset_trains_on_the_cached_57k_file(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZERORL_OFFLINE", "1")
    rows = [
        [{"from": "human", "value": "1+1?"}, {"from": "assistant", "ground_truth": {"value": "2"}}]
    ]
    cache.mkdir(parents=True)
    (cache / "orz-math-57k.json").write_text(json.dumps(rows))
    prompts = training_prompts(load_config("orz-7b"))
    assert [(p.question, p.ground_truth) for p in prompts] == [("1+1?", "2")]


def test_no_product_code_or_benchmark_points_outside_the_repository() -> None:
    offenders = []
    for path in [*REPO.glob("zerorl/**/*.py"), *REPO.glob("benchmarks/*.py")]:
        text = path.read_text()
        if "shared/data" in text or '"shared"' in text or "../shared" in text:
            offenders.append(str(path.relative_to(REPO)))
    assert offenders == []
