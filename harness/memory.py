"""Peak process memory (RSS) per measurement, alongside MLX's own peak counter.

On Linux, writing 5 to /proc/self/clear_refs resets the kernel's high-water mark (VmHWM), so a
peak can be taken per sample. Elsewhere the lifetime peak is the best the OS offers.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

_CLEAR = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def reset_peak_rss() -> bool:
    try:
        _CLEAR.write_text("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS reports bytes, Linux KiB
