"""One streamed chat-completions request, timed chunk by chunk, on an asyncio event loop.

Timing follows vLLM's request function (vllm/benchmarks/lib/endpoint_request_func.py): the clock
starts just before the request is handed to the HTTP client, and a chunk's time is taken when its
`data:` line has arrived. Every chunk carrying a choice is kept with whether it carried text, so
either chunk rule of harness.serving.metrics can be applied afterwards.

The record is filled in as the stream arrives, so a request cut off by its deadline or by Ctrl-C
keeps what it had received; it becomes a row with the status that says why it ended.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from harness.serving.http import HTTPError, Pool, Response, post


@dataclass
class Attempt:
    """What one request got so far (mutable: the stream fills it in)."""

    planned_s: float  # seconds from step start (perf_counter-based)
    sent_s: float = float("nan")
    end_s: float = float("nan")
    chunk_times_s: list[float] = field(default_factory=list)
    chunk_has_content: list[bool] = field(default_factory=list)
    pieces: list[str] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    finish_reason: str = ""
    http_status: int | None = None
    status: str = "cancelled"  # until it ends otherwise
    error: str = "stopped before it finished"

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def counted_tokens(self) -> int:
        return sum(self.chunk_has_content)


class StreamError(Exception):
    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


async def stream_chat(pool: Pool, body: bytes, headers: dict[str, str], a: Attempt, t0: float,
                      deadline: float) -> None:
    """Send one request and read its stream into `a`; `t0` is the step's start (perf_counter),
    `deadline` a loop-clock time after which the request is cut off as a timeout."""
    resp = None
    try:
        async with asyncio.timeout_at(deadline):
            sent = time.perf_counter()
            a.sent_s = sent - t0
            try:
                resp = await post(pool, body, headers)
                a.http_status = resp.status
                if resp.status != 200:
                    detail = (await resp.read(200)).decode("utf-8", "replace").strip().replace("\n", " ")
                    raise StreamError("http_error", f"HTTP {resp.status} {resp.reason}: {detail}")
                ctype = resp.headers.get("content-type", "")
                if "text/event-stream" not in ctype:
                    raise StreamError("bad_stream", f"the answer came in one piece ({ctype or 'no Content-Type'}), "
                                                    "not as a stream: no token timing; does the server support stream=true?")
                await _read_sse(resp, a, sent)
            except (HTTPError, OSError) as e:
                raise StreamError("connection_error",
                                  f"{type(e).__name__} after {len(a.chunk_times_s)} chunk(s): {e}") from None
        a.status, a.error = "ok", ""
        resp.release()
        resp = None
    except StreamError as e:
        a.status, a.error = e.status, str(e)
    except TimeoutError:
        a.status = "timeout"
        a.error = f"cut off at its deadline after {len(a.chunk_times_s)} chunk(s)"
    finally:
        a.end_s = time.perf_counter() - t0
        if resp is not None:
            resp.discard()


async def _read_sse(resp: Response, a: Attempt, sent: float) -> None:
    done = False
    async for raw in resp.lines():
        now = time.perf_counter()
        line = raw.decode("utf-8", "replace").strip()
        if not line or line.startswith(":") or not line.startswith("data:"):
            continue  # event separators, comments (pings), event:/id: lines
        data = line[5:].strip()
        if data == "[DONE]":
            done = True  # read on to the body's end (as vLLM does), so the connection can be reused
            continue
        if done:
            continue
        try:
            chunk = json.loads(data)
        except json.JSONDecodeError:
            raise StreamError("bad_stream", f"malformed JSON after {len(a.chunk_times_s)} chunk(s): {data[:80]!r}") from None
        if not isinstance(chunk, dict):
            raise StreamError("bad_stream", f"a stream chunk is not an object: {data[:80]!r}")
        if "error" in chunk:
            raise StreamError("http_error", f"the server reported an error mid-stream: {str(chunk['error'])[:200]}")
        choices = chunk.get("choices")
        if choices and isinstance(choices, list) and isinstance(choices[0], dict):
            delta = choices[0].get("delta") or {}
            content = delta.get("content") if isinstance(delta, dict) else None
            a.chunk_times_s.append(now - sent)
            a.chunk_has_content.append(bool(content))
            if content:
                a.pieces.append(str(content))
            if choices[0].get("finish_reason"):
                a.finish_reason = str(choices[0]["finish_reason"])
        if isinstance(chunk.get("usage"), dict):
            a.usage = chunk["usage"]
    if not done and not a.finish_reason:
        raise StreamError("incomplete", f"the stream ended without finish_reason or [DONE] after "
                                        f"{len(a.chunk_times_s)} chunk(s)")
    if not a.chunk_times_s:
        raise StreamError("bad_stream", "the stream carried no choice: no first token")
    if not a.pieces:
        # As the `run` command's OpenAI adapter: no server returns an empty answer for a working
        # model, and scoring it 0 (or timing it) would hide a broken chat template or a dropped image.
        raise StreamError("empty", f"empty answer: the stream finished (finish_reason {a.finish_reason or 'none'}) "
                                   f"after {len(a.chunk_times_s)} chunk(s) without any text; check the model's chat "
                                   "template and that it accepts images")
