"""Bakes the source revision into built wheels: an installed harness has no .git to ask."""

import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


def _revision() -> str | None:
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"], capture_output=True,
                             text=True, timeout=10, cwd=Path(__file__).parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


class BuildPyWithRevision(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "harness" / "_build_info.py"
        target.parent.mkdir(parents=True, exist_ok=True)
        # None when built outside a checkout (an sdist): the row then stores null, not a guess.
        target.write_text(f"GIT_REVISION = {_revision()!r}\n")


setup(cmdclass={"build_py": BuildPyWithRevision})
