"""K-wise comparisons: the :class:`Rankings` container and its readers.

A ranking lists items in order of preference; items sharing a *level* are tied. Rankings are ragged, so they are
stored flat: ``flat`` holds every ranked item, ``offsets[r]:offsets[r + 1]`` is ranking ``r`` and ``level``
numbers the tie groups inside each ranking (0 = best). A ranking flagged ``top_k`` says that every item it
does not list ranked below all the items it lists (a top-k list); otherwise only the listed items were compared
(a partial ranking).

Readers: one row per ranked item (:func:`read_rankings`, CSV/TSV/whitespace text/DataFrame), PrefLib
``.soc``/``.soi``/``.toc``/``.toi`` files (:func:`read_preflib`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pairkit._lazy import pandas as pd
from pairkit.data.comparisons import Comparisons
from pairkit.errors import InputError

__all__ = ["Rankings", "read_any_rankings", "read_preflib", "read_rankings", "read_wide_rankings"]


@dataclass(frozen=True, eq=False)
class Rankings:
    """Rankings of items (ties allowed), stored as flat arrays with offsets.

    Attributes:
        items: item names; ``flat`` indexes into them.
        flat: (N,) item index of every ranked entry, rankings one after another, best first.
        offsets: (R + 1,) ranking ``r`` is ``flat[offsets[r]:offsets[r + 1]]``.
        level: (N,) tie-group number of each entry within its ranking (0 = best; non-decreasing).
        weight: (R,) weight of each ranking (a count of identical voters, say).
        top_k: (R,) bool, the unlisted items ranked below the listed ones.
    """

    items: tuple[str, ...]
    flat: np.ndarray
    offsets: np.ndarray
    level: np.ndarray
    weight: np.ndarray
    top_k: np.ndarray
    source: str | None = None

    def __post_init__(self) -> None:
        r = len(self.offsets) - 1
        if r < 0 or self.offsets[0] != 0 or self.offsets[-1] != len(self.flat) or np.any(np.diff(self.offsets) < 0):
            raise InputError("Rankings: offsets must start at 0, be non-decreasing and end at len(flat)")
        if len(self.level) != len(self.flat):
            raise InputError(f"Rankings: level has {len(self.level)} entries but flat has {len(self.flat)}")
        if len(self.weight) != r or len(self.top_k) != r:
            raise InputError(f"Rankings: weight and top_k need one entry per ranking ({r})")
        if len(self.flat) and (self.flat.min() < 0 or self.flat.max() >= len(self.items)):
            raise InputError(f"Rankings: item index out of range [0, {len(self.items)})")
        if np.any(~np.isfinite(self.weight) | (self.weight < 0)):
            k = int(np.flatnonzero(~np.isfinite(self.weight) | (self.weight < 0))[0])
            raise InputError(f"Rankings: weight of ranking {k} is {self.weight[k]!r}; weights must be >= 0")
        rid = self.ranking_id
        if len(self.flat) > 1:
            same = rid[1:] == rid[:-1]
            if np.any(same & (np.diff(self.level) < 0)):
                k = int(rid[1:][same & (np.diff(self.level) < 0)][0])
                raise InputError(f"Rankings: levels of ranking {k} decrease; list items best first")
            key = rid * np.int64(len(self.items)) + self.flat
            if len(np.unique(key)) != len(key):
                dup = np.sort(key)
                k = int(dup[1:][dup[1:] == dup[:-1]][0] // len(self.items))
                raise InputError(f"Rankings: ranking {k} lists an item twice")
        for arr in (self.flat, self.offsets, self.level, self.weight, self.top_k):
            arr.setflags(write=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_lists(
        cls,
        rankings: Sequence[Sequence],
        *,
        items: Sequence[str] | None = None,
        weight: Sequence[float] | np.ndarray | None = None,
        top_k: bool | Sequence[bool] = False,
        source: str | None = None,
    ) -> Rankings:
        """Build from lists, best first; an inner list/tuple/set is a group of tied items.

        Entries are item indices (with ``items`` names or none) or item names. ``[[3], [1, 2], [0]]`` and
        ``[3, (1, 2), 0]`` both say 3 beat 1 and 2, which tied, and both beat 0.
        """
        names: list = []
        levels: list[int] = []
        lengths: list[int] = []
        for r, ranking in enumerate(rankings):
            if isinstance(ranking, (str, bytes)) or not isinstance(ranking, Sequence):
                raise InputError(f"ranking {r} must be a list of items, got {type(ranking).__name__}")
            count = 0
            for lev, entry in enumerate(ranking):
                group = list(entry) if isinstance(entry, (list, tuple, set, frozenset)) else [entry]
                if not group:
                    raise InputError(f"ranking {r}, position {lev}: empty tie group")
                names.extend(group)
                levels.extend([lev] * len(group))
                count += len(group)
            lengths.append(count)
        values = np.asarray(names) if names else np.zeros(0, dtype=np.int64)
        if values.dtype.kind in "OUS":
            values = values.astype(str)
            if items is None:
                codes, uniques = pd.factorize(values, sort=True)
                items = [str(u) for u in uniques]
            else:
                codes = pd.Index([str(x) for x in items]).get_indexer(values)
                if (codes < 0).any():
                    raise InputError(f"item {values[codes < 0][0]!r} is not one of the given items")
        else:
            if values.size and not np.issubdtype(values.dtype, np.integer):
                raise InputError(f"ranking entries must be item indices or names, got dtype {values.dtype}")
            codes = values.astype(np.int64)
            if items is None:
                items = [str(k) for k in range(int(codes.max(initial=-1)) + 1)]
        n_r = len(lengths)
        w = np.ones(n_r) if weight is None else np.asarray(weight, dtype=np.float64)
        tk = np.broadcast_to(np.asarray(top_k, dtype=bool), (n_r,)).copy()
        offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
        return cls(
            items=tuple(str(x) for x in items),
            flat=np.ascontiguousarray(codes, dtype=np.int64),
            offsets=offsets,
            level=np.asarray(levels, dtype=np.int64),
            weight=np.ascontiguousarray(w),
            top_k=tk,
            source=source,
        )

    # ------------------------------------------------------------------ properties
    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def ranking_id(self) -> np.ndarray:
        """(N,) the ranking each flat entry belongs to."""
        return np.repeat(np.arange(len(self)), self.lengths)

    @property
    def has_ties(self) -> bool:
        rid = self.ranking_id
        return bool(np.any((rid[1:] == rid[:-1]) & (self.level[1:] == self.level[:-1])))

    def __repr__(self) -> str:
        kind = f", {int(self.top_k.sum())} top-k" if self.top_k.any() else ""
        return f"Rankings({len(self)} rankings of {self.n_items} items, {len(self.flat)} entries{kind})"

    def to_lists(self) -> list[list]:
        """Rankings as lists of item names, tied groups as tuples."""
        names = np.asarray(self.items, dtype=object)
        out = []
        for r in range(len(self)):
            sl = slice(self.offsets[r], self.offsets[r + 1])
            lev, fl = self.level[sl], self.flat[sl]
            groups = np.split(names[fl], np.flatnonzero(np.diff(lev)) + 1)
            out.append([g[0] if len(g) == 1 else tuple(g) for g in groups])
        return out

    def subset(self, rankings: np.ndarray | Sequence[int]) -> Rankings:
        """The rankings selected by an index array or boolean mask (items are kept)."""
        sel = np.asarray(rankings)
        if sel.dtype == bool:
            sel = np.flatnonzero(sel)
        starts, ends = self.offsets[sel], self.offsets[sel + 1]
        lengths = ends - starts
        idx = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(lengths.sum())
        return Rankings(
            items=self.items,
            flat=self.flat[idx],
            offsets=np.concatenate([[0], np.cumsum(lengths)]),
            level=self.level[idx],
            weight=self.weight[sel],
            top_k=self.top_k[sel],
            source=self.source,
        )

    def with_weights(self, weight: np.ndarray) -> Rankings:
        """The same rankings with new per-ranking weights."""
        return Rankings(
            items=self.items,
            flat=self.flat,
            offsets=self.offsets,
            level=self.level,
            weight=np.asarray(weight, dtype=np.float64),
            top_k=self.top_k,
            source=self.source,
        )

    def to_comparisons(self) -> Comparisons:
        """Full rank breaking: one comparison per pair of listed items (tied pairs as ties), ranking's weight.

        Top-k flags are ignored (unlisted items are not expanded). Useful to fit pairwise models to rankings.
        """
        lengths = self.lengths
        firsts, seconds, owners = [], [], []
        # one vectorised block per distinct ranking length (a handful), not per ranking
        for m in np.unique(lengths[lengths > 1]):
            which = np.flatnonzero(lengths == m)
            p, q = np.triu_indices(int(m), 1)
            base = self.offsets[which][:, None]
            firsts.append((base + p).ravel())
            seconds.append((base + q).ravel())
            owners.append(np.repeat(which, len(p)))
        if not firsts:
            raise InputError("the rankings contain no pair of items")
        ia, ib, owner = np.concatenate(firsts), np.concatenate(seconds), np.concatenate(owners)
        out = np.where(self.level[ia] == self.level[ib], 0.5, 1.0)
        return Comparisons.from_arrays(
            self.flat[ia],
            self.flat[ib],
            out,
            items=list(self.items),
            weight=self.weight[owner],
            cluster=owner,
            source=self.source,
        )


# ---------------------------------------------------------------------------------------------- readers
def _read_frame(source) -> tuple[pd.DataFrame, str]:
    if isinstance(source, pd.DataFrame):
        frame = source.reset_index(drop=True)
        frame.columns = [str(c) for c in frame.columns]
        return frame, "DataFrame"
    path = Path(source)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.suffix.lower() == ".txt":
        try:
            frame = pd.read_csv(path, sep=r"\s+", dtype=str)
        except (ValueError, pd.errors.ParserError) as exc:
            raise InputError(f"{path}: cannot parse as a whitespace-separated table ({exc})") from exc
        return frame, str(path)
    from pairkit.data.readers import read_table

    frame, src = read_table(path)
    return frame, src.name


def read_rankings(
    source: str | Path | pd.DataFrame,
    *,
    ranking: str,
    item: str,
    position: str,
    weight: str | None = None,
    top_k: bool = False,
) -> Rankings:
    """Read rankings stored one row per ranked item: a ranking (list) id, an item and its position.

    Lower ``position`` is better; equal positions within a ranking are ties. ``weight`` names a per-row
    column that must be constant within a ranking. ``top_k=True`` marks every ranking as a top-k list.
    Whitespace tables (``.txt``, e.g. the NASCAR ``DriverID Race Place`` file), CSV/TSV/JSONL/Parquet files
    and DataFrames are accepted.
    """
    frame, name = _read_frame(source)
    for col in (ranking, item, position, weight):
        if col is not None and col not in frame.columns:
            raise InputError(f"{name}: no column {col!r}; columns are {list(frame.columns)}")
    if len(frame) == 0:
        raise InputError(f"{name}: no data rows")
    first_row = 2 if name != "DataFrame" else 1
    pos = pd.to_numeric(frame[position], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(pos)
    if bad.any():
        k = int(np.argmax(bad))
        raise InputError(
            f"{name}, row {k + first_row}, column {position!r}: position must be a number "
            f"(value {frame[position].iloc[k]!r})"
        )
    items_col = frame[item].astype(str).str.strip()
    if (frame[item].isna() | (items_col == "")).any():
        k = int(np.argmax((frame[item].isna() | (items_col == "")).to_numpy()))
        raise InputError(f"{name}, row {k + first_row}, column {item!r}: missing item")
    list_codes, _ = pd.factorize(frame[ranking].astype(str), sort=False)
    order = np.lexsort((pos, list_codes))
    list_sorted, pos_sorted = list_codes[order], pos[order]
    counts = np.bincount(list_sorted)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    # level: rank of the position among distinct positions within its ranking
    new_group = np.ones(len(order), dtype=bool)
    new_group[1:] = (list_sorted[1:] != list_sorted[:-1]) | (pos_sorted[1:] != pos_sorted[:-1])
    group_no = np.cumsum(new_group) - 1
    level = group_no - group_no[offsets[list_sorted]]
    item_codes, uniques = pd.factorize(items_col.to_numpy()[order], sort=True)
    if weight is not None:
        wv = pd.to_numeric(frame[weight], errors="coerce").to_numpy(dtype=np.float64)[order]
        if not np.all(np.isfinite(wv)):
            k = int(order[np.argmax(~np.isfinite(wv))])
            raise InputError(f"{name}, row {k + first_row}, column {weight!r}: weight must be a number")
        first = wv[offsets[:-1]]
        if np.any(wv != first[list_sorted]):
            k = int(order[np.argmax(wv != first[list_sorted])])
            raise InputError(f"{name}, row {k + first_row}, column {weight!r}: weight differs within a ranking")
        w = first
    else:
        w = np.ones(len(counts))
    key = list_sorted * np.int64(len(uniques)) + item_codes
    if len(np.unique(key)) != len(key):
        srt = np.sort(key)
        dup = srt[1:][srt[1:] == srt[:-1]][0]
        k = int(order[np.flatnonzero(key == dup)[1]])
        raise InputError(
            f"{name}, row {k + first_row}: item {items_col.iloc[k]!r} appears twice in ranking "
            f"{frame[ranking].iloc[k]!r}"
        )
    return Rankings(
        items=tuple(str(u) for u in uniques),
        flat=item_codes.astype(np.int64),
        offsets=offsets,
        level=level.astype(np.int64),
        weight=w,
        top_k=np.full(len(counts), bool(top_k)),
        source=name,
    )


_PREFLIB_LINE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*:\s*(.*)$")


def read_preflib(path: str | Path, *, incomplete: str = "partial") -> Rankings:
    """Read a PrefLib ``.soc``, ``.soi``, ``.toc`` or ``.toi`` file (orders, optionally with ties ``{a,b}``).

    Items are named by the ``# ALTERNATIVE NAME k:`` header lines; each data line ``count: a,b,{c,d},e`` is one
    distinct order with its multiplicity as weight. For incomplete orders (soi/toi), ``incomplete="partial"``
    compares only the listed alternatives and ``"top_k"`` ranks every unlisted alternative below them.
    """
    if incomplete not in ("partial", "top_k"):
        raise InputError(f"incomplete must be 'partial' or 'top_k', got {incomplete!r}")
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    names: dict[int, str] = {}
    n_alt = None
    rankings: list[list] = []
    weights: list[float] = []
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            m = re.match(r"#\s*ALTERNATIVE NAME\s+(\d+)\s*:\s*(.*)$", line)
            if m:
                names[int(m.group(1))] = m.group(2).strip()
            m = re.match(r"#\s*NUMBER ALTERNATIVES\s*:\s*(\d+)", line)
            if m:
                n_alt = int(m.group(1))
            continue
        m = _PREFLIB_LINE.match(line)
        if not m:
            raise InputError(f"{path}, line {lineno}: expected 'count: order', got {raw!r}")
        order: list = []
        body = m.group(2)
        for token in re.findall(r"\{[^}]*\}|[^,{}]+", body):
            token = token.strip()
            if not token:
                continue
            try:
                if token.startswith("{"):
                    group = tuple(int(x) for x in token[1:-1].split(",") if x.strip())
                    if group:
                        order.append(group)
                else:
                    order.append(int(token))
            except ValueError as exc:
                raise InputError(f"{path}, line {lineno}: alternatives must be integers, got {token!r}") from exc
        if not order:
            raise InputError(f"{path}, line {lineno}: empty order")
        rankings.append(order)
        weights.append(float(m.group(1)))
    if not rankings:
        raise InputError(f"{path}: no orders found")
    n = n_alt or max(
        max(names, default=0), max(max(np.ravel(list(g)) if isinstance(g, tuple) else [g]) for r in rankings for g in r)
    )
    labels = [names.get(k, str(k)) for k in range(1, n + 1)]
    zero_based = [[tuple(x - 1 for x in g) if isinstance(g, tuple) else g - 1 for g in r] for r in rankings]
    for r, ranking in enumerate(zero_based):
        flat = [x for g in ranking for x in (g if isinstance(g, tuple) else (g,))]
        if min(flat) < 0 or max(flat) >= n:
            raise InputError(f"{path}: order {r + 1} names an alternative outside 1..{n}")
    listed_all = np.array([sum(len(g) if isinstance(g, tuple) else 1 for g in r) for r in zero_based])
    top_k = (incomplete == "top_k") & (listed_all < n)
    return Rankings.from_lists(zero_based, items=labels, weight=weights, top_k=top_k, source=str(path))


WIDE_COLUMN = re.compile(r"^(?:pos|position|rank|place)[ _]?(\d+)$", re.IGNORECASE)
"""Column names of a wide rankings table: ``pos1``, ``rank_2``, ``Place3`` … (the number is the position)."""

LONG_NAMES = {
    "ranking": ("ranking", "ranking_id", "list", "list_id", "race", "query", "ballot", "voter", "judge", "event"),
    "item": ("item", "candidate", "driver", "player", "model", "team", "name", "driverid"),
    "position": ("position", "place", "rank", "pos", "finish"),
}


def read_wide_rankings(
    source: str | Path | pd.DataFrame, *, columns: Sequence[str] | None = None, top_k: bool = False
) -> Rankings:
    """Read rankings stored one per row, best first across ``pos1, pos2, …`` columns.

    ``columns`` names the position columns in order (default: every column named like ``pos1``, ``rank2``,
    ``place3``, ordered by its number). A row may stop early (empty cells at the end: a partial or top-k list);
    an empty cell followed by a filled one is an error naming the row, as is an item listed twice in one row.
    """
    frame, name = _read_frame(source)
    if columns is None:
        found = [(int(m.group(1)), c) for c in frame.columns if (m := WIDE_COLUMN.match(str(c).strip()))]
        if not found:
            raise InputError(
                f"{name}: no position columns (pos1, pos2, … or rank1, …); columns are {list(frame.columns)}"
            )
        columns = [c for _, c in sorted(found)]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{name}: no column(s) {missing}; columns are {list(frame.columns)}")
    first_row = 1 if name == "DataFrame" else 2
    cells = frame[list(columns)].astype("string").apply(lambda s: s.str.strip())
    filled = cells.notna().to_numpy() & (cells.fillna("").to_numpy() != "")
    gap = filled[:, 1:] & ~filled[:, :-1]
    if gap.any():
        k, c = np.argwhere(gap)[0]
        raise InputError(
            f"{name}, row {k + first_row}: column {columns[c]!r} is empty but {columns[c + 1]!r} is not; "
            "a ranking must list its items from the first position without gaps"
        )
    rows, pos = np.nonzero(filled)
    long = pd.DataFrame({"ranking": rows, "item": cells.to_numpy()[rows, pos], "position": pos})
    dup = long.duplicated(["ranking", "item"]).to_numpy()
    if dup.any():
        k = int(np.argmax(dup))
        raise InputError(
            f"{name}, row {int(long.ranking.iloc[k]) + first_row}: item {long.item.iloc[k]!r} is listed twice"
        )
    out = read_rankings(long, ranking="ranking", item="item", position="position", top_k=top_k)
    return replace(out, source=name)


def read_any_rankings(
    path: str | Path, *, ranking: str | None = None, item: str | None = None, position: str | None = None
) -> Rankings:
    """Rankings from a PrefLib file (``.soc``/``.soi``/``.toc``/``.toi``), a wide table (``pos1…posN``) or a
    long table (one row per ranked item); the long table's columns are given or recognised by name."""
    path = Path(path)
    if path.suffix.lower() in (".soc", ".soi", ".toc", ".toi"):
        return read_preflib(path)
    if ranking or item or position:
        if not (ranking and item and position):
            raise InputError("a long rankings file needs all three columns: RANKING,ITEM,POSITION")
        return read_rankings(path, ranking=ranking, item=item, position=position)
    frame, name = _read_frame(path)
    if any(WIDE_COLUMN.match(str(c).strip()) for c in frame.columns):
        return read_wide_rankings(path)
    lower = {str(c).strip().lower(): c for c in frame.columns}
    picked = {role: next((lower[x] for x in names if x in lower), None) for role, names in LONG_NAMES.items()}
    if None in picked.values():
        raise InputError(
            f"{name}: cannot tell the rankings layout from the columns {list(frame.columns)}; give "
            "--ranking-columns RANKING,ITEM,POSITION for one row per ranked item, or name the columns pos1…posN "
            "for one ranking per row"
        )
    return read_rankings(frame, **picked)
