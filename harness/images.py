"""Every image a model sees passes through here, whatever the adapter: read from a path, bytes,
a PIL image, a base64 data URI or an allowed http(s) URL; checked against limits before it is
decoded; turned upright (EXIF), converted to RGB and resized to the model's bounds. What was done
is returned as a record that goes into the result row, so a request can be reproduced.

Limits exist because an image is untrusted input: a 40 kB PNG can claim 100,000 × 100,000
pixels (a decompression bomb), and a URL can point into the local network (SSRF).
"""

from __future__ import annotations

import base64
import binascii
import functools
import http.client
import io
import ipaddress
import json
import os
import re
import socket
import ssl
import threading
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from PIL import Image, ImageOps, UnidentifiedImageError

from harness.core.files import NotReadable, read_regular

FORMATS = ("JPEG", "PNG", "WEBP", "GIF")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")  # any scheme: only http(s) pass check_url
HOSTS_ENV = "VLM_HARNESS_IMAGE_HOSTS"  # comma-separated hosts URL images may come from
PRIVATE_ENV = "VLM_HARNESS_IMAGE_ALLOW_PRIVATE"  # "1": allow loopback/private/link-local addresses


class ImageError(ValueError):
    """An image that cannot be used; the message names it and says why."""


# The largest value each numeric limit may take: far past any real image or request, and small
# enough that no arithmetic on it overflows or waits for ever (a timeout of 1e300 s, inf or nan
# breaks the fetch's timer; 10^15 pixels would be a petabyte).
BOUNDS: dict[str, float] = {
    "max_size": 65_536, "min_size": 65_536, "max_images": 1_000, "max_bytes": 2_000_000_000,
    "max_pixels": 1_000_000_000, "timeout_s": 3_600.0,
}


@dataclass(frozen=True)
class ImageLimits:
    """How images are bounded and resized; a model file's [images] table sets these."""

    max_size: int = 0  # longest edge in pixels after resizing; 0 keeps the size
    min_size: int = 0  # shortest edge in pixels after resizing (upscaled when smaller); 0 keeps it
    max_images: int = 16  # images per request
    max_bytes: int = 50_000_000  # encoded bytes per image
    max_pixels: int = 100_000_000  # decoded pixels per image, checked from the header before decoding
    allow_hosts: tuple[str, ...] = ()  # hosts http(s) images may be fetched from; none by default
    allow_private: bool = False  # fetch from loopback, private and link-local addresses
    timeout_s: float = 10.0  # fetching one URL image, in all (connecting, headers and body)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageLimits:
        known = {f.name: f for f in fields(cls)}
        out: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                raise ValueError(f"unknown field {key!r}; allowed: {', '.join(sorted(known))}")
            want = {"int": int, "float": (int, float), "bool": bool}.get(known[key].type)
            if key == "allow_hosts":
                if not isinstance(value, list) or not all(isinstance(h, str) for h in value):
                    raise ValueError("field 'allow_hosts' must be a list of host names")
                value = tuple(h.lower() for h in value)
            elif want is not None and (not isinstance(value, want) or (want is not bool and isinstance(value, bool))):
                raise ValueError(f"field {key!r} must be {known[key].type}, got {value!r}")
            out[key] = value
        limits = cls(**out)
        if limits.max_size and limits.min_size > limits.max_size:
            raise ValueError(f"min_size {limits.min_size} is larger than max_size {limits.max_size}")
        return limits

    def __post_init__(self) -> None:
        # Checked here, not only in from_dict, so limits built in Python are bounded too.
        for key, high in BOUNDS.items():
            value = getattr(self, key)
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= high:
                raise ValueError(f"field {key!r} must be a number from 0 to {high:,.0f}, got {value!r}")
        if not self.timeout_s > 0:
            raise ValueError(f"field 'timeout_s' must be above 0 (at most {BOUNDS['timeout_s']:,.0f} s), "
                             f"got {self.timeout_s!r}")

    def hosts(self) -> set[str]:
        extra = os.environ.get(HOSTS_ENV, "")
        return set(self.allow_hosts) | {h.strip().lower() for h in extra.split(",") if h.strip()}

    def private_allowed(self) -> bool:
        return self.allow_private or os.environ.get(PRIVATE_ENV, "").lower() in ("1", "true", "yes")


def _label(src: object) -> str:
    if isinstance(src, str | Path):
        s = str(src)
        return s[:40] + "…" if s.startswith("data:") else s
    if isinstance(src, Image.Image):
        return "<PIL image>"
    return f"<{len(src)} bytes>" if isinstance(src, bytes | bytearray) else f"<{type(src).__name__}>"


# -- reading ---------------------------------------------------------------------------------------
def _read_path(path: Path, limits: ImageLimits) -> bytes:
    # Regular files only, bounded while reading: a FIFO would block for ever, /dev/zero never ends.
    try:
        return read_regular(path, limits.max_bytes)
    except NotReadable as e:
        if e.missing:
            raise ImageError(f"image {path} does not exist") from None
        if "over the limit" in str(e) or "past the limit" in str(e):
            raise ImageError(f"image {e} (max_bytes)") from None
        raise ImageError(f"image {path} cannot be read ({str(e).removeprefix(f'{path}').lstrip(': ')})") from None


def _read_data_uri(uri: str, limits: ImageLimits) -> bytes:
    head, sep, payload = uri.partition(",")
    if not sep or not head.startswith("data:image/") or ";base64" not in head:
        raise ImageError(f"image {_label(uri)} is not a base64 data URI (data:image/<type>;base64,...)")
    if len(payload) * 3 // 4 > limits.max_bytes + 3:
        raise ImageError(f"image {_label(uri)} is over the limit of {limits.max_bytes:,} bytes (max_bytes)")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ImageError(f"image {_label(uri)} has invalid base64 ({e})") from None
    if len(data) > limits.max_bytes:
        raise ImageError(f"image {_label(uri)} is {len(data):,} bytes, over the limit of {limits.max_bytes:,} (max_bytes)")
    return data


def check_url(url: str, limits: ImageLimits) -> tuple[str, int, list[str]]:
    """Refuse a URL unless its host is allowed and every address it resolves to is acceptable.

    Returns (host, port, addresses). The caller connects to one of these addresses, never to the
    name again, so a second DNS answer cannot swap in a private address (DNS rebinding)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ImageError(f"image URL {url} must be http(s)://host/...")
    host = parts.hostname.lower()
    allowed = limits.hosts()
    if host not in allowed and "*" not in allowed:
        raise ImageError(
            f"image URL {url}: host {host!r} is not allowed; add it to allow_hosts in the model's [images] "
            f"table or to ${HOSTS_ENV}"
        )
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ImageError(f"image URL {url}: cannot resolve {host!r} ({e})") from None
    addresses = sorted({info[4][0] for info in infos})
    if not limits.private_allowed():
        for a in addresses:
            why = address_problem(a)
            if why:
                raise ImageError(
                    f"image URL {url}: {host!r} resolves to {a}, {why}; only globally reachable addresses are "
                    f"fetched, unless allow_private = true (or ${PRIVATE_ENV}=1)"
                )
    return host, port, addresses


# IPv6 prefixes whose last 32 bits are an IPv4 address that a translator or tunnel may reach:
# IPv4-compatible (RFC 4291, deprecated but still routed by some stacks), SIIT's IPv4-translated
# (RFC 2765) and the well-known NAT64 prefix (RFC 6052). Each is judged by the IPv4 it carries.
_CARRIES_IPV4 = (
    (ipaddress.ip_network("::/96"), "an IPv4-compatible address"),
    (ipaddress.ip_network("::ffff:0:0:0/96"), "an IPv4-translated (SIIT) address"),
    (ipaddress.ip_network("64:ff9b::/96"), "a NAT64 address"),
)
# The local-use NAT64 prefix (RFC 8215) is not globally reachable by definition (IANA), whatever
# it embeds, and may embed at any prefix length: refused whole.
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")


def address_problem(address: str) -> str | None:
    """Why an address is not one a URL image may come from; None for a globally reachable one.

    Python's `is_global` (IANA's special-purpose registries) is the rule, which covers loopback,
    private, link-local, carrier-grade NAT (100.64.0.0/10), reserved, benchmarking, documentation
    and unspecified addresses. On top of it: multicast, deprecated site-local IPv6, IPv4-mapped
    and local-use NAT64 (64:ff9b:1::/48) addresses, and any IPv6 address that carries an IPv4
    one (IPv4-compatible, SIIT, NAT64, 6to4, Teredo) whose IPv4 is not global, since a
    translator or tunnel reaches that IPv4 address whatever the wrapper says."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return "an IPv4-mapped IPv6 address"
        if ip in _LOCAL_NAT64:
            return "a local-use NAT64 address (64:ff9b:1::/48), not globally reachable"
        for network, kind in _CARRIES_IPV4:
            # :: and ::1 lie in ::/96 too; they are named below as unspecified and loopback.
            if ip in network and not (ip.is_unspecified or ip.is_loopback):
                inner = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
                if address_problem(str(inner)):
                    return f"{kind} of {inner}, which is not global"
        for inner in (ip.sixtofour, ip.teredo[1] if ip.teredo else None):
            if inner is not None and address_problem(str(inner)):
                return f"an IPv6 address carrying {inner}, which is not global"
        if ip.is_site_local:
            return "a site-local address"
    if ip.is_multicast:
        return "a multicast address"
    if not ip.is_global:
        kind = next((name for name, flag in (
            ("loopback", ip.is_loopback), ("link-local", ip.is_link_local), ("unspecified", ip.is_unspecified),
            ("carrier-grade NAT", isinstance(ip, ipaddress.IPv4Address) and ip in ipaddress.ip_network("100.64.0.0/10")),
            ("reserved", ip.is_reserved), ("private", ip.is_private)) if flag), "special-purpose")
        return f"a {kind} address, not globally reachable"
    return None


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to a fixed address while verifying the certificate for the host name."""

    def __init__(self, host: str, address: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def _read_url(url: str, limits: ImageLimits) -> bytes:
    host, port, addresses = check_url(url, limits)
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    address = addresses[0]
    if parts.scheme == "https":
        conn: http.client.HTTPConnection = _PinnedHTTPS(host, address, port, limits.timeout_s)
    else:
        conn = http.client.HTTPConnection(address, port, timeout=limits.timeout_s)
    # The socket timeout bounds each read, not the fetch: a server trickling a byte a second
    # would hold it for ever. A timer closes the connection when the whole fetch's time is up.
    expired = threading.Event()
    sockets: list[socket.socket] = []  # the response keeps the socket after the connection lets go of it

    def expire() -> None:
        expired.set()
        for sock in sockets or ([conn.sock] if conn.sock is not None else []):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    timer = threading.Timer(limits.timeout_s, expire)
    timer.daemon = True
    timer.start()
    late = f"image URL {url} took longer than {limits.timeout_s:g} s in all (timeout_s)"
    try:
        conn.request("GET", path, headers={"Host": parts.netloc, "User-Agent": "vlm-harness"})
        if conn.sock is not None:
            sockets.append(conn.sock)
        if expired.is_set():
            raise ImageError(late)
        resp = conn.getresponse()
        if resp.status != 200:
            # Redirects are not followed: the target would need the same checks, and images rarely move.
            raise ImageError(f"image URL {url}: HTTP {resp.status} {resp.reason}")
        declared = resp.getheader("Content-Length")
        if declared and declared.isdigit() and int(declared) > limits.max_bytes:
            raise ImageError(f"image URL {url} is {int(declared):,} bytes, over the limit of {limits.max_bytes:,} (max_bytes)")
        chunks, size = [], 0
        while size <= limits.max_bytes:
            piece = resp.read1(65536)
            if not piece:
                break
            chunks.append(piece)
            size += len(piece)
        if expired.is_set():  # the shutdown can look like a short, complete body
            raise ImageError(late)
        if size > limits.max_bytes:
            raise ImageError(f"image URL {url} is over the limit of {limits.max_bytes:,} bytes (max_bytes)")
        return b"".join(chunks)
    except (OSError, http.client.HTTPException) as e:
        if expired.is_set():
            raise ImageError(late) from None
        raise ImageError(f"image URL {url} could not be fetched ({type(e).__name__}: {e})") from None
    finally:
        timer.cancel()
        conn.close()


def read_bytes(src: str | Path, limits: ImageLimits | None = None) -> bytes:
    """The encoded bytes of a path, data URI or http(s) URL, after the checks that apply before
    decoding (size, allowed host, global address, deadline); ImageError names the source."""
    limits = limits or ImageLimits()
    if isinstance(src, str) and src.startswith("data:"):
        return _read_data_uri(src, limits)
    if isinstance(src, str) and _URL.match(src):
        return _read_url(src, limits)
    return _read_path(Path(src).expanduser(), limits)


def is_remote(src: str) -> bool:
    """A URL or data URI rather than a path."""
    return src.startswith("data:") or bool(_URL.match(src))


# -- decoding and converting -----------------------------------------------------------------------
def _decode(data: bytes, label: str, limits: ImageLimits) -> Image.Image:
    saved = Image.MAX_IMAGE_PIXELS
    try:
        # PIL's own guard, set to our limit: it warns past it (an error here) and refuses past twice it.
        Image.MAX_IMAGE_PIXELS = max(1, limits.max_pixels)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))  # reads the header only
            w, h = im.size
            if w * h > limits.max_pixels:
                raise ImageError(
                    f"image {label} is {w}×{h} = {w * h:,} pixels, over the limit of {limits.max_pixels:,} "
                    "(max_pixels; a decompression bomb or just too large)"
                )
            if im.format not in FORMATS:
                raise ImageError(f"image {label} is {im.format}; supported: {', '.join(FORMATS)}")
            im.seek(0)  # GIF and animated WebP: the first frame
            im.load()
            return im
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(
            f"image {label} is over the limit of {limits.max_pixels:,} pixels (max_pixels; a decompression bomb "
            f"or just too large): {e}"
        ) from None
    except UnidentifiedImageError:
        raise ImageError(f"image {label} cannot be read (not an image, or a format PIL does not know)") from None
    except Exception as e:  # PIL raises many types for damaged files (OSError for truncation, SyntaxError, ...)
        raise ImageError(f"image {label} cannot be read ({type(e).__name__}: {e}); replace or remove it") from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _to_rgb(im: Image.Image, record: dict[str, Any]) -> Image.Image:
    import numpy as np

    mode = im.mode
    if mode == "RGB":
        return im
    record["converted_from"] = mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if mode.startswith("I") or mode == "F":
        # PIL's own conversion clips at 255, which turns most 16-bit images white: rescale instead.
        a = np.asarray(im, dtype=np.float64)
        if mode.startswith("I;16"):
            a = a / 257.0
        else:
            lo, hi = float(a.min()), float(a.max())
            if lo < 0 or hi > 255:
                a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
        im = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
        record["rescaled_to_8bit"] = True
    if im.mode in ("RGBA", "LA", "PA") or (im.mode in ("L", "RGB") and "transparency" in im.info):
        im = im.convert("RGBA")
        # Models never saw transparency; over white is what a viewer shows.
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im)
        record["alpha_over"] = "white"
    return im.convert("RGB")


def _resize(im: Image.Image, limits: ImageLimits, record: dict[str, Any]) -> Image.Image:
    w, h = im.size
    scale = 1.0
    if limits.min_size and min(w, h) < limits.min_size:
        scale = limits.min_size / min(w, h)
    if limits.max_size and max(w, h) * scale > limits.max_size:
        scale = limits.max_size / max(w, h)  # max_size wins over min_size for very long images
    if scale == 1.0:
        return im
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    method = Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC
    record["resized_to"] = list(size)
    record["resample"] = method.name.lower()
    return im.resize(size, method)


def load_image(src: str | Path | bytes | Image.Image, limits: ImageLimits | None = None) -> tuple[Image.Image, dict[str, Any]]:
    """Read, check and prepare one image; return it (RGB) with the record of what was done."""
    limits = limits or ImageLimits()
    label = _label(src)
    record: dict[str, Any] = {"source": label}
    if isinstance(src, Image.Image):
        w, h = src.size
        if w * h > limits.max_pixels:
            raise ImageError(f"image {label} is {w}×{h}, over the limit of {limits.max_pixels:,} pixels (max_pixels)")
        if getattr(src, "n_frames", 1) > 1:
            src.seek(0)
            record["frames"] = src.n_frames
            record["frame_used"] = 0
        im = src.copy()
        record["format"] = src.format or "PIL"
    else:
        if isinstance(src, bytes | bytearray):
            if len(src) > limits.max_bytes:
                raise ImageError(f"image {label} is over the limit of {limits.max_bytes:,} bytes (max_bytes)")
            data = bytes(src)
        elif isinstance(src, str) and src.startswith("data:"):
            data = _read_data_uri(src, limits)
        elif isinstance(src, str) and _URL.match(src):
            data = _read_url(src, limits)
        elif isinstance(src, str | Path):
            data = _read_path(Path(src).expanduser(), limits)
        else:
            raise ImageError(f"image {label}: give a path, bytes, a PIL image, a data URI or an http(s) URL")
        im = _decode(data, label, limits)
        record["format"] = im.format
        record["bytes"] = len(data)
        if getattr(im, "n_frames", 1) > 1:
            record["frames"] = im.n_frames
            record["frame_used"] = 0
    record["mode"] = im.mode
    record["size"] = list(im.size)
    orientation = im.getexif().get(0x0112, 1)
    if orientation not in (1, None):
        im = ImageOps.exif_transpose(im)
        record["exif_orientation"] = orientation
    im = _to_rgb(im, record)
    im = _resize(im, limits, record)
    record["final_size"] = list(im.size)
    return im, record


def load_images(srcs: tuple | list, limits: ImageLimits | None = None) -> tuple[list[Image.Image], list[dict[str, Any]]]:
    """Prepare every image of one request, after checking how many there are."""
    limits = limits or ImageLimits()
    if len(srcs) > limits.max_images:
        raise ImageError(f"{len(srcs)} images in one request, over the limit of {limits.max_images} (max_images)")
    out = [load_image(s, limits) for s in srcs]
    return [im for im, _ in out], [r for _, r in out]


def record_json(records: list[dict[str, Any]], limits: ImageLimits | None = None) -> str:
    """The `preprocessing` column: what was done to each image, and under which limits.
    The same text as json.dumps({"images": ..., "limits": ...}, sort_keys=True), with the limits'
    part encoded once per limits: it is written for every sample, on the sample's path."""
    images = json.dumps(records, sort_keys=True, separators=(",", ":"))
    return f'{{"images":{images},"limits":{_limits_json(limits or ImageLimits())}}}'


@functools.lru_cache(maxsize=64)
def _limits_json(limits: ImageLimits) -> str:
    lim = asdict(limits)
    lim["allow_hosts"] = list(lim["allow_hosts"])
    return json.dumps(lim, sort_keys=True, separators=(",", ":"))


def to_data_uri(im: Image.Image) -> str:
    """PNG, so the server gets exactly the pixels an in-process run gets."""
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
