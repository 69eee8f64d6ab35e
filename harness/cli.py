"""`vlm-harness`: the subcommands registered in harness/commands/."""

from __future__ import annotations

import argparse
import os
import sys

from harness import __version__
from harness.commands import COMMANDS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vlm-harness", description="Benchmark vision-language models on MLX.")
    p.add_argument("--version", action="version", version=f"vlm-harness {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for name in COMMANDS.names():
        cmd = COMMANDS.get(name)
        sp = sub.add_parser(name, help=cmd.help, description=cmd.help)
        cmd.configure(sp)
        sp.set_defaults(fn=cmd.run)
    return p


def main(argv: list[str] | None = None) -> int:
    # Quieter logs: transformers warns about every processor call in a benchmark loop.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    args = build_parser().parse_args(argv)
    from harness.core.registry import UnknownNameError
    from harness.models import ModelError
    from harness.results.rundir import RunLocked
    from harness.results.store import DamagedFile, SchemaMismatch
    from harness.run.fleet import FleetError
    from harness.suites import SuiteError

    previous = _stop_on_sigterm()
    try:
        return args.fn(args)
    except (ModelError, SuiteError, SchemaMismatch, DamagedFile, RunLocked, UnknownNameError, FileNotFoundError,
            FleetError) as e:
        print(f"vlm-harness: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        # The environment refused (a read-only or full disk, a directory where a file should
        # go): one line naming the path and the reason. Rows already stored are in their parts.
        print(f"vlm-harness: error: {os_error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print("vlm-harness: interrupted; finished rows are saved, continue with --resume", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    finally:
        if previous is not None:  # main() called from Python (tests, a notebook): hand SIGTERM back
            import signal

            signal.signal(signal.SIGTERM, previous)


class Terminated(KeyboardInterrupt):
    """SIGTERM, taken the way Ctrl-C is."""


def _stop_on_sigterm() -> object:
    """A CI runner cancelling a job, `timeout` or a container stop sends SIGTERM, whose default
    ends Python at once: the supervisor's cleanup never ran, and worker processes went on answering
    (and holding their memory) until their next message found no reader. Raised as an interrupt
    instead, it takes Ctrl-C's path: every worker is stopped, finished rows stay, exit 143."""
    import signal
    import threading

    def stop(signum: int, frame: object) -> None:
        raise Terminated()

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, stop)


def os_error_line(e: OSError) -> str:
    """An OSError as one line naming the path: the harness's own WriteError says it already."""
    if e.filename is None:
        return str(e) or type(e).__name__
    where = f"{e.filename}" + (f" -> {e.filename2}" if e.filename2 else "")
    return f"{where}: {e.strerror or type(e).__name__}"


if __name__ == "__main__":
    sys.exit(main())
