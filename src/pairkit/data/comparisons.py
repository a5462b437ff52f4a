"""The pairwise comparison container and its sufficient statistics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from pairkit._lazy import pandas as pd
from pairkit._lazy import scipy_sparse as sp
from pairkit.errors import InputError

TieHandling = Literal["half", "separate"]


@dataclass(frozen=True)
class PairCounts:
    """Sufficient statistics of pairwise comparisons, aggregated over each unordered pair.

    For every pair ``(i[k], j[k])`` with ``i[k] < j[k]`` that was compared at least once:
    ``wins_i[k]`` is the (weighted) number of times ``i`` beat ``j``, ``wins_j[k]`` the times ``j`` beat ``i``
    and ``ties[k]`` the (weighted) number of ties. With ``ties="half"`` ties have already been split into half a
    win for each side and ``ties`` is all zeros.
    """

    n_items: int
    i: np.ndarray
    j: np.ndarray
    wins_i: np.ndarray
    wins_j: np.ndarray
    ties: np.ndarray

    @property
    def total(self) -> np.ndarray:
        """Total (weighted) number of comparisons of each pair."""
        return self.wins_i + self.wins_j + self.ties

    def wins_matrix(self) -> sp.csr_matrix:
        """Sparse ``W`` with ``W[x, y]`` = wins of ``x`` over ``y`` (ties count half if split)."""
        n = self.n_items
        rows = np.concatenate([self.i, self.j])
        cols = np.concatenate([self.j, self.i])
        vals = np.concatenate([self.wins_i + self.ties / 2, self.wins_j + self.ties / 2])
        matrix = sp.csr_matrix((vals, (rows, cols)), shape=(n, n))
        matrix.eliminate_zeros()  # graph algorithms read stored zeros as edges
        return matrix

    def ties_matrix(self) -> sp.csr_matrix:
        """Sparse symmetric matrix of tie counts."""
        n = self.n_items
        rows = np.concatenate([self.i, self.j])
        cols = np.concatenate([self.j, self.i])
        vals = np.concatenate([self.ties, self.ties])
        return sp.csr_matrix((vals, (rows, cols)), shape=(n, n))

    def games_per_item(self) -> np.ndarray:
        """Total (weighted) comparisons each item took part in."""
        t = self.total
        return np.bincount(self.i, t, self.n_items) + np.bincount(self.j, t, self.n_items)

    def wins_per_item(self) -> np.ndarray:
        """Total (weighted) wins of each item, ties counting half."""
        n = self.n_items
        return np.bincount(self.i, self.wins_i + self.ties / 2, n) + np.bincount(
            self.j, self.wins_j + self.ties / 2, n
        )


def _as_index_array(name: str, values: np.ndarray) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise InputError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"{name} must hold integer item indices, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


@dataclass(frozen=True, eq=False)
class Comparisons:
    """Pairwise comparisons in columnar form.

    Row ``k`` says that items ``a[k]`` and ``b[k]`` (indices into :attr:`items`) were compared with
    ``outcome[k]`` for ``a`` (1 = a won, 0 = b won, 0.5 = tie), ``weight[k]`` (default 1), an optional
    ``cluster[k]`` (prompt, voter, match day: the unit of dependence for sandwich errors and bootstrap) and an
    optional ``a_first[k]`` (``a`` was shown/played first: home side, white, answer A).

    Build with :meth:`from_arrays` or :func:`pairkit.read_comparisons` (files and DataFrames); this module does
    no I/O.

    Storage is compact, for data of 10⁷–10⁸ rows: item indices are ``int32`` (``int64`` beyond 2³¹ − 1 items),
    and a column whose value is the same on every row (the weight 1; the outcome 1 of winner/loser data) is a
    read-only broadcast of that value (:func:`numpy.broadcast_to`), which takes no memory per row. Values are
    unchanged (outcomes and weights stay ``float64``); arithmetic mixing item indices with large Python
    integers should convert them first (``a.astype(np.int64) * n``), as ``int32`` does not widen by itself.
    """

    items: tuple[str, ...]
    a: np.ndarray
    b: np.ndarray
    outcome: np.ndarray
    weight: np.ndarray
    cluster: np.ndarray | None = None
    a_first: np.ndarray | None = None
    source: str | None = None
    n_dropped: int = 0
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        code = index_dtype(len(self.items))
        for name in ("a", "b"):
            arr = getattr(self, name)
            if arr.dtype != code and np.issubdtype(arr.dtype, np.integer):
                object.__setattr__(self, name, arr.astype(code))
        for name in ("outcome", "weight"):
            object.__setattr__(self, name, compact_constant(getattr(self, name)))
        m = len(self.a)
        for name in ("b", "outcome", "weight", "cluster", "a_first"):
            arr = getattr(self, name)
            if arr is not None and len(arr) != m:
                raise InputError(f"Comparisons: column {name!r} has {len(arr)} rows but 'a' has {m}")
        n = len(self.items)
        if m:
            lo = min(self.a.min(), self.b.min())
            hi = max(self.a.max(), self.b.max())
            if lo < 0 or hi >= n:
                raise InputError(f"Comparisons: item index out of range [0, {n}): found {lo if lo < 0 else hi}")
        for arr in (self.a, self.b, self.outcome, self.weight, self.cluster, self.a_first):
            if arr is not None:
                arr.setflags(write=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_arrays(
        cls,
        a: Sequence | np.ndarray,
        b: Sequence | np.ndarray,
        outcome: Sequence | np.ndarray | None = None,
        *,
        items: Sequence[str] | None = None,
        weight: Sequence | np.ndarray | None = None,
        cluster: Sequence | np.ndarray | None = None,
        a_first: Sequence | np.ndarray | None = None,
        source: str | None = None,
    ) -> Comparisons:
        """Build from arrays of item indices (with ``items`` names) or of item names.

        ``outcome`` defaults to all ones (``a`` won every comparison, i.e. winner/loser arrays). Values are
        validated: outcomes in [0, 1], finite non-negative weights, no item compared with itself.

        Example:

            >>> from pairkit import Comparisons
            >>> comps = Comparisons.from_arrays(['gpt', 'llama', 'gpt'], ['llama', 'mistral', 'mistral'], [1, 0.5, 0])
            >>> print(len(comps), comps.items)
            3 ('gpt', 'llama', 'mistral')
        """
        a_arr, b_arr = np.asarray(a), np.asarray(b)
        if a_arr.shape != b_arr.shape or a_arr.ndim != 1:
            raise InputError(f"a and b must be 1-D of equal length, got shapes {a_arr.shape} and {b_arr.shape}")
        if items is None and (a_arr.dtype.kind in "OUS" or b_arr.dtype.kind in "OUS"):
            codes, uniques = pd.factorize(np.concatenate([a_arr, b_arr]).astype(str), sort=True)
            items = [str(u) for u in uniques]
            a_idx, b_idx = codes[: len(a_arr)], codes[len(a_arr) :]
        elif items is not None and (a_arr.dtype.kind in "OUS" or b_arr.dtype.kind in "OUS"):
            lookup = pd.Index([str(x) for x in items])
            a_idx = lookup.get_indexer(a_arr.astype(str))
            b_idx = lookup.get_indexer(b_arr.astype(str))
            for name, arr, idx in (("a", a_arr, a_idx), ("b", b_arr, b_idx)):
                if (idx < 0).any():
                    k = int(np.flatnonzero(idx < 0)[0])
                    raise InputError(f"{name}[{k}] = {arr[k]!r} is not one of the given items")
        else:
            a_idx = _as_index_array("a", a_arr)
            b_idx = _as_index_array("b", b_arr)
            if items is None:
                n = int(max(a_idx.max(initial=-1), b_idx.max(initial=-1)) + 1)
                items = [str(k) for k in range(n)]
        m = len(a_idx)
        out = constant(1.0, m) if outcome is None else np.asarray(outcome, dtype=np.float64)
        w = constant(1.0, m) if weight is None else np.asarray(weight, dtype=np.float64)
        _validate_rows(a_idx, b_idx, out, w, items, source)
        cl = None if cluster is None else pd.factorize(np.asarray(cluster))[0].astype(np.int64)
        af = None if a_first is None else np.asarray(a_first, dtype=bool)
        code = index_dtype(len(items))
        return cls(
            items=tuple(str(x) for x in items),
            a=np.ascontiguousarray(a_idx, dtype=code),
            b=np.ascontiguousarray(b_idx, dtype=code),
            outcome=compact_constant(out),
            weight=compact_constant(w),
            cluster=cl,
            a_first=af,
            source=source,
        )

    # ------------------------------------------------------------------ basic properties
    def __len__(self) -> int:
        return len(self.a)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_comparisons(self) -> int:
        return len(self.a)

    @property
    def has_ties(self) -> bool:
        return bool(np.any((self.outcome > 0) & (self.outcome < 1)))

    def __repr__(self) -> str:
        extra = []
        if self.cluster is not None:
            extra.append(f"{len(np.unique(self.cluster))} clusters")
        if self.a_first is not None:
            extra.append("order flag")
        ties = int(np.count_nonzero((self.outcome > 0) & (self.outcome < 1)))
        tail = f", {', '.join(extra)}" if extra else ""
        return f"Comparisons({len(self)} comparisons of {self.n_items} items, {ties} ties{tail})"

    def index(self, names: str | Sequence[str]) -> np.ndarray | int:
        """Indices of item names (raises :class:`InputError` for an unknown name)."""
        lookup = self._cache.get("lookup")
        if lookup is None:
            lookup = self._cache.setdefault("lookup", {n: k for k, n in enumerate(self.items)})
        single = isinstance(names, str)
        out = []
        for name in [names] if single else names:
            if name not in lookup:
                raise InputError(f"unknown item {name!r}; known items include {list(self.items[:5])}")
            out.append(lookup[name])
        return out[0] if single else np.asarray(out, dtype=np.int64)

    # ------------------------------------------------------------------ derived data
    def pair_counts(self, *, ties: TieHandling = "half", weights: np.ndarray | None = None) -> PairCounts:
        """Aggregate to per-pair win/tie counts (the sufficient statistics of Bradley–Terry-type models).

        ``ties="half"`` splits each tie into half a win for each side (LMArena's convention); ``"separate"``
        keeps tie counts apart (Davidson, Rao–Kupper). ``weights`` (per comparison) replaces :attr:`weight`,
        e.g. bootstrap multiplicities.
        """
        if ties not in ("half", "separate"):
            raise InputError(f"ties must be 'half' or 'separate', got {ties!r}")
        w = self.weight if weights is None else weights
        key = ("pairs", ties) if weights is None else None
        if key is not None and key in self._cache:
            return self._cache[key]
        counts = aggregate_pairs(self.a, self.b, self.outcome, w, self.n_items, split_ties=ties == "half")
        if key is not None:
            self._cache[key] = counts
        return counts

    def components(self) -> np.ndarray:
        """Connected-component label of each item in the comparison graph (items never compared are alone)."""
        n = self.n_items
        graph = sp.csr_matrix((np.ones(len(self)), (self.a, self.b)), shape=(n, n))
        from scipy.sparse import csgraph

        return csgraph.connected_components(graph, directed=False)[1]

    def subset(self, rows: np.ndarray | slice | Sequence[int]) -> Comparisons:
        """The comparisons selected by ``rows`` (boolean mask, index array or slice); items are kept."""
        sel = rows if isinstance(rows, slice) else np.asarray(rows)

        def take(x):
            return None if x is None else x[sel]

        return Comparisons(
            items=self.items,
            a=self.a[sel],
            b=self.b[sel],
            outcome=self.outcome[sel],
            weight=self.weight[sel],
            cluster=take(self.cluster),
            a_first=take(self.a_first),
            source=self.source,
        )

    def with_weights(self, weight: np.ndarray) -> Comparisons:
        """The same comparisons with new per-row weights."""
        return Comparisons(
            items=self.items, a=self.a, b=self.b, outcome=self.outcome, weight=np.asarray(weight, float),
            cluster=self.cluster, a_first=self.a_first, source=self.source,
        )

    def swapped(self) -> Comparisons:
        """Each comparison written from the other side (a↔b, outcome → 1 − outcome, order flag flipped)."""
        return Comparisons(
            items=self.items, a=self.b, b=self.a, outcome=1.0 - self.outcome, weight=self.weight,
            cluster=self.cluster, a_first=None if self.a_first is None else ~self.a_first, source=self.source,
        )

    def to_pandas(self) -> pd.DataFrame:
        """One row per comparison with item names."""
        names = np.asarray(self.items, dtype=object)
        frame = pd.DataFrame(
            {"a": names[self.a], "b": names[self.b], "outcome": self.outcome, "weight": self.weight}
        )
        if self.cluster is not None:
            frame["cluster"] = self.cluster
        if self.a_first is not None:
            frame["a_first"] = self.a_first
        return frame


def aggregate_pairs(
    a: np.ndarray,
    b: np.ndarray,
    outcome: np.ndarray,
    weight: np.ndarray,
    n_items: int,
    *,
    split_ties: bool,
) -> PairCounts:
    """Sum (weighted) wins and ties over each unordered pair, without Python loops.

    Rows are taken in blocks of :data:`CHUNK_ROWS`, so the temporaries stay a few tens of MB whatever the number
    of rows. Sums go into dense arrays over all ``n_items²`` pair keys when that is small next to the data, else
    each block is sorted and the blocks' sums are merged.
    """
    n = int(n_items)
    m = len(a)
    n2 = n * n
    dense = n2 <= max(m, 1 << 16)
    if not dense and m:
        counts = _aggregate_sorted(a, b, outcome, weight, n, split_ties)
        if counts is not None:
            return counts
    parts: list[tuple[np.ndarray, ...]] = []
    sums = [np.zeros(n2) for _ in range(2 if split_ties else 3)] if dense else []
    for start in range(0, max(m, 1), CHUNK_ROWS):
        rows = slice(start, start + CHUNK_ROWS)
        key, columns = _pair_block(a[rows], b[rows], outcome[rows], weight[rows], n, split_ties)
        if dense:
            for total, values in zip(sums, columns, strict=True):
                total += np.bincount(key, values, n2)
            if start == 0:
                occupied = np.zeros(n2, dtype=bool)
            occupied[key] = True
        else:
            uniq, inverse = np.unique(key, return_inverse=True)
            parts.append((uniq, *(np.bincount(inverse, values, len(uniq)) for values in columns)))
    if dense:
        uniq = np.flatnonzero(occupied)
        summed = [total[uniq] for total in sums]
    elif len(parts) == 1:
        uniq, *summed = parts[0]
    else:
        uniq, inverse = np.unique(np.concatenate([p[0] for p in parts]), return_inverse=True)
        summed = [np.bincount(inverse, np.concatenate([p[k] for p in parts]), len(uniq))
                  for k in range(1, len(parts[0]))]
    wl, wh = summed[0], summed[1]
    tt = summed[2] if len(summed) > 2 else np.zeros_like(wl)
    return PairCounts(
        n_items=n,
        i=(uniq // n).astype(np.int64),
        j=(uniq % n).astype(np.int64),
        wins_i=wl,
        wins_j=wh,
        ties=tt,
    )


def _aggregate_sorted(a, b, outcome, weight, n: int, split_ties: bool) -> PairCounts | None:
    """:func:`aggregate_pairs` by one plain sort of int64 keys (a SIMD sort: 5× faster than an argsort, or
    :func:`numpy.unique` with its inverse, of 5·10⁶ rows), or None when the keys do not fit in 63 bits.

    Each row's pair key ``lo·n + hi`` is shifted left and what is needed of the row put in the low bits. With one
    weight for every row and outcomes in {0, ½, 1} (winner/loser files, win/tie/loss labels) that is the outcome
    as seen from ``lo`` (0, 1 or 2 halves): the sorted array alone then gives every sum, as exact counts.
    Otherwise it is the row number, and each pair's sums are :func:`numpy.add.reduceat` over the rows gathered
    in that order."""
    m = len(a)
    key_bits = (n * n - 1).bit_length()
    halves = 2.0 * outcome
    if weight.strides[0] == 0 and key_bits + 2 <= 63 and np.array_equal(halves, np.floor(halves)):
        packed = _pair_keys(a, b, n)
        packed <<= 2
        packed += np.where(a < b, halves, 2.0 - halves).astype(np.int64)
        packed.sort()
        code = (packed & 3).astype(np.int8)
        packed >>= 2
        starts = np.flatnonzero(np.r_[True, packed[1:] != packed[:-1]])
        count = np.diff(np.r_[starts, m])
        w = float(weight[0]) if m else 1.0
        if split_ties:
            halves_lo = np.add.reduceat(code, starts, dtype=np.int64)
            wins_lo, wins_hi = w * (halves_lo / 2), w * ((2 * count - halves_lo) / 2)
            ties = np.zeros(len(starts))
        else:
            wins_lo = w * np.add.reduceat(code == 2, starts, dtype=np.int64)
            ties = w * np.add.reduceat(code == 1, starts, dtype=np.int64)
            wins_hi = w * count - wins_lo - ties
        uniq = packed[starts]
        return PairCounts(n_items=n, i=uniq // n, j=uniq % n, wins_i=wins_lo, wins_j=wins_hi, ties=ties)
    shift = max((m - 1).bit_length(), 1)
    if key_bits + shift > 63:
        return None
    packed, columns = _pair_block(a, b, outcome, weight, n, split_ties)
    packed <<= shift
    packed |= np.arange(m, dtype=np.int64)
    packed.sort()
    order = packed & ((1 << shift) - 1)
    packed >>= shift  # the sorted keys
    starts = np.flatnonzero(np.r_[True, packed[1:] != packed[:-1]])
    uniq = packed[starts]
    summed = [np.add.reduceat(values[order], starts) for values in columns]
    tt = summed[2] if len(summed) > 2 else np.zeros(len(uniq))
    return PairCounts(n_items=n, i=uniq // n, j=uniq % n, wins_i=summed[0], wins_j=summed[1], ties=tt)


def _pair_keys(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Each row's unordered pair key ``min(a, b)·n + max(a, b)`` (int64)."""
    key = np.minimum(a, b).astype(np.int64)
    key *= n
    key += np.maximum(a, b)
    return key


CHUNK_ROWS = 1 << 20
"""Rows aggregated at a time by :func:`aggregate_pairs` (bounds its temporaries to ~50 MB)."""


def _pair_block(a, b, outcome, weight, n: int, split_ties: bool) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """One block's pair keys ``lo·n + hi`` and per-row (wins of lo, wins of hi[, ties]), weighted (no ties
    column when ties are split)."""
    a_is_lo = a < b
    key = np.where(a_is_lo, a, b).astype(np.int64)
    key *= n
    key += np.where(a_is_lo, b, a)
    win_lo = np.where(a_is_lo, outcome, 1.0 - outcome)
    if split_ties:
        return key, (weight * win_lo, weight * (1.0 - win_lo))
    # A fractional outcome other than 1/2 is a "partial tie": its decisive share is kept as wins.
    is_tie = (outcome > 0) & (outcome < 1)
    decisive = np.where(is_tie, 0.0, weight)
    return key, (decisive * win_lo, decisive * (1.0 - win_lo), np.where(is_tie, weight, 0.0))


def index_dtype(n_items: int) -> np.dtype:
    """The dtype of item indices for ``n_items`` items: ``int32``, or ``int64`` beyond 2³¹ − 1 items."""
    return np.dtype(np.int32 if n_items <= np.iinfo(np.int32).max else np.int64)


def constant(value: float, m: int) -> np.ndarray:
    """``m`` copies of ``value`` as a read-only float64 broadcast: no memory per row."""
    return np.broadcast_to(np.float64(value), (m,))


def compact_constant(values: np.ndarray) -> np.ndarray:
    """``values`` as float64; a column holding one value on every row becomes a broadcast (see :func:`constant`)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1 and len(values) and (values.strides[0] == 0 or bool((values == values[0]).all())):
        return constant(values[0], len(values)) if values[0] == values[0] else values
    return values


def _validate_rows(a, b, outcome, weight, items, source) -> None:
    """Validate already-parsed arrays; row numbers in messages are 0-based array positions here."""
    where = source or "comparisons"
    checks = [
        (a == b, "an item is compared with itself", lambda k: f"item {items[a[k]]!r}"),
        (~np.isfinite(outcome) | (outcome < 0) | (outcome > 1), "outcome must be in [0, 1]",
         lambda k: f"outcome {outcome[k]!r}"),
        (~np.isfinite(weight) | (weight < 0), "weight must be finite and non-negative",
         lambda k: f"weight {weight[k]!r}"),
    ]
    for bad, what, show in checks:
        if bad.any():
            rows = np.flatnonzero(bad)
            k = int(rows[0])
            raise InputError(
                f"{where}: {what} at position {k} ({show(k)}); {len(rows)} such row(s) in total."
            )
