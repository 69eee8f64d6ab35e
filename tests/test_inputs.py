"""Malformed inputs: one line naming the file, the field and the fix; exit 2; the rest goes on."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.models import ModelError, model_files, resolve
from harness.suites import SuiteError, find_suite, load_suite

REPO = Path(__file__).resolve().parent.parent

SUITE = 'name = "{name}"\nkind = "synthetic"\nsource = "shapes"\nmetric = "exact_match"\nsamples = 3\n'


@pytest.mark.parametrize(("body", "says"), [
    (b'name = "x"\nkind = "synthetic"\nsource = "shapes"\nmetric = "exact_match"\nprompt = "\xff{question}"\n',
     "not UTF-8 text"),
    (SUITE.format(name="x").encode() + b'prompt = "{question} {colour}"\n', "field 'prompt' is not a valid template"),
    (SUITE.format(name="x").encode() + b'prompt = "{question} {"\n', "field 'prompt' is not a valid template"),
    (SUITE.format(name="x").encode() + b'prompt = "{question}"\nseed = -1\n', "field 'seed' is -1; allowed 0.."),
    (SUITE.format(name="x").encode() + b'prompt = "{question}"\ntags = "default"\n', "field 'tags' must be"),
    (SUITE.format(name="x").encode() + b'prompt = "{question}"\nbenchmark = ["nope"]\n', "field 'benchmark' names"),
])
def test_a_malformed_suite_file_is_one_line_naming_file_and_field(tmp_path, body, says):
    path = tmp_path / "bad.toml"
    path.write_bytes(body)
    with pytest.raises(SuiteError) as e:
        find_suite(str(path))
    assert says in str(e.value) and str(path) in str(e.value) and "\n" not in str(e.value)


def test_include_takes_another_suite_and_overrides_fields(tmp_path):
    (tmp_path / "base.toml").write_text(SUITE.format(name="base") + 'prompt = "{question}"\ntags = ["default"]\n'
                                        '[params]\nsize = 96\ntasks = ["colour"]\n')
    (tmp_path / "child.toml").write_text('include = "base"\nname = "child"\nsamples = 2\n[params]\nsize = 64\n')
    child = find_suite(str(tmp_path / "child.toml"))
    assert (child.name, child.samples, child.source) == ("child", 2, "shapes")
    assert child.params == {"size": 64, "tasks": ["colour"]} and child.tags == ()
    (tmp_path / "loop.toml").write_text('include = "loop"\n')
    with pytest.raises(SuiteError, match="include cycle"):
        find_suite(str(tmp_path / "loop.toml"))


def test_limit_is_applied_before_samples_are_generated(tmp_path):
    path = tmp_path / "big.toml"
    path.write_text(SUITE.format(name="big").replace("samples = 3", "samples = 100000") + 'prompt = "{question}"\n')
    suite = load_suite(str(path), limit=2)  # seconds for 100,000 images; this is instant
    assert len(suite.samples) == 2
    assert [s.id for s in suite.samples] == [s.id for s in load_suite(str(path), limit=3).samples[:2]]


def test_a_bad_model_file_affects_only_that_model(tmp_path, monkeypatch):
    shutil.copytree(REPO / "models", tmp_path / "models")
    (tmp_path / "models" / "broken.toml").write_bytes(b'source = "x"\ntemperature = 1e300\n')
    (tmp_path / "models" / "latin1.toml").write_bytes(b'source = "x"\ndescription = "caf\xe9"\n')
    monkeypatch.setenv("VLM_HARNESS_ROOT", str(tmp_path))
    specs, broken = model_files()
    assert set(broken) == {"broken", "latin1"}
    assert "field 'temperature' is 1e+300; allowed 0.0..5.0" in str(broken["broken"])
    assert "not UTF-8" in str(broken["latin1"])
    assert resolve("fixture-qwen2_5_vl").name == "fixture-qwen2_5_vl"  # the rest still resolve
    assert resolve("reference-shapes").source.endswith("shapes")
    with pytest.raises(ModelError, match="broken.toml"):
        resolve("broken")


@pytest.mark.parametrize("args", [["--limit", "0"], ["--limit", "-3"], ["--repeats", "0"], ["--max-tokens", str(10**12)],
                                  ["--timeout", "0"], ["--warmup", "-1"]])
def test_absurd_counts_are_refused_before_anything_runs(tmp_path, args):
    r = subprocess.run([sys.executable, "-m", "harness", "run", "-m", "fixture-qwen2_5_vl", "--out", str(tmp_path), *args],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("vlm-harness run: error: argument")
    assert not any(tmp_path.iterdir())


def test_a_bad_suite_beside_good_ones_is_exit_2_after_the_rest_ran(fixtures_root, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"\xff\xfe not toml")
    r = subprocess.run([sys.executable, "-m", "harness", "run", "-m", "fixture-qwen2_5_vl", "-s", str(bad), "-s",
                        "synthetic-shapes", "--limit", "2", "--out", str(tmp_path / "runs"), "--no-progress",
                        "--fixtures", str(fixtures_root)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    assert "rows:    1 error, 2 ok" in r.stdout
    errors = [ln for ln in r.stderr.splitlines() if "error" in ln]
    assert len(errors) == 1 and str(bad) in errors[0] and "not UTF-8" in errors[0]


def test_a_bare_string_is_one_answer_and_a_missing_answer_is_refused(tmp_path, monkeypatch):
    # One rule wherever a sample or a stored row is built (harness.core.records.text_items): a
    # bare string is one item, never its characters; None or NaN inside the list is refused.
    from harness.core.records import Sample
    from harness.core.schema import to_table
    from harness.judge.scoring import sample_of, score_row
    from harness.metrics import score
    from harness.suites import SOURCES, RawSample, SuiteDef, materialise

    s = Sample("s", "1", "photo.png", "q", "yes", "c", "exact_match", 8, keywords="cat")
    assert s.answers == ("yes",) and s.images == ("photo.png",) and s.keywords == ("cat",)
    assert score("y", s) == 0.0 and score("yes", s) == 1.0  # "y" matched the answer's first letter
    assert Sample("s", "1", (), "q", [3, "three"], "c", "exact_match", 8).answers == ("3", "three")
    for bad in ([None], ["yes", float("nan")]):
        with pytest.raises(ValueError, match=r"sample '1': answers\[\d\] is (None|NaN)") as e:
            Sample("s", "1", (), "q", bad, "c", "vqa_accuracy", 8)
        assert "\n" not in str(e.value)

    # A hand-built row: stored whole, scored whole; a missing answer is the row's scoring error,
    # not "None" normalised to "0" and scored right.
    row = {"status": "ok", "metric": "exact_match", "answers": "yes", "output": "y"}
    assert to_table([{"status": "ok", "answers": "yes"}]).column("answers").to_pylist() == [["yes"]]
    assert sample_of(row).answers == ("yes",) and score_row(row)["score"] == 0.0
    got = score_row({"status": "ok", "metric": "vqa_accuracy", "answers": [None], "output": "0"})
    assert got["score"] is None and "answers[0] is None" in got["error"]

    # A suite source that hands back a bare string: one answer, hashed as one.
    SOURCES.names()
    monkeypatch.setitem(SOURCES._items, "bare-answers", lambda defn, workdir: [
        RawSample("a", (), "q", "yes", "c"), RawSample("b", (), "q", ["no", None], "c")][: defn.samples])
    defn = SuiteDef("bare", "synthetic", "bare-answers", "exact_match", "{question}", 8, 1, 0)
    assert materialise(defn, tmp_path / "one").samples[0].answers == ("yes",)
    with pytest.raises(SuiteError, match=r"sample 'b': answers\[1\] is None"):
        materialise(SuiteDef("bare", "synthetic", "bare-answers", "exact_match", "{question}", 8, 2, 0),
                    tmp_path / "two")
