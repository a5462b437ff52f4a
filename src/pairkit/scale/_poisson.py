"""Poisson bootstrap weights drawn in the counting pass (private to :mod:`pairkit.scale`).

Each input row ``i`` gets, for every replicate ``r = 1..B``, an independent weight
:math:`W_{ir} \\sim \\mathrm{Poisson}(1)`; replicate ``r``'s counts are the rows' outcomes summed with weights
:math:`W_{ir}` (times the row's own weight). This is the Poisson bootstrap (Hanley & MacGibbon 2006, "Creating
non-parametric bootstrap samples using Poisson frequencies", Comput. Methods Programs Biomed. 83(1); Chamandy,
Muralidharan, Najmi & Naik 2012, "Estimating uncertainty for massive data streams", Google): the multinomial
resampling multiplicities of ``m`` rows are approximately independent Poisson(1) for large ``m``, and independent
weights need no pass over the whole data, so they can be drawn while streaming.

The weight is a pure function of (seed, file index, row number in the file, replicate), so the counts do not depend on
threads or partitioning:

.. math::

    u = h(h(h(h(h(s) \\oplus f) \\oplus (i \\bmod 2^{32})) \\oplus \\lfloor i / 2^{32} \\rfloor) \\oplus h(r)), \\qquad
    W = \\#\\{k \\ge 0 : u \\ge \\lceil F(k)\\, 2^{32} \\rceil\\}

with :math:`h` the 32-bit integer mixer ``x ^= x >> 16; x *= 0x45d9f3b`` (twice) then ``x ^= x >> 16`` (all modulo
:math:`2^{32}`), :math:`F` the Poisson(1) CDF (the inverse-CDF draw of :math:`u / 2^{32}`, exact to :math:`2^{-32}`).
"""

from __future__ import annotations

import math

import numpy as np

MULT = 0x45D9F3B
MOD = 1 << 32
THRESHOLDS = tuple(
    min(math.ceil(sum(math.exp(-1) / math.factorial(j) for j in range(k + 1)) * MOD), MOD) for k in range(16))
"""``ceil(F(k)·2³²)`` for the Poisson(1) CDF ``F``, k = 0..15 (a weight above 13 has probability < 2⁻³²)."""


def mix32(x: np.ndarray) -> np.ndarray:
    """The 32-bit integer mixer :math:`h` on uint64 arrays holding values below 2³² (numpy reference)."""
    x = np.asarray(x, dtype=np.uint64)
    x = ((x >> np.uint64(16)) ^ x) * np.uint64(MULT) % np.uint64(MOD)
    x = ((x >> np.uint64(16)) ^ x) * np.uint64(MULT) % np.uint64(MOD)
    return (x >> np.uint64(16)) ^ x


def row_keys(seed: int, file_index: np.ndarray, row: np.ndarray) -> np.ndarray:
    """The per-row part of the hash (numpy reference): ``h(h(h(h(s) ⊕ f) ⊕ lo(i)) ⊕ hi(i))``."""
    row = np.asarray(row, dtype=np.uint64)
    k = mix32(np.uint64(seed % MOD)) ^ np.asarray(file_index, dtype=np.uint64)
    k = mix32(mix32(k) ^ (row % np.uint64(MOD)))
    return mix32(k ^ (row >> np.uint64(32)))


def poisson_weights(seed: int, file_index: np.ndarray, row: np.ndarray, n_replicates: int) -> np.ndarray:
    """Poisson(1) weights (rows × replicates) of rows ``row`` (0-based, within their file) of files ``file_index``
    (1-based, in the order :func:`pairkit.scale.expand_paths` lists them): what ``pairkit count --bootstrap`` draws
    in DuckDB, computed in numpy (the reference the tests compare with)."""
    key = row_keys(seed, file_index, row)[:, None]
    reps = mix32(np.arange(1, n_replicates + 1, dtype=np.uint64))[None, :]
    u = mix32(key ^ reps)
    return (u[..., None] >= np.asarray(THRESHOLDS, dtype=np.uint64)).sum(axis=-1).astype(np.int64)


_T32 = np.asarray([t for t in THRESHOLDS if t < MOD], dtype=np.uint32)


def _mix32_inplace(x: np.ndarray) -> np.ndarray:
    """:math:`h` on a uint32 array, in place (uint32 products wrap modulo 2³², as :func:`mix32`'s ``% 2³²``)."""
    x ^= x >> np.uint32(16)
    x *= np.uint32(MULT)
    x ^= x >> np.uint32(16)
    x *= np.uint32(MULT)
    x ^= x >> np.uint32(16)
    return x


def replicate_sums(values: np.ndarray, groups: np.ndarray, n_groups: int, seed: int, file_index,
                   rows: np.ndarray, n_replicates: int, block: int = 1 << 18):
    """Poisson-bootstrap sums of one file's rows, replicate block by block (the Ray and in-memory engines).

    ``values`` (k × m): what each of the ``m`` rows adds to its group (``groups``, codes below ``n_groups``);
    ``rows``: the rows' numbers in their file (``file_index``, 1-based: one, or one per row). Yields ``(r0, sums)``
    with
    ``sums[j, g, t] = Σ_{i in g} values[j, i] · W_{i, r0+t}`` (k × n_groups × replicates of the block): the same
    weights :func:`poisson_weights` gives, computed on uint32 words, and the sums as one sparse product per block.
    """
    from scipy import sparse

    rows = np.asarray(rows, dtype=np.int64)
    files = np.broadcast_to(np.asarray(file_index, dtype=np.uint64), rows.shape)
    key = row_keys(seed, files, rows).astype(np.uint32)
    k, m = values.shape
    nz = values != 0
    j, i = np.nonzero(nz)
    agg = sparse.csr_matrix((values[nz], (j * n_groups + np.asarray(groups)[i], i)), shape=(k * n_groups, m))
    step = max(1, block // max(m, 1))
    for r0 in range(0, n_replicates, step):
        reps = mix32(np.arange(r0 + 1, min(r0 + step, n_replicates) + 1, dtype=np.uint64)).astype(np.uint32)
        u = _mix32_inplace(key[:, None] ^ reps[None, :])
        yield r0, np.asarray(agg @ draws(u)).reshape(k, n_groups, -1)


def draws(u: np.ndarray) -> np.ndarray:
    """The Poisson(1) draws ``#{k : u ≥ ⌈F(k)·2³²⌉}`` of uint32 words ``u`` (uint8): three comparisons for every
    word, a search among the thresholds for the ~8 % of words at or above the fourth."""
    w = (u >= _T32[0]).view(np.uint8)
    w += u >= _T32[1]
    w += u >= _T32[2]
    high = np.flatnonzero(u >= _T32[3])
    w.reshape(-1)[high] = np.searchsorted(_T32, u.reshape(-1)[high], side="right")
    return w


def _mix_sql(x: str) -> str:
    x1 = f"((xor(({x}) >> 16, ({x})) * {MULT}) & {MOD - 1})"  # a mask, not % 2³²: no division per value
    x2 = f"((xor({x1} >> 16, {x1}) * {MULT}) & {MOD - 1})"
    return f"xor({x2} >> 16, {x2})"


def replicate_sql(rows: str, keys: list[str], n_replicates: int, seed: int) -> str:
    """The long replicate count table from ``rows`` (valid rows with ``na, nb, s, w``, the key columns, ``_f`` the
    1-based file index and ``_i`` the row number in the file): ``replicate, keys…, a, b, a_wins, b_wins, ties, n``."""
    seed_key = int(mix32(np.uint64(seed % MOD)))
    keys_sql = "".join(k + ", " for k in keys)
    poisson = " + ".join(f"CAST(u >= {t} AS INTEGER)" for t in THRESHOLDS if t < MOD)
    return f"""
        WITH k1 AS (SELECT *, {_mix_sql(f"xor(CAST({seed_key} AS BIGINT), CAST(_f AS BIGINT))")} AS _k FROM ({rows})),
             k2 AS (SELECT * REPLACE ({_mix_sql("xor(_k, CAST(_i AS BIGINT) & " + str(MOD - 1) + ")")} AS _k) FROM k1),
             k3 AS (SELECT * REPLACE ({_mix_sql("xor(_k, CAST(_i AS BIGINT) >> 32)")} AS _k) FROM k2),
             rep AS (SELECT range AS replicate, {_mix_sql("range")} AS _hr FROM range(1, {n_replicates + 1})),
             d AS (SELECT k3.*, replicate, {_mix_sql("xor(_k, _hr)")} AS u FROM k3, rep),
             x AS (SELECT *, ({poisson}) AS pw FROM d)
        SELECT replicate, {keys_sql} least(na, nb) AS a, greatest(na, nb) AS b,
               sum(CASE WHEN s = 1 THEN w * pw ELSE 0 END) AS a_wins,
               sum(CASE WHEN s = 0 THEN w * pw ELSE 0 END) AS b_wins,
               sum(CASE WHEN s = 0.5 THEN w * pw ELSE 0 END) AS ties,
               CAST(sum(pw) AS BIGINT) AS n
        FROM x WHERE pw > 0 GROUP BY ALL"""
