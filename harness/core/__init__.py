"""The ground: records and rules every layer reads.

`records` (Sample, Measurement, LoadStats), the results `schema` (columns, units, version),
`registry` (name → object, for adapters, suites, metrics, fixtures, commands), `paths`,
`tomlfile`, `workloads` (what a worker is asked to do), `checkpoint` (one home for a
checkpoint's facts), and the pure statistics `intervals` and `stats`.

May import: the standard library and third-party packages only — nothing else in `harness`.
"""
