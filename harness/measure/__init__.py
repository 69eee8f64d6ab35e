"""Probes of the machine: memory bandwidth and the decode bound (`bandwidth`), process and
device memory (`memory`), the memory check before a load or request (`memory_safety`), what
else the machine is doing (`machine_state`), the environment record (`environment`) and the
page cache (`page_cache`, for cold loads).

May import: `harness.core`.
"""
