from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def bench_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fixtures and runs in a temporary tree, offline, as in tests/."""
    base = tmp_path_factory.mktemp("perf")
    os.environ["VLM_HARNESS_FIXTURES"] = str(base / "fixtures")
    os.environ.setdefault("VLM_HARNESS_CACHE", str(base / "cache"))
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_VERBOSITY"] = "error"
    return base
