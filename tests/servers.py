"""Real local servers the tests talk to, on 127.0.0.1 only, each stopped when its test is done."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

SCRIPTED = Path(__file__).resolve().parent / "serving_server.py"


class OpenAIHandler(BaseHTTPRequestHandler):
    """Base of the in-process misbehaving OpenAI-compatible servers: quiet, one request per
    connection, and GET /models answers with an empty list (the adapter's load probe)."""

    protocol_version = "HTTP/1.0"

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        body = b'{"data": []}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def mlx_vlm_server(model_dir: Path, log_dir: Path, timeout_s: float = 120) -> Iterator[str]:
    """A real `mlx_vlm.server` serving `model_dir`; yields its base URL (…/v1). Its log goes to a
    file: a pipe nobody reads fills up and stalls the server mid-test."""
    port = free_port()
    log_path = Path(log_dir) / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "mlx_vlm.server", "--model", str(model_dir), "--host",
                                 "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=log,
                                env={**os.environ, "HF_HUB_OFFLINE": "1"})
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                with contextlib.suppress(OSError), urllib.request.urlopen(f"http://127.0.0.1:{port}/health",
                                                                           timeout=2) as r:
                    if r.status == 200:
                        break
                if proc.poll() is not None:
                    raise RuntimeError(f"mlx_vlm.server exited: {log_path.read_text(errors='replace')[-2000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mlx_vlm.server did not become healthy in {timeout_s:.0f} s")
                time.sleep(0.3)
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            _stop(proc)


@contextlib.contextmanager
def scripted_server() -> Iterator[str]:
    """tests/serving_server.py: scripted timings and misbehaviours, chosen by the model name."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(SCRIPTED), str(port)], stdout=subprocess.PIPE, text=True)
    try:
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the scripted server did not start")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.kill()
        proc.wait()
