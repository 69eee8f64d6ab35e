"""What machine and software a number was measured on; stored with every row."""

from __future__ import annotations

import os
import platform
import re
import socket
import subprocess
from dataclasses import dataclass
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


def _git_from_checkout() -> str | None:
    root = Path(__file__).resolve().parents[2]  # harness/measure/environment.py -> the checkout
    if not (root / ".git").exists():  # an installed copy: a git call would describe some other repository
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True, text=True, timeout=5,
        )
        return (out.stdout.strip() or None) if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _git_from_install() -> str | None:
    """The commit pip recorded when it installed from a git URL or a checkout (PEP 610)."""
    import json
    from importlib import metadata

    try:
        text = metadata.distribution("vlm-harness").read_text("direct_url.json")
        info = json.loads(text) if text else {}
    except (metadata.PackageNotFoundError, ValueError, OSError):
        return None
    commit = (info.get("vcs_info") or {}).get("commit_id")
    return str(commit)[:12] if commit else None


def git_revision() -> str | None:
    """The harness's source revision: the checkout's `git describe`, else the build's baked
    revision (harness/_build_info.py, written when a wheel is built), else pip's direct_url.json;
    None when nothing says, never a guess."""
    rev = _git_from_checkout()
    if rev:
        return rev
    try:
        from harness._build_info import GIT_REVISION  # type: ignore[import-not-found]

        if GIT_REVISION:
            return str(GIT_REVISION)
    except ImportError:
        pass
    return _git_from_install()


def _blas() -> str:
    """Which BLAS the process has mapped: CPU speed on Linux depends on it several-fold."""
    try:
        maps = Path(f"/proc/{os.getpid()}/maps").read_text()
    except OSError:
        return ""
    names = sorted({Path(line.split()[-1]).name for line in maps.splitlines() if "blas" in line.lower()})
    return ",".join(names)


# -- which machine ----------------------------------------------------------------------------------
MACHINE_ID_ENV = "VLM_HARNESS_MACHINE_ID"


def _raw_machine_id() -> str:
    """The operating system's own id of this installation: /etc/machine-id (systemd, D-Bus) on
    Linux, the IOPlatformUUID on macOS; else the network card's address and the host name."""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text:
            return text
    if platform.system() == "Darwin":
        try:
            out = subprocess.run(["ioreg", "-rd1", "-c", "IOPlatformExpertDevice"], capture_output=True, text=True,
                                 timeout=5).stdout
            m = re.search(r'"IOPlatformUUID"\s*=\s*"([^"]+)"', out)
            if m:
                return m.group(1)
        except (OSError, subprocess.SubprocessError):
            pass
    import uuid

    node = uuid.getnode()
    # Where no network card can be read (a container without one), getnode() makes up a random
    # number in each process, with the multicast bit set (RFC 4122, section 4.5): every worker would
    # then be a machine of its own, and a run's speed verdicts would compare no two models. The
    # host name, CPU and core count stay the same from process to process; the memory size does not
    # (a VM's balloon changes it).
    if node >> 40 & 1:
        return f"host-{socket.gethostname()}-{_cpu_name()}-{os.cpu_count()}"
    return f"{node:012x}-{socket.gethostname()}"


@cache
def machine_id() -> str:
    """A stable id of the machine, the same in every run on it: speed is grouped by it when runs
    from many machines are merged. A digest of the OS's id (that id is meant to stay private), or
    VLM_HARNESS_MACHINE_ID as given, for containers cloned from one image, which share the OS's id."""
    import hashlib

    given = os.environ.get(MACHINE_ID_ENV, "").strip()
    if given:
        return given
    return hashlib.sha256(b"vlm-harness machine " + _raw_machine_id().encode()).hexdigest()[:16]


# -- the device MLX computes on -------------------------------------------------------------------
@dataclass(frozen=True)
class Device:
    backend: str  # "cpu", "metal" or "cuda"
    name: str  # "NVIDIA H200", "Apple M4 Pro", the CPU's model name
    memory_bytes: int | None  # the device's own memory (unified memory / RAM on Metal and CPU)
    driver: str | None = None  # GPU driver version (CUDA)
    cuda: str | None = None  # the CUDA version the driver supports
    index: int = 0


def _nvidia_smi(*args: str) -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def cuda_visible_index() -> int:
    """nvidia-smi's index of MLX's device 0: the first of CUDA_VISIBLE_DEVICES when numeric."""
    first = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip()
    return int(first) if first.isdigit() else 0


def nvidia_query(fields: str, index: int | None = None) -> list[str] | None:
    """One GPU's values for nvidia-smi's --query-gpu fields, e.g. "name,memory.total"."""
    i = cuda_visible_index() if index is None else index
    out = _nvidia_smi(f"--query-gpu={fields}", "--format=csv,noheader,nounits", f"--id={i}")
    if not out or not out.strip():
        return None
    return [v.strip() for v in out.strip().splitlines()[0].split(",")]


def _cuda_device() -> Device:
    import mlx.core as mx

    info: dict = {}
    try:
        info = dict(mx.device_info())
    except Exception:
        pass
    name, memory, driver, cuda = str(info.get("device_name") or "CUDA GPU"), info.get("memory_size"), None, None
    q = nvidia_query("name,memory.total,driver_version")
    if q and len(q) == 3:
        name, driver = q[0], q[2]
        try:
            memory = int(float(q[1]) * 2**20)  # MiB
        except ValueError:
            pass
    head = _nvidia_smi() or ""
    m = re.search(r"CUDA Version:\s*([\d.]+)", head)
    if m:
        cuda = m.group(1)
    return Device("cuda", name, int(memory) if memory else None, driver, cuda, cuda_visible_index())


@cache
def device() -> Device:
    """The device MLX's default stream runs on, named as its maker names it."""
    import mlx.core as mx

    if mx.default_device() == mx.gpu:
        if getattr(mx, "cuda", None) is not None and mx.cuda.is_available():
            return _cuda_device()
        if mx.metal.is_available():
            info = mx.metal.device_info() if hasattr(mx.metal, "device_info") else mx.device_info()
            name = str(info.get("device_name") or "") or _cpu_name()
            if not name.startswith("Apple"):
                name = _cpu_name()  # "applegpu_g16s" names the GPU family, the brand string the chip
            return Device("metal", name, int(info.get("memory_size") or psutil.virtual_memory().total))
        return Device("gpu", "unknown GPU", None)
    return Device("cpu", _cpu_name(), int(psutil.virtual_memory().total))


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
    dev = device()
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
        "env_cpu_affinity": cpu_affinity(),
        "env_host": socket.gethostname(),
        "machine_id": machine_id(),
        "env_backend": dev.backend,
        "env_device_name": dev.name,
        "env_device_memory_bytes": dev.memory_bytes,
        "env_gpu_driver": dev.driver,
        "env_cuda": dev.cuda,
        "harness_version": __version__,
        "harness_git": git_revision(),
    }


def cpu_affinity() -> str:
    """The cores this process may run on, as "0-1" or "1" ("" where the system cannot say)."""
    try:
        cores = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return ""
    spans, start = [], cores[0] if cores else None
    for a, b in zip(cores, cores[1:] + [None], strict=True):
        if b != a + 1:
            spans.append(f"{start}" if start == a else f"{start}-{a}")
            start = b
    return ",".join(spans)


def import_seconds(modules: tuple[str, ...] = ("mlx.core", "mlx_vlm")) -> float:
    """Seconds to import the backend, as a user's first `import` pays it.

    Timed in this process when none of `modules` is imported yet (call it first thing in the
    measuring process); otherwise in a fresh interpreter, less that interpreter's own start-up,
    since a second import in one process costs nothing and would say ~0.
    """
    import importlib
    import sys
    import time

    if not any(m in sys.modules for m in modules):
        t0 = time.perf_counter()
        for m in modules:
            importlib.import_module(m)
        return time.perf_counter() - t0

    def fresh(code: str) -> float:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300)
        return time.perf_counter() - t0

    key = tuple(modules)
    if key not in _IMPORT_S:  # once per process: a second figure would differ only by noise
        bare = fresh("pass")
        _IMPORT_S[key] = max(0.0, fresh("import " + ", ".join(modules)) - bare)
    return _IMPORT_S[key]


_IMPORT_S: dict[tuple[str, ...], float] = {}
