from __future__ import annotations

import base64
import io
import json
import struct
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from harness.images import (
    HOSTS_ENV,
    PRIVATE_ENV,
    ImageError,
    ImageLimits,
    load_image,
    load_images,
    record_json,
    to_data_uri,
)


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def colour_image(size=(40, 20), colour=(200, 30, 40)) -> Image.Image:
    return Image.new("RGB", size, colour)


# -- formats and inputs ---------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF"])
def test_every_format_decodes_to_rgb(fmt):
    im, rec = load_image(encode(colour_image(), fmt))
    assert im.mode == "RGB" and im.size == (40, 20)
    assert rec["format"] == fmt
    r, g, b = im.getpixel((20, 10))
    assert r > 150 and g < 80 and b < 80  # still red after lossy or palette coding


def test_gif_uses_the_first_frame():
    frames = [colour_image(colour=(255, 0, 0)), colour_image(colour=(0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    im, rec = load_image(data)
    assert rec["frames"] == 2 and rec["frame_used"] == 0
    assert im.getpixel((5, 5))[0] > 200 and im.getpixel((5, 5))[2] < 50


def test_path_bytes_pil_and_data_uri_give_the_same_pixels(tmp_path):
    data = encode(colour_image(), "PNG")
    path = tmp_path / "x.png"
    path.write_bytes(data)
    uri = "data:image/png;base64," + base64.b64encode(data).decode()
    outs = [load_image(src)[0] for src in (path, str(path), data, Image.open(io.BytesIO(data)), uri)]
    arrays = [np.asarray(o) for o in outs]
    for a in arrays[1:]:
        assert np.array_equal(a, arrays[0])


def test_data_uri_round_trip_is_lossless():
    im = Image.fromarray(np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8))
    back, _ = load_image(to_data_uri(im))
    assert np.array_equal(np.asarray(back), np.asarray(im))


def test_bad_data_uri_and_unknown_input_are_errors():
    with pytest.raises(ImageError, match="base64"):
        load_image("data:image/png;base64,@@@@")
    with pytest.raises(ImageError, match="data URI"):
        load_image("data:text/plain,hello")
    with pytest.raises(ImageError, match="give a path"):
        load_image(12345)  # type: ignore[arg-type]


# -- modes ----------------------------------------------------------------------------------------
def test_rgba_is_composited_over_white():
    im = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red
    im.putpixel((0, 0), (0, 0, 255, 255))
    out, rec = load_image(encode(im, "PNG"))
    assert out.getpixel((1, 1)) == (255, 255, 255)
    assert out.getpixel((0, 0)) == (0, 0, 255)
    assert rec["converted_from"] == "RGBA" and rec["alpha_over"] == "white"


def test_la_half_transparent_black_is_grey():
    out, _ = load_image(encode(Image.new("LA", (4, 4), (0, 128)), "PNG"))
    assert out.getpixel((0, 0))[0] == pytest.approx(127, abs=2)


def test_palette_with_and_without_transparency():
    p = colour_image().convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    out, rec = load_image(encode(p, "PNG"))
    assert rec["converted_from"] == "P" and out.getpixel((3, 3))[0] > 150
    q = Image.new("P", (4, 4), 0)
    q.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    q.putpixel((1, 1), 1)
    q.info["transparency"] = 0
    out, rec = load_image(encode(q, "PNG", transparency=0))
    assert out.getpixel((0, 0)) == (255, 255, 255)  # transparent index over white
    assert out.getpixel((1, 1)) == (0, 255, 0)
    assert rec["alpha_over"] == "white"


def test_grey_and_cmyk():
    out, rec = load_image(encode(Image.new("L", (4, 4), 90), "PNG"))
    assert out.getpixel((0, 0)) == (90, 90, 90) and rec["converted_from"] == "L"
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # red in CMYK
    out, rec = load_image(encode(cmyk, "JPEG"))
    r, g, b = out.getpixel((4, 4))
    assert rec["converted_from"] == "CMYK" and r > 200 and g < 60 and b < 60


def test_sixteen_bit_is_rescaled_not_clipped():
    a = np.full((4, 4), 32896, dtype=np.uint16)  # mid-grey in 16 bits
    im = Image.fromarray(a)
    assert im.mode == "I;16"
    out, rec = load_image(encode(im, "PNG"))
    assert rec["converted_from"].startswith("I") and rec["rescaled_to_8bit"]
    assert out.getpixel((0, 0))[0] == 128  # PIL's plain convert would give 255


@pytest.mark.parametrize("mode", ["I", "F"])
def test_wide_integer_and_float_images_are_stretched(mode):
    a = np.array([[0, 1000], [2000, 4000]], dtype=np.int32 if mode == "I" else np.float32)
    out, rec = load_image(Image.fromarray(a, mode))
    assert rec["converted_from"] == mode
    assert out.getpixel((0, 0))[0] == 0 and out.getpixel((1, 1))[0] == 255
    assert 50 < out.getpixel((1, 0))[0] < 80  # 1000/4000 of the range


def test_exif_orientation_is_applied():
    im = colour_image((40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    out, rec = load_image(encode(im, "JPEG", exif=exif.tobytes()))
    assert out.size == (20, 40)
    assert rec["exif_orientation"] == 6 and rec["size"] == [40, 20]


# -- resizing -------------------------------------------------------------------------------------
def test_resize_keeps_aspect_ratio_both_ways():
    big, rec = load_image(colour_image((1000, 500)), ImageLimits(max_size=200))
    assert big.size == (200, 100) and rec["resized_to"] == [200, 100] and rec["resample"] == "lanczos"
    small, rec = load_image(colour_image((30, 15)), ImageLimits(min_size=60))
    assert small.size == (120, 60) and rec["resample"] == "bicubic"
    same, rec = load_image(colour_image((100, 50)), ImageLimits(max_size=200, min_size=20))
    assert same.size == (100, 50) and "resized_to" not in rec
    # a very long strip: max_size wins over min_size
    strip, _ = load_image(colour_image((1000, 10)), ImageLimits(max_size=500, min_size=50))
    assert strip.size == (500, 5)


# -- limits ---------------------------------------------------------------------------------------
def test_byte_limit_for_every_input(tmp_path):
    data = encode(colour_image((64, 64)), "PNG")
    limits = ImageLimits(max_bytes=len(data) - 1)
    path = tmp_path / "a.png"
    path.write_bytes(data)
    uri = "data:image/png;base64," + base64.b64encode(data).decode()
    for src in (path, data, uri):
        with pytest.raises(ImageError, match="max_bytes"):
            load_image(src, limits)
    assert load_image(data, ImageLimits(max_bytes=len(data)))[0].size == (64, 64)


def _png_claiming(width: int, height: int) -> bytes:
    """A valid 1×1 PNG whose header claims width × height: what a decompression bomb looks like
    before it is decoded."""
    data = bytearray(encode(Image.new("L", (1, 1)), "PNG"))
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr - 4:ihdr + 13]))
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


def test_decompression_bomb_is_refused_from_its_header():
    bomb = _png_claiming(100_000, 100_000)
    assert len(bomb) < 100
    with pytest.raises(ImageError, match="max_pixels"):
        load_image(bomb)


def test_a_real_highly_compressed_image_over_the_pixel_limit():
    data = encode(Image.new("L", (3000, 3000)), "PNG")  # 9 MP of zeros in ~10 kB
    assert len(data) < 50_000
    with pytest.raises(ImageError, match="max_pixels"):
        load_image(data, ImageLimits(max_pixels=1_000_000))
    with pytest.raises(ImageError, match="max_pixels"):
        load_image(Image.new("L", (2000, 2000)), ImageLimits(max_pixels=1_000_000))
    assert load_image(data, ImageLimits(max_pixels=9_000_000))[0].size == (3000, 3000)


def test_image_count_limit():
    ims = [colour_image() for _ in range(3)]
    with pytest.raises(ImageError, match="max_images"):
        load_images(ims, ImageLimits(max_images=2))
    out, recs = load_images(ims[:2], ImageLimits(max_images=2))
    assert len(out) == len(recs) == 2


def test_truncated_missing_and_foreign_files(tmp_path):
    data = encode(Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)), "PNG")
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cut.png.*cannot be read"):
        load_image(cut)
    with pytest.raises(ImageError, match="does not exist"):
        load_image(tmp_path / "nope.png")
    txt = tmp_path / "notes.png"
    txt.write_text("not an image")
    with pytest.raises(ImageError, match="notes.png"):
        load_image(txt)
    with pytest.raises(ImageError, match="TIFF.*supported"):
        load_image(encode(colour_image(), "TIFF"))


def test_limits_from_a_model_file_table_are_checked():
    lim = ImageLimits.from_dict({"max_size": 512, "allow_hosts": ["Example.org"]})
    assert lim.max_size == 512 and lim.allow_hosts == ("example.org",)
    with pytest.raises(ValueError, match="unknown field 'max_sise'"):
        ImageLimits.from_dict({"max_sise": 1})
    with pytest.raises(ValueError, match="max_bytes"):
        ImageLimits.from_dict({"max_bytes": "big"})
    with pytest.raises(ValueError, match="min_size"):
        ImageLimits.from_dict({"max_size": 100, "min_size": 200})


def test_record_json_names_what_was_done():
    _, rec = load_image(Image.new("RGBA", (300, 100)), ImageLimits(max_size=150))
    doc = json.loads(record_json([rec], ImageLimits(max_size=150)))
    assert doc["limits"]["max_size"] == 150
    assert doc["images"][0]["converted_from"] == "RGBA" and doc["images"][0]["final_size"] == [150, 50]


# -- URLs (a real HTTP server on 127.0.0.1) -------------------------------------------------------
PNG = encode(colour_image((10, 10)), "PNG")


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        if self.path == "/img.png":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(PNG)))
            self.end_headers()
            self.wfile.write(PNG)
        elif self.path == "/trickle.png":  # a byte every 0.4 s: each read is quick, the whole never ends
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(PNG)))
            self.end_headers()
            try:
                for byte in PNG[:60]:  # bounded: stops by itself after ~24 s even if nobody hangs up
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.4)
            except OSError:
                pass
        else:
            self.send_error(404)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def http_server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_url_host_must_be_allowed(http_server, monkeypatch):
    monkeypatch.delenv(HOSTS_ENV, raising=False)
    with pytest.raises(ImageError, match="not allowed"):
        load_image(f"{http_server}/img.png")


def test_loopback_is_refused_by_default_and_allowed_when_configured(http_server, monkeypatch):
    monkeypatch.delenv(PRIVATE_ENV, raising=False)
    with pytest.raises(ImageError, match="a loopback address, not globally reachable"):
        load_image(f"{http_server}/img.png", ImageLimits(allow_hosts=("127.0.0.1",)))
    im, rec = load_image(f"{http_server}/img.png", ImageLimits(allow_hosts=("127.0.0.1",), allow_private=True))
    assert im.size == (10, 10) and rec["bytes"] == len(PNG)
    # the same through the environment
    monkeypatch.setenv(HOSTS_ENV, "127.0.0.1")
    monkeypatch.setenv(PRIVATE_ENV, "1")
    assert load_image(f"{http_server}/img.png")[0].size == (10, 10)


def test_every_resolved_address_is_checked(monkeypatch):
    # "localhost" resolves to loopback addresses only: refused even though the host is allowed.
    monkeypatch.delenv(PRIVATE_ENV, raising=False)
    with pytest.raises(ImageError, match="a loopback address, not globally reachable"):
        load_image("http://localhost:9/x.png", ImageLimits(allow_hosts=("localhost",)))


def test_url_errors_and_size_limit(http_server):
    ok = ImageLimits(allow_hosts=("127.0.0.1",), allow_private=True)
    with pytest.raises(ImageError, match="HTTP 404"):
        load_image(f"{http_server}/missing.png", ok)
    with pytest.raises(ImageError, match="max_bytes"):
        load_image(f"{http_server}/img.png", ImageLimits(allow_hosts=("127.0.0.1",), allow_private=True, max_bytes=10))
    with pytest.raises(ImageError, match="http"):
        load_image("ftp://127.0.0.1/x.png", ok)


def test_a_trickling_server_cannot_hold_a_fetch_past_timeout_s(http_server):
    limits = ImageLimits(allow_hosts=("127.0.0.1",), allow_private=True, timeout_s=1.5)
    t0 = time.monotonic()
    with pytest.raises(ImageError, match=r"took longer than 1.5 s in all \(timeout_s\)"):
        load_image(f"{http_server}/trickle.png", limits)
    assert time.monotonic() - t0 < 3.0
    # the same limits fetch a prompt server's image
    assert load_image(f"{http_server}/img.png", limits)[0].size == (10, 10)


@pytest.mark.parametrize("address, why", [
    ("127.0.0.1", "loopback"), ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"), ("100.64.0.1", "carrier-grade NAT"), ("100.127.255.254", "carrier-grade NAT"),
    ("0.0.0.0", "unspecified"), ("240.0.0.1", "reserved"), ("255.255.255.255", "not globally reachable"),
    ("224.0.0.1", "multicast"), ("239.255.255.250", "multicast"), ("198.18.0.1", "not globally reachable"),
    ("192.0.2.1", "not globally reachable"), ("192.0.0.1", "not globally reachable"),
    ("::1", "loopback"), ("::", "unspecified"), ("fe80::1%eth0", "link-local"), ("fc00::1", "private"),
    ("fec0::1", "site-local"), ("ff02::1", "multicast"), ("ff0e::1", "multicast"), ("2001:db8::1", "not globally"),
    ("::ffff:127.0.0.1", "IPv4-mapped"), ("::ffff:8.8.8.8", "IPv4-mapped"), ("64:ff9b::7f00:1", "NAT64"),
    ("64:ff9b::a00:1", "NAT64"), ("2002:7f00:1::", "carrying 127.0.0.1"), ("2002:a00:1::1", "carrying 10.0.0.1"),
    ("::127.0.0.1", "IPv4-compatible address of 127.0.0.1"), ("::10.0.0.1", "IPv4-compatible address of 10.0.0.1"),
    ("::ffff:0:127.0.0.1", "SIIT) address of 127.0.0.1"), ("::ffff:0:a00:1", "SIIT) address of 10.0.0.1"),
    ("64:ff9b:1::a00:1", "local-use NAT64"), ("64:ff9b:1::808:808", "local-use NAT64"),
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "carrying 10.0.0.1"),
    ("not-an-ip", "not an IP address"),
])
def test_every_non_global_address_is_refused(address, why):
    """Unit checks of the rule alone: no traffic goes to any of these addresses."""
    from harness.images import address_problem

    problem = address_problem(address)
    assert problem is not None and why in problem


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "64:ff9b::808:808",
                                     "2002:808:808::1", "::8.8.8.8", "::ffff:0:808:808"])
def test_global_addresses_pass(address):
    from harness.images import address_problem

    assert address_problem(address) is None


def test_a_carrier_grade_nat_host_is_refused_before_any_connection(monkeypatch):
    import socket as socket_module

    monkeypatch.delenv(PRIVATE_ENV, raising=False)
    # A name that resolves to 100.64.0.1: the resolver is replaced, so nothing is sent anywhere.
    monkeypatch.setattr(socket_module, "getaddrinfo",
                        lambda *a, **k: [(socket_module.AF_INET, socket_module.SOCK_STREAM, 6, "", ("100.64.0.1", 80))])
    with pytest.raises(ImageError, match="100.64.0.1, a carrier-grade NAT address"):
        load_image("http://cgn.example/x.png", ImageLimits(allow_hosts=("cgn.example",)))
