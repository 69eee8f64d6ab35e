"""External benchmarks: a deterministic subset of a Hugging Face dataset (hub id or local copy)
in the layout of a well-known VQA set, materialised once into the suite cache.

A suite file names the dataset, its config and split, and a layout preset that says which
columns hold the image, question, answers and choices and which metric the benchmark scores
with. Images keep the user's bytes and format (harness/suites/user_files.py): a path cell
points at the user's own file, never copied, and never outside the dataset's folder unless
`allow_outside = true`; embedded bytes are written to the suite cache unchanged; a URL or data
URI is fetched through harness.images' checks. A missing or unreadable image fails its sample
alone. The `datasets` library is imported only here and only when such a suite is built.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from harness.suites import SOURCES, RawSample, SuiteDef, SuiteError, SuiteUnavailable, user_files

CACHE_FILE = "subset.json"
CACHE_VERSION = 2  # 2: images kept as the user's bytes, paths left in place


@dataclass(frozen=True)
class Layout:
    """Where a benchmark keeps each field, and how the benchmark is scored."""

    image: str
    question: str
    answers: str  # a string column or a list-of-strings column
    metric: str
    split: str  # the split with public answers
    category: str | None = None  # column; None: the layout's name
    id: str | None = None  # column with the dataset's own question id
    choices: tuple[str, ...] = ()  # one column per option letter (A, B, ...), if any
    options_in_question: bool = False  # "Options: A: ..., B: ..." written into the question


LAYOUT_KEYS = ("image", "question", "answers", "category", "id", "choices", "split", "options_in_question")


def layouts() -> dict[str, Path]:
    """Named layouts: every suite file with a [layout] table (textvqa, chartqa, docvqa, mmstar,
    ocrbench ship with the harness), by its file name. The layout lives in the benchmark's own
    suite file, one home for it; `layout = "chartqa"` in another suite borrows it."""
    from harness.suites import suite_files

    found = {}
    for name, path in suite_files().items():
        try:
            if "[layout]" in path.read_text(encoding="utf-8"):
                found[name] = path
        except (OSError, UnicodeDecodeError):
            continue
    return found


def named_layout(name: str, where: str) -> Layout:
    """The layout in suites/<name>.toml, scored by that suite's metric."""
    from harness.suites import find_suite

    path = layouts().get(name)
    if path is None:
        raise SuiteError(f"{where}: param 'layout' is {name!r}; allowed: {', '.join([*layouts(), 'custom'])}")
    source = find_suite(str(path))
    t = source.layout
    unknown = [k for k in t if k not in LAYOUT_KEYS]
    if unknown or not all(isinstance(t.get(k), str) for k in ("image", "question", "answers", "split")):
        raise SuiteError(f"{path}: [layout] needs image, question, answers and split as column names "
                         f"(and may set {', '.join(LAYOUT_KEYS[3:])}); got {sorted(t)}")
    return Layout(t["image"], t["question"], t["answers"], source.metric, t["split"], category=t.get("category"),
                  id=t.get("id"), choices=tuple(t.get("choices", ())),
                  options_in_question=bool(t.get("options_in_question", False)))


COLUMN_KEYS = ("image", "question", "answers", "category", "id", "choices")
PARAMS = ("dataset", "layout", "config", "split", "revision", "columns", "allow_outside")


@dataclass(frozen=True)
class Params:
    dataset: str
    local: Path | None  # the dataset as a path on disk, or None for a hub id
    layout_name: str
    layout: Layout
    config: str
    split: str
    revision: str
    allow_outside: bool = False


def _check(defn: SuiteDef) -> Params:
    where = f"{defn.path}"
    p = dict(defn.params)
    for key in p:
        if key not in PARAMS:
            raise SuiteError(f"{where}: unknown param {key!r} for source 'hf_dataset'; allowed: {', '.join(PARAMS)}")
    for key in ("dataset", "layout", "config", "split", "revision"):
        if key in p and not isinstance(p[key], str):
            raise SuiteError(f"{where}: param {key!r} must be a string, got {p[key]!r}")
    if not isinstance(p.get("allow_outside", False), bool):
        raise SuiteError(f"{where}: param 'allow_outside' must be true or false, got {p['allow_outside']!r}")
    dataset = p.get("dataset", "")
    if not dataset:
        raise SuiteError(f"{where}: param 'dataset' is required: a hub id (owner/name) or a path "
                         "starting with /, ./, ../ or ~")
    name = p.get("layout", "")
    if not name:
        raise SuiteError(f"{where}: param 'layout' is required: {', '.join([*layouts(), 'custom'])}")
    columns = p.get("columns", {})
    if not isinstance(columns, dict):
        raise SuiteError(f"{where}: param 'columns' must be a table, e.g. columns = {{ image = \"img\" }}")
    for key, value in columns.items():
        if key not in COLUMN_KEYS:
            raise SuiteError(f"{where}: unknown column role {key!r} in params.columns; allowed: {', '.join(COLUMN_KEYS)}")
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value) if key == "choices" else isinstance(value, str)
        if not ok:
            want = "a list of column names" if key == "choices" else "a column name"
            raise SuiteError(f"{where}: params.columns.{key} must be {want}, got {value!r}")
    if name == "custom":
        missing = [k for k in ("image", "question", "answers") if k not in columns]
        if missing:
            raise SuiteError(f"{where}: layout 'custom' needs params.columns.{missing[0]} (and image, question, answers)")
        base = Layout(columns["image"], columns["question"], columns["answers"], defn.metric, p.get("split") or "test")
    else:
        base = named_layout(name, where)
        # A preset is the benchmark's own scoring; another metric would give numbers that look
        # comparable with published ones and are not.
        if defn.metric != base.metric:
            raise SuiteError(f"{where}: layout {name!r} is scored with metric {base.metric!r}, the suite says "
                             f"{defn.metric!r}; set metric = \"{base.metric}\", or use layout = \"custom\"")
    layout = Layout(
        image=columns.get("image", base.image), question=columns.get("question", base.question),
        answers=columns.get("answers", base.answers), metric=base.metric, split=base.split,
        category=columns.get("category", base.category), id=columns.get("id", base.id),
        choices=tuple(columns.get("choices", base.choices)), options_in_question=base.options_in_question,
    )
    local = None
    if dataset.startswith(("/", "./", "../", "~")):
        local = Path(dataset).expanduser()
        if not local.is_absolute() and defn.path is not None:
            local = defn.path.parent / local
        local = local.resolve()
    return Params(dataset, local, name, layout, p.get("config", ""), p.get("split") or layout.split, p.get("revision", ""),
                  p.get("allow_outside", False))


def _one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())}"[:400]


def _load(p: Params, defn: SuiteDef, workdir: Path) -> Any:
    """The split as a datasets.Dataset; SuiteUnavailable when the hub is needed and absent."""
    import datasets

    # Per-file progress bars would interleave with the run's own progress output.
    datasets.disable_progress_bars()
    what = f"dataset {p.dataset!r}" + (f" config {p.config!r}" if p.config else "") + f" split {p.split!r}"
    if p.local is not None:
        if not p.local.exists():
            raise SuiteError(f"{defn.path}: {what}: no such file or directory {p.local}")
        try:
            if (p.local / "dataset_dict.json").exists() or (p.local / "state.json").exists():
                ds = datasets.load_from_disk(str(p.local))
                if isinstance(ds, datasets.DatasetDict):
                    if p.split not in ds:
                        raise SuiteError(f"{defn.path}: {what}: no such split; the dataset has {', '.join(ds)}")
                    ds = ds[p.split]
                return ds
            if p.local.is_file():
                builder = p.local.suffix.lstrip(".")
                return datasets.load_dataset(builder, data_files={p.split: str(p.local)}, split=p.split,
                                             cache_dir=str(workdir / "hf-cache"))
            return datasets.load_dataset(str(p.local), name=p.config or None, split=p.split,
                                         cache_dir=str(workdir / "hf-cache"))
        except SuiteError:
            raise
        except Exception as e:
            raise SuiteError(f"{defn.path}: {what}: cannot be read ({_one_line(e)})") from None
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if offline:
        # The library reads HF_HUB_OFFLINE once, at import; set after that, it would wait on
        # network timeouts (about 20 s per dataset) before failing.
        datasets.config.HF_HUB_OFFLINE = True
    try:
        return datasets.load_dataset(p.dataset, name=p.config or None, split=p.split, revision=p.revision or None)
    except Exception as e:
        unreachable = isinstance(e, (ConnectionError, FileNotFoundError)) or any(
            w in type(e).__name__ for w in ("NotFound", "Offline", "Connection", "HTTP"))
        if unreachable:
            raise SuiteUnavailable(
                f"{defn.path}: {what} needs the Hugging Face hub and is not in the local cache"
                f"{' (HF_HUB_OFFLINE is set)' if offline else ''}: {_one_line(e)}. Run once with hub access to "
                "cache it, or set params.dataset to a local copy (a path starting with / or ./)"
            ) from None
        raise SuiteError(f"{defn.path}: {what}: cannot be loaded ({_one_line(e)})") from None


def _fingerprint(ds: Any) -> str:
    return str(getattr(ds, "_fingerprint", "")) + f":{len(ds)}"


def _subset(n: int, k: int, seed: int) -> list[int]:
    """k row numbers out of n, the same for the same seed; all rows in order when k >= n."""
    if k >= n:
        return list(range(n))
    return sorted(int(i) for i in np.random.default_rng(seed).choice(n, size=k, replace=False))


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip())


def _answers(value: Any) -> tuple[str, ...]:
    if _is_missing(value):
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(str(a).strip() for a in value if not _is_missing(a))
    return (str(value).strip(),)


_OPTION = re.compile(r"(?:^|,\s*|\n\s*)([A-H])\s*[:.]\s+")


def options_from_question(question: str) -> tuple[str, ...]:
    """The option texts of an MMStar-style question ("...\\nOptions: A: x, B: y, C: z"), A first;
    () when they cannot be read with confidence."""
    head, sep, tail = question.rpartition("Options:")
    if not sep:
        return ()
    parts = _OPTION.split(tail.strip())
    letters, texts = parts[1::2], parts[2::2]
    if not letters or "".join(letters) != "ABCDEFGH"[: len(letters)]:
        return ()
    return tuple(t.strip().rstrip(",").strip() for t in texts)


def _image(value: Any, p: Params, where: str, stem: Path) -> tuple[str, str]:
    """(where the sample's image is, why it could not be fetched): a path cell stays the user's
    file, bytes are kept unchanged in the cache, a URL or data URI is fetched through the checks."""
    path_value = None
    if isinstance(value, dict):
        if value.get("bytes"):
            return str(user_files.keep_bytes(value["bytes"], stem).name), ""
        path_value = value.get("path")
        if not path_value:
            raise ValueError("the image cell is empty")
    elif isinstance(value, (bytes, bytearray)):
        return str(user_files.keep_bytes(bytes(value), stem).name), ""
    elif isinstance(value, str):
        if user_files.is_source(value):
            kept, why = user_files.fetch(value, stem)
            return kept.name, why
        path_value = value
    else:
        raise ValueError(f"the image cell holds {type(value).__name__}, not an image")
    if p.local is not None:
        root = p.local if p.local.is_dir() else p.local.parent
        path, why = user_files.local_image(str(path_value), root, allow_outside=p.allow_outside, where=where)
        return str(path), why
    return str(Path(path_value)), ""  # a hub dataset's own cache


def _build(p: Params, defn: SuiteDef, ds: Any, workdir: Path) -> list[dict[str, Any]]:
    import datasets

    lay = p.layout
    # The id and category columns only label samples; without them, the row number and the
    # layout's name do.
    if lay.id not in ds.column_names or lay.category not in ds.column_names:
        lay = replace(lay, id=lay.id if lay.id in ds.column_names else None,
                      category=lay.category if lay.category in ds.column_names else None)
    cols = [lay.image, lay.question, lay.answers, *lay.choices]
    missing = [c for c in cols if c not in ds.column_names]
    if missing:
        raise SuiteError(f"{defn.path}: dataset {p.dataset!r} has no column {missing[0]!r} that layout "
                         f"{p.layout_name!r} expects; it has {', '.join(ds.column_names)}. Set params.columns to map them")
    if isinstance(ds.features.get(lay.image), datasets.Image):
        # Decoding ourselves lets an unreadable image become one error row, not a dead suite.
        ds = ds.cast_column(lay.image, datasets.Image(decode=False))
    rows = _subset(len(ds), defn.samples, defn.seed)
    ds = ds.select(rows)
    out = []
    for row, rec in zip(rows, ds, strict=True):
        where = f"{defn.path}: dataset {p.dataset!r} split {p.split!r} row {row}"
        own = rec.get(lay.id) if lay.id else None
        sid = f"{row:06d}" + (f"-{own}" if not _is_missing(own) else "")
        answers = _answers(rec[lay.answers])
        if not answers:
            raise SuiteError(f"{where}: no answer in column {lay.answers!r}; pick a split with public answers "
                             f"(layout {p.layout_name!r} uses {lay.split!r})")
        question = rec[lay.question]
        if _is_missing(question):
            raise SuiteError(f"{where}: no question in column {lay.question!r}")
        question = str(question).strip()
        choices: tuple[str, ...] = ()
        if lay.choices:
            opts = [(letter, rec[c]) for letter, c in zip("ABCDEFGH", lay.choices, strict=False) if not _is_missing(rec[c])]
            choices = tuple(str(v) for _, v in opts)
            question += "\n" + "\n".join(f"{letter}. {v}" for letter, v in opts)
        elif lay.options_in_question:
            choices = options_from_question(question)
        cat = rec.get(lay.category) if lay.category else None
        if isinstance(cat, (list, tuple)):
            cat = cat[0] if cat else None
        category = str(cat) if not _is_missing(cat) else p.layout_name
        try:
            image, why = _image(rec[lay.image], p, where, workdir / f"{sid}-row{row}")
        except ValueError as e:
            raise SuiteError(f"{where}: image column {lay.image!r}: {_one_line(e)}") from None
        if why:
            why = why if why.startswith(where) else f"{where}: {why}"
            print(f"warning: {why}; the sample will be an error row", file=sys.stderr)
        out.append({"id": sid, "image": image, "question": question, "answers": list(answers),
                    "category": category, "choices": list(choices), "problem": why})
    return out


@SOURCES.register("hf_dataset")
def generate(defn: SuiteDef, workdir: Path) -> list[RawSample]:
    p = _check(defn)
    cache = workdir / CACHE_FILE
    cached = json.loads(cache.read_text()) if cache.exists() else None
    try:
        ds = _load(p, defn, workdir)
    except SuiteUnavailable:
        # Built before, with the hub: the materialised subset is all a run needs.
        if cached is None or cached.get("version") != CACHE_VERSION:
            raise
        ds = None
    if ds is not None:
        fp = _fingerprint(ds)
        if cached is None or cached.get("version") != CACHE_VERSION or cached.get("fingerprint") != fp or not all(
            (workdir / s["image"]).exists() and not s.get("problem") for s in cached["samples"]
        ):
            cached = {"version": CACHE_VERSION, "fingerprint": fp, "samples": _build(p, defn, ds, workdir)}
            tmp = cache.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(cached, indent=1) + "\n")
            tmp.replace(cache)
    return [
        RawSample(id=s["id"], images=(workdir / s["image"],), question=s["question"], answers=tuple(s["answers"]),
                  category=s["category"], choices=tuple(s["choices"]), problem=s.get("problem", ""))
        for s in cached["samples"]
    ]
