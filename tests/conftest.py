from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory):
    """Fixtures, suite images and runs live in a temporary tree, never the user's cache."""
    base = tmp_path_factory.mktemp("harness")
    saved = {k: os.environ.get(k) for k in ("VLM_HARNESS_FIXTURES", "VLM_HARNESS_CACHE", "HF_HUB_OFFLINE", "VLM_HARNESS_ROOT")}
    os.environ["VLM_HARNESS_FIXTURES"] = str(base / "fixtures")
    os.environ["VLM_HARNESS_CACHE"] = str(base / "cache")
    os.environ["VLM_HARNESS_ROOT"] = str(REPO)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_VERBOSITY"] = "error"
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def fixtures_root(_isolated_env) -> Path:
    from harness.fixtures.build import build_all, default_root

    root = default_root()
    build_all(root)
    return root


@pytest.fixture(scope="session")
def qwen_dir(fixtures_root: Path) -> Path:
    return fixtures_root / "qwen2_5_vl"
