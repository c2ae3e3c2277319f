"""Load prompt collections of every format a user brings into :class:`zerorl.types.Prompt`.

Formats (auto-detected by :func:`load_prompts`):

- ORZ training JSON: a JSON list; each item
  ``[{"from": "human", "value": Q}, {"from": "assistant", "ground_truth": {"value": A}}]``.
- ORZ evaluation JSON: a list of ``{"prompt": [{"from": "user", "value": Q}], "final_answer": A}``.
- A JSON list or JSONL file of flat records with configurable field names (dotted paths such as
  ``reward_model.ground_truth`` reach into nested records; a chat list under the question field
  contributes its last user turn). zerorl's own JSONL (:func:`save_jsonl`) is such a file.
- Parquet files with the same record layout.
- A dataset saved with ``datasets.Dataset.save_to_disk`` (a directory; every split is loaded).

A malformed file or item raises :class:`PromptLoadError` naming the file and the item index.
With ``errors="skip"`` malformed items are skipped instead, and every skip is counted in the
:class:`LoadReport` and announced with a warning: nothing is dropped silently.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from zerorl.types import Prompt

QUESTION_FIELDS: tuple[str, ...] = ("question", "problem", "prompt", "query", "input")
ANSWER_FIELDS: tuple[str, ...] = ("ground_truth", "answer", "final_answer", "target", "output")
# Files a `datasets` save_to_disk directory always contains (a Dataset, or a DatasetDict).
_HF_DISK_MARKERS: tuple[str, ...] = ("dataset_info.json", "state.json", "dataset_dict.json")
_USER_ROLES = frozenset({"human", "user"})

Errors = Literal["raise", "skip"]


class PromptLoadError(ValueError):
    """A file or one of its items cannot be read as prompts."""

    def __init__(self, path: str | os.PathLike[str], index: int | str | None, reason: str):
        self.path = str(path)
        self.index = index
        self.reason = reason
        where = f"{self.path}: item {index}" if index is not None else self.path
        super().__init__(f"{where}: {reason}")


@dataclass
class LoadReport:
    """What one file gave: items read, prompts loaded, and each skipped item with its reason."""

    path: str
    format: str
    n_items: int = 0
    n_loaded: int = 0
    skipped: list[tuple[int | str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class _Fields:
    question: str | None
    answer: str | None
    source: str
    stem: str


def load_prompts(
    path: str | os.PathLike[str],
    *,
    question_field: str | None = None,
    answer_field: str | None = None,
    source: str | None = None,
    errors: Errors = "raise",
) -> list[Prompt]:
    """Load every prompt of ``path``, auto-detecting its format (see the module docstring).

    ``question_field``/``answer_field`` name the fields of flat records (default: the first
    present of :data:`QUESTION_FIELDS` / :data:`ANSWER_FIELDS`). ``source`` overrides each
    prompt's source (default: the record's own ``source`` field, else the file stem). Ids are
    the record's ``id`` field, else ``"{stem}-{index}"``. A present but null or empty answer
    loads as ``ground_truth == ""`` (the curation filter drops and counts it); a missing question
    or answer field is an error. Raises :class:`PromptLoadError` on the first malformed item,
    unless ``errors="skip"``.
    """
    prompts, _ = load_prompts_report(
        path,
        question_field=question_field,
        answer_field=answer_field,
        source=source,
        errors=errors,
    )
    return prompts


def load_prompts_report(
    path: str | os.PathLike[str],
    *,
    question_field: str | None = None,
    answer_field: str | None = None,
    source: str | None = None,
    errors: Errors = "raise",
) -> tuple[list[Prompt], LoadReport]:
    """Like :func:`load_prompts`, and also return the :class:`LoadReport` of the file."""
    p = Path(path)
    if not p.exists():
        raise PromptLoadError(p, None, "no such file or directory")
    try:
        return _load_report(p, question_field, answer_field, source, errors)
    except UnicodeDecodeError as e:
        raise PromptLoadError(
            p, None, f"not UTF-8 text (byte {e.start} is {e.object[e.start : e.start + 1]!r})"
        ) from None


def _load_report(
    p: Path,
    question_field: str | None,
    answer_field: str | None,
    source: str | None,
    errors: Errors,
) -> tuple[list[Prompt], LoadReport]:
    fmt = detect_format(p)
    stem = p.stem if p.is_file() else p.name
    fields = _Fields(question_field, answer_field, source or "", stem)
    report = LoadReport(path=str(p), format=fmt)
    prompts: list[Prompt] = []
    for index, item in _read_items(p, fmt):
        report.n_items += 1
        try:
            prompts.append(_item_to_prompt(item, index, fields))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            # str() of a KeyError quotes its message; take the message itself.
            reason = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
            if errors == "raise":
                raise PromptLoadError(p, index, reason) from None
            report.skipped.append((index, reason))
    if report.n_items == 0:
        raise PromptLoadError(p, None, "holds no prompts")
    report.n_loaded = len(prompts)
    if report.skipped:
        first_index, first_reason = report.skipped[0]
        warnings.warn(
            f"{p}: skipped {len(report.skipped)} malformed item(s) of {report.n_items}; "
            f"first: item {first_index}: {first_reason}",
            stacklevel=3,
        )
    return prompts, report


def detect_format(path: Path) -> str:
    """Name the format of ``path``: ``hf_disk``, ``parquet``, ``jsonl`` or ``json``."""
    if path.is_dir():
        if any((path / marker).exists() for marker in _HF_DISK_MARKERS):
            return "hf_disk"
        raise PromptLoadError(path, None, "a directory that is not a `datasets` save_to_disk")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return "parquet"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    with path.open("rb") as f:
        head = f.read(4096)
    if head.startswith(b"PAR1"):
        return "parquet"
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if text.startswith("{"):
        return "json" if _is_one_json_document(path) else "jsonl"
    if text.startswith("[") or suffix == ".json":
        return "json"
    raise PromptLoadError(path, None, "not JSON, JSONL or Parquet (cannot detect the format)")


def _is_one_json_document(path: Path) -> bool:
    """False for JSON Lines (several documents), True otherwise (even if invalid)."""
    try:
        json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        return not exc.msg.startswith("Extra data")
    return True


def _read_items(path: Path, fmt: str) -> Iterator[tuple[int | str, Any]]:
    if fmt == "json":
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError as exc:
            raise PromptLoadError(path, None, f"invalid JSON: {exc}") from None
        if not isinstance(data, list):
            raise PromptLoadError(path, None, f"expected a JSON list, got {type(data).__name__}")
        yield from enumerate(data)
    elif fmt == "jsonl":
        yield from _read_jsonl(path)
    elif fmt == "parquet":
        yield from enumerate(_read_parquet(path))
    else:
        yield from _read_hf_disk(path)


def _read_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    index = 0
    with path.open(encoding="utf-8-sig") as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise PromptLoadError(
                    path, index, f"invalid JSON on line {line_number}: {exc}"
                ) from None
            yield index, item
            index += 1


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise PromptLoadError(path, None, "reading Parquet needs `pip install pyarrow`") from exc
    try:
        return pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise PromptLoadError(path, None, f"invalid Parquet: {exc}") from None


def _read_hf_disk(path: Path) -> Iterator[tuple[str, Any]]:
    try:
        import datasets
    except ImportError as exc:
        raise PromptLoadError(path, None, "a saved dataset needs `pip install datasets`") from exc
    loaded = datasets.load_from_disk(str(path))
    splits = loaded.items() if isinstance(loaded, datasets.DatasetDict) else [("", loaded)]
    for split, dataset in splits:
        for i, row in enumerate(dataset):
            yield (f"{split}/{i}" if split else str(i)), row


def _item_to_prompt(item: Any, index: int | str, fields: _Fields) -> Prompt:
    default_id = f"{fields.stem}-{str(index).replace('/', '-')}"
    if isinstance(item, list):
        question, answer, extra = _parse_orz_train(item)
        return Prompt(default_id, question, answer, fields.source or fields.stem, extra)
    if not isinstance(item, dict):
        raise TypeError(f"expected a list or an object, got {type(item).__name__}")
    if isinstance(item.get("prompt"), list) and "final_answer" in item and not fields.question:
        question = _chat_question(item["prompt"])
        answer = _answer_text(item["final_answer"])
        used = {"prompt", "final_answer"}
    else:
        q_key = fields.question or _first_present(item, QUESTION_FIELDS, "question")
        a_key = fields.answer or _first_present(item, ANSWER_FIELDS, "answer")
        question_value = _get_path(item, q_key)
        if isinstance(question_value, list):
            question = _chat_question(question_value)
        else:
            question = _question_text(question_value)
        answer = _answer_text(_get_path(item, a_key))
        used = {q_key.split(".")[0], a_key.split(".")[0]}
    metadata = dict(item["metadata"]) if isinstance(item.get("metadata"), dict) else {}
    for key, value in item.items():
        if key not in used and key not in ("id", "source", "metadata"):
            metadata.setdefault(key, value)
    prompt_id = str(item["id"]) if item.get("id") not in (None, "") else default_id
    prompt_source = fields.source or str(item.get("source") or fields.stem)
    return Prompt(prompt_id, question, answer, prompt_source, metadata)


def _parse_orz_train(item: list[Any]) -> tuple[str, str, dict[str, Any]]:
    if len(item) < 2 or not all(isinstance(turn, dict) for turn in item[:2]):
        raise ValueError("an ORZ training item must be a list of two turn objects")
    question = _question_text(item[0].get("value"))
    if "ground_truth" not in item[1]:
        raise KeyError("the assistant turn has no 'ground_truth'")
    truth = item[1]["ground_truth"]
    if not isinstance(truth, dict) or "value" not in truth:
        raise ValueError("'ground_truth' must be an object with a 'value'")
    extra = {k: v for k, v in truth.items() if k != "value"}
    return question, _answer_text(truth["value"]), extra


def _chat_question(turns: list[Any]) -> str:
    """The last user turn of a chat list (``from``/``value`` or ``role``/``content``)."""
    texts = [
        turn.get("value", turn.get("content"))
        for turn in turns
        if isinstance(turn, dict) and turn.get("from", turn.get("role")) in _USER_ROLES
    ]
    if not texts:
        raise ValueError("the prompt has no user turn")
    return _question_text(texts[-1])


def _question_text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("missing or empty question")
    return value


def _answer_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise TypeError(f"the answer must be a string or a number, got {type(value).__name__}")
    return str(value).strip()


def _first_present(item: dict[str, Any], names: Iterable[str], what: str) -> str:
    for name in names:
        if name in item:
            return name
    raise KeyError(
        f"no {what} field (looked for {', '.join(names)}; the item has {', '.join(item)}); "
        f"name it with {what}_field (--{what}-field)"
    )


def _get_path(item: dict[str, Any], dotted: str) -> Any:
    value: Any = item
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(f"no field {dotted!r} (the item has {', '.join(item)})")
        value = value[part]
    return value


def save_orz_train(prompts: Iterable[Prompt], path: str | os.PathLike[str]) -> None:
    """Write ``prompts`` in ORZ's training format (question and answer only; see save_jsonl)."""
    items = [
        [
            {"from": "human", "value": p.question},
            {"from": "assistant", "ground_truth": {"value": p.ground_truth}},
        ]
        for p in prompts
    ]
    _atomic_write(Path(path), json.dumps(items, ensure_ascii=False, indent=2) + "\n")


def save_jsonl(prompts: Iterable[Prompt], path: str | os.PathLike[str]) -> None:
    """Write every field of ``prompts`` (id, question, ground_truth, source, metadata) as JSONL.

    The file loads back into equal prompts with :func:`load_prompts`.
    """
    lines = [
        json.dumps(
            {
                "id": p.id,
                "question": p.question,
                "ground_truth": p.ground_truth,
                "source": p.source,
                "metadata": p.metadata,
            },
            ensure_ascii=False,
            default=str,
        )
        for p in prompts
    ]
    _atomic_write(Path(path), "".join(line + "\n" for line in lines))


def _atomic_write(path: Path, text: str) -> None:
    """Write ``text`` so that a reader never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
