"""The state of the machine while something is measured: other processes' load, clocks, power.

Another process using the CPU, a GPU clocked down by heat, low-power mode or a battery all
change speed figures; a row measured so is flagged (`contended`) and says why (`machine_state`).

Other processes' load is the system's busy CPU time minus this process's own over the same
interval, in cores (1.0 = one core kept busy). CPU times advance in kernel ticks, so a short
sample's figure is coarse: the verdict allows for that, and the load average's last minute is
recorded beside it.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from typing import Any

import psutil

# Others' load at or above this many cores, or this share of all cores, marks a sample contended.
CONTENDED_CORES = 0.5
CONTENDED_SHARE = 0.10
TICK_S = 1 / (os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100)


CORES = psutil.cpu_count(logical=True) or 1


def _own_cpu() -> float:
    """This process's CPU seconds, its children's included (os.times: one system call)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _busy(t: Any) -> float:
    idle = getattr(t, "idle", 0.0) + getattr(t, "iowait", 0.0)
    total = sum(getattr(t, f) for f in t._fields if f not in ("guest", "guest_nice"))  # guest is in user
    return total - idle


_stat_fd: tuple[int, int] | None = None  # (pid, fd) of /proc/stat, opened once per process


def system_busy_s() -> float:
    """All cores' busy CPU seconds since boot. On Linux one read of /proc/stat's first line, kept
    open (psutil's reopening and parsing cost ~0.1 ms twice a sample); psutil elsewhere. The
    fields are user nice system idle iowait irq softirq steal guest guest_nice, in ticks; guest
    time is already inside user, as in _busy."""
    global _stat_fd
    try:
        if _stat_fd is None or _stat_fd[0] != os.getpid():
            _stat_fd = (os.getpid(), os.open("/proc/stat", os.O_RDONLY | os.O_CLOEXEC))
        line = os.pread(_stat_fd[1], 512, 0).split(b"\n", 1)[0].split()
        if line[0] == b"cpu":
            ticks = [int(x) for x in line[1:9]]
            return (sum(ticks) - ticks[3] - ticks[4]) * TICK_S
    except (OSError, ValueError, IndexError):
        pass
    return _busy(psutil.cpu_times())


def _run(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=5)
        return out.stdout if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def cpu_clock() -> dict[str, float] | None:
    try:
        f = psutil.cpu_freq()
    except (OSError, NotImplementedError, AttributeError):
        return None
    if not f or not f.current:
        return None
    return {"cpu_mhz": round(f.current, 1), "cpu_max_mhz": round(f.max, 1) if f.max else None}


def gpu_clocks() -> dict[str, Any] | None:
    """NVIDIA clocks, load and throttle reasons (nvidia-smi), or None where there is none."""
    from harness.measure.environment import nvidia_query

    fields = ("clocks.sm,clocks.max.sm,utilization.gpu,temperature.gpu,power.draw,"
              "clocks_event_reasons.hw_slowdown,clocks_event_reasons.sw_thermal_slowdown,"
              "clocks_event_reasons.sw_power_cap")
    q = nvidia_query(fields)
    if not q or len(q) != 8:
        return None
    keys = ("gpu_sm_mhz", "gpu_max_sm_mhz", "gpu_util_pct", "gpu_temp_c", "gpu_power_w")
    out: dict[str, Any] = {}
    for k, v in zip(keys, q[:5], strict=True):
        try:
            out[k] = float(v)
        except ValueError:
            out[k] = None
    active = [name for name, v in zip(("hw_slowdown", "thermal", "power_cap"), q[5:], strict=True) if v == "Active"]
    out["gpu_throttle"] = active
    return out


def power_state() -> dict[str, Any]:
    """Power source and battery; on macOS also low-power mode and the thermal state."""
    out: dict[str, Any] = {}
    try:
        b = psutil.sensors_battery()
    except (AttributeError, OSError, NotImplementedError):
        b = None
    if b is not None:
        out["on_battery"] = not b.power_plugged
        out["battery_pct"] = round(b.percent, 1)
    if platform.system() == "Darwin":
        text = _run(["pmset", "-g"])
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "lowpowermode":
                out["low_power_mode"] = parts[1] == "1"
        therm = _run(["pmset", "-g", "therm"])
        for line in therm.splitlines():
            if "CPU_Speed_Limit" in line:
                try:
                    out["cpu_speed_limit_pct"] = int(line.split("=")[-1])
                except ValueError:
                    pass
        level = _run(["sysctl", "-n", "machdep.xcpm.cpu_thermal_level"]).strip()
        if level.isdigit():
            out["thermal_level"] = int(level)
    return out


def snapshot(gpu: bool = False) -> dict[str, Any]:
    """The machine's state now: per run, beside the per-sample figures."""
    out: dict[str, Any] = {"load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
                           "cores": psutil.cpu_count(logical=True)}
    out.update(cpu_clock() or {})
    out.update(power_state())
    if gpu:
        out.update(gpu_clocks() or {})
    return out


class _Poller:
    """snapshot() refreshed in a background thread, at most once per `interval_s`: the GPU query
    (nvidia-smi) and macOS's pmset take tens of milliseconds, which must not sit on a sample's
    path. A sample reads the latest snapshot, whose age is recorded with it."""

    def __init__(self, gpu: bool, interval_s: float = 1.0) -> None:
        import threading

        self.gpu, self.interval_s = gpu, interval_s
        self.latest: dict[str, Any] = snapshot(gpu)
        self.at = time.monotonic()
        threading.Thread(target=self._loop, name="machine-state", daemon=True).start()

    def _loop(self) -> None:
        while True:
            time.sleep(self.interval_s)
            self.latest, self.at = snapshot(self.gpu), time.monotonic()

    def read(self) -> dict[str, Any]:
        return {**self.latest, "state_age_s": round(time.monotonic() - self.at, 3)}


_POLLERS: dict[bool, _Poller] = {}


def recent_snapshot(gpu: bool = False) -> dict[str, Any]:
    """The machine's state as of at most about a second ago, never waiting for a slow query."""
    if gpu not in _POLLERS:
        _POLLERS[gpu] = _Poller(gpu)
    return _POLLERS[gpu].read()


def throttled(state: dict[str, Any]) -> list[str]:
    """Reasons the machine ran below its normal speed, from a state dict."""
    why = []
    if state.get("low_power_mode"):
        why.append("low-power mode")
    if (state.get("cpu_speed_limit_pct") or 100) < 100:
        why.append(f"CPU speed limit {state['cpu_speed_limit_pct']} %")
    if (state.get("thermal_level") or 0) > 0:
        why.append(f"thermal level {state['thermal_level']}")
    if state.get("gpu_throttle"):
        why.append("GPU " + "+".join(state["gpu_throttle"]))
    return why


@dataclass
class SampleMonitor:
    """Brackets one sample: `start()` before it, `stop()` after; stop returns (contended, state).

    Reading /proc/stat and os.times twice costs microseconds; clocks, power and the GPU query
    (nvidia-smi, tens of milliseconds) come from a background poller (recent_snapshot), so
    nothing slow runs on the sample's path.
    """

    gpu: bool = False

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._sys0 = system_busy_s()
        self._own0 = _own_cpu()

    def stop(self) -> tuple[bool, dict[str, Any]]:
        wall = time.perf_counter() - self._t0
        sys_busy = system_busy_s() - self._sys0
        own = _own_cpu() - self._own0
        cores = CORES
        others = max(0.0, sys_busy - own) / wall if wall > 0 else 0.0
        state = recent_snapshot(self.gpu)
        state.update({"wall_s": round(wall, 4), "own_cpu_cores": round(own / wall, 3) if wall > 0 else None,
                      "others_cpu_cores": round(others, 3)})
        reasons = throttled(state)
        # CPU times advance in ticks (10 ms per core): over a short sample the figure is only good
        # to about two ticks per core over the wall time, and that margin is added to the threshold.
        resolution = 2 * TICK_S * cores / wall if wall > 0 else float("inf")
        state["others_resolution_cores"] = round(min(resolution, 1e6), 3)
        if others >= max(CONTENDED_CORES, CONTENDED_SHARE * cores) + resolution:
            reasons.insert(0, f"other processes used {others:.2f} cores")
        state["contended_by"] = reasons
        return bool(reasons), state

    @staticmethod
    def encode(state: dict[str, Any]) -> str:
        return json.dumps(state, sort_keys=True)
