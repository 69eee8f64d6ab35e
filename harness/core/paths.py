"""Where the project's declarative files live: suites/, datasets/, reports/.

They sit beside the package in a checkout. An environment variable or the working directory
can point elsewhere, so an installed harness still finds a user's own suites.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_PARENT = Path(__file__).resolve().parents[2]  # harness/core/paths.py -> the checkout


def project_root() -> Path:
    env = os.environ.get("VLM_HARNESS_ROOT")
    if env:
        return Path(env).expanduser().resolve()
    cwd = Path.cwd()
    if (cwd / "suites").is_dir() and (cwd / "datasets").is_dir():
        return cwd
    return PACKAGE_PARENT


def suites_dir() -> Path:
    return project_root() / "suites"


def datasets_dir() -> Path:
    return project_root() / "datasets"


def reports_dir() -> Path:
    return project_root() / "reports"


def cache_dir() -> Path:
    env = os.environ.get("VLM_HARNESS_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vlm-harness"
