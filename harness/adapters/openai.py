"""Any server that speaks OpenAI's chat completions (mlx_vlm.server, LM Studio, Ollama, vLLM).

Images go as PNG data URIs after harness.images, so a served model sees the same pixels as an
in-process one. The answer is streamed (server-sent events) so the client can time the first token
and the decode rate itself; what the server says about itself (usage, llama.cpp-style `timings`)
goes into separate server_* columns, never mixed with the client's figures. Standard library only.

Limits the client keeps whatever the server does: `max_tokens` is sent, and the stream is cut
after max_tokens content chunks (one per token on the servers we know), so a server that ignores
the limit yields a row with finish_reason "length" and a note in its `preprocessing` record
(request.cut: "server ignored max_tokens: 9 > 8 ..."), never 20,000 tokens; a server whose usage
counts more tokens than max_tokens is flagged the same way, and `vlm-harness run` prints a line
per model. An answer with no text at all is an error row ("empty
answer"): no server we know returns one for a working model, and a score of 0 for it would hide a
broken chat template or a dropped image. Counts the server did not report (no usage block) are
null, never 0: only the server can count prompt tokens.

What a server says is checked here, at the boundary: a count that is not a whole number from 0 to
2^31 - 1 (1099511627776, NaN, "5"), a rate or time that is not a finite non-negative number, a
finish_reason that is not short text, each becomes null with a note in the row's `preprocessing`
record (`server_values`); the answer is kept. The whole request, whatever the server sends
(headers that trickle, one endless line, keep-alive comments for ever), ends at `timeout_s`: a
timer closes the connection then. A stream line over LINE_BYTES is refused.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from harness.adapters import ADAPTERS
from harness.core import checkpoint
from harness.core.records import LoadStats, Measurement, Sample
from harness.images import load_images, record_json, to_data_uri
from harness.measure.memory import peak_rss_bytes
from harness.models import ModelError, ModelSpec, Option

IGNORED = "server ignored max_tokens: "  # the flag's words, as `vlm-harness load` writes them
WHOLE_ANSWER_BYTES = 16_000_000  # an answer sent in one piece (no stream) larger than this is refused
LINE_BYTES = 1_000_000  # one line of a stream; a chunk carries a token or a usage block, a few hundred bytes
COUNT_MAX = 2**31 - 1  # token counts are int32 columns
FINISH_MAX = 64  # characters of a finish_reason ("stop", "length", "tool_calls", ...)


class ServerError(RuntimeError):
    """The server failed this request; the message says how (down, slow, HTTP error, bad stream)."""


def api_base(base_url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path prefix ending in /v1) from a base URL given with or without /v1."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ModelError(f"base_url {base_url!r} must look like http://host:port/v1")
    prefix = parts.path.rstrip("/")
    if not prefix.endswith("/v1"):
        prefix += "/v1"
    return parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), prefix


@ADAPTERS.register("openai")
class OpenAIAdapter:
    # Accuracy mode (harness/run/batched.py): requests go concurrently, `in_flight` at a time, rather
    # than decoded together in this process.
    CONCURRENT = True
    # What a model file may set for this adapter, at its top level.
    OPTIONS = {
        "base_url": Option(str, "", "the server, e.g. \"http://127.0.0.1:8080/v1\"", required=True),
        "api_model": Option(str, "", "the name the server knows the model by (default: source)"),
        "api_key_env": Option(str, "", "environment variable holding a bearer token, if the server wants one"),
        "timeout_s": Option(float, 120.0, "seconds one request may take", range=(0.001, 86400.0)),
    }

    def __init__(self, spec: ModelSpec, path: str) -> None:
        if not spec.option("base_url"):
            raise ModelError(f"model {spec.name}: adapter 'openai' needs base_url in its model file")
        self.spec = spec
        self.path = path
        self.timeout_s = float(spec.option("timeout_s"))
        self.api_key_env = spec.option("api_key_env")
        self.scheme, self.host, self.port, self.prefix = api_base(spec.option("base_url"))
        self.api_model = spec.option("api_model") or path  # a served fixture is known by its directory

    # -- HTTP ------------------------------------------------------------------------------------
    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        return cls(self.host, self.port, timeout=timeout)

    def _headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self.api_key_env and os.environ.get(self.api_key_env):
            h["Authorization"] = f"Bearer {os.environ[self.api_key_env]}"
        return h

    def _where(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.prefix}"

    # -- adapter protocol ------------------------------------------------------------------------
    def load(self) -> LoadStats:
        """No weights to load: check that the server answers, and describe the checkpoint if local."""
        t0 = time.perf_counter()
        conn = self._connect(min(self.timeout_s, 30.0))
        try:
            conn.request("GET", f"{self.prefix}/models", headers=self._headers())
            resp = conn.getresponse()
            resp.read()
            if resp.status >= 500 or resp.status in (401, 403):
                raise ServerError(f"server at {self._where()} answered GET /models with HTTP {resp.status}")
        except (OSError, http.client.HTTPException) as e:
            raise ServerError(f"cannot reach the server at {self._where()} ({type(e).__name__}: {e}); "
                              "is it running, and is base_url right?") from None
        finally:
            conn.close()
        probe_s = time.perf_counter() - t0
        # Served from a directory on this machine: record what it is. Never resolved through
        # the hub cache: the server may hold another copy.
        facts = checkpoint.inspect(self.path) if Path(self.path).is_dir() else None
        return LoadStats(
            import_s=0.0,
            load_s=probe_s,  # the server loaded the model earlier; this is the reachability probe
            size_bytes=facts.size_bytes if facts else 0,
            content_hash=facts.content_hash if facts else "",
            arch=facts.arch if facts else "",
            quantization=self.spec.quantization or (facts.quantization if facts and facts.config else ""),
            random_weights=facts.random_weights if facts else False,
            role=facts.role if facts else "model",
            peak_mlx_bytes=0,
            rss_bytes=peak_rss_bytes(),
            backend="server",
        )

    def _body(self, messages: list[dict[str, Any]], max_tokens: int) -> dict[str, Any]:
        return {
            "model": self.api_model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": self.spec.temperature,
            "top_p": self.spec.top_p,
            "stream": True,
            "stream_options": {"include_usage": True},
        }

    def generate(self, sample: Sample, max_tokens: int) -> Measurement:
        images, records = load_images(sample.images, self.spec.images)
        content: list[dict[str, Any]] = [{"type": "text", "text": sample.prompt}]
        content += [{"type": "image_url", "image_url": {"url": to_data_uri(im)}} for im in images]
        messages: list[dict[str, Any]] = [{"role": "user", "content": content}]
        # Multi-turn: earlier turns are answered first, untimed, and the model's own answers go
        # back as the history, as the in-process adapter does.
        turn_outputs: list[str] = []
        for question in sample.turns:
            answer = self._request(self._body(messages, max_tokens))[0].text.strip()
            turn_outputs.append(answer)
            messages += [{"role": "assistant", "content": answer}, {"role": "user", "content": question}]
        m, cut, notes = self._request(self._body(messages, max_tokens))
        record = json.loads(record_json(records, self.spec.images))
        record["request"] = {"max_tokens": max_tokens}
        if cut:
            record["request"]["cut"] = cut
        if notes:
            record["server_values"] = notes
        preprocessing = json.dumps(record, sort_keys=True, separators=(",", ":"))
        return replace(m, preprocessing=preprocessing, turn_outputs=tuple(turn_outputs))

    def batchable(self, sample: Sample) -> str:
        """Every request can go concurrently: '' (no reason to send it alone)."""
        return ""

    def generate_batch(self, samples: list[Sample], in_flight: int = 4) -> list[Measurement | Exception]:
        """Accuracy mode: the samples' requests with at most `in_flight` at once, each the very
        request `generate` sends (so the answers are the one-at-a-time path's); a failed request
        is its own sample's exception, in order."""
        from concurrent.futures import ThreadPoolExecutor

        def one(sample: Sample) -> Measurement | Exception:
            try:
                return self.generate(sample, sample.max_tokens)
            except Exception as e:  # this request's failure, reported on its own row
                return e

        with ThreadPoolExecutor(max_workers=max(1, in_flight), thread_name_prefix="openai-request") as pool:
            return list(pool.map(one, samples))

    def _request(self, body: dict[str, Any]) -> tuple[Measurement, str, list[str]]:
        """The answer, why the client cut it at max_tokens ('' when it did not), and notes on
        what the server said that could not be stored. Holds no state on the adapter, so
        requests may run in several threads at once."""
        timeout = self.timeout_s
        # From sending the request: images are decoded beforehand, as in the in-process adapter.
        t0 = time.perf_counter()
        deadline = t0 + timeout
        seen = _Seen(last_read=t0)
        conn = self._connect(timeout)
        # The socket timeout bounds each read, not the request: a server trickling a byte at a
        # time, or one line that never ends, would hold it for ever. A timer shuts the socket
        # when the whole request's time is up; every read then ends at once.
        expired = threading.Event()
        sockets: list[socket.socket] = []  # the response keeps the socket after the connection lets go of it

        def expire() -> None:
            expired.set()
            for sock in sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        def late() -> str:
            if time.perf_counter() - seen.last_read >= 0.99 * timeout:  # nothing at all came for that long
                return (f"the stream from {self._where()} stalled for {timeout:g} s (timeout_s) after "
                        f"{seen.tokens} token(s)")
            return (f"the answer from {self._where()} took longer than {timeout:g} s (timeout_s) in all, "
                    f"{seen.tokens} token(s) received")

        timer = threading.Timer(timeout, expire)
        timer.daemon = True
        try:
            try:
                conn.connect()
                sockets.append(conn.sock)
                timer.start()
                conn.request("POST", f"{self.prefix}/chat/completions", body=json.dumps(body).encode(),
                             headers=self._headers())
                resp = conn.getresponse()
            except TimeoutError:
                raise ServerError(f"no answer from {self._where()} within {timeout:g} s (timeout_s)") from None
            except (OSError, http.client.HTTPException) as e:
                if expired.is_set():
                    raise ServerError(late()) from None
                raise ServerError(f"cannot reach the server at {self._where()} ({type(e).__name__}: {e})") from None
            try:
                if resp.status != 200:
                    detail = resp.read(300).decode("utf-8", "replace").strip().replace("\n", " ")
                    raise ServerError(f"HTTP {resp.status} {resp.reason} from {self._where()}: {detail}")
                ctype = resp.getheader("Content-Type", "")
                if "text/event-stream" in ctype:
                    out = self._read_stream(resp, t0, deadline, int(body["max_tokens"]), seen)
                else:  # a server that ignores stream=true answers in one piece: no per-token timing
                    out = self._read_whole(resp, t0, deadline, int(body["max_tokens"]), seen)
            except ServerError:
                if expired.is_set():  # a read cut by the timer looks like a broken or short stream
                    raise ServerError(late()) from None
                raise
            if expired.is_set():
                raise ServerError(late())
        finally:
            timer.cancel()
            conn.close()
        wall = time.perf_counter() - t0
        times, text, usage, timings, finish, cut = out
        n = len(times)
        notes: list[str] = []
        finish = _finish_reason(finish, notes)
        if not text:
            raise ServerError(f"empty answer: the server at {self._where()} finished (finish_reason "
                              f"{finish or 'none'}) without any text; check the model's chat template and that "
                              "it accepts images")
        usage = usage or {}
        timings = timings or {}
        prompt_tokens = _count(usage, "prompt_tokens", notes)
        completion_tokens = _count(usage, "completion_tokens", notes)
        # Client-side decode rate over the text chunks it saw (one per token on the servers we know).
        decode = (n - 1) / (times[-1] - times[0]) if n >= 2 and times[-1] > times[0] else math.nan
        ttft = times[0] if times else math.nan
        cut_stream = bool(cut) and usage == {}  # cut mid-stream: the stream's usage never came
        return Measurement(
            text=text,
            prompt_tokens=prompt_tokens,  # only the server can count these: null without usage
            # The server's count when it gives one (a token that ends mid-character arrives as no
            # text), unless the client cut the stream: then what the client kept.
            generated_tokens=n if cut_stream else (completion_tokens or n),
            ttft_s=ttft,
            prefill_tps=prompt_tokens / ttft if prompt_tokens and ttft > 0 else math.nan,
            decode_tps=decode,
            wall_s=wall,
            peak_mlx_bytes=0,
            peak_rss_bytes=0,
            finish_reason=finish or "",
            token_times=tuple(times),
            server_prompt_tokens=prompt_tokens,
            server_completion_tokens=completion_tokens,
            server_prefill_s=_rate(timings, "prompt_ms", notes, 1e-3),
            server_prefill_tps=_rate(timings, "prompt_per_second", notes),
            server_decode_tps=_rate(timings, "predicted_per_second", notes),
        ), cut, notes

    def _read_stream(self, resp: http.client.HTTPResponse, t0: float, deadline: float, max_tokens: int,
                     seen: _Seen) -> tuple:
        times: list[float] = []
        pieces: list[str] = []
        usage = timings = None
        finish = None
        done = False
        while True:
            if time.perf_counter() > deadline:
                raise ServerError(f"the answer took longer than {self.timeout_s:g} s (timeout_s); "
                                  f"{len(times)} token(s) received")
            try:
                raw = resp.readline(LINE_BYTES + 1)
            except TimeoutError:
                raise ServerError(f"the stream from {self._where()} stalled for {self.timeout_s:g} s "
                                  f"(timeout_s) after {len(times)} token(s)") from None
            except (OSError, http.client.HTTPException) as e:
                raise ServerError(f"the stream broke after {len(times)} token(s) ({type(e).__name__}: {e})") from None
            if not raw:
                break
            seen.last_read = time.perf_counter()
            if len(raw) > LINE_BYTES:
                raise ServerError(f"a line of the stream from {self._where()} is over {LINE_BYTES:,} bytes after "
                                  f"{len(times)} token(s); refused")
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("data:"):
                continue  # blank separators, comments, event: lines
            data = line[5:].strip()
            if data == "[DONE]":
                done = True
                break
            try:
                chunk = json.loads(data)
            except json.JSONDecodeError as e:
                raise ServerError(f"malformed JSON in the stream after {len(times)} token(s): {e}: {data[:80]!r}") from None
            if not isinstance(chunk, dict):
                raise ServerError(f"unexpected stream chunk (not an object): {data[:80]!r}")
            if "error" in chunk:
                raise ServerError(f"the server reported an error mid-stream: {str(chunk['error'])[:200]}")
            now = time.perf_counter() - t0
            choices = chunk.get("choices") or []
            if not isinstance(choices, list):
                raise ServerError(f"unexpected stream chunk ('choices' is not a list): {data[:80]!r}")
            for choice in choices:
                delta = (choice.get("delta") if isinstance(choice, dict) else None) or {}
                content = delta.get("content") if isinstance(delta, dict) else None
                if content and len(pieces) >= max_tokens:
                    # A server that ignores max_tokens: the limit is kept here, and the row says so.
                    cut = (f"{IGNORED}{max_tokens + 1} > {max_tokens} (content chunks; the client stopped "
                           f"reading after {max_tokens})")
                    return times, "".join(pieces), None, None, "length", cut
                if content:
                    pieces.append(str(content))
                    times.append(now)
                    seen.tokens = len(times)
                if isinstance(choice, dict) and choice.get("finish_reason"):
                    finish = choice["finish_reason"]
            usage = chunk.get("usage") if isinstance(chunk.get("usage"), dict) else usage
            timings = chunk.get("timings") if isinstance(chunk.get("timings"), dict) else timings
        if not done and finish is None:
            raise ServerError(f"the stream ended before the answer finished (no finish_reason, no [DONE]) after "
                              f"{len(times)} token(s)")
        said = _count(usage or {}, "completion_tokens", [])  # a bad value is noted once, in _request
        if said is not None and said > max_tokens:
            # Several tokens per chunk: the chunk count kept within the limit, the server's own
            # count says it was ignored.
            return times, "".join(pieces), usage, timings, finish, f"{IGNORED}{said} > {max_tokens}"
        return times, "".join(pieces), usage, timings, finish, ""

    def _read_whole(self, resp: http.client.HTTPResponse, t0: float, deadline: float, max_tokens: int,
                    seen: _Seen) -> tuple:
        parts: list[bytes] = []
        size = 0
        while True:  # bounded in time and size: a body that trickles or never ends is an error
            if time.perf_counter() > deadline:
                raise ServerError(f"the answer took longer than {self.timeout_s:g} s (timeout_s)")
            try:
                piece = resp.read1(65536)
            except TimeoutError:
                raise ServerError(f"the answer from {self._where()} stalled for {self.timeout_s:g} s "
                                  "(timeout_s)") from None
            except (OSError, http.client.HTTPException) as e:
                raise ServerError(f"the answer broke off ({type(e).__name__}: {e})") from None
            if not piece:
                break
            seen.last_read = time.perf_counter()
            parts.append(piece)
            size += len(piece)
            if size > WHOLE_ANSWER_BYTES:
                raise ServerError(f"the answer is over {WHOLE_ANSWER_BYTES:,} bytes; refused")
        raw = b"".join(parts)
        now = time.perf_counter() - t0
        try:
            data = json.loads(raw)
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
        except (json.JSONDecodeError, KeyError, IndexError, TypeError) as e:
            raise ServerError(f"malformed JSON answer ({type(e).__name__}): {raw[:80]!r}") from None
        if not isinstance(text, str):
            raise ServerError(f"malformed JSON answer (content is not text): {raw[:80]!r}")
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
        timings = data.get("timings") if isinstance(data.get("timings"), dict) else None
        if isinstance(usage, dict) and (_count(usage, "completion_tokens", []) or 0) > max_tokens:
            # One piece past the limit: it cannot be cut by token here, only recorded as ignored.
            cut = f"{IGNORED}{usage['completion_tokens']} > {max_tokens} (in one piece; kept as sent)"
            return [now], text, usage, timings, "length", cut
        return ([now] if text else []), text, usage, timings, choice.get("finish_reason"), ""

    def close(self) -> None:
        pass


def ignored_max_tokens(df: Any) -> list[str]:
    """One line per model whose server ignored max_tokens in some rows ("server ignored
    max_tokens: 64 > 8 in 2 of 2 rows of MODEL"), from each row's request record (`cut`)."""
    if df is None or len(df) == 0 or "preprocessing" not in df:
        return []
    out = []
    for model, g in df.groupby("model", sort=True):
        notes = []
        for text in g["preprocessing"].dropna():
            try:
                cut = (json.loads(text).get("request") or {}).get("cut", "")
            except (ValueError, AttributeError):
                continue
            if isinstance(cut, str) and cut.startswith(IGNORED):
                notes.append(cut)
        if notes:
            worst = max(notes, key=_excess).split(" (", 1)[0]
            out.append(f"{worst} in {len(notes)} of {len(g)} rows of {model}")
    return out


def _excess(note: str) -> int:
    m = re.match(re.escape(IGNORED) + r"(\d+) > (\d+)", note)
    return int(m.group(1)) - int(m.group(2)) if m else 0


@dataclass
class _Seen:
    """What one request has received so far, for the message when its time runs out."""

    last_read: float
    tokens: int = 0


def _count(block: dict[str, Any], key: str, notes: list[str]) -> int | None:
    """A token count the server reported: a whole number from 0 to COUNT_MAX, else null and a note."""
    v = block.get(key)
    if v is None:
        return None
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= COUNT_MAX:
        return v
    if isinstance(v, float) and math.isfinite(v) and v.is_integer() and 0 <= v <= COUNT_MAX:
        return int(v)
    notes.append(f"{key} {_show(v)} is not a whole number from 0 to {COUNT_MAX:,}; stored as null")
    return None


def _rate(block: dict[str, Any], key: str, notes: list[str], scale: float = 1.0) -> float | None:
    """A time or rate the server reported: a finite number ≥ 0, else null and a note."""
    v = block.get(key)
    if v is None:
        return None
    if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0:
        out = float(v) * scale
        if math.isfinite(out):
            return out
    notes.append(f"timings.{key} {_show(v)} is not a finite number ≥ 0; stored as null")
    return None


def _finish_reason(v: Any, notes: list[str]) -> str | None:
    """finish_reason as text of at most FINISH_MAX characters, else null and a note."""
    if v is None or (isinstance(v, str) and len(v) <= FINISH_MAX):
        return v
    notes.append(f"finish_reason {_show(v)} is not text of at most {FINISH_MAX} characters; stored as null")
    return None


def _show(v: Any) -> str:
    text = json.dumps(v) if not isinstance(v, float) else repr(v)
    return text if len(text) <= 60 else text[:57] + "..."
