"""Results on disk: a run directory of small parts, each written atomically.

A row is durable as soon as its part is renamed into place, so SIGKILL at any moment leaves
only whole files and loses nothing finished. `consolidate` folds the parts into one
`results.parquet` at the end of a run; readers accept either, or both, and drop duplicates.

Parts are Arrow IPC files named by the sha256 of their bytes: a part is written once per row
while the next sample runs, and this costs about 0.6 ms of CPU where a parquet part with its
content digest cost 4.8 ms, which on a two-core machine is taken from the sample being measured.
Whole results files are parquet, written with page checksums (CRC-32 per data page) and a content
digest in the footer, and read with both verified. Either way a flipped bit is an error, not a
silently changed row. A file that cannot be read is reported by name;
`read_results(..., damaged="skip")` warns and goes on without it, and `quarantine` moves a damaged
part aside so that `--resume` measures its samples again. Parquet parts written by older versions
are still read. Files of an older schema are read through harness/results/migrations.py.
"""

from __future__ import annotations

import hashlib
import io
import re
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from harness.core.schema import KEY, SCHEMA, to_table
from harness.results.migrations import SchemaTooNew, migrate
from harness.results.rundir import PARTS, RESULTS, RunDir, atomic_write_bytes

# Kept under its old name: callers catch it for "this file is from another harness version".
SchemaMismatch = SchemaTooNew


class DamagedFile(ValueError):
    """A results file that is not readable parquet, or fails its checksums."""


DIGEST_KEY = b"vlm_harness_sha256"
# part-<sequence>-<writer tag>-<first 16 hex digits of the file's sha256>.arrow
_PART_NAME = re.compile(r"part-(\d+)-[0-9a-f]+-([0-9a-f]{16})\.arrow")


def content_digest(table: pa.Table) -> str:
    """sha256 of a table's values, column by column: page checksums do not cover the footer, so
    a flip there could change a value without any error; this digest, kept in the footer and
    checked on reading, cannot. Only what a reader sees counts: which cells are null, and the
    valid values (Arrow IPC of them), not the bytes under a null nor a list child's name."""
    import hashlib

    import pyarrow.compute as pc

    h = hashlib.sha256()
    for name, column in zip(table.column_names, table.columns, strict=True):
        c = column.combine_chunks()
        if pa.types.is_list(c.type):  # parquet calls the child "element" where Arrow says "item"
            c = c.cast(pa.list_(c.type.value_type))
        valid = pc.is_valid(c)
        values = c.filter(valid)
        sink = pa.BufferOutputStream()
        schema = pa.schema([pa.field(name, c.type)])
        with pa.ipc.new_stream(sink, schema) as writer:
            writer.write_table(pa.Table.from_arrays([values], schema=schema))
        h.update(name.encode() + b"\0" + valid.to_numpy(zero_copy_only=False).tobytes())
        h.update(sink.getvalue().to_pybytes())
    return h.hexdigest()


def write_table(table: pa.Table, path: Path) -> None:
    """Write a parquet file atomically, with page checksums and a content digest."""
    meta = {**(table.schema.metadata or {}), DIGEST_KEY: content_digest(table).encode()}
    buf = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(meta), buf, write_page_checksum=True)
    atomic_write_bytes(path, buf.getvalue())


def write_results(df: pd.DataFrame, path: Path) -> None:
    """A whole results table as one file (a consolidated run, a rescore, a baseline)."""
    from harness.core.schema import NAMES

    write_table(pa.Table.from_pandas(df.reindex(columns=NAMES), schema=SCHEMA, preserve_index=False), path)


class ResultsStore:
    def __init__(self, run_dir: Path) -> None:
        self.run = RunDir(Path(run_dir))
        self.run_dir = self.run.path
        self.parts = self.run.parts
        existing = self.run.part_files()
        self._seq = int(existing[-1].name.split("-")[1]) + 1 if existing else 0
        # A random tag per writer: two processes appending to one run can never pick the same
        # file name, so neither can overwrite or delete the other's rows.
        self._tag = secrets.token_hex(3)

    def append(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        table = to_table(rows)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        data = sink.getvalue().to_pybytes()
        digest = hashlib.sha256(data).hexdigest()[:16]
        atomic_write_bytes(self.parts / f"part-{self._seq:07d}-{self._tag}-{digest}.arrow", data)
        self._seq += 1

    def read(self, damaged: str = "raise") -> pd.DataFrame:
        return read_results(self.run_dir, damaged=damaged)

    def consolidate(self) -> Path:
        parts = self.run.part_files()
        df = self.read()
        write_results(df, self.run.results)
        # Only the parts read above go, and only after the whole file is in place: a kill in
        # between leaves duplicates that read_results drops.
        for p in parts:
            p.unlink(missing_ok=True)
        return self.run.results

    def quarantine_damaged(self, warn: Callable[[str], None] | None = None) -> list[Path]:
        """Move every part that cannot be read into quarantine/; its samples count as not
        measured, so `--resume` measures them again."""
        moved = []
        for part in self.run.part_files():
            try:
                read_file(part)
            except DamagedFile as e:
                self.run.quarantine.mkdir(parents=True, exist_ok=True)
                target = self.run.quarantine / part.name
                part.replace(target)
                moved.append(target)
                if warn:
                    warn(f"{e}; moved to {target}, its samples will be measured again")
        return moved


@dataclass(frozen=True)
class FileInfo:
    """What reading one results file found out about it."""

    path: str
    rows: int
    schema_versions: tuple[int, ...]  # as written, before migration
    sealed: bool  # carries its content digest (or, a part, its checksum in its name)
    written_by: str  # "vlm-harness", or "other" for a file another tool wrote (pandas, DuckDB, polars)


def read_file(path: Path) -> pa.Table:
    """One results file (parquet, or an Arrow IPC part), checksums verified, migrated to the
    current schema and conformed."""
    return read_file_info(path)[0]


def read_file_info(path: Path) -> tuple[pa.Table, FileInfo]:
    """read_file, and what it found: a file another tool wrote (pandas `to_parquet`, DuckDB's
    `COPY ... (FORMAT parquet)`, polars) keeps the rows but drops this harness's file metadata,
    so its version comes from the rows' own schema_version column (each version migrated apart,
    for a concatenation of old and new runs) and, with no content digest to check, it is
    unsealed: read, and reported as such, not refused."""
    path = Path(path)
    table = _read_part(path) if path.suffix == ".arrow" else _read_parquet(path)
    meta = table.schema.metadata or {}
    sealed = path.suffix == ".arrow" or DIGEST_KEY in meta
    raw = meta.get(b"vlm_harness_schema")
    if raw is None:
        return _read_foreign(path, table, sealed)
    try:
        version = int(raw.decode())
    except ValueError:
        raise DamagedFile(f"{path}: unreadable schema version {raw!r}") from None
    info = FileInfo(str(path), len(table), (version,), sealed, "vlm-harness")
    return _conform(migrate(table, version, str(path))), info


def _read_foreign(path: Path, table: pa.Table, sealed: bool) -> tuple[pa.Table, FileInfo]:
    if "schema_version" not in table.column_names:
        raise DamagedFile(f"{path}: readable, but not vlm-harness results (no schema version in its metadata and "
                          "no schema_version column); give a results.parquet or a run directory")
    import pyarrow.compute as pc

    column = table.column("schema_version")
    if column.null_count:
        raise DamagedFile(f"{path}: {column.null_count} row(s) without a schema_version; keep that column when "
                          "filtering or concatenating results")
    try:
        versions = sorted({int(v) for v in pc.unique(column).to_pylist()})
    except (TypeError, ValueError):
        raise DamagedFile(f"{path}: unreadable schema_version values; keep the column as written") from None
    parts = [_conform(migrate(table.filter(pc.equal(column.cast(pa.int64()), v)), v, str(path))) for v in versions]
    info = FileInfo(str(path), len(table), tuple(versions), sealed, "other")
    return (pa.concat_tables(parts) if parts else _conform(table)), info


def _read_parquet(path: Path) -> pa.Table:
    try:
        table = pq.read_table(path, page_checksum_verification=True)
    except (OSError, pa.ArrowException) as e:
        raise DamagedFile(f"{path}: damaged or not a results file ({_first_line(e)})") from None
    digest = (table.schema.metadata or {}).get(DIGEST_KEY)
    if digest is not None and digest.decode(errors="replace") != content_digest(table):
        raise DamagedFile(f"{path}: damaged (its content no longer matches the checksum written with it)")
    return table


def _read_part(path: Path) -> pa.Table:
    m = _PART_NAME.fullmatch(path.name)
    if m is None:
        raise DamagedFile(f"{path}: not a results part (its name carries no checksum)")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DamagedFile(f"{path}: unreadable ({_first_line(e)})") from None
    if hashlib.sha256(data).hexdigest()[:16] != m.group(2):
        raise DamagedFile(f"{path}: damaged (its bytes no longer match the checksum in its name)")
    try:
        return pa.ipc.open_file(pa.BufferReader(data)).read_all()
    except (OSError, pa.ArrowException) as e:
        raise DamagedFile(f"{path}: damaged or not a results file ({_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _conform(table: pa.Table) -> pa.Table:
    columns = [
        table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(len(table), f.type)
        for f in SCHEMA
    ]
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def result_files(path: Path) -> list[Path]:
    path = Path(path)
    if path.is_dir():
        run = RunDir(path)
        return ([run.results] if run.results.exists() else []) + run.part_files()
    if path.exists():
        return [path]
    raise FileNotFoundError(f"no results at {path}")


def read_results(*paths: Path, damaged: str = "raise") -> pd.DataFrame:
    """Rows from run directories or parquet files, concatenated, duplicates of a key dropped.

    `damaged="raise"` stops at the first unreadable file with a DamagedFile naming it;
    `"skip"` prints a one-line warning per damaged file and reads the rest.
    """
    return read_results_info(*paths, damaged=damaged)[0]


def read_results_info(*paths: Path, damaged: str = "raise",
                      dedupe: bool = True) -> tuple[pd.DataFrame, tuple[FileInfo, ...]]:
    """read_results, and a FileInfo per file read (which are unsealed, which versions they held).
    `dedupe=False` keeps every row, for `merge` to find and name duplicates itself."""
    tables, infos = [], []
    for path in map(Path, paths):
        for f in result_files(path):
            try:
                table, info = read_file_info(f)
            except DamagedFile as e:
                if damaged != "skip":
                    raise
                print(f"warning: skipped {e}", file=sys.stderr)
                continue
            tables.append(table)
            infos.append(info)
    if not tables:
        return SCHEMA.empty_table().to_pandas(), tuple(infos)
    # Files written before a column was added lack it: they get nulls, so runs of different
    # ages (or machines) still merge into one table.
    df = pa.concat_tables(tables).to_pandas()
    if dedupe:
        df = df.drop_duplicates(subset=["run_id", *KEY], keep="last")
    return df.reset_index(drop=True), tuple(infos)


def unsealed(infos: tuple[FileInfo, ...] | list[FileInfo]) -> list[str]:
    """The files read without a content digest to check them against."""
    return [i.path for i in infos if not i.sealed]


__all__ = ["RESULTS", "PARTS", "DamagedFile", "FileInfo", "ResultsStore", "SchemaMismatch", "read_file",
           "read_file_info", "read_results", "read_results_info", "result_files", "unsealed", "write_results",
           "write_table"]
