from __future__ import annotations

import subprocess
import sys

import pandas as pd


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=timeout)


def test_suites_lists_each_suite_with_size_and_hash():
    r = cli("suites")
    assert r.returncode == 0, r.stderr
    lines = {line.split()[0]: line.split() for line in r.stdout.splitlines()}
    assert lines["synthetic-shapes"][1:4] == ["synthetic", "24", "samples"]
    assert lines["natural"][1] == "natural" and int(lines["natural"][2]) >= 60
    assert len(lines["natural"][4]) == 16


def test_models_lists_the_fixtures():
    r = cli("models")
    assert r.returncode == 0
    names = [line.split()[0] for line in r.stdout.splitlines()]
    for arch in ("llava_next", "phi3_v", "qwen2_5_vl", "smolvlm"):
        assert f"fixture-{arch}" in names and f"fixture-{arch}-4bit" in names


def test_run_writes_parquet_and_report_and_prints_their_paths(fixtures_root, tmp_path):
    r = cli("run", "-m", "fixture-qwen2_5_vl", "-s", "synthetic-shapes", "--limit", "2", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    paths = dict(line.split(":", 1) for line in r.stdout.splitlines() if line.startswith(("results", "report")))
    df = pd.read_parquet(paths["results"].strip())
    assert len(df) == 2 and (df["status"] == "ok").all()
    assert "fixture-qwen2_5_vl" in open(paths["report"].strip()).read()


def test_bad_names_give_one_line_errors_that_say_what_to_do(fixtures_root, tmp_path):
    r = cli("run", "-m", "fixture-qwen2_5_vl", "-s", "natrual", "--out", str(tmp_path))
    assert r.returncode == 2  # a malformed input
    assert "unknown suite 'natrual'. Did you mean natural?" in r.stderr
    r = cli("run", "-m", str(tmp_path / "no-such-dir"), "-s", "synthetic-shapes", "--out", str(tmp_path))
    assert r.returncode == 2
    assert "checkpoint directory" in r.stderr and "does not exist" in r.stderr
    r = cli("report", str(tmp_path / "nothing-here"))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "no results at" in r.stderr
    r = cli("run", "--resume", "--out", str(tmp_path / "empty"))
    assert r.returncode == 2 and "no unfinished run" in r.stderr


def test_load_cache_both_records_a_cold_and_a_warm_load(fixtures_root, tmp_path):
    r = cli("run", "-m", "fixture-qwen2_5_vl", "-s", "synthetic-shapes", "--limit", "1", "--load-cache", "both",
            "--out", str(tmp_path), "--fixtures", str(fixtures_root), "--no-progress")
    assert r.returncode == 0, r.stderr
    paths = dict(line.split(":", 1) for line in r.stdout.splitlines() if line.startswith("results"))
    row = pd.read_parquet(paths["results"].strip()).iloc[0]
    assert row["load_cache"] in ("cold", "warm") and row["load_warm_s"] > 0 and row["load_s"] > 0
