"""A planted, known decode slowdown (test only: the mlx_vlm adapter's `planted_slowdown`), for
checking that comparisons find real differences.

It adds work, not waiting: after each token, a chain of matrix products sized to take the given
fraction of a decode step is queued on the same MLX stream, behind the next token's own work, so
each step does (1 + fraction) times the computation and keeps the device as busy as the model
does. A sleep of the same length costs far more than its length on a shared CPU (the idle cores
wake late: a 5 % sleep measured ×1.35–1.5 slower on a 2-core VM), so it could not plant 25 %.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Callable, Iterator, Sequence

# One product: a vector through a 256 × 256 matrix (256 KB read, as a decode step reads weights),
# tens of microseconds on a CPU core, so the chain's length sets the fraction finely.
_SIDE = 256


class Ballast:
    def __init__(self, fraction: float) -> None:
        import mlx.core as mx

        self.fraction = fraction
        self.reps = 0  # none until calibrated
        self.calibrated = False
        key = mx.random.key(0)
        self._w = mx.random.normal((_SIDE, _SIDE), key=key) / _SIDE**0.5
        self._x = mx.random.normal((1, _SIDE), key=key)
        mx.eval(self._w, self._x)

    def calibrate(self, probe: Callable[[], Sequence[float]], warm_up: Callable[[], object]) -> None:
        """Size the chain by measuring it: `probe()` runs one generation with the chain as it
        stands and returns its token times. Work queued behind a token is hidden wherever the
        device would have idled anyway (the host's own work between steps), so the chain is sized
        on what it costs, not on what it computes: generations without and with it, back to back
        so that the machine's drift falls on both, their median steps compared, the chain
        rescaled, eight times; then the median of the last five sizes is kept.

        Then `warm_up()` once without the chain, after clearing MLX's buffer cache: the probes'
        longer answers leave that cache fuller than a plain warm-up does, and the planted model's
        first token came out about 1 % faster than its twin's (a winner in 4 of 20 trials of 48
        pairs)."""
        import mlx.core as mx

        self.calibrated = True
        self.reps = 1
        sizes = []
        for _ in range(8):
            with self._off():
                base = _median_step(probe())
            extra = _median_step(probe()) - base
            if base <= 0 or extra <= 0:
                self.reps = min(self.reps * 2, 4096)
            else:
                self.reps = max(1, min(self.reps * 4, round(self.reps * self.fraction * base / extra), 4096))
            sizes.append(self.reps)
        self.reps = int(statistics.median(sizes[-5:]))
        mx.clear_cache()
        with self._off():
            warm_up()

    @contextlib.contextmanager
    def _off(self) -> Iterator[None]:
        reps, self.reps = self.reps, 0
        try:
            yield
        finally:
            self.reps = reps

    def _chain(self, reps: int):
        import mlx.core as mx

        x = self._x
        for _ in range(reps):
            x = mx.tanh(x @ self._w)
        return x

    def after_token(self, index: int) -> None:
        """Queue the chain after the `index`-th token (1 for the first). The next token is already
        in flight when a token arrives, so the chain lands on the interval after next: nothing
        can lengthen the first interval, and the chain after the first token is doubled to carry
        its share. A decode rate over n tokens (n - 1 intervals) then carries n - 1 chains, not
        n - 2 (an 8-token answer was slowed x1.18 where x1.25 was planted)."""
        import mlx.core as mx

        if self.reps:
            mx.async_eval(self._chain(self.reps * (2 if index == 1 else 1)))


def _median_step(token_times: Sequence[float]) -> float:
    steps = [b - a for a, b in zip(token_times, token_times[1:], strict=False)]
    return statistics.median(steps) if steps else 0.0
