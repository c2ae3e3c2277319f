"""Datasets by name: ORZ's training collections and the standard benchmarks, fetched once.

:func:`resolve` turns a name (``orz-math-57k``, ``math500``, ``aime2024``, ``aime2025``,
``gpqa-diamond``) or a path into a local file or ``datasets`` folder that
:func:`zerorl.data.loaders.load_prompts` reads. In order, the first that exists wins:

1. the name as a path (a file or a saved ``datasets`` folder);
2. ``<data_dir>/<name>.json`` (also ``.jsonl``, ``.parquet``, ``-``/``_`` swapped, or a folder);
3. the cache, ``$ZERORL_CACHE/data/<name>...`` (default ``~/.cache/zerorl/data``);
4. a download into the cache: the file ORZ published in its repository, else the Hugging Face
   datasets id (with the ``datasets`` library). ``ZERORL_OFFLINE=1`` (or ``HF_HUB_OFFLINE=1``)
   skips this step.

If nothing works, :class:`DataNotFound` says every place that was tried and why it failed; a
caller never falls back to other data.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ORZ_FILES = "https://raw.githubusercontent.com/Open-Reasoner-Zero/Open-Reasoner-Zero/main/data/"
SUFFIXES = (".json", ".jsonl", ".parquet")
DOWNLOAD_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Source:
    """Where a named dataset is published: file URLs (tried first), then a hub dataset."""

    urls: tuple[str, ...] = ()
    hub_id: str = ""
    hub_split: str = "train"
    what: str = ""


SOURCES: dict[str, Source] = {
    "orz-math-57k": Source(
        (ORZ_FILES + "orz_math_57k_collected.json",), what="ORZ's 57k training prompts"
    ),
    "orz-math-72k": Source(
        (ORZ_FILES + "orz_math_72k_collection_extended.json",), what="ORZ's extended 72k set"
    ),
    "orz-math-13k-hard": Source(
        (ORZ_FILES + "orz_math_13k_collection_hard.json",), what="ORZ's 13k hard prompts"
    ),
    "math500": Source(
        (ORZ_FILES + "eval_data/math500.json",), "HuggingFaceH4/MATH-500", "test", "MATH500"
    ),
    "aime2024": Source(
        (ORZ_FILES + "eval_data/aime2024.json",), "HuggingFaceH4/aime_2024", "train", "AIME 2024"
    ),
    "aime2025": Source((), "MathArena/aime_2025", "train", "AIME 2025 (not in ORZ's repository)"),
    "gpqa-diamond": Source(
        (ORZ_FILES + "eval_data/gpqa_diamond.json",), what="GPQA-Diamond as ORZ published it"
    ),
}


class DataNotFound(FileNotFoundError):
    """A named dataset that could not be found or fetched; the message lists what was tried."""


def canonical(name: str) -> str:
    """The registry spelling of a name: lower case, ``_`` as ``-`` (``gpqa_diamond``)."""
    return name.strip().lower().replace("_", "-")


def cache_dir() -> Path:
    """``$ZERORL_CACHE/data``, else ``~/.cache/zerorl/data``."""
    base = os.environ.get("ZERORL_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "zerorl") / "data"


def offline() -> bool:
    return any(os.environ.get(v, "") not in ("", "0") for v in ("ZERORL_OFFLINE", "HF_HUB_OFFLINE"))


def _find_in(directory: Path, name: str) -> Path | None:
    """``<directory>/<name>``: a file with a known suffix or a folder, ``-`` or ``_`` spelt."""
    for spelling in dict.fromkeys([name, name.replace("-", "_"), name.replace("_", "-")]):
        for suffix in SUFFIXES:
            if (directory / f"{spelling}{suffix}").is_file():
                return directory / f"{spelling}{suffix}"
        if (directory / spelling).is_dir():
            return directory / spelling
    return None


def download_file(url: str, dest: Path, timeout_s: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Fetch ``url`` to ``dest`` atomically (a partial download never looks complete)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest.parent, suffix=".part", delete=False) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                shutil.copyfileobj(response, tmp)
        except BaseException:
            Path(tmp.name).unlink(missing_ok=True)
            raise
    os.replace(tmp.name, dest)
    return dest


def _download_hub(hub_id: str, split: str, dest: Path) -> Path:
    import datasets

    data = datasets.load_dataset(hub_id, split=split)
    tmp = dest.with_name(dest.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    data.save_to_disk(str(tmp))
    os.replace(tmp, dest)
    return dest


def _fetch(name: str, source: Source, tried: list[str]) -> Path | None:
    """Download ``source`` into the cache; record each failure in ``tried``."""
    if offline():
        tried.append("download: skipped (ZERORL_OFFLINE or HF_HUB_OFFLINE is set)")
        return None
    for url in source.urls:
        try:
            return download_file(url, cache_dir() / f"{name}{Path(url).suffix or '.json'}")
        except Exception as exc:
            tried.append(f"download {url}: {exc}")
    if source.hub_id:
        try:
            return _download_hub(source.hub_id, source.hub_split, cache_dir() / name)
        except Exception as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            tried.append(f"Hugging Face dataset {source.hub_id} ({source.hub_split}): {reason}")
    return None


def resolve(name: str, data_dir: str | Path | None = None, download: bool = True) -> Path:
    """A local path holding the dataset ``name`` (see the module docstring for the order).

    Raises :class:`DataNotFound` naming every place tried.
    """
    path = Path(name).expanduser()
    if path.exists():
        return path
    tried = [f"{path}: no such file or folder"]
    key = canonical(name)
    if data_dir:
        found = _find_in(Path(data_dir), key)
        if found:
            return found
        present = sorted(p.stem for p in Path(data_dir).glob("*") if p.suffix in SUFFIXES)
        tried.append(f"data dir {data_dir}: no {key} (present: {', '.join(present) or 'none'})")
    found = _find_in(cache_dir(), key)
    if found:
        return found
    tried.append(f"cache {cache_dir()}: no {key}")
    source = SOURCES.get(key)
    if source is None:
        tried.append(f"not a known dataset name (known: {', '.join(SOURCES)})")
    elif download:
        found = _fetch(key, source, tried)
        if found:
            return found
    raise DataNotFound(f"cannot get dataset {name!r}; tried:\n  " + "\n  ".join(tried))
