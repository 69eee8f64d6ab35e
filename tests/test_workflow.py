"""The CI workflow: every `run:` step is a nox session (or vlm-harness command) that exists, with
arguments its command accepts; actions pinned to commits; no credentials left in the checkout."""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to parse the workflow (pip install pyyaml)")

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
# nox sessions that hand their arguments to a vlm-harness command, checked against its parser.
FORWARDS = {"bench": "run", "gate": "gate", "merge": "merge"}
PLAIN = {"python", "nox", "vlm-harness"}


def nox_sessions() -> set[str]:
    tree = ast.parse((REPO / "noxfile.py").read_text())
    out = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            for d in node.decorator_list:
                target = d.func if isinstance(d, ast.Call) else d
                if isinstance(target, ast.Attribute) and target.attr == "session":
                    out.add(node.name)
    return out


def run_steps() -> list[tuple[str, str, str, dict]]:
    out = []
    for wf in WORKFLOWS:
        doc = yaml.safe_load(wf.read_text())
        for job_name, job in doc["jobs"].items():
            env = {**doc.get("env", {}), **job.get("env", {})}
            for step in job.get("steps", []):
                if "run" in step:
                    out.append((wf.name, job_name, step["run"], {**env, **step.get("env", {})}))
    return out


def commands(script: str) -> list[list[str]]:
    out = []
    for line in script.splitlines():
        for part in re.split(r"&&|;", line):
            if part.strip() and not part.strip().startswith("#"):
                out.append(shlex.split(part))
    return out


def test_there_are_workflows_with_run_steps():
    assert WORKFLOWS and run_steps()


@pytest.mark.parametrize("where,script,env", [(f"{w}:{j}", s, e) for w, j, s, e in run_steps()])
def test_every_run_step_is_a_nox_session_or_command_that_exists(where, script, env):
    from harness.cli import build_parser
    from harness.commands import COMMANDS

    sessions = nox_sessions()
    for argv in commands(script):
        argv = [re.sub(r"\$\{?(\w+)\}?", lambda m: str(env.get(m.group(1), "1")), a) for a in argv]
        assert argv[0] in PLAIN, f"{where}: `{' '.join(argv)}` is neither a nox session nor a harness command"
        if argv[0] == "python":
            assert argv[1:4] == ["-m", "pip", "install"], f"{where}: python may only install nox here"
            continue
        if argv[0] == "vlm-harness":
            assert argv[1] in COMMANDS.names(), f"{where}: no vlm-harness command {argv[1]!r}"
            build_parser().parse_args(argv[1:])
            continue
        assert argv[1] == "-s" and argv[2] in sessions, f"{where}: no nox session {argv[2:3]} in noxfile.py"
        posargs = argv[argv.index("--") + 1:] if "--" in argv else []
        if argv[2] in FORWARDS and posargs:
            build_parser().parse_args([FORWARDS[argv[2]], *posargs])  # exits 2 on an unknown option


def test_actions_are_pinned_to_commits_and_checkouts_keep_no_credentials():
    for wf in WORKFLOWS:
        text = wf.read_text()
        doc = yaml.safe_load(text)
        assert doc.get("permissions") in ({}, None) or doc["permissions"] == {"contents": "read"}, wf.name
        for line in text.splitlines():
            m = re.search(r"uses:\s*(\S+)", line)
            if m:
                assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", m.group(1)), line
                assert re.search(r"#\s*v\d+(\.\d+)*", line), f"no version comment: {line}"
        for job in doc["jobs"].values():
            for step in job.get("steps", []):
                if str(step.get("uses", "")).startswith("actions/checkout@"):
                    assert step.get("with", {}).get("persist-credentials") is False, wf.name


def test_pull_requests_gate_interleaved_on_each_runner_type():
    doc = yaml.safe_load((REPO / ".github" / "workflows" / "bench.yml").read_text())
    gate = doc["jobs"]["gate"]
    assert {"macos-14", "macos-15", "ubuntu-latest"} <= set(gate["strategy"]["matrix"]["os"])
    assert any("nox -s gate -- --interleave" in s.get("run", "") for s in gate["steps"])
    bench = doc["jobs"]["bench"]
    assert len(bench["strategy"]["matrix"]["shard"]) > 1
    assert any("--shard" in s.get("run", "") for s in bench["steps"])
    report = doc["jobs"]["report"]
    assert set(report["needs"]) == {"bench", "gate"}
    assert any("nox -s merge" in s.get("run", "") for s in report["steps"])
