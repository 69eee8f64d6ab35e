"""A minimal HTTP/1.1 client on asyncio streams, for timing streamed answers under load.

Why not a general client: on a small machine httpx spends about a millisecond of Python per
request between "send" and the bytes reaching the socket, and as much again per response; that
time lands in every TTFT and in the load generator's lag. This client writes the request in one
call and reads the body framing (chunked, Content-Length, or until close) itself, so the client's
share of a measured latency stays well under a millisecond. Keep-alive connections are pooled per
step, and the pool is never a hidden queue: the load generator bounds requests in flight, and a
request that finds no idle connection opens one. Standard library only.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit


class HTTPError(ConnectionError):
    """The connection broke, or the server's answer is not HTTP/1.x."""


@dataclass(frozen=True)
class Endpoint:
    scheme: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        u = urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"{url!r} must look like http://host:port/v1/...")
        return cls(u.scheme, u.hostname, u.port or (443 if u.scheme == "https" else 80), u.path or "/")


@dataclass
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


@dataclass
class Pool:
    """Idle keep-alive connections to one endpoint."""

    endpoint: Endpoint
    idle: list[_Conn] = field(default_factory=list)
    _ssl: ssl.SSLContext | None = None

    async def _open(self) -> _Conn:
        if self.endpoint.scheme == "https" and self._ssl is None:
            self._ssl = ssl.create_default_context()
        r, w = await asyncio.open_connection(self.endpoint.host, self.endpoint.port,
                                             ssl=self._ssl if self.endpoint.scheme == "https" else None)
        return _Conn(r, w)

    async def close(self) -> None:
        for c in self.idle:
            c.writer.close()
        self.idle.clear()


@dataclass
class Response:
    status: int
    reason: str
    headers: dict[str, str]
    _conn: _Conn
    _pool: Pool
    _http10: bool = False
    _reusable: bool = False

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives, framing removed."""
        r = self._conn.reader
        te = self.headers.get("transfer-encoding", "").lower()
        length = self.headers.get("content-length")
        try:
            if "chunked" in te:
                while True:
                    size_line = await r.readline()
                    if not size_line:
                        raise HTTPError("the connection closed inside a chunked body")
                    size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                    if size == 0:
                        while (await r.readline()) not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        break
                    data = await r.readexactly(size)
                    await r.readexactly(2)
                    yield data
                self._reusable = True
            elif length is not None:
                left = int(length)
                while left > 0:
                    data = await r.read(min(left, 65536))
                    if not data:
                        raise HTTPError(f"the connection closed with {left} byte(s) of the body missing")
                    left -= len(data)
                    yield data
                self._reusable = True
            else:
                while data := await r.read(65536):
                    yield data
        except asyncio.IncompleteReadError:
            raise HTTPError("the connection closed inside the body") from None
        except ValueError as e:
            raise HTTPError(f"bad chunked framing: {e}") from None

    async def lines(self) -> AsyncIterator[bytes]:
        """Complete lines of the body, each as soon as the piece of body holding it arrives."""
        buf = b""
        async for data in self.chunks():
            buf += data
            *done, buf = buf.split(b"\n")
            for line in done:
                yield line
        if buf:
            yield buf

    async def read(self, limit: int = 1 << 20) -> bytes:
        out = b""
        async for data in self.chunks():
            out += data
            if len(out) >= limit:
                break
        return out[:limit]

    def discard(self) -> None:
        """Close the connection: an answer not read to its end cannot carry the next request."""
        self._conn.writer.close()

    def release(self) -> None:
        """Back to the pool when the whole body was read and the server keeps the connection."""
        keep = self.headers.get("connection", "").lower()
        if self._reusable and keep != "close" and (keep == "keep-alive" or not self._http10):
            self._pool.idle.append(self._conn)
        else:
            self._conn.writer.close()


async def post(pool: Pool, body: bytes, headers: dict[str, str]) -> Response:
    """POST body to the pool's endpoint; returns once the status line and headers have arrived."""
    ep = pool.endpoint
    head = [f"POST {ep.path} HTTP/1.1", f"Host: {ep.host}:{ep.port}", f"Content-Length: {len(body)}",
            *(f"{k}: {v}" for k, v in headers.items())]
    raw = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
    for attempt in (0, 1):
        reused = bool(pool.idle)
        conn = pool.idle.pop() if reused else await pool._open()
        try:
            conn.writer.write(raw)
            await conn.writer.drain()
            status_line = await conn.reader.readline()
        except (ConnectionError, OSError) as e:
            conn.writer.close()
            if reused and attempt == 0:
                continue  # the server had closed this idle connection: one fresh try
            raise HTTPError(f"{type(e).__name__}: {e}") from None
        if not status_line and reused and attempt == 0:
            conn.writer.close()
            continue
        break
    parts = status_line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        conn.writer.close()
        raise HTTPError(f"not an HTTP/1.x answer: {status_line[:80]!r}")
    hdrs: dict[str, str] = {}
    while True:
        line = await conn.reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        k, _, v = line.decode("latin-1").partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return Response(int(parts[1]), parts[2] if len(parts) > 2 else "", hdrs, conn, pool, parts[0] == "HTTP/1.0")


async def _can_connect(ep: Endpoint, timeout_s: float) -> str | None:
    try:
        _, w = await asyncio.wait_for(asyncio.open_connection(ep.host, ep.port), timeout_s)
    except (OSError, TimeoutError) as e:
        return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    w.close()
    return None


def unreachable(url: str, timeout_s: float = 5.0) -> str | None:
    """Why a TCP connection to url's host and port cannot be opened, or None when it can."""
    return asyncio.run(_can_connect(Endpoint.parse(url), timeout_s))
