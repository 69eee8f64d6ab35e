from __future__ import annotations

import argparse

from harness.commands import command

# Sources that fetch data from elsewhere: listing them must not start a download of gigabytes.
REMOTE_SOURCES = {"hf_dataset"}


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fetch", action="store_true", help="also download and build hub-backed suites (can be large)")


@command("suites", "list suites with their size and hash", configure)
def run(args: argparse.Namespace) -> int:
    from harness.suites import SuiteError, SuiteUnavailable, find_suite, materialise, suite_files

    status = 0
    for name in suite_files():
        try:
            defn = find_suite(name)
            if defn.source in REMOTE_SOURCES and not args.fetch:
                dataset = defn.params.get("dataset", "?")
                print(f"{name:24} {defn.kind:10} {defn.samples:5} samples  from {dataset} (built on first run, or --fetch)")
                continue
            s = materialise(defn)
            cats = sorted({x.category for x in s.samples})
            print(f"{name:24} {s.kind:10} {len(s.samples):5} samples  {s.hash[:16]}  {', '.join(cats)}")
        except SuiteUnavailable as e:
            # A hub benchmark on a machine without the hub is expected, not a broken suite.
            print(f"{name:24} unavailable: {e}")
        except SuiteError as e:
            print(f"{name:24} error: {e}")
            status = 1
    # What each suite's `metric = "..."` may name, the version its scores carry, and the public
    # scorer it reproduces, so a number can be put beside a published one knowingly.
    from harness.metrics import METRICS

    for name in METRICS.names():
        spec = METRICS.get(name)
        print(f"metric {name:26} v{spec.version}  {spec.description}  [reference: {spec.reference}]")
    return status
