"""A folder of the user's own images and a small questions file: the simplest suite of one's own.

    [params]
    path = "my-photos"            # the folder, relative to the suite file (or absolute)
    questions = "questions.csv"   # in the folder; CSV or JSONL (default: questions.csv, else .jsonl)
    allow_outside = false         # images must lie in the folder unless this is true

Each row names an image (a path relative to the folder, a URL or a data URI), a question and
its accepted answers, and optionally a category, an id and a metric. In CSV several answers are
separated by `|`; in JSONL `answers` is a string or a list. Rows run in file order, the first
`samples` of them. Images are the user's files, read at run time by harness.images like every
other suite's (harness/suites/user_files.py): a missing or unreadable image is an error row for
its sample alone, and errors name the user's file.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

from harness.suites import SOURCES, RawSample, SuiteDef, SuiteError, user_files

PARAMS = ("path", "questions", "allow_outside")
COLUMNS = ("image", "question", "answers", "category", "id", "metric")


def _root(defn: SuiteDef) -> tuple[Path, Path, bool]:
    where = f"{defn.path}"
    params = dict(defn.params)
    for key in params:
        if key not in PARAMS:
            raise SuiteError(f"{where}: unknown param {key!r} for source 'folder'; allowed: {', '.join(PARAMS)}")
    folder = params.get("path")
    if not isinstance(folder, str) or not folder:
        raise SuiteError(f"{where}: param 'path' is required: the folder of images, relative to the suite file")
    allow_outside = params.get("allow_outside", False)
    if not isinstance(allow_outside, bool):
        raise SuiteError(f"{where}: param 'allow_outside' must be true or false, got {allow_outside!r}")
    root = Path(folder).expanduser()
    if not root.is_absolute() and defn.path is not None:
        root = defn.path.parent / root
    if not root.is_dir():
        raise SuiteError(f"{where}: param 'path': no such folder {root}")
    name = params.get("questions")
    if name is None:
        found = [root / n for n in ("questions.csv", "questions.jsonl") if (root / n).is_file()]
        if not found:
            raise SuiteError(f"{where}: no questions.csv or questions.jsonl in {root}; add one (columns image, "
                             "question, answers) or name it with param 'questions'")
        questions = found[0]
    elif not isinstance(name, str) or not name.endswith((".csv", ".jsonl")):
        raise SuiteError(f"{where}: param 'questions' must name a .csv or .jsonl file in the folder, got {name!r}")
    else:
        questions = root / name
        if not user_files.inside(questions, root):
            raise SuiteError(f"{where}: param 'questions' {name!r} leads outside the folder {root}")
        if not questions.is_file():
            raise SuiteError(f"{where}: questions file {questions} does not exist")
    return root, questions, allow_outside


def _rows(questions: Path) -> list[tuple[str, dict[str, Any]]]:
    """(where, row) for every row of the questions file, as read."""
    try:
        text = questions.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SuiteError(f"{questions}: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8") from None
    except OSError as e:
        raise SuiteError(f"{questions}: cannot read ({e.strerror})") from None
    out: list[tuple[str, dict[str, Any]]] = []
    if questions.suffix == ".jsonl":
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise SuiteError(f"{questions}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise SuiteError(f"{questions}:{lineno}: each line must be a JSON object with image, question, answers")
            out.append((f"{questions}:{lineno}", row))
        return out
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [c for c in ("image", "question", "answers") if c not in header]
    if missing:
        raise SuiteError(f"{questions}: the header has no column {missing[0]!r}; it needs image, question, answers "
                         f"(optional: category, id, metric), it has {', '.join(header) or 'nothing'}")
    for row in reader:
        answers = row.get("answers") or ""
        row["answers"] = [a.strip() for a in answers.split("|") if a.strip()]
        out.append((f"{questions}:{reader.line_num}", row))
    return out


def _text(row: dict[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = row.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise SuiteError(f"{where}: no {key!r}; every row needs image, question and answers")
        return ""
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise SuiteError(f"{where}: {key!r} must be text, got {value!r}")
    return str(value).strip()


@SOURCES.register("folder")
def generate(defn: SuiteDef, workdir: Path) -> list[RawSample]:
    from harness.core.registry import UnknownNameError
    from harness.metrics import METRICS

    root, questions, allow_outside = _root(defn)
    out: list[RawSample] = []
    seen: set[str] = set()
    for index, (where, row) in enumerate(_rows(questions)):
        if len(out) >= defn.samples:
            break
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise SuiteError(f"{where}: unknown column {sorted(unknown)[0]!r}; allowed: {', '.join(COLUMNS)}")
        image = _text(row, "image", where)
        question = _text(row, "question", where)
        answers = row.get("answers")
        answers = [answers] if isinstance(answers, str) else answers
        if not isinstance(answers, list) or not all(isinstance(a, (str, int, float)) for a in answers):
            raise SuiteError(f"{where}: 'answers' must be a string or a list of strings")
        answers = [str(a).strip() for a in answers if str(a).strip()]
        if not answers:
            raise SuiteError(f"{where}: no 'answers'; give at least one accepted answer (CSV: a|b|c)")
        sid = _text(row, "id", where, required=False) or f"{index:05d}"
        if sid in seen:
            raise SuiteError(f"{where}: id {sid!r} appears twice; ids must be unique")
        seen.add(sid)
        metric = _text(row, "metric", where, required=False) or None
        if metric is not None:
            try:
                METRICS.get(metric)
            except UnknownNameError as e:
                raise SuiteError(f"{where}: {e}") from None
        if user_files.is_source(image):
            path, why = user_files.fetch(image, workdir / f"{index:05d}")
            why = f"{where}: {why}" if why else ""
        else:
            path, why = user_files.local_image(image, root, allow_outside=allow_outside, where=where)
        if why:
            print(f"warning: {why}; the sample will be an error row", file=sys.stderr)
        out.append(RawSample(id=sid, images=(path,), question=question, answers=tuple(answers),
                             category=_text(row, "category", where, required=False) or "folder", metric=metric,
                             problem=why))
    if not out:
        raise SuiteError(f"{questions}: no questions; add rows with image, question, answers")
    return out
