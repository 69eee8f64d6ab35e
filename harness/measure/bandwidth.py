"""The physical limit on decode speed: memory bandwidth over the bytes read per decoded token.

Decoding one token reads every language-model weight once (at its stored precision: a 4-bit
checkpoint reads its packed weights, scales and biases) plus the KV cache so far. No kernel can
go faster than `bandwidth / bytes_per_token`; a figure above that bound is a measurement error.

The vision tower and projector run once per image, at prefill, so they are not counted; the
embedding table is read one row per token (negligible), except when it doubles as lm_head.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core import checkpoint
from harness.core.paths import cache_dir

GB = 1e9  # bandwidth is quoted in decimal GB/s, as Apple and every datasheet do
GIB = 2**30

# Apple's published unified-memory bandwidth, GB/s. A binned Max (fewer GPU cores) has less:
# M3 Max 300, M4 Max 410; the table takes the full part, so the bound stays an upper limit.
APPLE_BANDWIDTH_GBPS: dict[str, float] = {
    "M1": 68.25, "M1 Pro": 200, "M1 Max": 400, "M1 Ultra": 800,
    "M2": 100, "M2 Pro": 200, "M2 Max": 400, "M2 Ultra": 800,
    "M3": 100, "M3 Pro": 150, "M3 Max": 400, "M3 Ultra": 819,
    "M4": 120, "M4 Pro": 273, "M4 Max": 546,
    "M5": 153,
}

# Vendors' datasheet memory bandwidth for common discrete GPUs, GB/s: (pattern on the name the
# driver reports, row, GB/s, source). First match wins, so a specific part precedes its family;
# where the name cannot tell two parts apart the faster one is taken (the bound stays an upper one).
GPU_BANDWIDTH_GBPS: list[tuple[str, str, float, str]] = [
    (r"GH200", "GH200 (HBM3e)", 4900, "NVIDIA GH200 Grace Hopper Superchip datasheet"),
    (r"H200", "H200", 4800, "NVIDIA H200 Tensor Core GPU datasheet (SXM and NVL)"),
    (r"H100.*NVL", "H100 NVL", 3900, "NVIDIA H100 Tensor Core GPU datasheet"),
    (r"H100.*PCIe", "H100 PCIe", 2000, "NVIDIA H100 Tensor Core GPU datasheet"),
    (r"H100", "H100 SXM", 3350, "NVIDIA H100 Tensor Core GPU datasheet"),
    (r"H800", "H800 SXM", 3350, "NVIDIA H800 datasheet"),
    (r"B200", "B200", 8000, "NVIDIA DGX B200 / HGX B200 datasheet"),
    (r"A100.*(80GB.*PCIe|PCIE.*80GB)", "A100 80GB PCIe", 1935, "NVIDIA A100 Tensor Core GPU datasheet"),
    (r"A100.*80GB", "A100 80GB SXM", 2039, "NVIDIA A100 Tensor Core GPU datasheet"),
    (r"A100", "A100 40GB", 1555, "NVIDIA A100 Tensor Core GPU datasheet"),
    (r"L40S", "L40S", 864, "NVIDIA L40S datasheet"),
    (r"L40\b", "L40", 864, "NVIDIA L40 datasheet"),
    (r"\bL4\b", "L4", 300, "NVIDIA L4 Tensor Core GPU datasheet"),
    (r"A10G", "A10G", 600, "NVIDIA A10 datasheet (AWS A10G)"),
    (r"\bA10\b", "A10", 600, "NVIDIA A10 Tensor Core GPU datasheet"),
    (r"\bT4\b", "T4", 320, "NVIDIA T4 datasheet"),
    (r"V100", "V100 SXM2", 900, "NVIDIA V100 datasheet"),
    (r"RTX 6000 Ada", "RTX 6000 Ada", 960, "NVIDIA RTX 6000 Ada Generation datasheet"),
    (r"RTX A6000", "RTX A6000", 768, "NVIDIA RTX A6000 datasheet"),
    (r"RTX 5090", "GeForce RTX 5090", 1792, "NVIDIA GeForce RTX 5090 specifications"),
    (r"RTX 4090", "GeForce RTX 4090", 1008, "NVIDIA GeForce RTX 4090 specifications"),
    (r"RTX 4080", "GeForce RTX 4080", 716.8, "NVIDIA GeForce RTX 4080 specifications"),
    (r"RTX 3090 Ti", "GeForce RTX 3090 Ti", 1008, "NVIDIA GeForce RTX 3090 Ti specifications"),
    (r"RTX 3090", "GeForce RTX 3090", 936, "NVIDIA GeForce RTX 3090 specifications"),
    (r"MI325X", "Instinct MI325X", 6000, "AMD Instinct MI325X datasheet"),
    (r"MI300X", "Instinct MI300X", 5300, "AMD Instinct MI300X datasheet"),
    (r"MI300A", "Instinct MI300A", 5300, "AMD Instinct MI300A datasheet"),
    (r"MI250X", "Instinct MI250X", 3276.8, "AMD Instinct MI250X datasheet"),
    (r"MI250", "Instinct MI250", 3276.8, "AMD Instinct MI250 datasheet"),
    (r"MI210", "Instinct MI210", 1638.4, "AMD Instinct MI210 datasheet"),
]

PROBE_VERSION = 2  # bumped when the probe changes, so older cached figures are measured again


# -- datasheet figures ------------------------------------------------------------------------
def apple_chip(brand: str) -> str | None:
    """'Apple M4 Pro' -> 'M4 Pro'; None when the brand string names no known chip."""
    m = re.search(r"\bM(\d+)(?:\s+(Pro|Max|Ultra))?\b", brand)
    if not m or "Apple" not in brand:
        return None
    chip = f"M{m.group(1)}" + (f" {m.group(2)}" if m.group(2) else "")
    return chip if chip in APPLE_BANDWIDTH_GBPS else None


def datasheet(device_name: str) -> tuple[str, float] | None:
    """(row, GB/s) of the datasheet table for a device's name; None for an unknown device or a CPU."""
    chip = apple_chip(device_name)
    if chip:
        return f"Apple {chip}", float(APPLE_BANDWIDTH_GBPS[chip])
    for pattern, row, gbps, _ in GPU_BANDWIDTH_GBPS:
        if re.search(pattern, device_name, flags=re.IGNORECASE):
            return row, float(gbps)
    return None


def _brand_string() -> str:
    if platform.system() != "Darwin":
        return ""
    try:
        return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                              timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


# -- measured read bandwidth ------------------------------------------------------------------
def last_level_cache_bytes() -> int:
    """The largest CPU cache sysfs or sysctl reports; 64 MiB when none does (an upper guess)."""
    sizes = []
    for f in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        m = re.fullmatch(r"(\d+)([KMG]?)", f.read_text().strip())
        if m:
            sizes.append(int(m.group(1)) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[m.group(2)])
    if platform.system() == "Darwin":
        for key in ("hw.l3cachesize", "hw.l2cachesize"):
            try:
                out = subprocess.run(["sysctl", "-n", key], capture_output=True, text=True, timeout=5).stdout
                sizes.append(int(out.strip() or 0))
            except (OSError, subprocess.SubprocessError, ValueError):
                pass
    return max(sizes) if sizes and max(sizes) > 0 else 64 * 2**20


def cpu_probe_bytes() -> int:
    """8 × the last-level cache and at least 1 GiB, at most 4 GiB and a quarter of free RAM."""
    import psutil

    want = max(GIB, 8 * last_level_cache_bytes())
    return int(min(want, 4 * GIB, max(GIB // 2, psutil.virtual_memory().available // 4)))


def _best(times: list[float], nbytes: int) -> float:
    return nbytes / min(times) / GB if times else math.nan


class CpuReadProbe:
    """Main-memory read bandwidth on the CPU, two ways over one array.

    Read, not copy: decoding reads the weights and writes almost nothing, and a copy's write
    stream (with its read-for-ownership) measures something else. Two methods: `threads` splits
    the array over one thread per core (numpy's reductions release the GIL), as a multi-threaded
    kernel reads; `single` is one np.add.reduce over the whole array. The larger is the figure.
    The array is filled (never np.zeros: untouched pages all map one zero page and read from cache).
    """

    def __init__(self, nbytes: int | None = None, threads: int | None = None) -> None:
        import numpy as np

        self.nbytes = int(nbytes or cpu_probe_bytes())
        self.array = np.full(self.nbytes // 4, 1.0, dtype=np.float32)
        self.threads = max(1, threads or os.cpu_count() or 1)
        self._chunks = np.array_split(self.array, self.threads)
        self.times: dict[str, list[float]] = {"threads": [], "single": []}

    def trial(self) -> dict[str, float]:
        """One timed pass of each method; returns each method's best so far, GB/s."""
        import threading

        import numpy as np

        # The threads exist and wait at a barrier before any clock starts (starting a thread can
        # wait a time slice on a busy machine), and the read is timed from the first thread's
        # start to the last one's end: a clock in the main thread read 10-20 % off on a busy
        # machine, low when it counted thread start-up, high when it started after the workers.
        go = threading.Barrier(self.threads)
        spans: list[tuple[float, float]] = []

        def read(chunk: np.ndarray) -> None:
            go.wait()
            t0 = time.perf_counter()
            np.add.reduce(chunk)
            spans.append((t0, time.perf_counter()))

        workers = [threading.Thread(target=read, args=(c,), daemon=True) for c in self._chunks]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        self.times["threads"].append(max(e for _, e in spans) - min(b for b, _ in spans))
        t0 = time.perf_counter()
        np.add.reduce(self.array)
        self.times["single"].append(time.perf_counter() - t0)
        return self.rates()

    def rates(self) -> dict[str, float]:
        return {k: _best(v, self.array.nbytes) for k, v in self.times.items()}


def _mlx_gpu_read(nbytes: int, trials: int) -> float:
    """A synchronised mx.sum over one large float32 array on MLX's GPU (Metal or CUDA)."""
    import mlx.core as mx

    a = mx.ones((nbytes // 4,), dtype=mx.float32)
    mx.eval(a)
    mx.synchronize()
    times = []
    for _ in range(trials + 1):  # the first compiles the kernel
        t0 = time.perf_counter()
        mx.eval(mx.sum(a))
        mx.synchronize()
        times.append(time.perf_counter() - t0)
    del a
    mx.clear_cache()
    return _best(times[1:], nbytes)


def _torch_gpu_read(nbytes: int, trials: int, backend: str) -> float | None:
    """The same read through torch (CUDA or MPS), a second implementation; None without torch."""
    try:
        import torch
    except ImportError:
        return None
    dev = "cuda" if backend == "cuda" else "mps"
    try:
        if dev == "cuda" and not torch.cuda.is_available():
            return None
        if dev == "mps" and not torch.backends.mps.is_available():
            return None
        sync = torch.cuda.synchronize if dev == "cuda" else torch.mps.synchronize
        a = torch.ones(nbytes // 4, dtype=torch.float32, device=dev)
        sync()
        times = []
        for _ in range(trials + 1):
            t0 = time.perf_counter()
            a.sum()
            sync()
            times.append(time.perf_counter() - t0)
        del a
        if dev == "cuda":
            torch.cuda.empty_cache()
        return _best(times[1:], nbytes)
    except Exception:  # out of memory, a broken driver: the MLX figure stands alone
        return None


def gpu_probe_bytes(device_memory: int | None) -> int:
    """4 GiB (far past any GPU's L2 or Apple's system-level cache), less on a small device."""
    if not device_memory:
        return GIB
    return int(min(4 * GIB, max(GIB // 4, device_memory // 8)))


def measure_read_bandwidth(backend: str, device_memory: int | None = None, trials: int = 5) -> dict[str, float]:
    """Read bandwidth of the device MLX computes on, GB/s, per method: best of `trials`.

    CPU: numpy's threaded and single-threaded reads (MLX's CPU reductions are not vectorised
    enough to reach memory speed). GPU: MLX's mx.sum and torch's sum over the same size.
    """
    if backend == "cpu":
        probe = CpuReadProbe()
        for _ in range(trials):
            probe.trial()
        return {f"numpy_{k}": v for k, v in probe.rates().items()}
    nbytes = gpu_probe_bytes(device_memory)
    out = {"mlx_sum": _mlx_gpu_read(nbytes, trials)}
    second = _torch_gpu_read(nbytes, trials, backend)
    if second is not None:
        out["torch_sum"] = second
    return out


def measure_bandwidth_gbps(repeats: int = 5) -> float:
    """This machine's best measured read bandwidth on MLX's device, GB/s."""
    from harness.measure.environment import device

    dev = device()
    rates = measure_read_bandwidth(dev.backend, dev.memory_bytes, repeats)
    return max(v for v in rates.values() if not math.isnan(v))


@dataclass(frozen=True)
class Bandwidth:
    """The bandwidth the bound uses (`gbps`) and where it came from.

    `source` is "measured", "datasheet" or "VLM_HARNESS_BANDWIDTH_GBPS". The bound uses the
    measured figure when there is one (what this device actually reads), else the datasheet's;
    a decode rate is called impossible only above the larger of the two (`ceiling_gbps`).
    """

    gbps: float
    source: str
    measured_gbps: float | None = None
    datasheet_gbps: float | None = None
    device: str = ""  # "cuda NVIDIA H200", "metal Apple M4 Pro", "cpu Intel Xeon ..."
    detail: str = ""  # each method's figure, the datasheet row, the probe size

    @property
    def ceiling_gbps(self) -> float:
        return max(v for v in (self.gbps, self.measured_gbps, self.datasheet_gbps) if v)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_")[:80] or "unknown"


def cache_path(backend: str, device_name: str, host: str) -> Path:
    """One cached figure per device: a host's CPU and its GPU, or two GPUs, never share one."""
    return cache_dir() / f"bandwidth-v{PROBE_VERSION}-{_slug(backend)}-{_slug(device_name)}-{_slug(host)}.json"


def machine_bandwidth(*, refresh: bool = False) -> Bandwidth:
    """The memory bandwidth of the device MLX computes on.

    VLM_HARNESS_BANDWIDTH_GBPS, if set, is taken as given. Otherwise the read probe is run once per
    device (backend + device name + host) and cached, and the datasheet row for the device's name
    is looked up; `refresh` measures again.
    """
    override = os.environ.get("VLM_HARNESS_BANDWIDTH_GBPS")
    if override:
        return Bandwidth(float(override), "VLM_HARNESS_BANDWIDTH_GBPS")
    from harness.measure.environment import device

    dev = device()
    name = dev.name if dev.backend != "cpu" else (_brand_string() or dev.name)
    sheet = datasheet(name)
    path = cache_path(dev.backend, name, platform.node() or "host")
    rates: dict[str, float] | None = None
    if not refresh and path.exists():
        try:
            rates = {k: float(v) for k, v in json.loads(path.read_text())["rates"].items()}
        except (ValueError, KeyError, OSError, AttributeError):
            rates = None
    if rates is None:
        rates = measure_read_bandwidth(dev.backend, dev.memory_bytes)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"rates": rates, "backend": dev.backend, "device": name,
                                    "measured_at": time.time()}) + "\n")
    good = [v for v in rates.values() if v and not math.isnan(v)]
    measured = max(good) if good else None
    detail = ", ".join(f"{k} {v:.1f}" for k, v in rates.items())
    if sheet:
        detail += f"; datasheet {sheet[0]} {sheet[1]:.0f}"
    label = f"{dev.backend} {name}"
    if measured:
        return Bandwidth(measured, "measured", measured, sheet[1] if sheet else None, label, detail)
    if sheet:
        return Bandwidth(sheet[1], "datasheet", None, sheet[1], label, detail)
    raise RuntimeError(f"no bandwidth for {label}: the probe failed and no datasheet row names it")


# -- bytes read per decoded token ----------------------------------------------------------------
@dataclass(frozen=True)
class DecodeCost:
    weight_bytes: int  # language-model weights read per token, lm_head included
    kv_bytes_per_position: int  # KV cache bytes per context position (all layers, keys and values)

    def bytes_per_token(self, context: float) -> float:
        return self.weight_bytes + self.kv_bytes_per_position * max(context, 0.0)


def decode_cost(ckpt: Path | str) -> DecodeCost:
    facts = checkpoint.inspect(ckpt)
    if facts is None:
        raise FileNotFoundError(f"no checkpoint at {ckpt}")
    return DecodeCost(facts.language_weight_bytes, facts.kv_bytes_per_token)


def decode_cost_from_config(config: Mapping[str, Any]) -> DecodeCost:
    return DecodeCost(checkpoint.language_weight_bytes_from_config(config), checkpoint.kv_bytes_per_token(config))


def decode_cost_or_none(path: str) -> DecodeCost | None:
    """The bound is a check on the figures, never a reason to lose them: unknown layouts give none."""
    try:
        return decode_cost(path) if checkpoint.resolve_local(path) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


# -- the bound and what is judged against it --------------------------------------------------
def decode_bound_tps(bandwidth_gbps: float, bytes_per_token: float) -> float:
    if not bytes_per_token or bytes_per_token <= 0 or not bandwidth_gbps:
        return math.nan
    return bandwidth_gbps * GB / bytes_per_token


def decode_context(prompt_tokens: int | None, generated_tokens: int | None) -> float:
    """Mean KV length over the decoded tokens: the prompt plus half of what was generated."""
    return float(prompt_tokens or 0) + float(generated_tokens or 0) / 2


def bound_columns(cost: DecodeCost | None, bandwidth: Bandwidth | None, prompt_tokens: int | None,
                  generated_tokens: int | None) -> dict[str, Any]:
    """The schema's bound columns for one row: the bandwidth the bound used and its source, the
    measured and datasheet figures beside it, bytes per token and the bound itself."""
    if cost is None or bandwidth is None:
        return {}
    bpt = cost.bytes_per_token(decode_context(prompt_tokens, generated_tokens))
    return {"bandwidth_gbps": bandwidth.gbps, "bytes_per_token": int(bpt),
            "decode_bound_tps": decode_bound_tps(bandwidth.gbps, bpt),
            "bandwidth_measured_gbps": bandwidth.measured_gbps, "bandwidth_datasheet_gbps": bandwidth.datasheet_gbps,
            "bandwidth_source": bandwidth.source}


def _num(row: Mapping[str, Any], key: str) -> float:
    v = row.get(key)
    try:
        v = float(v)
    except (TypeError, ValueError):
        return math.nan
    return v


def bound_fraction(row: Mapping[str, Any]) -> float:
    """decode_tps as a fraction of the bandwidth bound (1.0 = at the physical limit)."""
    bound = _num(row, "decode_bound_tps")
    tps = _num(row, "decode_tps")
    return tps / bound if bound > 0 and not math.isnan(tps) else math.nan


def is_impossible(row: Mapping[str, Any]) -> bool:
    """A decode rate above what memory bandwidth allows: the figure is wrong, not the model fast.

    Judged against the larger of the measured and the datasheet bandwidth: a probe that reads
    slower than the part can is no proof that a faster decode is false.
    """
    frac = bound_fraction(row)
    if math.isnan(frac):
        return False
    used = _num(row, "bandwidth_gbps")
    ceiling = max((v for v in (used, _num(row, "bandwidth_measured_gbps"), _num(row, "bandwidth_datasheet_gbps"))
                   if v > 0), default=math.nan)
    scale = ceiling / used if used > 0 and ceiling > 0 else 1.0
    return frac > scale


def tps_per_gib(row: Mapping[str, Any]) -> float:
    """Decode tokens/s per GiB of peak memory (MLX's peak, else the process's)."""
    tps = _num(row, "decode_tps")
    peak = _num(row, "peak_mlx_bytes")
    if not peak > 0:
        peak = _num(row, "peak_rss_bytes")
    return tps / (peak / GIB) if peak > 0 and not math.isnan(tps) else math.nan
