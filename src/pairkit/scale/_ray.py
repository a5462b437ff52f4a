"""Pair counting with Ray: one task per file on a cluster (or a local one), the partial counts merged."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pairkit._optional import requires
from pairkit.errors import PairkitError


def count_with_ray(files: list[Path], options: dict, *, on_invalid: str, address: str | None = None,
                   bootstrap: int = 0, seed: int = 0) -> list[tuple[pd.DataFrame, int, list[str]]]:
    """Run :func:`pairkit.scale.counts.count_file` on every file as a Ray task; joins the cluster at ``address``
    (or an already initialised one), else starts a local cluster for the call and stops it afterwards.
    ``bootstrap``/``seed``: each task draws its file's Poisson replicates (the file's index in ``files``, 1-based,
    is hashed with its rows' numbers, so the counts equal DuckDB's)."""
    with requires("ray", "--engine ray"):
        import ray
    from pairkit.scale.counts import count_file

    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        task = ray.remote(count_file)
        futures = [task.remote(str(f), options, on_invalid, k, bootstrap, seed) for k, f in enumerate(files, 1)]
        try:
            return ray.get(futures)
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, PairkitError):
                raise cause from None
            raise
    finally:
        if started:
            ray.shutdown()
