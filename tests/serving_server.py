"""A small real SSE chat-completions server on 127.0.0.1 for the load tests, run as its own process
(so its timing does not share the client's interpreter). The model name in a request picks a
behaviour; "planted" follows a scripted token schedule, timed from the request's arrival, and
"planted@3" the same schedule three times slower (so a test can allow a loaded machine more lateness
and still tell a wrong definition from jitter).
asyncio streams and a minimal HTTP/1.1 reader keep the server's own delay well under a millisecond.

    python tests/serving_server.py PORT      prints "ready" once listening
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time

# (seconds after the request arrived, text): the planted schedule of content chunks
PLANTED = [(0.100, "a"), (0.130, " b"), (0.140, " c"), (0.160, " d"), (0.200, " e")]
PLANTED_USAGE = 9  # tokens the server says it generated (several tokens per chunk)
_count = {"n": 0}


def chunk(content: str | None = None, finish: str | None = None, role: bool = False) -> bytes:
    delta: dict = {}
    if role:
        delta["role"] = "assistant"
    if content is not None:
        delta["content"] = content
    body = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def usage(completion: int, prompt: int = 11) -> bytes:
    body = {"object": "chat.completion.chunk", "choices": [],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


async def until(t: float) -> None:
    """Sleep to perf_counter() == t; the last 2 ms blocking, for sub-millisecond accuracy."""
    left = t - time.perf_counter()
    if left > 0.002:
        await asyncio.sleep(left - 0.002)
    while time.perf_counter() < t:
        time.sleep(min(0.0002, max(0.0, t - time.perf_counter())))


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            t0 = time.perf_counter()
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = json.loads(await reader.readexactly(length))
            if not await respond(body.get("model", ""), t0, writer):
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def respond(model: str, t0: float, writer: asyncio.StreamWriter) -> bool:
    """Answer one request; False when the connection must close."""
    if model in ("http429", "http500"):
        code = int(model[4:])
        data = json.dumps({"error": {"message": "busy" if code == 429 else "boom"}}).encode()
        writer.write(b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                     % (code, b"Too Many Requests" if code == 429 else b"Internal Server Error", len(data), data))
        await writer.drain()
        return True
    if model == "nostream":  # a server that ignores stream=true and answers in one piece
        data = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "cat"},
                                        "finish_reason": "stop"}], "usage": {"prompt_tokens": 3, "completion_tokens": 1}})
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(data), data.encode()))
        await writer.drain()
        return True
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")

    async def w(data: bytes) -> None:  # one HTTP chunk per write, sent at once
        writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        await writer.drain()

    base, _, scale = model.partition("@")
    if base in ("planted", "role-first"):
        if base == "role-first":  # vLLM's server style: a text-less role chunk first
            await w(chunk("", role=True))
        for i, (at, text) in enumerate(PLANTED):
            await until(t0 + at * float(scale or 1))
            await w(chunk(text, "stop" if i == len(PLANTED) - 1 else None))
        await w(usage(PLANTED_USAGE) + b"data: [DONE]\n\n")
    elif model == "instant":
        await w(chunk("yes") + chunk(None, "stop") + usage(1) + b"data: [DONE]\n\n")
    elif model == "quick":  # a 10 ms answer: a closed loop of several slots sends every millisecond or two
        await asyncio.sleep(0.01)
        await w(chunk("cat", "stop") + usage(1) + b"data: [DONE]\n\n")
    elif model == "slow":
        await asyncio.sleep(0.4)
        await w(chunk("cat") + chunk(" sat", "stop") + usage(2) + b"data: [DONE]\n\n")
    elif model in ("stall", "stall-odd"):
        _count["n"] += 1
        if model == "stall" or _count["n"] % 2 == 0:
            await w(chunk("one"))
            await asyncio.sleep(30)  # stalls mid-stream; the process is stopped after the test
        await w(chunk("done", "stop") + usage(1) + b"data: [DONE]\n\n")
    elif model == "empty":  # finishes without any text (a broken chat template looks like this)
        await w(chunk("", role=True) + chunk(None, "stop") + usage(0) + b"data: [DONE]\n\n")
    elif model == "ignores-max-tokens":  # 8 chunks of 8 tokens each for any max_tokens: 64 tokens
        await w(b"".join(chunk(" w" * 8) for _ in range(7)) + chunk(" w" * 8, "length") + usage(64)
                + b"data: [DONE]\n\n")
    elif model == "malformed":
        await w(chunk("ok") + b"data: {not json\n\n")
    elif model == "nousage":
        await w(chunk("a") + chunk(" b") + chunk(" c", "stop") + b"data: [DONE]\n\n")
    elif model == "cut":
        await w(chunk("half"))
        return False  # the connection closes mid-body
    elif model == "unfinished":
        await w(chunk("half"))  # and the body ends: no finish_reason, no [DONE]
    else:
        await w(b'data: {"error": {"message": "unknown model"}}\n\n')
    await w(b"")  # the last chunk: the body ends here
    return True


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
