"""Out-of-core and distributed pair counting: files too large for memory → per-pair counts → the usual fit.

Bradley–Terry-type models depend on the data only through per-pair win/tie counts, so a data set of 10⁹ rows
over 10⁵ items reduces to at most a few million count rows. :func:`count_pairs` computes them from Parquet,
CSV or JSONL files (globs, directories of a partitioned dataset) with DuckDB (embedded, streaming, spilling to
disk; :func:`write_counts` lets DuckDB write the count file itself; Parquet string columns over few enough
distinct values are grouped on their dictionary codes in numpy first) or with Ray Data (a local or remote cluster:
blocks of rows counted where they are read, the partial counts summed), applying the readers' validation rules.
:func:`counts_to_comparisons` turns a count table back into weighted :class:`~pairkit.data.Comparisons` whose
pair counts — hence every fit from them — equal those of the original rows.

Count table columns: ``a``, ``b`` (item names, ``a < b``), ``a_wins``, ``b_wins``, ``ties`` (weighted when a
weight column is given), ``n`` (rows), and the keys ``cluster`` / ``a_first`` (``a`` went first) when asked for.
With ``bootstrap=B`` (``pairkit count --bootstrap B``) the table is long, keyed by ``replicate``: 0 holds the counts,
1..B the Poisson-bootstrap counts drawn in the same pass (``pairkit.scale.poisson_weights``: the same weights on
every engine and input format, hashed from each row's file and number in it), which
``pairkit rank`` turns into percentile intervals (``interval.method`` ``"poisson bootstrap"`` in the JSON).
"""

from pairkit.scale._poisson import poisson_weights
from pairkit.scale.counts import (
    COUNT_COLUMNS,
    comparisons_to_counts,
    count_pairs,
    counts_to_comparisons,
    expand_paths,
    is_counts,
    load_any,
    write_counts,
)

__all__ = [
    "COUNT_COLUMNS",
    "comparisons_to_counts",
    "count_pairs",
    "counts_to_comparisons",
    "expand_paths",
    "is_counts",
    "load_any",
    "poisson_weights",
    "write_counts",
]
