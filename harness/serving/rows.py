"""The per-request row of a load run: every column, its type and meaning, versioned; atomic writes.

One row is one request sent during a step (or a warm-up request, step -1), whatever became of
it. Times are seconds on the client's monotonic clock: `planned_s`, `sent_s`, `end_s` from the
step's start; `chunk_times_s` from the request's own send. Step facts repeat on every row so that
any file, or a concatenation of files from many machines, is self-describing.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from harness.serving.journal import JOURNAL_NAME, read_journal

LOAD_SCHEMA_VERSION = 2
READABLE_VERSIONS = ("1", "2")

STATUSES = ("ok", "empty", "timeout", "http_error", "bad_stream", "incomplete", "connection_error", "cancelled")

COLUMNS: list[tuple[str, pa.DataType, str]] = [
    ("schema_version", pa.int32(), "version of this schema"),
    ("run_id", pa.string(), "one invocation of `vlm-harness load`"),
    ("step", pa.int32(), "step of the sweep, 0-based; -1 for warm-up requests"),
    ("mode", pa.string(), "concurrency (closed loop) | rate (open loop) | warmup"),
    ("target_concurrency", pa.int32(), "closed loop: requests kept in flight"),
    ("target_rate", pa.float64(), "open loop: planned requests per second"),
    ("arrivals", pa.string(), "open loop: poisson | constant"),
    ("seed", pa.int64(), "open loop: seed of the Poisson arrivals"),
    ("max_inflight", pa.int32(), "bound on requests in flight at once"),
    ("request_index", pa.int32(), "order of the request within its step"),
    ("model", pa.string(), "model name sent to the server"),
    ("base_url", pa.string(), "the server"),
    ("suite", pa.string(), "suite the request came from"),
    ("suite_hash", pa.string(), "sha256 over everything that defines the suite's samples"),
    ("sample_id", pa.string(), "sample id within the suite"),
    ("images_as", pa.string(), "data-uri | url"),
    ("max_tokens", pa.int32(), "generation limit sent"),
    ("step_start_unix", pa.float64(), "wall-clock time of the step's start, seconds since the epoch"),
    ("step_duration_s", pa.float64(), "step start to the end of its last request (or its deadline), s"),
    ("planned_s", pa.float64(), "when the request was due, s from step start"),
    ("sent_s", pa.float64(), "when the client sent it, s from step start (lag = sent_s - planned_s)"),
    ("end_s", pa.float64(), "when the response ended or failed, s from step start"),
    ("chunk_times_s", pa.list_(pa.float64()), "arrival of every chunk carrying a choice, s from send"),
    ("chunk_has_content", pa.list_(pa.bool_()), "per chunk: whether its delta carried text"),
    ("first_chunk_s", pa.float64(), "first chunk with text, s from send"),
    ("output_tokens_usage", pa.int32(), "usage.completion_tokens, when the server gave it"),
    ("output_tokens_counted", pa.int32(), "chunks with text the client received"),
    ("prompt_tokens", pa.int32(), "usage.prompt_tokens, when the server gave it"),
    ("status", pa.string(), " | ".join(STATUSES)),
    ("error", pa.string(), "what went wrong when status is not ok"),
    ("note", pa.string(), "what the server did that it should not, with an ok answer too: \"server ignored "
                          "max_tokens: 64 > 8\" (v2)"),
    ("http_status", pa.int32(), "HTTP status of the answer"),
    ("finish_reason", pa.string(), "stop | length | ..."),
    ("output", pa.string(), "the answer's text"),
    ("metric", pa.string(), "metric that scores the answer"),
    ("score", pa.float64(), "metric value of the answer, 0..1 (ok rows)"),
    ("environment", pa.string(), "JSON: the client machine and software (harness.measure.environment)"),
]

SCHEMA = pa.schema([pa.field(n, t) for n, t, _ in COLUMNS],
                   metadata={b"load_schema_version": str(LOAD_SCHEMA_VERSION).encode()})
FILE_NAME = "load.parquet"


class LoadSchemaMismatch(ValueError):
    """A load.parquet written by another schema version."""


def _clean(v: Any) -> Any:
    return None if isinstance(v, float) and math.isnan(v) else v


def to_table(rows: list[dict[str, Any]]) -> pa.Table:
    names = [n for n, _, _ in COLUMNS]
    unknown = {k for r in rows for k in r} - set(names)
    if unknown:
        raise KeyError(f"columns not in the load schema: {sorted(unknown)}")
    cols = {n: [_clean(r.get(n)) for r in rows] for n in names}
    cols["schema_version"] = [LOAD_SCHEMA_VERSION] * len(rows)
    return pa.table(cols, schema=SCHEMA)


def write_rows(rows: list[dict[str, Any]], path: Path) -> None:
    """Write all rows to path atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(to_table(rows), tmp)
    os.replace(tmp, path)


def is_load_run(d: Path) -> bool:
    """Whether a directory holds a load run: its rows file, or only the journal of a killed run."""
    return (Path(d) / FILE_NAME).exists() or (Path(d) / JOURNAL_NAME).exists()


def _read_file(p: Path) -> pd.DataFrame:
    table = pq.read_table(p)
    version = (table.schema.metadata or {}).get(b"load_schema_version", b"?").decode()
    if version not in READABLE_VERSIONS:
        raise LoadSchemaMismatch(f"{p}: load schema version {version}, this harness reads "
                                 f"{', '.join(READABLE_VERSIONS)}")
    df = table.to_pandas()
    if "note" not in df:  # version 1
        df.insert(df.columns.get_loc("error") + 1, "note", "")
    return df


def read_rows(*paths: Path) -> pd.DataFrame:
    """Rows of one or several load runs (a run directory stands for its files), concatenated.

    Finished requests that only the journal holds (the run was killed mid-step) are added to the
    parquet's rows; their step's duration is then the end of its last finished request."""
    frames = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            p = p / FILE_NAME
        journal = read_journal(p.with_name(JOURNAL_NAME))
        if not p.exists() and not journal:
            raise FileNotFoundError(f"{p}: no load rows here (neither {FILE_NAME} nor {JOURNAL_NAME})")
        df = _read_file(p) if p.exists() else None
        if journal:
            have = set() if df is None else set(zip(df["run_id"], df["step"], df["request_index"], strict=True))
            extra = [r for r in journal if (r.get("run_id"), r.get("step"), r.get("request_index")) not in have]
            if extra:
                j = to_table(extra).to_pandas()
                # A step cut short by a kill has no recorded duration: its window ends with its
                # last finished request.
                last_end = j.groupby(["run_id", "step"])["end_s"].transform("max")
                j["step_duration_s"] = j["step_duration_s"].fillna(last_end)
                df = j if df is None else pd.concat([df, j], ignore_index=True)
        if df is not None:
            frames.append(df)
    if not frames:
        return pd.DataFrame(columns=[n for n, _, _ in COLUMNS])
    return pd.concat(frames, ignore_index=True)
