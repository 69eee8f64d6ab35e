from __future__ import annotations

import argparse

from harness.commands import command


@command("suites", "list suites with their size and hash", lambda p: None)
def run(args: argparse.Namespace) -> int:
    from harness.suites import SuiteError, load_suite, suite_files

    status = 0
    for name in suite_files():
        try:
            s = load_suite(name)
            cats = sorted({x.category for x in s.samples})
            print(f"{name:24} {s.kind:10} {len(s.samples):5} samples  {s.hash[:16]}  {', '.join(cats)}")
        except SuiteError as e:
            print(f"{name:24} error: {e}")
            status = 1
    return status
