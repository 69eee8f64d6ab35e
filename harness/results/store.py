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
part (or a damaged results.parquet) aside so that `--resume` measures its samples again, and only
those. Parquet parts written by older versions are still read. Files of an older schema are read
through harness/results/migrations.py.

Hostile files are refused by name, never waited on: only regular files are read (a FIFO named
like a part would block for ever), a part holding another run's rows is named and left out, and a
run with no readable rows at all is an error (NoResults), not an empty table. A row whose values do
not fit the schema (a count past int32, a number where text belongs) is stored as an error row
saying which column, with the rest of its values; it never costs the run. A write that fails (a
read-only or full disk, `parts/` replaced by a file, the run directory deleted) is a WriteError
naming the path and the reason; parts already written stay.
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

from harness.core.files import NotReadable, check_regular
from harness.core.schema import KEY, SCHEMA, normalise
from harness.results.migrations import SchemaTooNew, migrate
from harness.results.rundir import PARTS, RESULTS, RunDir, WriteError, atomic_write_bytes

# Kept under its old name: callers catch it for "this file is from another harness version".
SchemaMismatch = SchemaTooNew


class DamagedFile(ValueError):
    """A results file that is not readable parquet, or fails its checksums."""


class ForeignPart(DamagedFile):
    """A part in a run's parts/ holding rows of another run (copied in by hand)."""


class NoResults(FileNotFoundError):
    """A run or file with no readable result rows at all; the message says what was found."""


DIGEST_KEY = b"vlm_harness_sha256"
# part-<sequence>-<writer tag>-<first 16 hex digits of the file's sha256>.arrow
_PART_NAME = re.compile(r"part-(\d+)-[0-9a-f]+-([0-9a-f]{16})\.arrow")
# Any part's sequence number: part-0000003.parquet (the first release), part-0000003-<tag>.parquet,
# part-0000003-<tag>-<digest>.arrow.
_SEQUENCE = re.compile(r"part-(\d+)[-.]")


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
        existing = [m for p in self.run.part_files() if (m := _SEQUENCE.match(p.name))]
        self._seq = max((int(m.group(1)) for m in existing), default=-1) + 1
        # A random tag per writer: two processes appending to one run can never pick the same
        # file name, so neither can overwrite or delete the other's rows.
        self._tag = secrets.token_hex(3)
        self._written = False  # after the first part, a missing run directory is never made again
        # A run directory that existed when the store opened (the run made it and holds its
        # lock) is never made again either: gone means deleted, not "not yet made".
        self._existed = self.run_dir.is_dir()

    def append(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        table = storable_table(rows)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        data = sink.getvalue().to_pybytes()
        digest = hashlib.sha256(data).hexdigest()[:16]
        path = self.parts / f"part-{self._seq:07d}-{self._tag}-{digest}.arrow"
        try:
            # The first part makes parts/ (and the run directory for a bare store); later ones do
            # not, so a run directory deleted mid-run is an error, not a new one half as full.
            if self._existed and not self.run_dir.is_dir():
                raise FileNotFoundError(2, "No such file or directory", str(self.run_dir))
            if not self._written and self._existed:
                self.parts.mkdir(exist_ok=True)  # parts/ only, never the run directory itself
            atomic_write_bytes(path, data, make_parents=not self._written and not self._existed)
        except OSError as e:
            raise self._write_error(path, e) from None
        self._written = True
        self._seq += 1

    def _write_error(self, path: Path, e: OSError) -> WriteError:
        # parts/ gone after it was made: the run directory is gone, or going (a delete in
        # progress removes parts/ before the directory itself).
        if not self.run_dir.is_dir() or ((self._written or self._existed) and not self.parts.exists()):
            return WriteError(f"cannot store results: the run directory {self.run_dir} was deleted while the run "
                              "was going; the rows it held are gone with it, and the run stops here")
        if self.parts.exists() and not self.parts.is_dir():
            return WriteError(f"cannot store results: {self.parts} is not a directory; move it aside and add "
                              "--resume to measure the rest")
        reason = e.strerror if e.strerror else str(e).removeprefix(f"cannot write {path}: ")
        return WriteError(f"cannot write {path}: {reason}; the rows stored before are safe in {self.parts}, "
                          "add --resume to continue once this is fixed")

    def read(self, damaged: str = "raise") -> pd.DataFrame:
        return read_results(self.run_dir, damaged=damaged)

    def consolidate(self) -> Path:
        parts = self.run.part_files()
        df = self.read()
        try:
            write_results(df, self.run.results)
        except OSError as e:
            raise WriteError(f"cannot write {self.run.results}: {e.strerror or e}; the rows are safe in "
                             f"{self.parts}") from None
        # Only the parts read above go, and only after the whole file is in place: a kill in
        # between leaves duplicates that read_results drops.
        for p in parts:
            p.unlink(missing_ok=True)
        return self.run.results

    def quarantine_damaged(self, warn: Callable[[str], None] | None = None) -> list[Path]:
        """Move every part that cannot be read, or holds another run's rows, into quarantine/,
        and a results.parquet that cannot be read too: their samples count as not measured, so
        `--resume` measures them again, and only them."""
        moved = []
        expected = self.run.plan().get("run_id")
        files = self.run.part_files()
        if self.run.results.exists() or self.run.results.is_symlink():
            files = [self.run.results, *files]
        for part in files:
            try:
                _check_run(read_file(part), part, expected)
            except DamagedFile as e:
                self.run.quarantine.mkdir(parents=True, exist_ok=True)
                target = self.run.quarantine / part.name
                if target.exists() or target.is_symlink():
                    target = target.with_name(f"{RunDir.stamp()}-{secrets.token_hex(2)}-{part.name}")
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


def storable_table(rows: list[dict[str, Any]]) -> pa.Table:
    """The rows as a table of the schema. A row with a value its column cannot hold (a count past
    int32, a number where text belongs) is refused alone: it is stored as an error row naming the
    column, with that value null and the rest kept, so one bad value never costs the others."""
    normal = [normalise(r) for r in rows]  # unknown columns and statuses are bugs: they raise
    try:
        return pa.Table.from_pylist(normal, schema=SCHEMA)
    except (pa.ArrowException, OverflowError, TypeError, ValueError):
        return pa.Table.from_pylist([_storable(r) for r in normal], schema=SCHEMA)


def _storable(row: dict[str, Any]) -> dict[str, Any]:
    try:
        pa.Table.from_pylist([row], schema=SCHEMA)
        return row
    except (pa.ArrowException, OverflowError, TypeError, ValueError):
        pass
    bad = []
    for field in SCHEMA:
        try:
            pa.array([row[field.name]], type=field.type)
        except (pa.ArrowException, OverflowError, TypeError, ValueError):
            bad.append(field)
    shown = "; ".join(f"{f.name} = {_short(row[f.name])} does not fit {f.type}" for f in bad)
    earlier = row.get("error") if isinstance(row.get("error"), str) and row.get("error") else ""
    out = {**row, **{f.name: None for f in bad}, "status": "error"}
    out["error"] = f"row refused by the results store: {shown}; stored as null" + (f" ({earlier})" if earlier else "")
    print(f"warning: {out['error']} (sample {out.get('sample_id')!r})", file=sys.stderr)
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


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
    try:
        check_regular(path)  # a FIFO would block the reader for ever; a device never ends
    except NotReadable as e:
        raise DamagedFile(f"{e}; not a results file") from None
    try:
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
    except UnicodeDecodeError:
        # A flipped bit in a column name or in the metadata leaves bytes that are not UTF-8.
        raise DamagedFile(f"{path}: damaged (a column name or its metadata is no longer valid UTF-8)") from None
    except (pa.ArrowException, KeyError) as e:  # a column of the wrong type or shape after a flip
        raise DamagedFile(f"{path}: damaged or not a results file ({_first_line(e)})") from None


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


def _check_run(table: pa.Table, path: Path, expected: str | None) -> pa.Table:
    """`table`, unless it is a part holding rows of a run other than `expected`."""
    if expected is None or path.name == RESULTS:
        return table
    others = sorted({r for r in table.column("run_id").to_pylist() if r is not None and r != expected})
    if others:
        raise ForeignPart(f"{path}: holds rows of run {others[0]!r}, not of this run {expected!r} (copied in from "
                          "another run?); left out: move it back to its own run's parts/")
    return table


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
        # A dangling symlink or a symlink loop is listed too, so reading it names the problem.
        whole = run.results.exists() or run.results.is_symlink()
        return ([run.results] if whole else []) + run.part_files()
    if path.exists() or path.is_symlink():
        return [path]
    raise FileNotFoundError(f"no results at {path}")


def read_results(*paths: Path, damaged: str = "raise", require_rows: bool = False) -> pd.DataFrame:
    """Rows from run directories or parquet files, concatenated, duplicates of a key dropped.

    `damaged="raise"` stops at the first unreadable file with a DamagedFile naming it;
    `"skip"` prints a one-line warning per damaged file and reads the rest. A part holding
    another run's rows (ForeignPart) counts as damaged. With `require_rows`, a path that gives
    no readable row at all is NoResults, naming the path and what was found there.
    """
    return read_results_info(*paths, damaged=damaged, require_rows=require_rows)[0]


def read_results_info(*paths: Path, damaged: str = "raise", dedupe: bool = True,
                      require_rows: bool = False) -> tuple[pd.DataFrame, tuple[FileInfo, ...]]:
    """read_results, and a FileInfo per file read (which are unsealed, which versions they held).
    `dedupe=False` keeps every row, for `merge` to find and name duplicates itself."""
    tables, infos = [], []
    for path in map(Path, paths):
        files = result_files(path)
        expected = RunDir(path).plan().get("run_id") if path.is_dir() else None
        found = 0
        skipped: list[str] = []
        for f in files:
            try:
                table, info = read_file_info(f)
                table = _check_run(table, f, expected)
            except DamagedFile as e:
                if damaged != "skip":
                    raise
                print(f"warning: skipped {e}", file=sys.stderr)
                skipped.append(f.name)
                continue
            tables.append(table)
            infos.append(info)
            found += len(table)
        if require_rows and not found:
            raise NoResults(_nothing_at(path, files, skipped))
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


def _nothing_at(path: Path, files: list[Path], skipped: list[str]) -> str:
    if skipped:
        what = f"every results file is damaged ({', '.join(skipped[:3])}{', ...' if len(skipped) > 3 else ''})"
    elif files:
        what = "its results files hold no rows"
    elif path.is_dir():
        what = f"no {RESULTS} and no parts"
    else:
        what = "no rows"
    hint = ""
    if path.is_dir() and RunDir(path).plan():
        hint = f"; `vlm-harness run --resume --run-id {RunDir(path).run_id}` with the run's models and suites " \
               "measures it again"
    return f"no readable result rows at {path}: {what}{hint}"


__all__ = ["RESULTS", "PARTS", "DamagedFile", "FileInfo", "ForeignPart", "NoResults", "ResultsStore", "SchemaMismatch",
           "read_file", "read_file_info", "read_results", "read_results_info", "result_files", "storable_table",
           "unsealed", "write_results", "write_table"]
