"""The run directory has one owner: a locked writer, --resume of the interrupted run, damaged
files detected, named and survived."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from harness.results.rundir import RunDir, RunLocked, latest_unfinished
from harness.results.store import DamagedFile, ResultsStore, read_results
from harness.run.tester import VLMTester

REPO = Path(__file__).resolve().parent.parent


def _rows(n: int, run_id: str = "r") -> list[dict]:
    return [{"run_id": run_id, "model": "m", "suite": "s", "suite_hash": "h", "sample_id": f"q{i}", "repeat": 0,
             "status": "ok", "score": float(i % 2), "output": f"answer {i}"} for i in range(n)]


def test_a_second_writer_is_refused_with_one_line(tmp_path):
    run = RunDir(tmp_path / "r1")
    with run.lock():
        with pytest.raises(RunLocked, match="is being written by process"):
            with RunDir(tmp_path / "r1").lock():
                pass
    with run.lock():  # released: the next writer gets it
        pass


def test_two_writers_never_share_a_part_file(tmp_path):
    a, b = ResultsStore(tmp_path), ResultsStore(tmp_path)
    a.append(_rows(3)[:1])
    b.append(_rows(3)[1:2])
    a.append(_rows(3)[2:])
    assert len(RunDir(tmp_path).part_files()) == 3
    assert sorted(read_results(tmp_path)["sample_id"]) == ["q0", "q1", "q2"]


def test_resume_picks_the_newest_unfinished_run_of_the_same_command(tmp_path):
    for run_id, finished, models in (("20260101-000000-aaaa", None, ["m"]), ("20260102-000000-bbbb", "x", ["m"]),
                                     ("20260103-000000-cccc", None, ["other"])):
        RunDir(tmp_path / run_id).write_plan({"command": "run", "models": models, "suites": ["s"],
                                              **({"finished_at": finished} if finished else {})})
    assert latest_unfinished(tmp_path, models=["m"], suites=["s"]).run_id == "20260101-000000-aaaa"
    assert VLMTester(tmp_path, resume=True).select_run(["m"], ["s"]).name == "20260101-000000-aaaa"
    with pytest.raises(FileNotFoundError, match="no unfinished run"):
        VLMTester(tmp_path, resume=True).select_run(["m"], ["other-suite"])


def test_a_second_run_with_the_same_run_id_refuses_while_the_first_keeps_every_row(fixtures_root, tmp_path):
    cmd = [sys.executable, "-m", "harness", "run", "-m", "fixture-qwen2_5_vl", "-s", "synthetic-shapes", "--limit", "6",
           "--out", str(tmp_path), "--run-id", "same", "--no-progress", "--fixtures", str(fixtures_root)]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = tmp_path / "same" / ".lock"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (lock.exists() and lock.read_text().startswith("process")):
        time.sleep(0.05)
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.returncode == 2
    errors = [ln for ln in second.stderr.splitlines() if "error" in ln or "Traceback" in ln]
    assert len(errors) == 1 and "is being written by process" in errors[0]
    df = read_results(tmp_path / "same")
    assert (df["status"] == "ok").sum() == 6


def test_a_damaged_part_is_named_skipped_quarantined_and_measured_again(fixtures_root, tmp_path, capsys):
    tester = VLMTester(tmp_path, run_id="d", limit=3, progress=False, fixtures_root=fixtures_root)
    full = tester.run(["fixture-qwen2_5_vl"], ["synthetic-shapes"])
    run = RunDir(tmp_path / "d")
    # Turn the finished run back into an interrupted one: one part per row, one of them cut short.
    store = ResultsStore(run.path)
    for row in full.to_dict("records"):
        store.append([row])
    run.results.unlink()
    run.update_plan(finished_at=None)
    parts = run.part_files()
    parts[1].write_bytes(parts[1].read_bytes()[:300])
    with pytest.raises(DamagedFile, match=parts[1].name):
        read_results(run.path)
    assert len(read_results(run.path, damaged="skip")) == 2
    assert parts[1].name in capsys.readouterr().err
    again = VLMTester(tmp_path, resume=True, limit=3, progress=False, fixtures_root=fixtures_root).run(
        ["fixture-qwen2_5_vl"], ["synthetic-shapes"])
    assert (again["status"] == "ok").sum() == 3
    assert [p.name for p in run.quarantine.iterdir()] == [parts[1].name]
    kept = again.set_index("sample_id")["recorded_at"]
    originals = full.set_index("sample_id")["recorded_at"]
    lost = full["sample_id"].iloc[1]
    assert kept[lost] > originals[lost]  # only the damaged sample was measured again
    assert (kept.drop(lost) == originals.drop(lost)).all()


def test_bit_flips_in_a_results_file_never_pass_unnoticed(tmp_path):
    store = ResultsStore(tmp_path)
    store.append(_rows(40))
    path = store.consolidate()
    clean = read_results(tmp_path)
    data = bytearray(path.read_bytes())
    rng = random.Random(0)
    silent = detected = 0
    for _ in range(300):
        flipped = bytearray(data)
        bit = rng.randrange(len(flipped) * 8)
        flipped[bit // 8] ^= 1 << (bit % 8)
        path.write_bytes(bytes(flipped))
        try:
            got = read_results(tmp_path)
        except (DamagedFile, ValueError):
            detected += 1
            continue
        cols = ["sample_id", "status", "score", "output"]
        if len(got) != len(clean) or not got[cols].equals(clean[cols]):
            silent += 1
    assert silent == 0, f"{silent} flips changed rows without an error ({detected} detected)"


def test_bit_flips_in_a_part_never_pass_unnoticed(tmp_path):
    store = ResultsStore(tmp_path)
    store.append(_rows(3))
    (part,) = RunDir(tmp_path).part_files()
    data = part.read_bytes()
    rng = random.Random(1)
    for _ in range(200):
        flipped = bytearray(data)
        bit = rng.randrange(len(flipped) * 8)
        flipped[bit // 8] ^= 1 << (bit % 8)
        part.write_bytes(bytes(flipped))
        with pytest.raises(DamagedFile, match=part.name):
            read_results(tmp_path)
    part.write_bytes(data)
    assert sorted(read_results(tmp_path)["sample_id"]) == ["q0", "q1", "q2"]


def test_parquet_parts_of_an_interrupted_older_run_are_still_read_and_continued(tmp_path):
    from harness.core.schema import to_table
    from harness.results.store import write_table

    run = RunDir(tmp_path)
    write_table(to_table(_rows(2)), run.parts / "part-0000000-abcdef.parquet")  # as older versions wrote
    store = ResultsStore(tmp_path)
    store.append(_rows(3)[2:])
    names = [p.name for p in run.part_files()]
    assert names[0] == "part-0000000-abcdef.parquet" and names[1].startswith("part-0000001-")
    assert sorted(read_results(tmp_path)["sample_id"]) == ["q0", "q1", "q2"]
    store.consolidate()
    assert run.part_files() == [] and len(read_results(tmp_path)) == 3


def test_results_files_are_readable_like_their_neighbours(tmp_path):
    store = ResultsStore(tmp_path)
    store.append(_rows(2))
    path = store.consolidate()
    assert path.stat().st_mode & 0o777 == 0o644
    plan = tmp_path / "plan-check"
    RunDir(plan).write_plan({"a": 1})
    assert json.loads((plan / "run.json").read_text()) == {"a": 1}
    assert pd.read_parquet(path).shape[0] == 2


def test_sigterm_stops_the_run_and_its_workers_and_keeps_the_rows(fixtures_root, tmp_path):
    """A CI runner cancels with SIGTERM: the run stops at once, as on Ctrl-C, its worker processes
    with it (they used to go on answering until their next message found no reader), and the rows
    finished so far stay for --resume."""
    import signal

    import psutil

    cmd = [sys.executable, "-m", "harness", "run", "-m", "fixture-qwen2_5_vl", "-s", "synthetic-shapes", "--limit",
           "24", "--out", str(tmp_path), "--run-id", "t", "--no-progress", "--fixtures", str(fixtures_root)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    parts = tmp_path / "t" / "parts"
    deadline = time.monotonic() + 120
    while not (parts.exists() and any(parts.iterdir())):  # a row is stored: a worker is answering
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-1500:] if proc.poll() else ""
        time.sleep(0.05)
    workers = psutil.Process(proc.pid).children(recursive=True)
    assert workers  # the measuring process (and multiprocessing's resource tracker)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-1500:]
    assert "interrupted" in err and "Traceback" not in err
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, [p.cmdline()[-2:] for p in alive]
    df = read_results(tmp_path / "t")
    assert 1 <= (df["status"] == "ok").sum() < 24
    resumed = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-1500:]
    assert (read_results(tmp_path / "t")["status"] == "ok").sum() == 24
