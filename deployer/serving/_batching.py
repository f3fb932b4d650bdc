"""Opportunistic batching of concurrent one-row requests for row-independent estimators.

A scikit-learn ``predict`` costs ~100 us however few rows it gets: almost all of it is input
validation, not arithmetic. When several requests are waiting on the same worker at once
(8 connections over 2 workers: usually 3-4), scoring their rows in one call and splitting the
result costs one validation instead of four. Nothing waits for a batch to fill: the requests
already parsed in the current event-loop turn are scored together at the end of that turn, so
a lone request is answered exactly as fast as before.

This is only allowed when it cannot change an answer:

* only on the scikit-learn matrix shortcut (a plain estimator fitted on the signature's
  float columns, see ``_fastpath``), whose predictions are computed row by row;
* only after a self-check at load time: the example rows (and perturbed copies) scored
  together, alone and in halves must give bit-for-bit identical outputs (this catches
  estimators or BLAS kernels whose per-row results depend on the batch);
* if a batched call fails (say one request sent NaN), every request in it is re-run on its
  own, so errors stay per request and come from MLflow's code as always.

``--no-batching`` (``DEPLOYER_SERVE_BATCHING=0``) turns it off.
"""

from __future__ import annotations

import logging
from typing import Any

_logger = logging.getLogger("deployer.serving")

#: Rows per batched call, at most (large requests never batch: they are not inlined).
MAX_BATCH_ROWS = 4096


def stack(matrices: list[Any]) -> Any:
    """One (sum of rows, cols) float matrix, Fortran-ordered like each request's own."""
    import numpy as np

    return np.asfortranarray(np.concatenate(matrices, axis=0))


def split(raw: Any, sizes: list[int]) -> list[Any] | None:
    """Per-request slices of a batched prediction, or None if it is not row-aligned."""
    import numpy as np

    if not isinstance(raw, np.ndarray) or raw.ndim == 0 or raw.shape[0] != sum(sizes):
        return None
    out = []
    start = 0
    for size in sizes:
        out.append(raw[start : start + size])
        start += size
    return out


def rows_independent(fn: Any, matrix: Any) -> bool:
    """True if ``fn`` gives each row the same output alone, in halves and all together."""
    import numpy as np

    try:
        rng = np.random.RandomState(0)
        base = np.asarray(matrix, dtype="float64")
        picks = base[rng.randint(len(base), size=24)]
        rows = np.concatenate([base, picks * rng.uniform(0.5, 1.5, picks.shape)], axis=0)
        together = fn(stack([rows]))
        if split(together, [len(rows)]) is None:
            return False
        half = len(rows) // 2
        parts = [fn(stack([rows[:half]])), fn(stack([rows[half:]]))]
        alone = [fn(stack([rows[i : i + 1]])) for i in range(len(rows))]
        for piece in (np.concatenate(parts, axis=0), np.concatenate(alone, axis=0)):
            if piece.dtype != together.dtype or not np.array_equal(piece, together):
                return False
        return True
    except Exception as exc:  # noqa: BLE001 - any doubt: no batching
        _logger.debug("batching self-check failed: %s", exc)
        return False
