"""The regression gate: `compare` (one run against another, with a verdict and an exit code),
`baseline` (the stored run a gate compares with) and `interleave` (two revisions measured
turn about, A B B A).

May import: `harness.core`, `harness.results`, `harness.judge`.
"""
