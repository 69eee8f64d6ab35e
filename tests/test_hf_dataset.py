"""The hf_dataset source on small datasets built here, on disk, in each benchmark's layout."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from harness import metrics
from harness.suites import SuiteError, SuiteUnavailable, load_suite, parse_suite, suites_dir
from harness.suites.hf_dataset import options_from_question

datasets = pytest.importorskip("datasets")
REPO = Path(__file__).resolve().parent.parent


def image(i: int) -> Image.Image:
    return Image.new("RGB", (24 + i, 16), ((40 * i) % 256, 100, 200))


def suite_file(tmp_path: Path, name: str, layout: str, metric: str, dataset: str, *, samples=3, seed=0, extra="") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\nkind = "natural"\nsource = "hf_dataset"\nsamples = {samples}\nseed = {seed}\n'
        f'metric = "{metric}"\nprompt = "{{question}}"\n\n[params]\ndataset = "{dataset}"\nlayout = "{layout}"\n{extra}'
    )
    return path


def features(**cols):
    return datasets.Features({"image": datasets.Image(), **cols})


@pytest.fixture
def textvqa(tmp_path):
    """TextVQA's layout (lmms-lab/textvqa): ten annotator answers, saved with save_to_disk."""
    n = 8
    answers = [["2"] * 3 + ["3"] * 7 if i == 0 else [f"word{i}"] * 10 for i in range(n)]
    ds = datasets.Dataset.from_dict(
        {"question_id": list(range(100, 100 + n)), "question": [f"what does sign {i} say?" for i in range(n)],
         "image": [image(i) for i in range(n)], "answers": answers},
        features=features(question_id=datasets.Value("int64"), question=datasets.Value("string"),
                          answers=datasets.Sequence(datasets.Value("string"))),
    )
    datasets.DatasetDict({"validation": ds}).save_to_disk(str(tmp_path / "tv"))
    return tmp_path


def test_textvqa_layout_samples_score_with_vqa_accuracy(textvqa):
    s = load_suite(str(suite_file(textvqa, "tv", "textvqa", "vqa_accuracy", "./tv", samples=8)))
    assert len(s.samples) == 8
    first = s.samples[0]
    assert first.id == "000000-100" and first.category == "textvqa" and first.metric == "vqa_accuracy"
    assert len(first.answers) == 10
    with Image.open(first.images[0]) as im:
        assert im.format == "PNG" and im.size == (24, 16)
    # Three of ten annotators said "2": min(1, n/3) averaged over the subsets of nine is 0.9.
    assert metrics.score("Two", first) == pytest.approx(0.9)
    assert metrics.score("three", first) == 1.0


def test_the_subset_is_seeded_cached_and_rebuilt_when_the_data_changes(textvqa):
    path = suite_file(textvqa, "tv", "textvqa", "vqa_accuracy", "./tv", samples=3, seed=7)
    a, b = load_suite(str(path)), load_suite(str(path))
    assert [x.id for x in a.samples] == [x.id for x in b.samples] and a.hash == b.hash
    assert len(a.samples) == 3 and [x.id for x in a.samples] == sorted(x.id for x in a.samples)
    other = load_suite(str(suite_file(textvqa, "tv", "textvqa", "vqa_accuracy", "./tv", samples=3, seed=8)))
    assert [x.id for x in other.samples] != [x.id for x in a.samples]
    # Cached: the second build wrote nothing.
    png = Path(a.samples[0].images[0])
    mtime = png.stat().st_mtime_ns
    load_suite(str(path))
    assert png.stat().st_mtime_ns == mtime
    # The same suite file over changed data is a different suite, never the stale cache.
    ds = datasets.load_from_disk(str(textvqa / "tv"))["validation"]
    ds = ds.map(lambda r: {"answers": [a + "x" for a in r["answers"]]})
    datasets.DatasetDict({"validation": ds}).save_to_disk(str(textvqa / "tv2"))
    (textvqa / "tv").rename(textvqa / "tv-old")
    (textvqa / "tv2").rename(textvqa / "tv")
    changed = load_suite(str(path))
    assert changed.hash != a.hash and changed.samples[0].answers[0].endswith("x")


def test_chartqa_layout_from_a_parquet_file_scores_relaxed_accuracy(tmp_path):
    ds = datasets.Dataset.from_dict(
        {"type": ["human_test", "augmented_test"], "question": ["Value of 2019?", "Which is largest?"],
         "answer": ["23.5", "Germany"], "image": [image(0), image(1)]},
        features=features(type=datasets.Value("string"), question=datasets.Value("string"), answer=datasets.Value("string")),
    )
    ds.to_parquet(str(tmp_path / "chartqa.parquet"))
    s = load_suite(str(suite_file(tmp_path, "cq", "chartqa", "relaxed_accuracy", "./chartqa.parquet")))
    by_cat = {x.category: x for x in s.samples}
    assert set(by_cat) == {"human_test", "augmented_test"}
    assert metrics.score("24", by_cat["human_test"]) == 1.0  # within 5 % of 23.5
    assert metrics.score("25", by_cat["human_test"]) == 0.0
    assert metrics.score("germany", by_cat["augmented_test"]) == 1.0


def test_docvqa_layout_scores_anls(tmp_path):
    ds = datasets.Dataset.from_dict(
        {"questionId": [7, 8], "question": ["What is the date?", "Who signed?"],
         "question_types": [["handwritten", "form"], ["layout"]], "image": [image(0), image(1)],
         "answers": [["1 June 1970", "June 1, 1970"], ["Dr. Smith"]]},
        features=features(questionId=datasets.Value("int64"), question=datasets.Value("string"),
                          question_types=datasets.Sequence(datasets.Value("string")),
                          answers=datasets.Sequence(datasets.Value("string"))),
    )
    ds.save_to_disk(str(tmp_path / "doc"))
    s = load_suite(str(suite_file(tmp_path, "dv", "docvqa", "anls", str(tmp_path / "doc"))))
    first = s.samples[0]
    assert first.id == "000000-7" and first.category == "handwritten" and first.metric == "anls"
    assert metrics.score("june 1, 1970", first) == 1.0
    assert metrics.score("1 Jume 1970", first) == pytest.approx(1 - 1 / 11)


def test_mmstar_layout_reads_the_options_and_scores_the_letter(tmp_path):
    q = ("Which object is on the table?\nOptions: A: a red cup, B: a blue book, C: a green lamp, D: nothing")
    ds = datasets.Dataset.from_dict(
        {"index": [0, 1], "question": [q, q.replace("table", "floor")], "image": [image(0), image(1)],
         "answer": ["B", "D"], "category": ["coarse perception", "fine-grained perception"]},
        features=features(index=datasets.Value("int64"), question=datasets.Value("string"),
                          answer=datasets.Value("string"), category=datasets.Value("string")),
    )
    # A directory of parquet shards named by split, as the hub stores them.
    (tmp_path / "mmstar").mkdir()
    ds.to_parquet(str(tmp_path / "mmstar" / "val-00000-of-00001.parquet"))
    # (The library names a "val" shard's split "validation".)
    s = load_suite(str(suite_file(tmp_path, "ms", "mmstar", "multiple_choice", "./mmstar", extra='split = "validation"\n')))
    first = s.samples[0]
    assert first.choices == ("a red cup", "a blue book", "a green lamp", "nothing")
    assert first.category == "coarse perception"
    assert metrics.score("(B)", first) == 1.0
    assert metrics.score("The answer is B", first) == 1.0
    # lmms-eval's MMStar rule reads capital letters only; VLMEvalKit's can_infer also reads
    # the option texts the layout parsed from the question.
    assert metrics.score("The answer is b", first) == 0.0
    assert metrics.score("a blue book", first) == 0.0
    can_infer = replace(first, metric="multiple_choice_can_infer")
    assert metrics.score("a blue book", can_infer) == 1.0
    assert metrics.score("A", first) == 0.0
    assert metrics.score("I am not sure", first) == 0.0


def test_options_from_question():
    assert options_from_question("Q?\nOptions: A: 1, B: 2, C: 3") == ("1", "2", "3")
    assert options_from_question("Q? no options here") == ()
    assert options_from_question("Options: B: 1, C: 2") == ()  # not from A: not trusted


def test_a_row_without_an_answer_is_an_error_naming_dataset_and_row(tmp_path):
    ds = datasets.Dataset.from_dict(
        {"question": ["q0", "q1", "q2"], "answer": ["1", "", "3"], "image": [image(i) for i in range(3)]},
        features=features(question=datasets.Value("string"), answer=datasets.Value("string")),
    )
    ds.save_to_disk(str(tmp_path / "noans"))
    path = suite_file(tmp_path, "na", "chartqa", "relaxed_accuracy", "./noans")
    with pytest.raises(SuiteError, match=r"na\.toml: dataset './noans' split 'test' row 1: no answer in column 'answer'"):
        load_suite(str(path))


def test_an_undecodable_image_becomes_one_error_row_in_a_run(tmp_path, fixtures_root):
    from harness.run.tester import VLMTester

    table = pd.DataFrame({"question": ["What colour?", "What colour?", "What colour?"],
                          "answers": [["blue"] * 10] * 3, "image": [None, None, None]})
    import io

    cells = []
    for i in range(3):
        buf = io.BytesIO()
        image(i).save(buf, format="PNG")
        cells.append({"bytes": buf.getvalue() if i != 1 else b"\x89PNG not really", "path": None})
    table["image"] = cells
    ds = datasets.Dataset.from_pandas(table, features=features(
        question=datasets.Value("string"), answers=datasets.Sequence(datasets.Value("string"))), preserve_index=False)
    ds.save_to_disk(str(tmp_path / "bad"))
    path = suite_file(tmp_path, "bad", "textvqa", "vqa_accuracy", "./bad", extra="split = \"train\"\n")
    s = load_suite(str(path))
    assert Path(s.samples[1].images[0]).name == "000001-row1-undecodable.img"
    df = VLMTester(tmp_path / "runs", progress=False, warmup=0, fixtures_root=fixtures_root).run(["fixture-qwen2_5_vl"], [str(path)])
    by_id = dict(zip(df["sample_id"], df["status"], strict=True))
    assert by_id == {"000000": "ok", "000001": "error", "000002": "ok"}
    err = df.loc[df.sample_id == "000001", "error"].item()
    assert "row1-undecodable" in err
    # The run leaves its accuracy table beside the results: the bad row counted, not scored.
    acc = pd.read_parquet(next((tmp_path / "runs").glob("*/accuracy.parquet")))
    whole = acc[acc.category == "*"].iloc[0]
    assert (whole["n"], whole["n_error"], whole["metric"]) == (2, 1, "vqa_accuracy")


@pytest.mark.parametrize(
    "params, message",
    [
        ('dataset = "./x"\nlayout = "textvqa"\n', r"layout 'textvqa' is scored with metric 'vqa_accuracy'.*exact_match"),
        ('dataset = "./x"\nlayout = "vqav9"\n', r"param 'layout' is 'vqav9'; allowed: chartqa, docvqa, mmstar, ocrbench, textvqa, custom"),
        ('dataset = "./x"\nlayout = "custom"\nshuffle = true\n', r"unknown param 'shuffle'"),
        ('layout = "custom"\n', r"param 'dataset' is required"),
        ('dataset = "./x"\nlayout = "custom"\n', r"layout 'custom' needs params.columns.image"),
        ('dataset = "./missing"\nlayout = "custom"\ncolumns = { image = "img", question = "q", answers = "a" }\n',
         r"no such file or directory"),
    ],
)
def test_bad_suite_params_name_the_file_and_the_fix(tmp_path, params, message):
    path = tmp_path / "bad.toml"
    path.write_text('name = "bad"\nkind = "natural"\nsource = "hf_dataset"\nmetric = "exact_match"\n'
                    f'prompt = "{{question}}"\n\n[params]\n{params}')
    with pytest.raises(SuiteError, match=message) as e:
        load_suite(str(path))
    assert "bad.toml" in str(e.value)


HUB_SUITES = ("textvqa", "chartqa", "docvqa", "mmstar", "ocrbench")


@pytest.mark.parametrize("name", HUB_SUITES)
def test_hub_suites_validate_offline_and_say_they_need_the_hub(name):
    defn = parse_suite(suites_dir() / f"{name}.toml")
    assert defn.source == "hf_dataset" and defn.params["layout"] == name
    with pytest.raises(SuiteUnavailable, match=r"needs the Hugging Face hub and is not in the local cache"):
        load_suite(name)


def test_a_run_records_an_unavailable_hub_suite_as_an_error_row(tmp_path):
    from harness.run.tester import VLMTester

    df = VLMTester(tmp_path, progress=False).run([], ["mmstar"])
    assert list(df["status"]) == ["error"] and "needs the Hugging Face hub" in df["error"].item()


def test_the_repository_datasets_folder_does_not_shadow_the_library():
    r = subprocess.run([sys.executable, "-c", "import datasets; print(datasets.__file__, datasets.load_dataset)"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "site-packages" in r.stdout


def _jpeg(colour=(200, 30, 30)) -> bytes:
    import io

    buf = io.BytesIO()
    Image.new("RGB", (30, 20), colour).save(buf, format="JPEG")
    return buf.getvalue()


def test_images_keep_the_users_bytes_and_paths_stay_in_the_dataset_folder(tmp_path):
    import io

    data = tmp_path / "mine"
    (data / "img").mkdir(parents=True)
    (data / "img" / "a.jpg").write_bytes(_jpeg())
    (tmp_path / "secret.png").write_bytes(b"not for the cache")
    bmp = io.BytesIO()
    image(1).save(bmp, format="BMP")
    rows = {"question": ["q0", "q1", "q2"], "answer": ["a", "b", "c"],
            "image": ["img/a.jpg", "img/gone.png", "img/a.jpg"]}
    pd.DataFrame(rows).to_parquet(data / "paths.parquet")
    path = suite_file(tmp_path, "mine", "custom", "exact_match", "./mine/paths.parquet",
                      extra='columns = { image = "image", question = "question", answers = "answer" }\n')
    s = load_suite(str(path))
    # a path cell is the user's own file, in place: its bytes, its format, its name in errors
    assert s.samples[0].images == (str(data / "img" / "a.jpg"),)
    assert s.samples[1].images == (str(data / "img" / "gone.png"),)  # missing: fails that sample alone
    # a path out of the dataset's folder is refused, naming the row and the fix
    pd.DataFrame({**rows, "image": ["img/a.jpg", "../../../../../../etc/passwd", "img/a.jpg"]}).to_parquet(
        data / "paths.parquet")
    s = load_suite(str(path))  # it fails its own sample only, naming the row and the fix
    assert len(s.samples) == 3 and not s.samples[0].problem and not s.samples[2].problem
    assert re.match(r".*row 1: image path '.*etc/passwd' leads outside the dataset folder.*allow_outside = true",
                    s.samples[1].problem), s.samples[1].problem
    pd.DataFrame({**rows, "image": ["img/a.jpg", "../secret.png", "img/a.jpg"]}).to_parquet(data / "paths.parquet")
    allowed = suite_file(tmp_path, "mine", "custom", "exact_match", "./mine/paths.parquet",
                         extra='allow_outside = true\ncolumns = { image = "image", question = "question", '
                               'answers = "answer" }\n')
    assert Path(load_suite(str(allowed)).samples[1].images[0]).resolve() == (tmp_path / "secret.png").resolve()
    # embedded bytes are written unchanged, under their own format's extension (BMP is not made PNG)
    emb = pd.DataFrame({"question": ["q0", "q1"], "answer": ["a", "b"],
                        "image": [{"bytes": _jpeg(), "path": None}, {"bytes": bmp.getvalue(), "path": None}]})
    datasets.Dataset.from_pandas(emb, features=features(question=datasets.Value("string"),
                                                        answer=datasets.Value("string")),
                                 preserve_index=False).save_to_disk(str(tmp_path / "emb"))
    s = load_suite(str(suite_file(tmp_path, "emb", "custom", "exact_match", "./emb", extra='split = "train"\n'
                                  'columns = { image = "image", question = "question", answers = "answer" }\n')))
    kept = [Path(x.images[0]) for x in s.samples]
    assert [k.suffix for k in kept] == [".jpg", ".bmp"]
    assert kept[0].read_bytes() == _jpeg() and kept[1].read_bytes() == bmp.getvalue()


def test_a_data_uri_cell_goes_through_the_image_checks(tmp_path, monkeypatch):
    import base64

    from harness.images import HOSTS_ENV

    monkeypatch.delenv(HOSTS_ENV, raising=False)
    uri = "data:image/jpeg;base64," + base64.b64encode(_jpeg()).decode()
    pd.DataFrame({"question": ["q0", "q1"], "answer": ["a", "b"],
                  "image": [uri, "http://127.0.0.1:9/nope.png"]}).to_parquet(tmp_path / "uris.parquet")
    s = load_suite(str(suite_file(tmp_path, "uris", "custom", "exact_match", "./uris.parquet",
                                  extra='columns = { image = "image", question = "question", answers = "answer" }\n')))
    assert Path(s.samples[0].images[0]).read_bytes() == _jpeg()
    assert not Path(s.samples[1].images[0]).exists()  # refused (host not allowed): that sample's error row


def test_a_missing_image_path_fails_its_sample_alone_in_a_run(tmp_path, fixtures_root):
    from harness.run.tester import VLMTester

    data = tmp_path / "mine"
    data.mkdir()
    (data / "a.jpg").write_bytes(_jpeg())
    pd.DataFrame({"question": ["q0", "q1"], "answer": ["a", "b"], "image": ["a.jpg", "gone.jpg"]}).to_parquet(
        data / "rows.parquet")
    path = suite_file(tmp_path, "mine", "custom", "exact_match", "./mine/rows.parquet",
                      extra='columns = { image = "image", question = "question", answers = "answer" }\n')
    df = VLMTester(tmp_path / "runs", progress=False, warmup=0, fixtures_root=fixtures_root).run(
        ["fixture-qwen2_5_vl"], [str(path)])
    assert dict(zip(df["sample_id"], df["status"], strict=True)) == {"000000": "ok", "000001": "error"}
    err = df.loc[df.sample_id == "000001", "error"].item()
    assert str(data / "gone.jpg") in err and "does not exist" in err  # the user's file, by name
    import json

    assert json.loads(df.loc[df.sample_id == "000000", "preprocessing"].item())["images"][0]["format"] == "JPEG"
