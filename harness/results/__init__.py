"""Results on disk: the run directory's layout and lock (`rundir`), the durable, checksummed
row store (`store`) and the migrations of older schema versions (`migrations`).

May import: `harness.core`.
"""
