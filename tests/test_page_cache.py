from __future__ import annotations

import os
import platform

import pytest

from harness.measure.page_cache import drop_page_cache, resident_fraction


@pytest.mark.skipif(platform.system() != "Linux", reason="posix_fadvise and mincore are Linux's")
def test_dropping_a_checkpoint_evicts_its_pages(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    f = ckpt / "model.safetensors"
    f.write_bytes(os.urandom(16 * 2**20))
    f.read_bytes()
    assert resident_fraction(f) > 0.9  # just written and read: in the cache
    assert drop_page_cache(ckpt) is True
    assert resident_fraction(f) < 0.1
    f.read_bytes()
    assert resident_fraction(f) > 0.9  # a read brings it back: the measurement sees a real change


def test_a_missing_path_is_not_reported_as_dropped(tmp_path):
    assert drop_page_cache(tmp_path / "nope") is False
