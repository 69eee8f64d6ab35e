"""The run card: the machine, the backend, the measured bandwidth and where it came from, the run's
settings, duration, versions, git revision, links to the raw files and the command.

Settings come from the run directory's run.json when there is one (missing keys show as '–');
everything else from the rows, which carry their environment.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from harness.report.tables import fmt

SETTINGS = ("run_id", "rounds", "rounds_per_sample", "repeats", "warmup", "limit", "max_tokens", "reuse_prefix", "adapter",
            "timeout_s")
RAW_FILES = ("results.parquet", "accuracy.parquet", "run.json")


@dataclass(frozen=True)
class Fact:
    label: str
    value: str
    href: str = ""  # a relative link to a raw file


def run_dirs(sources: Sequence[str | Path], run_dir: str | Path | None = None) -> list[Path]:
    """The run directories behind the report: the given one, else each source's (a run directory
    or a file inside one)."""
    out: list[Path] = []
    for s in ([run_dir] if run_dir else []) + list(sources):
        p = Path(s).resolve()
        d = p if p.is_dir() else p.parent
        if d not in out and ((d / "run.json").exists() or (d / "results.parquet").exists()):
            out.append(d)
    return out


def read_plan(dirs: Sequence[Path]) -> dict:
    for d in dirs:
        try:
            return json.loads((d / "run.json").read_text())
        except (OSError, ValueError):
            continue
    return {}


def _values(df: pd.DataFrame, col: str) -> str:
    if col not in df:
        return ""
    vals = sorted({str(v) for v in df[col].dropna().unique()})
    return ", ".join(vals[:4]) + (f" (+{len(vals) - 4})" if len(vals) > 4 else "")


def _device(text: str) -> str:
    """`Device(cpu, 0)` -> `cpu 0`."""
    m = re.fullmatch(r"Device\((\w+),\s*(\d+)\)", text.strip())
    return f"{m.group(1)} {m.group(2)}" if m else text


def _setting(plan: dict, key: str) -> str:
    v = plan.get(key)
    if v is None:
        return "–" if key not in plan or key != "limit" else "none (every sample)"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, list):
        return ", ".join(map(str, v))
    return str(v)


def _duration(plan: dict, df: pd.DataFrame) -> str:
    try:
        a, b = datetime.fromisoformat(plan["started_at"]), datetime.fromisoformat(plan["finished_at"])
        return f"{fmt((b - a).total_seconds())} s ({plan['started_at']} to {plan['finished_at']})"
    except (KeyError, TypeError, ValueError):
        pass
    if "recorded_at" in df and df["recorded_at"].notna().any():
        a, b = df["recorded_at"].min(), df["recorded_at"].max()
        return (f"{fmt((b - a).total_seconds())} s from the first row to the last "
                f"({a:%Y-%m-%d %H:%M:%S} to {b:%H:%M:%S} UTC)")
    return "–"


def card(df: pd.DataFrame, out: Path, dirs: Sequence[Path]) -> list[tuple[str, list[Fact]]]:
    """Groups of facts, in the order the page shows them."""
    plan = read_plan(dirs)
    ram = df["env_ram_bytes"].dropna() if "env_ram_bytes" in df else pd.Series([], dtype=float)
    # The device's name and memory from the same columns the Environment section lists
    # (env_device_name, env_device_memory_bytes: harness.measure.environment.device()), so the card can
    # never say "gpu 0" where the rows say "NVIDIA H200". MLX's "Device(gpu, 0)" only as a last resort.
    device = (_values(df, "env_device_name") or _values(df, "device_name")
              or ", ".join(sorted({_device(str(v)) for v in df["env_device"].dropna().unique()})
                           if "env_device" in df else []))
    dev_mem = pd.Series([], dtype=float)
    for col in ("env_device_memory_bytes", "device_memory_bytes"):
        if col in df and df[col].notna().any():
            dev_mem = pd.to_numeric(df[col], errors="coerce").dropna()
            break
    bw = df["bandwidth_gbps"].dropna() if "bandwidth_gbps" in df else pd.Series([], dtype=float)
    bw_text = ", ".join(f"{fmt(v)} GB/s" for v in sorted(bw.unique())[:4]) if not bw.empty else "–"
    machine = [
        Fact("Host", _values(df, "env_host") or "–"),
        Fact("OS", _values(df, "env_os") or "–"),
        Fact("CPU", " · ".join(x for x in (_values(df, "env_cpu"), _values(df, "env_machine"),
                                           f"{_values(df, 'env_cores')} cores" if _values(df, "env_cores") else "") if x)
             or "–"),
        Fact("RAM", ", ".join(f"{fmt(v / 1e9)} GB" for v in sorted(ram.unique())[:4]) if not ram.empty else "–"),
        Fact("Chip or GPU", device or "–"),
        Fact("Device memory", ", ".join(f"{v / 1e9:,.2f} GB" for v in sorted(dev_mem.unique())[:4])
             if not dev_mem.empty else "–"),
        Fact("Backend", _values(df, "backend") or "–"),
        Fact("Adapter", _values(df, "adapter") or "–"),
        Fact("Memory bandwidth", bw_text),
        Fact("Bandwidth source", _values(df, "bandwidth_source") or ("–" if bw.empty else "not recorded")),
    ]
    settings = [Fact(k.replace("_", " ").capitalize(), _setting(plan, k)) for k in SETTINGS]
    models, suites = plan.get("models"), plan.get("suites")
    settings.insert(1, Fact("Models", f"{len(models)}" if isinstance(models, list) else
                            str(df["model"].nunique()) if "model" in df else "–"))
    settings.insert(2, Fact("Suites", ", ".join(suites) if isinstance(suites, list) else "–"))
    settings.append(Fact("Duration", _duration(plan, df)))
    settings.append(Fact("Command", _setting(plan, "command")))
    software = [
        Fact("Harness", _values(df, "harness_version") or "–"),
        Fact("Git revision", _values(df, "harness_git") or "–"),
        Fact("Python", _values(df, "env_python") or "–"),
        Fact("MLX", _values(df, "env_mlx") or "–"),
        Fact("mlx-vlm", _values(df, "env_mlx_vlm") or "–"),
        Fact("BLAS", _values(df, "env_blas") or "–"),
    ]
    files = []
    for d in dirs:
        for name in RAW_FILES:
            if (d / name).exists():
                rel = os.path.relpath(d / name, out.resolve().parent)
                files.append(Fact(name if len(dirs) == 1 else f"{d.name}/{name}", rel, Path(rel).as_posix()))
    return [("Machine", machine), ("Run settings", settings), ("Software", software),
            ("Raw files", files or [Fact("Files", "– (rendered from rows without a run directory)")])]
