"""What machine and software a number was measured on; stored with every row."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from functools import cache
from pathlib import Path

import psutil

from harness import __version__


def _cpu_name() -> str:
    if platform.system() == "Darwin":
        try:
            return subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_revision() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True, text=True, timeout=5,
        )
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def _blas() -> str:
    """Which BLAS the process has mapped: CPU speed on Linux depends on it several-fold."""
    try:
        maps = Path(f"/proc/{os.getpid()}/maps").read_text()
    except OSError:
        return ""
    names = sorted({Path(line.split()[-1]).name for line in maps.splitlines() if "blas" in line.lower()})
    return ",".join(names)


@cache
def collect() -> dict[str, object]:
    """Environment columns; call inside the process that measures (after importing mlx)."""
    import mlx.core as mx

    try:
        import mlx_vlm

        mlx_vlm_version = mlx_vlm.__version__
    except ImportError:
        mlx_vlm_version = ""
    metal = bool(getattr(mx, "metal", None) and mx.metal.is_available())
    return {
        "env_os": f"{platform.system()} {platform.release()}",
        "env_machine": platform.machine(),
        "env_cpu": _cpu_name(),
        "env_cores": psutil.cpu_count(logical=True) or 0,
        "env_ram_bytes": psutil.virtual_memory().total,
        "env_python": platform.python_version(),
        "env_mlx": mx.__version__,
        "env_mlx_vlm": mlx_vlm_version,
        "env_device": str(mx.default_device()),
        "env_metal": metal,
        "env_blas": _blas(),
        "env_host": socket.gethostname(),
        "harness_version": __version__,
        "harness_git": _git_revision(),
    }
