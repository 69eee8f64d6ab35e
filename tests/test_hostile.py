"""Hostile servers, files and filesystems: each one a clean line naming what and why, nothing
finished lost, nothing read from outside, nothing waited on for ever.

Runs here need no MLX model: the model is a small real HTTP server on 127.0.0.1 speaking the
OpenAI protocol (adapter openai), so a run, a resume or a kill costs milliseconds per sample.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pytest
from servers import OpenAIHandler

from harness.adapters.openai import OpenAIAdapter, ServerError
from harness.cli import main
from harness.core.records import Sample
from harness.models import ModelSpec
from harness.results.rundir import RunDir
from harness.results.store import DamagedFile, ResultsStore, read_file, read_results
from harness.tester import VLMTester

REPO = Path(__file__).resolve().parent.parent
IMAGE = REPO / "datasets/natural/images/chelsea.png"


# -- a server that misbehaves on request -----------------------------------------------------------
def _sse(payload: dict | str) -> bytes:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {text}\n\n".encode()


def _delta(text: str | None = None, finish: object = None) -> dict:
    return {"choices": [{"index": 0, "delta": {"content": text} if text else {}, "finish_reason": finish}]}


class _Handler(OpenAIHandler):
    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        srv = self.server
        with srv.lock:
            srv.requests += 1
            n = srv.requests
        if srv.on_request is not None:
            srv.on_request(n)
        mode = srv.mode
        if mode == "trickle-headers":  # the status line a byte at a time, for ever
            with contextlib.suppress(OSError):
                for _ in range(100_000):
                    self.wfile.write(b"H")
                    self.wfile.flush()
                    time.sleep(0.05)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        try:
            if mode == "endless-line":  # one line without a newline, fast: the line cap ends it
                self.wfile.write(b"data: ")
                for _ in range(100_000):
                    self.wfile.write(b"x" * 65536)
            elif mode == "slow-line":  # one line without a newline, 2 kB/s: only the deadline ends it
                self.wfile.write(b"data: ")
                for _ in range(100_000):
                    self.wfile.write(b"x" * 100)
                    self.wfile.flush()
                    time.sleep(0.05)
            elif mode == "keep-alive":  # comments for ever, never an answer
                for _ in range(100_000):
                    self.wfile.write(b": ping\n\n")
                    self.wfile.flush()
                    time.sleep(0.05)
            else:
                usage = {"prompt_tokens": 5, "completion_tokens": 2}
                finish: object = "stop"
                if mode == "huge-usage":
                    usage = {"prompt_tokens": 5, "completion_tokens": 1099511627776}
                elif mode == "int-finish":
                    finish = 7
                tail = _sse({"choices": [], "usage": usage})
                if mode == "nan-usage":  # Python's json writes NaN, and reads it back
                    tail = _sse('{"choices": [], "usage": {"prompt_tokens": NaN, "completion_tokens": NaN}}')
                self.wfile.write(_sse(_delta("a")) + _sse(_delta("b")) + _sse(_delta(None, finish)) + tail
                                 + b"data: [DONE]\n\n")
        except OSError:
            pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.block_on_close = False  # a handler still trickling to a client that left never holds up teardown
    srv.mode, srv.requests, srv.lock, srv.on_request = "ok", 0, threading.Lock(), None
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _url(srv) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}/v1"


def _adapter(srv, timeout_s: float = 5.0) -> OpenAIAdapter:
    spec = ModelSpec(name="served", source="m", adapter="openai", options={"base_url": _url(srv), "timeout_s": timeout_s})
    return OpenAIAdapter(spec, "m")


def _sample() -> Sample:
    return Sample("s", "x", (str(IMAGE),), "What animal is this?", ("cat",), "object", "exact_match", 8)


def _model_file(tmp_path: Path, srv, name: str = "served") -> str:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'name = "{name}"\nsource = "m"\nadapter = "openai"\nbase_url = "{_url(srv)}"\ntimeout_s = 10\n')
    return str(path)


def _run_args(tmp_path: Path, srv, *extra: str, limit: int = 3) -> list[str]:
    # --no-cache: every sample goes to the server, whose requests the tests count and misbehave on.
    return ["run", "-m", _model_file(tmp_path, srv), "-s", "synthetic-shapes", "--limit", str(limit), "--warmup", "0",
            "--no-progress", "--no-cache", "--out", str(tmp_path / "runs"), *extra]


def _one_clean_line(err: str, *needles: str) -> None:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("vlm-harness")]
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], (n, lines[0])


# -- servers -----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode, column, note", [
    ("huge-usage", "server_completion_tokens", "completion_tokens 1099511627776 is not a whole number"),
    ("int-finish", "finish_reason", "finish_reason 7 is not text"),
    ("nan-usage", "server_prompt_tokens", "prompt_tokens nan is not a whole number"),
])
def test_what_a_server_says_is_checked_and_the_answer_kept(server, mode, column, note):
    server.mode = mode
    m = _adapter(server).generate(_sample(), 8)
    assert m.text == "ab" and m.generated_tokens == 2  # the client's own count stands in
    assert getattr(m, column) in (None, "")
    notes = json.loads(m.preprocessing)["server_values"]
    assert any(note in n and "stored as null" in n for n in notes), notes


def test_a_server_count_past_int32_costs_no_row_of_the_run(server, tmp_path):
    server.mode = "huge-usage"
    df = VLMTester(tmp_path / "runs", limit=3, warmup=0, progress=False, cache=False).run(
        [_model_file(tmp_path, server)], ["synthetic-shapes"])
    assert len(df) == 3 and (df["status"] == "ok").all() and (df["output"] == "ab").all()
    assert df["server_completion_tokens"].isna().all()
    assert all("completion_tokens" in json.loads(p)["server_values"][0] for p in df["preprocessing"])


def test_the_store_refuses_one_bad_row_never_the_run(tmp_path):
    store = ResultsStore(tmp_path / "run")
    good = {"run_id": "r", "model": "m", "suite": "s", "suite_hash": "h", "repeat": 0, "status": "ok", "output": "ok"}
    store.append([{**good, "sample_id": "a"},
                  {**good, "sample_id": "b", "generated_tokens": 1099511627776, "finish_reason": 7},
                  {**good, "sample_id": "c"}])
    df = read_results(tmp_path / "run").set_index("sample_id")
    assert list(df["status"]) == ["ok", "error", "ok"]
    assert df.loc["b", "output"] == "ok"  # what fitted is kept
    assert "generated_tokens = 1099511627776 does not fit int32" in df.loc["b", "error"]
    assert "finish_reason = 7 does not fit string" in df.loc["b", "error"]


@pytest.mark.parametrize("mode, message", [
    ("endless-line", "over 1,000,000 bytes"),
    ("slow-line", r"took longer than 1 s \(timeout_s\) in all"),
    ("keep-alive", r"took longer than 1 s \(timeout_s\) in all"),
    ("trickle-headers", r"longer than 1 s|stalled for 1 s"),
])
def test_no_server_outlives_timeout_s(server, mode, message):
    t0 = time.monotonic()
    server.mode = mode
    with pytest.raises(ServerError, match=message):
        _adapter(server, timeout_s=1.0).generate(_sample(), 8)
    # One-sided and generous (a busy machine): the old client took ~40 s per request here.
    assert time.monotonic() - t0 < 4


# -- runs and files ----------------------------------------------------------------------------
def _rows(n: int, run_id: str = "r", start: int = 0) -> list[dict]:
    return [{"run_id": run_id, "model": "m", "suite": "s", "suite_hash": "h", "sample_id": f"q{i}", "repeat": 0,
             "status": "ok", "output": f"answer {i}"} for i in range(start, start + n)]


def test_a_run_of_the_first_release_with_its_part_names_is_resumed(tmp_path):
    from harness.core.schema import to_table
    from harness.results.store import write_table

    run = RunDir(tmp_path / "old")
    run.write_plan({"run_id": "r", "command": "run"})
    for i in range(2):  # part-NNNNNNN.parquet, as the first release named them
        write_table(to_table(_rows(1, start=i)), run.parts / f"part-{i:07d}.parquet")
    store = ResultsStore(run.path)
    store.append(_rows(1, start=2))
    assert [p.name[:12] for p in run.part_files()] == ["part-0000000", "part-0000001", "part-0000002"]
    assert sorted(read_results(run.path)["sample_id"]) == ["q0", "q1", "q2"]


def test_a_finished_runs_damaged_results_are_rebuilt_from_intact_parts(server, tmp_path, capsys):
    assert main(_run_args(tmp_path, server, "--run-id", "x")) == 0
    run = RunDir(tmp_path / "runs" / "x")
    whole = read_file(run.results)
    ResultsStore(run.path).append(whole.slice(0, 2).to_pylist())  # parts a later kill left behind
    run.results.write_bytes(run.results.read_bytes()[:-40] + b"\0" * 40)  # damaged
    before = server.requests
    capsys.readouterr()
    assert main(_run_args(tmp_path, server, "--run-id", "x", "--resume")) == 0
    err = capsys.readouterr().err
    assert "2 row(s) rebuilt from its intact parts" in err and "quarantine" in err
    assert server.requests - before == 1  # only the sample the parts lacked
    assert len(read_results(run.path)) == 3


def test_a_missing_results_file_is_measured_again_not_an_empty_report(server, tmp_path, capsys):
    assert main(_run_args(tmp_path, server, "--run-id", "x")) == 0
    run = RunDir(tmp_path / "runs" / "x")
    run.results.unlink()
    capsys.readouterr()
    assert main(["report", str(run.path), "-o", str(tmp_path / "r.html")]) == 2
    _one_clean_line(capsys.readouterr().err, "no readable result rows", "no results.parquet", "--resume --run-id x")
    os.symlink(run.results, run.results)  # a symlink loop
    assert main(["report", str(run.path), "-o", str(tmp_path / "r.html")]) == 2
    _one_clean_line(capsys.readouterr().err, "results.parquet", "symbolic links")
    run.results.unlink()
    before = server.requests
    assert main(_run_args(tmp_path, server, "--run-id", "x", "--resume")) == 0
    assert "is missing and no parts remain" in capsys.readouterr().err
    assert server.requests - before == 3 and len(read_results(run.path)) == 3


def test_a_bit_flip_in_a_column_name_is_one_line_from_report_and_rescore(tmp_path, capsys):
    store = ResultsStore(tmp_path / "run")
    store.append(_rows(3))
    path = store.consolidate()
    data = path.read_bytes()
    clean = read_results(path)

    def read_ok(p: Path) -> bool:
        try:
            return read_results(p).equals(clean)
        except DamagedFile:
            return False

    flips = 0
    for m in re.finditer(rb"sample_id|output", data):
        for at in range(m.start(), m.end()):
            for bit in (5, 7):  # a case flip keeps UTF-8; the top bit breaks it
                flipped = bytearray(data)
                flipped[at] ^= 1 << bit
                path.write_bytes(bytes(flipped))
                if read_ok(path):  # a flip in a copy of the name nothing reads: the rows are unchanged
                    continue
                for argv in (["report", str(path.parent), "-o", str(tmp_path / "r.html")], ["rescore", str(path.parent)]):
                    assert main(argv) == 2
                    err = capsys.readouterr().err
                    _one_clean_line(err, str(path.parent))
                    assert f"{path}: damaged" in err
                flips += 1
    assert flips > 20


def _finished_run(root: Path, run_id: str, rows: list[dict]) -> Path:
    run = RunDir(root / run_id)
    run.write_plan({"run_id": run_id, "command": "run", "finished_at": "2026-01-01T00:00:00+00:00"})
    store = ResultsStore(run.path)
    store.append(rows)
    store.consolidate()
    return run.path


def _timed_rows(run_id: str) -> list[dict]:
    return [{**r, "decode_tps": 100.0 + i, "ttft_s": 0.1, "wall_s": 1.0} for i, r in enumerate(_rows(8, run_id))]


def test_the_gate_refuses_a_half_written_run(tmp_path, capsys):
    base = _finished_run(tmp_path, "base", _timed_rows("base"))
    half = RunDir(tmp_path / "half")
    half.write_plan({"run_id": "half", "command": "run"})  # killed: no finished_at, parts only
    ResultsStore(half.path).append(_timed_rows("half")[:4])
    assert main(["gate", "--baseline", str(base), "--current", str(half.path), "--ignore-environment"]) == 2
    err = capsys.readouterr().err
    assert "is not finished" in err and "--resume --run-id half" in err and "Traceback" not in err


def test_a_run_directory_deleted_mid_run_ends_non_zero_and_says_so(server, tmp_path, capsys):
    run_dir = tmp_path / "runs" / "x"

    def delete(n: int) -> None:
        # The run writes its parts meanwhile: delete until the directory is really gone.
        while n == 2 and run_dir.exists():
            shutil.rmtree(run_dir, ignore_errors=True)

    server.on_request = delete
    assert main(_run_args(tmp_path, server, "--run-id", "x", limit=4)) == 2
    _one_clean_line(capsys.readouterr().err, str(run_dir), "was deleted while the run was going")
    assert not run_dir.exists()  # never made again, half full


def test_a_part_copied_in_from_another_run_is_named_not_merged(tmp_path, capsys):
    from harness.results.store import ForeignPart

    mine, other = RunDir(tmp_path / "mine"), RunDir(tmp_path / "other")
    for run in (mine, other):
        run.write_plan({"run_id": run.run_id, "command": "run"})
        ResultsStore(run.path).append(_rows(2, run.run_id))
    stray = other.part_files()[0]
    shutil.copy(stray, mine.parts / stray.name)
    with pytest.raises(ForeignPart, match=rf"{stray.name}: holds rows of run 'other', not of this run 'mine'"):
        read_results(mine.path)
    assert set(read_results(mine.path, damaged="skip")["run_id"]) == {"mine"}
    assert "holds rows of run 'other'" in capsys.readouterr().err
    moved = ResultsStore(mine.path).quarantine_damaged()
    assert [p.name for p in moved] == [stray.name]


def test_a_late_kill_before_the_report_is_finished_by_resume(server, tmp_path, capsys):
    assert main(_run_args(tmp_path, server)) == 0
    (run,) = RunDir(tmp_path / "runs").path.iterdir()
    run = RunDir(run)
    # What SIGKILL after the rows and before the report leaves: finished_at, no report.
    (run.path / "report.html").unlink()
    plan = run.plan()
    del plan["reported_at"]
    run.write_plan(plan)
    before = server.requests
    assert main(_run_args(tmp_path, server, "--resume")) == 0
    assert (run.path / "report.html").exists() and server.requests == before
    assert run.plan()["reported_at"]


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory nothing can be written to, even by root: a read-only tmpfs (as root), or
    mode 0555 (as anyone else)."""
    path = tmp_path / "ro"
    path.mkdir()
    if os.geteuid() == 0:
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)]).returncode != 0:
            pytest.skip("cannot mount a read-only tmpfs here")
        yield path
        subprocess.run(["umount", str(path)], check=True)
    else:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB filesystem, to be filled up (tmpfs; root only)."""
    path = tmp_path / "small"
    path.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(path)]).returncode:
        pytest.skip("needs root to mount a small tmpfs")
    yield path
    subprocess.run(["umount", str(path)], check=True)


def test_a_read_only_out_is_one_line_and_exit_2(server, tmp_path, read_only_dir, capsys):
    args = _run_args(tmp_path, server)
    args[args.index("--out") + 1] = str(read_only_dir / "runs")
    assert main(args) == 2
    _one_clean_line(capsys.readouterr().err, str(read_only_dir / "runs"))


def test_a_full_disk_is_one_line_and_the_rows_written_stay(server, tmp_path, small_disk, capsys):
    run = small_disk / "runs" / "x"

    def stored() -> int:
        with contextlib.suppress(Exception):
            return len(read_results(run))
        return 0

    def fill(n: int) -> None:
        if n == 3:
            # The worker asks for the third answer while the parent may still be storing the
            # second: wait until two rows are on disk, so the test knows what must survive.
            deadline = time.monotonic() + 60
            while stored() < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            with contextlib.suppress(OSError), (small_disk / "filler").open("wb") as f:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()

    server.on_request = fill
    args = _run_args(tmp_path, server, "--run-id", "x", limit=5)
    args[args.index("--out") + 1] = str(small_disk / "runs")
    assert main(args) == 2
    _one_clean_line(capsys.readouterr().err, str(small_disk / "runs" / "x"), "No space left on device")
    (small_disk / "filler").unlink()
    assert len(read_results(run)) >= 2  # what was stored before is safe


def test_parts_being_a_file_is_one_line_and_exit_2(server, tmp_path, capsys):
    run = RunDir(tmp_path / "runs" / "x")
    run.write_plan({"run_id": "x", "command": "run"})
    run.parts.write_text("not a directory")
    assert main(_run_args(tmp_path, server, "--run-id", "x", "--resume")) == 2
    _one_clean_line(capsys.readouterr().err, str(run.parts), "is not a directory")


def test_gate_output_that_cannot_be_written_is_one_line_and_exit_2(tmp_path, read_only_dir, capsys):
    base = _finished_run(tmp_path, "base", _timed_rows("base"))
    cur = _finished_run(tmp_path, "cur", _timed_rows("cur"))
    gate = ["gate", "--baseline", str(base), "--current", str(cur), "--ignore-environment"]
    assert main([*gate, "--markdown", str(read_only_dir / "gate.md")]) == 2
    _one_clean_line(capsys.readouterr().err, "--markdown", str(read_only_dir / "gate.md"))
    (tmp_path / "a-dir").mkdir()
    assert main([*gate, "--json", str(tmp_path / "a-dir")]) == 2
    _one_clean_line(capsys.readouterr().err, "--json", str(tmp_path / "a-dir"), "Is a directory")


def _python(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run code in a fresh interpreter, so a read that blocks on a FIFO cannot hang the tests."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_fifos_and_devices_are_refused_never_waited_on(tmp_path):
    fifo = tmp_path / "suite.toml"
    os.mkfifo(fifo)
    run = RunDir(tmp_path / "run")
    ResultsStore(run.path).append(_rows(1))
    os.mkfifo(run.parts / ("part-0000009-abcdef-" + "0" * 16 + ".arrow"))
    code = f"""
from harness.images import ImageError, load_image
from harness.suites import SuiteError, load_suite
from harness.results.store import DamagedFile, read_results
for src in ({str(fifo)!r}, "/dev/zero"):
    try:
        load_image(src)
    except ImageError as e:
        print("image:", e)
try:
    load_suite({str(fifo)!r})
except SuiteError as e:
    print("suite:", e)
try:
    read_results({str(run.path)!r})
except DamagedFile as e:
    print("part:", e)
"""
    out = _python(code).stdout
    assert f"image: image {fifo} cannot be read (is a FIFO (named pipe)" in out
    assert "image: image /dev/zero cannot be read (is a character device" in out
    assert f"suite: cannot read suite file: {fifo} is a FIFO (named pipe)" in out
    assert "part: " in out and "is a FIFO (named pipe); only regular files are read" in out


def test_fifos_in_a_run_end_the_run_in_one_line(server, tmp_path):
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    cmd = [sys.executable, "-m", "harness", *_run_args(tmp_path, server)]
    cmd[cmd.index("synthetic-shapes")] = str(fifo)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "is a FIFO (named pipe)" in proc.stderr


# -- suites, images and URLs ------------------------------------------------------------------
def test_outside_paths_and_refused_urls_fail_their_own_samples_with_the_reason(server, tmp_path, monkeypatch):
    from harness.images import HOSTS_ENV

    monkeypatch.delenv(HOSTS_ENV, raising=False)
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(IMAGE, photos / "cat.png")
    (photos / "questions.csv").write_text(
        "image,question,answers\ncat.png,What animal?,cat\n../../../../etc/passwd,What?,x\n"
        "http://127.0.0.1:9/x.png,What?,x\ncat.png,Which animal?,cat\n")
    suite = tmp_path / "mine.toml"
    suite.write_text('name = "mine"\nkind = "natural"\nsource = "folder"\nmetric = "exact_match"\n'
                     'prompt = "{question}"\n\n[params]\npath = "photos"\n')
    df = VLMTester(tmp_path / "runs", warmup=0, progress=False, cache=False).run([_model_file(tmp_path, server)], [str(suite)])
    by_id = df.set_index("sample_id")
    assert list(by_id["status"]) == ["ok", "error", "error", "ok"]
    assert "etc/passwd' leads outside the dataset folder" in by_id.loc["00001", "error"]
    assert "host '127.0.0.1' is not allowed" in by_id.loc["00002", "error"]
    assert "not-fetched" not in by_id.loc["00002", "error"]
    assert server.requests == 2  # the refused samples never reached the model


@pytest.mark.parametrize("field, value", [
    ("timeout_s", float("inf")), ("timeout_s", float("nan")), ("timeout_s", 1e300), ("timeout_s", 0),
    ("max_images", 10**9), ("max_pixels", 10**15),
])
def test_image_limits_are_bounded(field, value):
    from harness.images import ImageLimits

    with pytest.raises(ValueError, match=field):
        ImageLimits.from_dict({field: value})


@pytest.mark.parametrize("argv, needle", [
    (["--factor", "inf"], "--factor"), (["--factor", "nan"], "--factor"),
    (["--interleave", "HEAD", "HEAD", "--limit", "0"], "--limit"),
])
def test_gate_numbers_are_bounded(argv, needle, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["gate", "--out", str(tmp_path / "i"), *argv])
    assert e.value.code == 2
    assert needle in capsys.readouterr().err


def test_writes_name_the_target_never_a_temporary_file(tmp_path):
    from harness.results.rundir import WriteError, atomic_write_bytes

    (tmp_path / "d").mkdir()
    with pytest.raises(WriteError, match=rf"cannot write {tmp_path / 'd'}: Is a directory"):
        atomic_write_bytes(tmp_path / "d", b"x")


def test_no_rows_at_all_is_no_results(tmp_path):
    from harness.results.store import NoResults

    run = RunDir(tmp_path / "r")
    run.write_plan({"run_id": "r", "command": "run"})
    with pytest.raises(NoResults, match="no results.parquet and no parts"):
        read_results(run.path, require_rows=True)
    assert read_results(run.path).empty  # a fresh run's resume reads nothing, quietly
    ResultsStore(run.path).append(_rows(1))
    (part,) = run.part_files()
    part.write_bytes(b"garbage")
    with pytest.raises(NoResults, match="every results file is damaged"):
        read_results(run.path, damaged="skip", require_rows=True)
    with pytest.raises(DamagedFile):
        read_results(run.path)
    assert pa  # pyarrow is what the store writes with


@pytest.mark.parametrize("url", ["http://[::127.0.0.1]/x.png", "http://[::10.0.0.1]/x.png",
                                 "http://[::ffff:0:127.0.0.1]/x.png", "http://[64:ff9b:1::a00:1]/x.png"])
def test_ipv6_forms_carrying_a_private_ipv4_are_refused(url, monkeypatch):
    from urllib.parse import urlsplit

    from harness.images import PRIVATE_ENV, ImageError, ImageLimits, check_url

    monkeypatch.delenv(PRIVATE_ENV, raising=False)
    limits = ImageLimits(allow_hosts=(urlsplit(url).hostname,))  # the host is allowed; its address is not
    with pytest.raises(ImageError, match="not global"):
        check_url(url, limits)


def _natural(tmp_path: Path, monkeypatch, manifest: str, image: str = "cat.png") -> list:
    """The natural source over a dataset folder of one image and one question."""
    from harness.suites import SuiteDef
    from harness.suites.natural import generate

    root = tmp_path / "datasets" / "evil"
    (root / "images").mkdir(parents=True)
    shutil.copy(IMAGE, root / "images" / "cat.png")
    (root / "manifest.json").write_text(manifest)
    (root / "questions.jsonl").write_text(
        json.dumps({"id": "q1", "image": image, "question": "What?", "answers": ["x"], "kind": "object"}) + "\n"
        + json.dumps({"id": "q2", "image": "cat.png", "question": "Which?", "answers": ["cat"], "kind": "object"}) + "\n")
    monkeypatch.setenv("VLM_HARNESS_ROOT", str(tmp_path))
    defn = SuiteDef(name="evil", kind="natural", source="natural", metric="exact_match", prompt="{question}",
                    max_tokens=4, samples=10, seed=0, params={"dataset": "evil"}, path=tmp_path / "evil.toml")
    return generate(defn, tmp_path / "work")


def test_a_natural_manifest_naming_a_file_outside_the_dataset_fails_that_sample_alone(tmp_path, monkeypatch):
    import hashlib

    cat = hashlib.sha256(IMAGE.read_bytes()).hexdigest()
    manifest = json.dumps({"images": [{"file": "/etc/hostname", "sha256": "0" * 64}, {"file": "cat.png", "sha256": cat}]})
    samples = {r.id: r for r in _natural(tmp_path, monkeypatch, manifest, image="/etc/hostname")}
    assert "'/etc/hostname' (in manifest.json) leads outside" in samples["q1"].problem
    assert samples["q2"].problem == ""  # the other sample runs


@pytest.mark.parametrize("manifest, needle", [
    ('{"images": [', "manifest.json: not valid JSON"), ("[1, 2]", "manifest.json: must be an object"),
    ('{"images": [{"file": 7}]}', "manifest.json: must be an object"), (b"\xff\xfe", "not valid JSON"),
])
def test_a_malformed_natural_manifest_is_one_line_naming_it(tmp_path, monkeypatch, manifest, needle):
    from harness.suites import SuiteError

    with pytest.raises(SuiteError, match=re.escape(needle)):
        _natural(tmp_path, monkeypatch, manifest if isinstance(manifest, str) else manifest.decode("latin-1"))


def _suite_file(path: Path, name: str = "mine", prompt: str = "{question}", include: str | None = None) -> Path:
    head = f"include = {json.dumps(include)}\n" if include else ""
    path.write_text(head + f"name = {json.dumps(name)}\nkind = \"synthetic\"\nsource = \"shapes\"\n"
                    f"metric = \"exact_match\"\nprompt = {json.dumps(prompt)}\nsamples = 1\n")
    return path


@pytest.mark.parametrize("name", ["../../../../x", "a/b\nc", "", "x\u0000y", ".hidden", "a b"])
def test_unsafe_suite_names_are_refused_in_one_line(tmp_path, monkeypatch, name):
    from harness.suites import SuiteError, load_suite

    monkeypatch.setenv("VLM_HARNESS_CACHE", str(tmp_path / "cache"))
    suite = _suite_file(tmp_path / "bad.toml", name=name)
    with pytest.raises(SuiteError, match=r"field 'name' is .*letters, digits") as e:
        load_suite(str(suite))
    assert str(suite) in str(e.value) and "\n" not in str(e.value).replace(repr(name), "")
    assert not (tmp_path / "x").exists() and not (tmp_path / "cache" / "suites").exists()


def test_every_bundled_suite_name_is_allowed():
    from harness.suites import NAME_PATTERN, parse_suite, suite_files

    for path in suite_files().values():
        assert NAME_PATTERN.fullmatch(parse_suite(path).name)


@pytest.mark.parametrize("prompt, needle", [
    ("{question}{question:>1000000000000}", "no format specs"), ("{question} {question!r}", "no format specs"),
    ("{question} {question.__class__}", "no format specs"), ("{question} {0}", "no format specs"),
    ("{question} {", "not a valid template"),
])
def test_prompts_with_format_specs_are_refused_in_one_line(tmp_path, prompt, needle):
    from harness.suites import SuiteError, parse_suite

    with pytest.raises(SuiteError, match=re.escape(needle)):
        parse_suite(_suite_file(tmp_path / "p.toml", prompt=prompt))


def test_a_long_include_chain_is_refused_in_one_line(tmp_path):
    from harness.suites import MAX_INCLUDE_DEPTH, SuiteError, parse_suite

    _suite_file(tmp_path / "s0.toml")
    for i in range(1, 1200):
        (tmp_path / f"s{i}.toml").write_text(f'include = "s{i - 1}.toml"\n')
    with pytest.raises(SuiteError, match=f"chains more than {MAX_INCLUDE_DEPTH} files deep"):
        parse_suite(tmp_path / "s1199.toml")
    assert parse_suite(tmp_path / f"s{MAX_INCLUDE_DEPTH - 1}.toml").name == "mine"  # a short chain still works


def test_a_symlink_loop_in_a_folder_suite_fails_its_own_sample(tmp_path):
    from harness.suites import SuiteDef
    from harness.suites.folder import generate

    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(IMAGE, photos / "cat.png")
    os.symlink(photos / "b.png", photos / "a.png")
    os.symlink(photos / "a.png", photos / "b.png")
    (photos / "questions.csv").write_text("image,question,answers\na.png,What?,x\ncat.png,Which?,cat\n")
    defn = SuiteDef(name="mine", kind="natural", source="folder", metric="exact_match", prompt="{question}",
                    max_tokens=4, samples=10, seed=0, params={"path": str(photos)}, path=tmp_path / "mine.toml")
    first, second = generate(defn, tmp_path / "work")
    assert "'a.png'" in first.problem and "symlink loop" in first.problem
    assert second.problem == ""
