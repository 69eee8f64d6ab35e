"""The OpenAI-compatible adapter against a real mlx_vlm.server serving a fixture, and against
small real HTTP servers that misbehave in each way a server can."""

from __future__ import annotations

import json
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from servers import OpenAIHandler, free_port, mlx_vlm_server

from harness.adapters.mlx_vlm import MlxVlmAdapter
from harness.adapters.openai import OpenAIAdapter, ServerError, api_base
from harness.core.records import Sample
from harness.models import ModelError, ModelSpec, with_adapter

IMAGE = str(Path(__file__).resolve().parent.parent / "datasets/natural/images/chelsea.png")


def sample(max_tokens=8) -> Sample:
    return Sample("t", "x", (IMAGE,), "What animal is this?", ("cat",), "object", "exact_match", max_tokens)


@pytest.fixture(scope="module")
def served(qwen_dir, tmp_path_factory):
    """mlx_vlm.server on 127.0.0.1, serving the qwen fixture; yields its base URL."""
    with mlx_vlm_server(qwen_dir, tmp_path_factory.mktemp("server")) as url:
        yield url


def spec_for(base_url: str, source: str = "m", **options) -> ModelSpec:
    return ModelSpec(name="served", source=source, adapter="openai", options={"base_url": base_url, **options})


def test_base_url_with_or_without_v1():
    assert api_base("http://127.0.0.1:8080") == ("http", "127.0.0.1", 8080, "/v1")
    assert api_base("http://h:1/v1/") == ("http", "h", 1, "/v1")
    assert api_base("https://h/api/v1")[3] == "/api/v1"
    with pytest.raises(ModelError, match="base_url"):
        api_base("127.0.0.1:8080")


def test_served_fixture_streams_with_client_and_server_figures(served, qwen_dir):
    a = OpenAIAdapter(spec_for(served, str(qwen_dir)), str(qwen_dir))
    stats = a.load()
    assert stats.backend == "server" and stats.arch == "qwen2_5_vl" and stats.random_weights
    a.generate(sample(4), 4)  # warm-up
    m = a.generate(sample(), 8)
    assert m.finish_reason == "length"
    assert m.generated_tokens == 8 == m.server_completion_tokens
    assert m.server_prompt_tokens > 20 and m.prompt_tokens == m.server_prompt_tokens
    assert 0 < m.ttft_s < m.wall_s and m.decode_tps > 0
    assert m.server_decode_tps > 0 and m.server_prefill_tps > 0 and 0 < m.server_prefill_s < m.ttft_s
    # one time per text chunk; a token ending mid-character brings no text
    assert 2 <= len(m.token_times) <= 8 and list(m.token_times) == sorted(m.token_times)
    assert json.loads(m.preprocessing)["images"][0]["format"] == "PNG"
    assert m.text


def test_served_and_in_process_see_the_same_prompt(served, qwen_dir):
    spec = ModelSpec(name="q", source=str(qwen_dir))
    local = MlxVlmAdapter(spec, str(qwen_dir))
    local.load()
    mine = local.generate(sample(), 8)
    theirs = OpenAIAdapter(spec_for(served, str(qwen_dir)), str(qwen_dir)).generate(sample(), 8)
    # Same pixels (harness.images), same chat template: the same prompt, token for token in length.
    # (The greedy text differs: the server decodes through its continuous-batching path.)
    assert theirs.server_prompt_tokens == mine.prompt_tokens


def test_run_puts_served_and_in_process_side_by_side(served, qwen_dir, fixtures_root, tmp_path):
    from harness.report import render
    from harness.run.tester import VLMTester

    toml = tmp_path / "served-qwen.toml"
    toml.write_text(f'name = "served-qwen"\nsource = "{qwen_dir}"\nadapter = "openai"\nbase_url = "{served}"\n'
                    "timeout_s = 60\n")
    tester = VLMTester(tmp_path / "runs", limit=2, progress=False, fixtures_root=fixtures_root)
    df = tester.run(["fixture-qwen2_5_vl", str(toml)], ["synthetic-shapes"])
    assert set(df["model"]) == {"fixture-qwen2_5_vl", "served-qwen"}
    assert (df["status"] == "ok").all(), df[["model", "error"]]
    served_rows = df[df["model"] == "served-qwen"]
    assert (served_rows["adapter"] == "openai").all() and (served_rows["backend"] == "server").all()
    assert served_rows["server_completion_tokens"].notna().all() and served_rows["server_decode_tps"].gt(0).all()
    local_rows = df[df["model"] == "fixture-qwen2_5_vl"]
    assert local_rows["server_decode_tps"].isna().all() and local_rows["preprocessing"].notna().all()
    html = render(df, tmp_path / "report.html").read_text()
    assert "served-qwen" in html and "fixture-qwen2_5_vl" in html


def test_adapter_option_renames_the_model():
    spec = ModelSpec(name="fixture-x", source="fixture:x")
    served = with_adapter(spec, "openai", "http://127.0.0.1:1/v1")
    assert served.name == "fixture-x@openai" and served.adapter == "openai"
    with pytest.raises(ModelError, match="--base-url"):
        with_adapter(spec, "openai")


# -- servers that misbehave --------------------------------------------------------------------
def _chunk(text: str | None = None, finish: str | None = None) -> bytes:
    delta = {"content": text} if text is not None else {}
    payload = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(payload)}\n\n".encode()


class _Bad(OpenAIHandler):
    mode = "ok"

    def do_POST(self):  # noqa: N802
        self.server.last_body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        mode = self.server.mode
        if mode in ("500", "429"):
            self.send_response(int(mode))
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": "model exploded"}')
            return
        if mode == "whole-bad":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"choices": [')
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        if mode == "slow":
            self.wfile.write(_chunk("a"))
            self.wfile.flush()
            time.sleep(1.5)
            return
        if mode == "endless":  # ignores max_tokens; stops when the client hangs up (bounded regardless)
            try:
                for _ in range(200_000):
                    self.wfile.write(_chunk("x"))
            except OSError:
                pass
            return
        if mode == "over-usage":  # three chunks, but its own usage says 64 tokens for max_tokens 8
            self.wfile.write(_chunk("a") + _chunk(" b") + _chunk(" c", "length") + b'data: {"choices": [], "usage": '
                             b'{"prompt_tokens": 5, "completion_tokens": 64}}\n\ndata: [DONE]\n\n')
            return
        if mode == "empty":
            self.wfile.write(_chunk(None, "stop") + b"data: [DONE]\n\n")
            return
        self.wfile.write(_chunk("a") + _chunk("b"))
        if mode == "no-usage":
            self.wfile.write(_chunk(None, "stop") + b"data: [DONE]\n\n")
        if mode == "bad-json":
            self.wfile.write(b"data: {not json\n\n")
        elif mode == "ok":
            self.wfile.write(_chunk(None, "stop") + b'data: {"choices": [], "usage": {"prompt_tokens": 5, '
                             b'"completion_tokens": 2}}\n\ndata: [DONE]\n\n')
        # "cut": the connection closes here, mid-answer


@pytest.fixture
def bad_server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Bad)
    srv.mode = "ok"
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _adapter(srv, timeout_s=5.0) -> OpenAIAdapter:
    return OpenAIAdapter(spec_for(f"http://127.0.0.1:{srv.server_address[1]}/v1", timeout_s=timeout_s), "m")


def test_a_well_behaved_stub_parses(bad_server):
    m = _adapter(bad_server).generate(sample(), 8)
    assert m.text == "ab" and m.finish_reason == "stop" and m.generated_tokens == 2
    assert m.server_prompt_tokens == 5 and m.server_prefill_tps is None  # no timings given: none invented


@pytest.mark.parametrize("mode, message", [
    ("500", "HTTP 500.*model exploded"),
    ("429", "HTTP 429"),
    ("empty", "empty answer: .*finish_reason stop"),
    ("bad-json", "malformed JSON in the stream after 2 token"),
    ("cut", "stream ended before the answer finished"),
    ("whole-bad", "malformed JSON answer"),
])
def test_server_failures_are_errors_with_the_reason(bad_server, mode, message):
    bad_server.mode = mode
    with pytest.raises(ServerError, match=message):
        _adapter(bad_server).generate(sample(), 8)


def test_slow_server_times_out(bad_server):
    bad_server.mode = "slow"
    t0 = time.monotonic()
    with pytest.raises(ServerError, match=r"stalled for 0.5 s \(timeout_s\) after 1 token"):
        _adapter(bad_server, timeout_s=0.5).generate(sample(), 8)
    assert time.monotonic() - t0 < 1.4


def test_server_down_fails_at_load():
    a = OpenAIAdapter(spec_for(f"http://127.0.0.1:{free_port()}/v1"), "m")
    with pytest.raises(ServerError, match="cannot reach the server.*is it running"):
        a.load()


def test_bad_servers_become_error_rows_and_the_run_goes_on(bad_server, tmp_path, fixtures_root):
    from harness.run.tester import VLMTester

    bad_server.mode = "500"
    base = f"http://127.0.0.1:{bad_server.server_address[1]}/v1"
    models = []
    for name, url in (("broken", base), ("down", f"http://127.0.0.1:{free_port()}/v1")):
        p = tmp_path / f"{name}.toml"
        p.write_text(f'name = "{name}"\nsource = "m"\nadapter = "openai"\nbase_url = "{url}"\ntimeout_s = 5\n')
        models.append(str(p))
    df = VLMTester(tmp_path / "runs", limit=2, warmup=0, progress=False, fixtures_root=fixtures_root,
                   round_samples=0).run(models, ["synthetic-shapes"])
    assert len(df) == 4 and (df["status"] == "error").all()
    assert df[df["model"] == "broken"]["error"].str.contains("HTTP 500").all()
    assert df[df["model"] == "down"]["error"].str.contains("load failed: ServerError: cannot reach").all()


def test_several_turns_send_the_models_own_answers_back(bad_server):
    from dataclasses import replace

    m = _adapter(bad_server).generate(replace(sample(), turns=("And its colour?",)), 8)
    assert m.turn_outputs == ("ab",) and m.text == "ab"
    msgs = bad_server.last_body["messages"]
    assert [x["role"] for x in msgs] == ["user", "assistant", "user"]
    assert msgs[1]["content"] == "ab" and msgs[2]["content"] == "And its colour?"
    assert msgs[0]["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert bad_server.last_body["stream_options"] == {"include_usage": True}


def test_max_tokens_is_sent_and_kept_when_the_server_ignores_it(bad_server):
    bad_server.mode = "endless"
    t0 = time.monotonic()
    m = _adapter(bad_server).generate(sample(), 8)
    assert time.monotonic() - t0 < 5
    assert bad_server.last_body["max_tokens"] == 8
    assert m.text == "x" * 8 and m.generated_tokens == 8 and m.finish_reason == "length"
    request = json.loads(m.preprocessing)["request"]
    assert request["max_tokens"] == 8 and "stopped reading after 8" in request["cut"]
    bad_server.mode = "ok"  # a server that keeps the limit leaves no note
    assert "cut" not in json.loads(_adapter(bad_server).generate(sample(), 8).preprocessing)["request"]


def test_missing_usage_is_null_not_zero(bad_server):
    bad_server.mode = "no-usage"
    m = _adapter(bad_server).generate(sample(), 8)
    assert m.text == "ab" and m.generated_tokens == 2  # counted by the client
    assert m.prompt_tokens is None and m.server_prompt_tokens is None and m.server_completion_tokens is None
    import math

    assert math.isnan(m.prefill_tps)


def test_the_adapter_uses_no_private_helper_of_another_module():
    import re

    import harness.adapters.openai as mod

    assert not re.search(r"from harness\.[\w.]+ import [^\n]*\b_[a-z]", Path(mod.__file__).read_text())


def test_a_server_that_ignores_max_tokens_is_flagged_per_row_and_in_the_runs_summary(bad_server, tmp_path, capsys):
    # Its usage says 64 tokens for max_tokens 8 (three chunks of several tokens each, so the
    # client's chunk limit never fires): the row's request record says so, and `run` prints it.
    from harness.cli import main

    bad_server.mode = "over-usage"
    m = _adapter(bad_server).generate(sample(), 8)
    assert m.text == "a b c" and m.server_completion_tokens == 64
    assert json.loads(m.preprocessing)["request"]["cut"] == "server ignored max_tokens: 64 > 8"
    bad_server.mode = "endless"
    cut = json.loads(_adapter(bad_server).generate(sample(), 8).preprocessing)["request"]["cut"]
    assert cut.startswith("server ignored max_tokens: 9 > 8")
    bad_server.mode = "over-usage"
    toml = tmp_path / "ignorer.toml"
    toml.write_text(f'name = "ignorer"\nsource = "m"\nadapter = "openai"\n'
                    f'base_url = "http://127.0.0.1:{bad_server.server_address[1]}/v1"\ntimeout_s = 5\n')
    rc = main(["run", "-m", str(toml), "-s", "synthetic-shapes", "--limit", "2", "--max-tokens", "8", "--warmup", "0",
               "--out", str(tmp_path / "runs"), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0 and "note:    server ignored max_tokens: 64 > 8 in 2 of 2 rows of ignorer" in out
