"""Hostile input, kept: images built to hurt, servers that misbehave, gate inputs that are not
results. Each case must end in a clear error or a recorded row, within a bounded time; nothing
may hang, and nothing may surface as a traceback."""

from __future__ import annotations

import io
import json
import re
import struct
import threading
import time
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from PIL import Image

from harness.adapters.openai import OpenAIAdapter, ServerError
from harness.cli import main
from harness.core.records import Sample
from harness.core.schema import to_table
from harness.images import ImageError, ImageLimits, load_image
from harness.models import ModelSpec


def bounded(fn: Callable[[], Any], seconds: float) -> Any:
    """fn() in a thread; a failure, not a hung test, when it takes longer than `seconds`."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # handed back to the test
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t0 = time.monotonic()
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still running after {seconds} s"
    box["elapsed"] = time.monotonic() - t0
    if "error" in box:
        raise box["error"]
    return box["value"]


# -- hostile images --------------------------------------------------------------------------------
def png_bytes(size=(16, 16)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 200, 10)).save(buf, format="PNG")
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A valid small PNG whose header claims another size: a decompression bomb's calling card."""
    data = bytearray(png_bytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


def zlib_bomb() -> bytes:
    """A real 20000 × 20000 PNG (400 M pixels) that compresses to a few hundred kilobytes."""
    raw = zlib.compress(b"\x00" * (20000 * 3 + 1) * 1, 9)  # one row; the header claims all of them
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


HOSTILE: dict[str, bytes | None] = {
    "bomb-header.png": png_claiming(100_000, 100_000),
    "bomb-real.png": zlib_bomb(),
    "huge-but-allowed-bytes.png": png_claiming(30_000, 30_000),
    "truncated.jpg": None,  # filled in below
    "empty.png": b"",
    "text.png": b"this is not an image\n",
    "svg.png": b"<svg xmlns='http://www.w3.org/2000/svg'/>",
    "png-named.jpg": png_bytes(),  # a wrong extension is not an error: the bytes decide
}


def _truncated_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(buf, format="JPEG")
    return buf.getvalue()[:200]


HOSTILE["truncated.jpg"] = _truncated_jpeg()


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_image_is_a_clear_error_or_a_good_image(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(HOSTILE[name])
    if name == "png-named.jpg":
        im, rec = bounded(lambda: load_image(path), 10)
        assert im.size == (16, 16) and rec["format"] == "PNG"
        return
    with pytest.raises(ImageError) as e:
        bounded(lambda: load_image(path, ImageLimits()), 10)
    message = str(e.value)
    assert str(path) in message and "\n" not in message
    if name.startswith(("bomb", "huge")):
        assert "max_pixels" in message


def test_hostile_images_in_a_run_become_error_rows_and_the_good_one_runs(tmp_path, fixtures_root):
    from harness.run.tester import VLMTester

    folder = tmp_path / "hostile"
    folder.mkdir()
    (folder / "good.png").write_bytes(png_bytes((32, 32)))
    for name, data in HOSTILE.items():
        (folder / name).write_bytes(data)
    names = ["good.png", *sorted(HOSTILE), "missing.png"]
    (folder / "questions.csv").write_text("image,question,answers\n" + "".join(f"{n},What colour?,green\n" for n in names))
    suite = tmp_path / "hostile.toml"
    suite.write_text('name = "hostile"\nkind = "natural"\nsource = "folder"\nmetric = "exact_match"\nmax_tokens = 2\n'
                     'prompt = "{question}"\n\n[params]\npath = "hostile"\n')
    df = bounded(lambda: VLMTester(tmp_path / "runs", progress=False, warmup=0, fixtures_root=fixtures_root,
                                   timeout_s=60).run(["fixture-smolvlm"], [str(suite)]), 240)
    assert len(df) == len(names)  # one row per sample, none lost
    by_image = {Path(row["images"][0]).name: row for _, row in df.iterrows()}
    assert {n for n, r in by_image.items() if r["status"] == "ok"} == {"good.png", "png-named.jpg"}
    for n, r in by_image.items():
        if r["status"] != "ok":
            assert r["status"] == "error" and n in r["error"] and "Traceback" not in r["error"], (n, r["error"])


def test_an_image_path_that_is_a_folder_is_one_line_naming_it(tmp_path):
    from harness.suites import load_suite

    (tmp_path / "imgs" / "a-directory.png").mkdir(parents=True)
    (tmp_path / "imgs" / "questions.csv").write_text("image,question,answers\na-directory.png,q,a\n")
    (tmp_path / "s.toml").write_text('name = "s"\nkind = "natural"\nsource = "folder"\nmetric = "exact_match"\n'
                                     'prompt = "{question}"\n\n[params]\npath = "imgs"\n')
    (sample,) = load_suite(str(tmp_path / "s.toml")).samples  # its own sample fails, never the suite
    assert re.match(r".*questions.csv:2: image path 'a-directory.png' .* is not a readable regular file",
                    sample.problem), sample.problem


# -- misbehaving servers ---------------------------------------------------------------------------
def _sse(payload: dict) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


def _text(t: str) -> bytes:
    return _sse({"choices": [{"index": 0, "delta": {"content": t}, "finish_reason": None}]})


STOP = _sse({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}) + b"data: [DONE]\n\n"


class _Server(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        mode = self.server.mode  # type: ignore[attr-defined]
        if mode in ("429", "500", "503"):
            self.send_response(int(mode))
            self.end_headers()
            self.wfile.write(b'{"error": "go away"}')
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        try:
            if mode == "malformed":
                self.wfile.write(_text("a") + b"data: {\"choices\": [ oops\n\n")
            elif mode == "not-an-object":
                self.wfile.write(_text("a") + b"data: [1, 2, 3]\n\n")
            elif mode == "choices-not-a-list":
                self.wfile.write(b'data: {"choices": "nope"}\n\n')
            elif mode == "endless":
                for _ in range(100_000):  # bounded even if the client never hangs up
                    self.wfile.write(_text("tok"))
            elif mode == "no-usage":
                self.wfile.write(_text("a") + _text("b") + STOP)
            elif mode == "empty":
                self.wfile.write(STOP)
            elif mode == "trickle":
                for _ in range(40):  # a token every 0.3 s for 12 s: each read is quick, the answer is not
                    self.wfile.write(_text("t"))
                    self.wfile.flush()
                    time.sleep(0.3)
            elif mode == "silent":
                time.sleep(5)
        except OSError:
            pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    srv.mode = "no-usage"  # type: ignore[attr-defined]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def generate(srv, max_tokens: int = 8, timeout_s: float = 2.0):
    spec = ModelSpec(name="s", source="m", adapter="openai",
                     options={"base_url": f"http://127.0.0.1:{srv.server_address[1]}/v1", "timeout_s": timeout_s})
    image = str(Path(__file__).resolve().parent.parent / "datasets/natural/images/chelsea.png")
    sample = Sample("t", "x", (image,), "What is this?", ("cat",), "object", "exact_match", max_tokens)
    return OpenAIAdapter(spec, "m").generate(sample, max_tokens)


@pytest.mark.parametrize("mode, message", [
    ("429", r"HTTP 429"), ("500", r"HTTP 500"), ("503", r"HTTP 503"),
    ("malformed", r"malformed JSON in the stream after 1 token"),
    ("not-an-object", r"not an object"), ("choices-not-a-list", r"'choices' is not a list"),
    ("empty", r"empty answer"), ("trickle", r"longer than 2 s \(timeout_s\)"),
    ("silent", r"stalled for 2 s \(timeout_s\) after 0 token"),
])
def test_a_misbehaving_server_is_an_error_with_its_reason(server, mode, message):
    server.mode = mode
    with pytest.raises(ServerError, match=message):
        bounded(lambda: generate(server), 6)


def test_a_stream_past_max_tokens_is_cut_and_says_so(server):
    server.mode = "endless"
    m = bounded(lambda: generate(server, max_tokens=5), 6)
    assert m.text == "tok" * 5 and m.finish_reason == "length" and m.generated_tokens == 5
    assert "stopped reading after 5" in json.loads(m.preprocessing)["request"]["cut"]


def test_no_usage_block_is_null(server):
    m = bounded(lambda: generate(server), 6)
    assert m.text == "ab" and m.prompt_tokens is None and m.server_completion_tokens is None


# -- gate inputs that are not results --------------------------------------------------------------
def _results(path: Path) -> None:
    pq.write_table(to_table([{"run_id": "r", "model": "m", "suite": "s", "suite_hash": "h", "sample_id": "0",
                              "repeat": 0, "status": "ok", "ttft_s": 0.1, "score": 1.0}]), path)


@pytest.mark.parametrize("bad", ["empty", "text", "csv", "missing", "truncated", "no-results-dir", "garbage-bytes"])
def test_a_gate_input_that_is_not_results_is_one_line_and_exit_2(tmp_path, capsys, bad):
    good = tmp_path / "good.parquet"
    _results(good)
    target = tmp_path / "bad.parquet"
    if bad == "empty":
        target.write_bytes(b"")
    elif bad == "text":
        target.write_text("hello\n")
    elif bad == "csv":
        target.write_text("model,suite,ttft_s\nm,s,0.1\n")
    elif bad == "truncated":
        target.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    elif bad == "garbage-bytes":
        target.write_bytes(b"PAR1" + bytes(range(256)) * 4 + b"PAR1")
    elif bad == "no-results-dir":
        target = tmp_path / "empty-dir"
        target.mkdir()
    for base, cur in ((target, good), (good, target)):
        code = bounded(lambda b=base, c=cur: main(["gate", "--baseline", str(b), "--current", str(c)]), 30)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and "Traceback" not in err[0], err
        assert str(target) in err[0] or "no baseline at" in err[0], err
