"""Orchestration: `planning` (what to measure), the one `supervisor` and its `worker`
processes speaking `protocol`, `rows` (a measurement into a results row), `progress`,
`tester` (VLMTester, the run engine), `speed` (pp/tg sweeps), and the reference model's
build and evaluation (`reference_build`, `reference_eval`).

May import: `harness.core`, `harness.results`, `harness.measure`, `harness.judge` and the
plug-in packages (adapters, models, suites, metrics, fixtures, reference, images).
"""
