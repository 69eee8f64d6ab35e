"""Subcommands of `vlm-harness`, one module each, registered by name."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from harness.registry import Registry


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: Registry[Command] = Registry("command", "harness.commands")


def command(name: str, help: str, configure: Callable[[argparse.ArgumentParser], None]) -> Callable:
    """Register `run(args) -> exit code` under name, with `configure(parser)` for its options."""

    def decorator(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS.register(name)(Command(name, help, configure, run))
        return run

    return decorator
