"""Reading results written by older versions of the harness (as asv's `update_to_N`).

Each step turns a table of version N into version N + 1; `migrate` applies them in order. A
migration never invents a measurement: a column an older harness did not write stays null,
except where its value follows from what was written.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

from harness.core.schema import SCHEMA_VERSION


class SchemaTooNew(ValueError):
    """A file written by a newer harness than this one."""


def _v1_to_v2(table: pa.Table) -> pa.Table:
    # v1 had no model_role; random_weights and the reference model's name say it. keywords,
    # choices, metric_version, traceback and the overhead columns were not recorded: null.
    if "model_role" in table.column_names:
        return table
    n = len(table)
    random = table.column("random_weights") if "random_weights" in table.column_names else pa.nulls(n, pa.bool_())
    model = table.column("model") if "model" in table.column_names else pa.nulls(n, pa.string())
    is_ref = pc.fill_null(pc.starts_with(model, "reference-"), False)
    role = pc.if_else(pc.fill_null(random, False), "fixture", pc.if_else(is_ref, "reference", "model"))
    return table.append_column("model_role", role)


def _v2_to_v3(table: pa.Table) -> pa.Table:
    # v2 measured each model in one pass: its rows are that single round, with no order recorded.
    # It had no shard, machine_id or node either: a v2 run measured its whole plan on one machine,
    # which its env_* columns describe; the id is not derived from them (two machines can share a
    # host name), so it stays null and readers fall back to env_host.
    # Every row was generated one request at a time: mode follows from that. Batch, pass, cache
    # and answer-check columns were not recorded: null.
    if "round" not in table.column_names:
        table = table.append_column("round", pa.array([0] * len(table), pa.int32()))
    if "mode" not in table.column_names:
        table = table.append_column("mode", pa.array(["latency"] * len(table), pa.string()))
    return table


def _v3_to_v4(table: pa.Table) -> pa.Table:
    # v3 kept no inter-token latencies (itl_s is null) and measured each model's round as one block:
    # lockstep is false, so its verdicts pair rounds, not samples.
    if "lockstep" not in table.column_names:
        table = table.append_column("lockstep", pa.array([False] * len(table), pa.bool_()))
    return table


def _v4_to_v5(table: pa.Table) -> pa.Table:
    # v4 answered each model with one worker at a time: pass_worker stays null, which says so.
    return table


STEPS: dict[int, Callable[[pa.Table], pa.Table]] = {1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4, 4: _v4_to_v5}


def migrate(table: pa.Table, version: int, source: str = "") -> pa.Table:
    """`table` as written at `version`, brought to SCHEMA_VERSION (columns conformed later)."""
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(f"{source}: results schema v{version} is newer than this harness reads "
                           f"(v{SCHEMA_VERSION}); upgrade vlm-harness")
    for v in range(version, SCHEMA_VERSION):
        step = STEPS.get(v)
        if step is None:
            raise SchemaTooNew(f"{source}: no migration from results schema v{v}")
        table = step(table)
    if version != SCHEMA_VERSION and "schema_version" in table.column_names:
        # The rows now have this version's shape: say so, so runs of both ages compare.
        i = table.column_names.index("schema_version")
        table = table.set_column(i, "schema_version", pa.array([SCHEMA_VERSION] * len(table), pa.int32()))
    return table
