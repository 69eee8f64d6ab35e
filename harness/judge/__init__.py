"""Judging stored rows: `scoring` (a pure function of a row and its metric) and `accuracy` (the
one accuracy table: aggregation by the metric's rule, intervals, benchmark-level figures).

May import: `harness.core`, `harness.results`, and the plug-in packages below it
(`harness.metrics`, `harness.suites`).
"""
