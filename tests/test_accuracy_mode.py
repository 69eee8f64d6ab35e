"""The accuracy mode (batched or concurrent answers, timed as a pass) and the response cache, on
the real tiny fixtures: the answers equal the one-at-a-time path's, cached answers come back
without loading the model, and accuracy-mode timings never reach a latency verdict."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from harness.core.records import Sample
from harness.judge.accuracy import accuracy_table
from harness.suites import load_suite
from harness.tester import VLMTester

QWEN = "fixture-qwen2_5_vl"
SUITES = ["synthetic-shapes", "multi-turn", "multi-image"]


def _runs(tmp_path, **kw):
    return VLMTester(tmp_path / "runs", limit=kw.pop("limit", 4), progress=False, cache_path=tmp_path / "cache.sqlite",
                     **kw)


@pytest.fixture(scope="module")
def both_paths(fixtures_root, tmp_path_factory):
    """The same samples one at a time (latency) and batched (accuracy, checked one at a time)."""
    tmp = tmp_path_factory.mktemp("paths")
    latency = _runs(tmp, cache=False, fixtures_root=fixtures_root).run([QWEN], SUITES)
    accuracy = _runs(tmp, cache=False, mode="accuracy", batch_size=3, verify=2,
                     fixtures_root=fixtures_root).run([QWEN], SUITES)
    return latency, accuracy


def _by_sample(df: pd.DataFrame) -> pd.DataFrame:
    return df.set_index(["suite", "sample_id"]).sort_index()


def test_batched_answers_equal_the_one_at_a_time_path_and_so_does_accuracy(both_paths):
    latency, accuracy = both_paths
    assert (latency["status"] == "ok").all() and (accuracy["status"] == "ok").all(), accuracy["error"]
    lat, acc = _by_sample(latency), _by_sample(accuracy)
    assert (lat["output"] == acc["output"]).all()
    # The accuracy figure from both paths, side by side: the same.
    side = accuracy_table(latency).merge(accuracy_table(accuracy), on=["model", "suite", "category"],
                                         suffixes=("_one_at_a_time", "_batched"))
    print(side[["suite", "category", "mean_one_at_a_time", "mean_batched", "n_one_at_a_time", "n_batched"]].to_string())
    assert len(side) > 0 and (side["mean_one_at_a_time"] == side["mean_batched"]).all()


def test_accuracy_rows_record_mode_batch_pass_and_fallbacks(both_paths):
    latency, accuracy = both_paths
    assert (latency["mode"] == "latency").all() and (accuracy["mode"] == "accuracy").all()
    # 12 samples, the multi-turn and multi-image ones too: four batches of 3, none alone.
    assert set(accuracy["batch_size"]) == {3} and accuracy["batch_fallback"].isna().all()
    assert accuracy["ttft_s"].isna().all() and accuracy["decode_tps"].isna().all()  # no per-request latency
    lat, acc = _by_sample(latency), _by_sample(accuracy)
    turns = acc.loc["multi-turn", "turn_outputs"].map(list).tolist()
    assert all(len(t) == 1 for t in turns) and turns == lat.loc["multi-turn", "turn_outputs"].map(list).tolist()
    assert accuracy["pass_s"].gt(0).all() and accuracy["pass_samples"].max() == len(accuracy)
    assert accuracy["pass_generated_tokens"].max() == accuracy["generated_tokens"].sum()
    # --verify 2: two batched answers generated alone as well, and found the same.
    assert accuracy["answer_check"].value_counts().to_dict() == {"same": 2}
    from harness.judge.throughput import pass_table

    p = pass_table(accuracy).iloc[0]
    assert p.samples == len(accuracy) and p.samples_per_s > 0 and p.tokens_per_s > 0 and p.checked == 2
    assert p.alone == 0 and p.differs == 0


@pytest.mark.parametrize("arch", ["smolvlm", "llava_next", "phi3_v"])
def test_every_seed_architecture_batches_with_the_same_answers(fixtures_root, arch):
    """SmolVLM's and Phi-3.5-Vision's processors reject a batch and LLaVA-NeXT's embeddings are
    longer than its ids: the batched path prepares each sample alone and decodes them together."""
    from harness.adapters.mlx_vlm import MlxVlmAdapter
    from harness.models import resolve

    adapter = MlxVlmAdapter(resolve(f"fixture-{arch}"), str(fixtures_root / arch))
    adapter.load()
    samples = [replace(s, max_tokens=6) for s in load_suite("natural", 4).samples[:4]]
    batched = adapter.generate_batch(samples)
    alone = [adapter.generate(s, s.max_tokens) for s in samples]
    assert [m.text for m in batched] == [m.text for m in alone]
    assert all(m.batch_size == 4 for m in batched)
    assert [m.generated_tokens for m in batched] == [m.generated_tokens for m in alone]


@pytest.mark.parametrize("arch", ["smolvlm", "llava_next", "phi3_v"])
def test_multi_turn_and_multi_image_samples_batch_with_the_same_answers(fixtures_root, arch):
    """A multi-turn sample's turns are batched round by round, each with the sample's own earlier
    answers; several images go in one prompt. LLaVA-NeXT takes one image per prompt: its
    multi-image samples stay alone, where the one-at-a-time path says it cannot take them."""
    from harness.adapters.mlx_vlm import MlxVlmAdapter
    from harness.models import resolve

    adapter = MlxVlmAdapter(resolve(f"fixture-{arch}"), str(fixtures_root / arch))
    adapter.load()
    samples = [replace(s, max_tokens=6) for name in ("multi-turn", "multi-image", "natural")
               for s in load_suite(name, 2).samples[:2]]
    reasons = [adapter.batchable(s) for s in samples]
    multi_image = [bool(s.images[1:]) for s in samples]
    assert reasons == [("several images: llava_next takes one image per prompt" if arch == "llava_next" and m else "")
                       for m in multi_image]
    samples = [s for s, why in zip(samples, reasons, strict=True) if not why]
    batched = adapter.generate_batch(samples)
    alone = [adapter.generate(s, s.max_tokens) for s in samples]
    assert [(m.text, m.turn_outputs, m.prompt_tokens, m.generated_tokens) for m in batched] == \
        [(m.text, m.turn_outputs, m.prompt_tokens, m.generated_tokens) for m in alone]
    assert [len(m.turn_outputs) for m in batched[:2]] == [1, 1]


def test_llava_next_prompts_whose_embeddings_match_but_ids_differ_batch(fixtures_root):
    """LLaVA-NeXT's embeddings are longer than its ids, and BatchGenerator pads both by the ids'
    difference: two prompts of equally long embeddings but different ids (a 1024 px image and a
    longer question) cannot be prefilled as one group."""
    from harness.adapters.mlx_vlm import MlxVlmAdapter
    from harness.models import resolve

    adapter = MlxVlmAdapter(resolve("fixture-llava_next"), str(fixtures_root / "llava_next"))
    adapter.load()
    sizes = load_suite("synthetic-sizes", 8).samples
    samples = [replace(s, max_tokens=4) for s in (sizes[0], sizes[7])]
    batched = adapter.generate_batch(samples)
    assert [m.text for m in batched] == [adapter.generate(s, s.max_tokens).text for s in samples]


def test_a_second_accuracy_run_comes_from_the_cache_and_a_changed_setting_misses(fixtures_root, tmp_path):
    first = _runs(tmp_path, mode="accuracy", fixtures_root=fixtures_root).run([QWEN], ["synthetic-shapes"])
    assert (~first["cache_hit"]).all()
    again = _runs(tmp_path, mode="accuracy", fixtures_root=fixtures_root).run([QWEN], ["synthetic-shapes"])
    assert again["cache_hit"].all() and again["load_s"].isna().all()  # the model was not even loaded
    a, b = _by_sample(first), _by_sample(again)
    assert (a["output"] == b["output"]).all() and (a["score"] == b["score"]).all()
    assert (b["model_role"] == "fixture").all() and b["model_hash"].notna().all()
    other = _runs(tmp_path, mode="accuracy", max_tokens=5, fixtures_root=fixtures_root).run([QWEN], ["synthetic-shapes"])
    assert (~other["cache_hit"]).all()  # a changed generation setting is another key


def test_no_cache_neither_reads_nor_writes(fixtures_root, tmp_path):
    from harness.run.response_cache import ResponseCache

    _runs(tmp_path, mode="accuracy", limit=2, cache=False, fixtures_root=fixtures_root).run([QWEN], ["synthetic-shapes"])
    assert not (tmp_path / "cache.sqlite").exists()
    _runs(tmp_path, limit=2, fixtures_root=fixtures_root).run([QWEN], ["synthetic-shapes"])  # written now
    cache = ResponseCache(tmp_path / "cache.sqlite")
    assert cache._db.execute("SELECT count(*) FROM answers").fetchone()[0] == 2
    df = _runs(tmp_path, mode="accuracy", limit=2, cache=False, fixtures_root=fixtures_root).run(
        [QWEN], ["synthetic-shapes"])
    assert (~df["cache_hit"]).all() and df["answer_check"].isna().all()  # not read either


def test_a_latency_run_measures_and_flags_an_answer_that_differs_from_the_cache(fixtures_root, tmp_path):
    first = _runs(tmp_path, limit=3, fixtures_root=fixtures_root).run([QWEN], ["synthetic-shapes"])
    assert first["answer_check"].isna().all()  # nothing to compare with yet; now cached
    from harness.run.response_cache import ResponseCache

    cache = ResponseCache(tmp_path / "cache.sqlite")
    key, entry = cache._db.execute("SELECT key, entry FROM answers LIMIT 1").fetchone()
    planted = {**json.loads(entry), "output": "a planted answer"}
    with cache._db:
        cache._db.execute("UPDATE answers SET entry = ? WHERE key = ?", (json.dumps(planted), key))
    second = _runs(tmp_path, limit=3, fixtures_root=fixtures_root).run([QWEN], ["synthetic-shapes"])
    assert second["ttft_s"].notna().all() and (~second["cache_hit"]).all()  # still measured
    assert second["answer_check"].value_counts().to_dict() == {"same": 2, "differs": 1}
    assert second.loc[second["answer_check"] == "differs", "answer_check_output"].tolist() == ["a planted answer"]
    from harness.judge.throughput import summary_lines

    assert any("a planted answer" in line for line in summary_lines(second))


def test_the_key_covers_what_determines_an_answer(fixtures_root, tmp_path):
    from harness.models import resolve
    from harness.run.response_cache import ResponseCache, identity, request_key

    cache = ResponseCache(tmp_path / "c.sqlite")
    spec = resolve(QWEN)
    model = identity(cache, spec, str(fixtures_root / "qwen2_5_vl"))
    sample = load_suite("synthetic-shapes", 2).samples[0]
    key = request_key(model, spec, sample)
    assert key == request_key(model, spec, sample)
    changed = [request_key(model, spec, replace(sample, prompt=sample.prompt + " ")),
               request_key(model, spec, replace(sample, max_tokens=sample.max_tokens + 1)),
               request_key(model, spec, replace(sample, turns=("and?",))),
               request_key(model, replace(spec, top_p=0.9), sample),
               request_key({**model, "model_hash": "other"}, spec, sample),
               request_key({**model, "libraries": {"mlx-vlm": "0"}}, spec, sample)]
    image = tmp_path / "copy.png"
    image.write_bytes(open(sample.images[0], "rb").read() + b"\0")  # other bytes, same picture
    changed.append(request_key(model, spec, replace(sample, images=(str(image),))))
    assert None not in changed and key not in changed and len(set(changed)) == len(changed)
    assert request_key(model, replace(spec, temperature=0.7), sample) is None  # sampled answers: never cached
    assert request_key(model, spec, replace(sample, images=("https://example.com/a.png",))) is None


def test_accuracy_rows_never_reach_the_speed_table_or_the_gate(both_paths, tmp_path):
    from harness.gate.compare import compare
    from harness.report import render

    latency, accuracy = both_paths
    # The accuracy pass's rows with absurd planted timings: ten times slower than anything.
    planted = accuracy.assign(ttft_s=10.0, decode_tps=0.1, wall_s=99.0, run_id="planted-run")
    both = pd.concat([latency, planted], ignore_index=True)
    result = compare(latency, both)
    assert not result.regressions, [f.metric for f in result.regressions]
    html = render(both, tmp_path / "report.html").read_text()
    assert "Accuracy passes (throughput)" in html and "99.0" not in html.split('id="speed-table"')[1].split("</table>")[0]
    from harness.judge.throughput import latency_rows
    from harness.report.tables import speed_table

    _, rows, _, _ = speed_table(latency_rows(both))
    _, rows_latency, _, _ = speed_table(latency)
    assert rows[0].cells["ttft_ms"].text == rows_latency[0].cells["ttft_ms"].text


def test_the_memory_picks_the_batch_size():
    from harness.measure import memory_safety

    config = {"num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4, "hidden_size": 3584,
              "torch_dtype": "bfloat16"}
    per_token = memory_safety.kv_bytes_per_token(config)
    budget, _ = memory_safety.budget_bytes()
    size, why = memory_safety.batch_size(config, 10_000_000, None, cap=64)  # 10 M tokens a sample: too many
    assert size == 1 and why
    context = int(budget / per_token / 5)  # five samples' caches fill the budget
    size, why = memory_safety.batch_size(config, context, None, cap=64)
    assert size in (4, 5) and "fits in" in why
    assert memory_safety.batch_size(config, 10, None, cap=7)[0] == 7


# -- concurrency against a server ----------------------------------------------------------------
class _Counting(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"data": []}')

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        srv = self.server
        with srv.lock:
            srv.now += 1
            srv.most = max(srv.most, srv.now)
        time.sleep(0.2)  # long enough that the client's requests overlap
        with srv.lock:
            srv.now -= 1
            srv.total += 1
        text = body["messages"][0]["content"][0]["text"][:12]
        payload = {"choices": [{"index": 0, "message": {"content": text}, "finish_reason": "stop"}]}
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps(payload).encode())


def test_the_openai_adapter_keeps_the_requests_in_flight_bounded(tmp_path):
    from harness.adapters.openai import OpenAIAdapter
    from harness.models import ModelSpec
    from harness.run.batched import BatchedWorkload

    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    srv.lock, srv.now, srv.most, srv.total = threading.Lock(), 0, 0, 0
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        spec = ModelSpec(name="m", source="m", adapter="openai",
                         options={"base_url": f"http://127.0.0.1:{srv.server_address[1]}/v1"})
        adapter = OpenAIAdapter(spec, "m")
        samples = [Sample("s", f"q{i}", (), f"question {i}", ("x",), "c", "exact_match", 4) for i in range(9)]
        work = BatchedWorkload(tuple(enumerate(samples)), warmup=0, in_flight=3)
        work.warm_up(adapter)
        out = [work.run(adapter, s) for _, s in work.items()]
        assert [m.text for m in out] == [f"question {i}" for i in range(9)]  # in order
        assert srv.most == 3 and all(m.batch_size == 3 for m in out)
        # Warmed up, the server first meets `in_flight` requests at once before the pass's clock.
        srv.most = srv.total = 0
        warm = BatchedWorkload(tuple(enumerate(samples)), warmup=1, in_flight=3)
        warm.warm_up(adapter)
        assert srv.total == 1 + 3 and srv.most == 3 and warm._state.t0 is None
    finally:
        srv.shutdown()
        srv.server_close()


def test_same_shape_images_go_through_one_vision_call_and_others_alone(fixtures_root, tmp_path, monkeypatch):
    """Qwen2.5-VL's tower takes several images at once: the batched path runs the same-size
    images of a batch through it in one call (the real fixture's tower, counted), an image of
    another size alone, and every answer stays the one-at-a-time path's."""
    from PIL import Image

    from harness.adapters.mlx_vlm import MlxVlmAdapter
    from harness.models import resolve

    adapter = MlxVlmAdapter(resolve(QWEN), str(fixtures_root / "qwen2_5_vl"))
    adapter.load()
    samples = [replace(s, max_tokens=6) for s in load_suite("synthetic-shapes", 4).samples[:4]]
    odd = tmp_path / "odd.png"
    Image.open(samples[0].images[0]).convert("RGB").resize((112, 168)).save(odd)
    samples.append(replace(samples[0], id="odd-size", images=(str(odd),)))
    tower = type(adapter.model.vision_tower)
    calls: list[int] = []
    real = tower.__call__

    def counted(self, pixels, grid, **kw):
        calls.append(int(grid.shape[0]))  # images in this call
        return real(self, pixels, grid, **kw)

    monkeypatch.setattr(tower, "__call__", counted)
    batched = adapter.generate_batch(samples)
    assert sorted(calls) == [1, 4]  # the four same-size images together, the odd one alone
    calls.clear()
    alone = [adapter.generate(s, s.max_tokens) for s in samples]
    assert calls == [1] * 5
    assert [m.text for m in batched] == [m.text for m in alone]
    assert [m.generated_tokens for m in batched] == [m.generated_tokens for m in alone]


def test_the_batch_size_counts_every_turn_and_image_of_a_sample(monkeypatch):
    """A multi-turn sample's last round holds all its turns and earlier answers, a multi-image
    prompt all its images: the memory's batch size is chosen for that context, not the first turn's."""
    from harness.adapters import mlx_vlm
    from harness.measure import memory_safety
    from harness.models import resolve

    spec = resolve(QWEN)
    adapter = mlx_vlm.MlxVlmAdapter(replace(spec, images=replace(spec.images, max_size=448)), "unused")
    adapter.config = {}
    asked: list[int] = []
    monkeypatch.setattr(memory_safety, "batch_size", lambda config, context, size, cap, share=1.0: asked.append(context) or (1, ""))
    one = Sample("s", "a", ("x.png",), "What colour is the shape?", ("red",), "c", "exact_match", 8)
    for s in (one, replace(one, turns=("And what shape is it?",)), replace(one, images=("x.png", "y.png"))):
        adapter.batch_capacity([s])
    assert asked[1] >= asked[0] + 8 + 4 and asked[2] > asked[0] + 100  # 8 more tokens, a turn; an image


def test_two_workers_answer_one_model_at_once_with_the_same_answers(both_paths, fixtures_root, tmp_path):
    """--workers 2: the samples dealt to two worker processes that run side by side; the answers
    are the one-at-a-time path's, and the pass counts the time they overlap once."""
    from harness.judge.throughput import pass_table

    latency, _ = both_paths
    two = _runs(tmp_path, cache=False, mode="accuracy", batch_size=3, workers=2,
                fixtures_root=fixtures_root).run([QWEN], SUITES)
    assert (two["status"] == "ok").all(), two["error"]
    assert (_by_sample(latency)["output"] == _by_sample(two)["output"]).all()
    assert two["pass_worker"].value_counts().to_dict() == {1: 6, 2: 6}
    # Each worker's own pass, as its last row says; together they covered less than their sum.
    own = two.groupby("pass_worker")["pass_s"].max()
    p = pass_table(two).iloc[0]
    assert p.samples == 12 and p.pass_s < own.sum() * 0.95, (p.pass_s, own.to_dict())
    assert p.pass_s >= own.max() - 1e-5  # rows keep their time to the microsecond


def test_the_worker_count_follows_the_backend_the_cores_and_the_memory():
    from harness.run.data_parallel import worker_count

    cpu = {"one_thread": True, "backend": "cpu", "cores": 4, "fits": lambda n: True}
    assert worker_count(None, samples=100, **cpu)[0] == 4
    assert worker_count(None, samples=20, **cpu)[0] == 2  # at least 8 samples a worker
    assert worker_count(None, samples=5, **cpu)[0] == 1
    assert worker_count(None, samples=100, **{**cpu, "backend": "cuda"})[0] == 1
    assert worker_count(None, samples=100, **{**cpu, "one_thread": False})[0] == 1
    n, why = worker_count(None, samples=100, **{**cpu, "fits": lambda n: n <= 2})
    assert n == 2 and "memory holds 2" in why
    assert worker_count(3, samples=100, **{**cpu, "backend": "metal"})[0] == 3  # asked for: given
    assert worker_count(3, samples=2, **cpu)[0] == 2  # never more workers than samples


def test_passes_one_after_another_add_up_and_side_by_side_count_once():
    from harness.judge.throughput import pass_table

    t0 = pd.Timestamp("2026-01-01T00:00:00Z")

    def rows(worker, start, seconds):
        return [{"run_id": "r", "model": "m", "mode": "accuracy", "pass_worker": worker, "batch_size": 4,
                 "batch_fallback": None, "cache_hit": False, "pass_samples": 4 * k, "pass_generated_tokens": 10 * k,
                 "pass_s": seconds * k / 2, "recorded_at": t0 + pd.Timedelta(seconds=start + seconds * k / 2)}
                for k in (1, 2)]

    side = pd.DataFrame(rows(1, 0, 10) + rows(2, 1, 10))  # two workers, 1 s apart: 11 s of clock
    assert pass_table(side).iloc[0].pass_s == pytest.approx(11) and pass_table(side).iloc[0].samples == 16
    after = pd.DataFrame(rows(None, 0, 10) + rows(None, 20, 5))  # a restart: 10 s, then 5 s
    assert pass_table(after).iloc[0].pass_s == pytest.approx(15)


def test_an_interrupt_stops_every_worker_at_once_and_keeps_the_rows(fixtures_root, tmp_path):
    """Ctrl-C while two workers answer: both worker processes end within moments (their
    supervisors run in threads, which an interrupt does not reach by itself), and the rows
    already stored stay."""
    import psutil

    from harness.results.store import ResultsStore

    def interrupt(rows):  # Ctrl-C once the first row is on disk
        if rows:
            raise KeyboardInterrupt

    tester = _runs(tmp_path, cache=False, mode="accuracy", batch_size=2, workers=2, limit=8,
                   fixtures_root=fixtures_root, forward=interrupt)
    t = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        tester.run([QWEN], ["synthetic-shapes", "synthetic-counting"])
    assert time.monotonic() - t < 60
    def workers():  # multiprocessing's resource tracker stays for the life of this process
        return [p for p in psutil.Process().children() if p.is_running() and p.status() != "zombie"
                and "multiprocessing.spawn" in " ".join(p.cmdline())]

    deadline = time.monotonic() + 10
    while workers() and time.monotonic() < deadline:  # killed, then reaped
        time.sleep(0.2)
    assert workers() == []
    kept = ResultsStore(tester.run_dir).read()
    assert len(kept) >= 1 and (kept["status"] == "ok").all()
