"""Count tables: from comparisons, back to comparisons, from files with DuckDB, Ray or in memory."""

from __future__ import annotations

import glob
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pairkit._lazy import pandas as pd
from pairkit.data.comparisons import Comparisons
from pairkit.errors import DroppedRowsWarning, InputError
from pairkit.scale._tables import columns_of, file_kind, ordered_counts

COUNT_COLUMNS = ("a", "b", "a_wins", "b_wins", "ties", "n")
"""Columns of a count table (``n`` optional on input); ``cluster`` and ``a_first`` are extra keys."""

Engine = Literal["duckdb", "ray", "memory"]

__all__ = ["COUNT_COLUMNS", "comparisons_to_counts", "count_pairs", "counts_to_comparisons", "expand_paths",
           "is_counts", "load_any", "write_counts"]


# ---------------------------------------------------------------------------------------------- files
def expand_paths(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """Files named by ``paths``: files as given, globs expanded, directories searched recursively (sorted)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for path in paths:
        text = str(path)
        if any(ch in text for ch in "*?["):
            found = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            if not found:
                raise InputError(f"{text}: the pattern matches no file")
            files += found
        elif Path(text).is_dir():
            found = sorted(p for p in Path(text).rglob("*")
                           if p.is_file() and not p.name.startswith((".", "_")) and file_kind(p))
            if not found:
                raise InputError(f"{text}: the directory holds no .parquet, .csv, .tsv, .jsonl or .json file")
            files += found
        elif Path(text).is_file():
            files.append(Path(text))
        else:
            raise InputError(f"{text}: no such file or directory")
    return files


def is_counts(columns: Iterable[str]) -> bool:
    """Whether a table with these columns is a count table (``a, b, a_wins, b_wins, ties``)."""
    return set(COUNT_COLUMNS[:5]) <= set(columns)


# ---------------------------------------------------------------------------------------------- conversions
def comparisons_to_counts(comparisons: Comparisons, *, cluster: bool = False, a_first: bool = False,
                          cluster_labels: Sequence | None = None, bootstrap: int = 0, seed: int = 0,
                          file_index: int = 1, rows: np.ndarray | None = None) -> pd.DataFrame:
    """The count table of ``comparisons``: one row per unordered pair (and cluster / first side when asked).

    Raises :class:`InputError` for outcomes other than 0, ½ and 1 (a count of wins, losses and ties cannot hold
    them). ``cluster_labels[k]`` names cluster code ``k`` (default: the codes themselves).

    ``bootstrap`` = B > 0: the long table of :func:`count_pairs` with Poisson-bootstrap replicates 1..B, the
    comparisons being the rows ``rows`` (default ``0..m-1``) of the ``file_index``-th input file (1-based): the same
    weights as ``pairkit count --bootstrap`` draws in DuckDB (``pairkit.scale.poisson_weights``).
    """
    comps = comparisons
    partial = (comps.outcome != 0) & (comps.outcome != 0.5) & (comps.outcome != 1)
    if partial.any():
        k = int(np.flatnonzero(partial)[0])
        raise InputError(
            f"{comps.source or 'comparisons'}: outcome {comps.outcome[k]} (comparison {k + 1}) is neither a win, "
            f"a loss nor a tie; pair counts hold only 0, 1/2 and 1 ({int(partial.sum())} such comparisons)")
    names = np.asarray(comps.items, dtype=object)
    order = np.empty(len(names), dtype=np.int64)
    order[np.argsort(names.astype(str), kind="stable")] = np.arange(len(names))  # rank of each name
    a_is_lo = order[comps.a] < order[comps.b]
    lo = np.where(a_is_lo, comps.a, comps.b)
    hi = np.where(a_is_lo, comps.b, comps.a)
    s = np.where(a_is_lo, comps.outcome, 1.0 - comps.outcome)
    w = comps.weight
    frame = pd.DataFrame({"lo": order[lo], "hi": order[hi], "a_wins": w * (s == 1), "b_wins": w * (s == 0),
                          "ties": w * (s == 0.5), "n": np.ones(len(comps), dtype=np.int64)})
    keys = ["lo", "hi"]
    if cluster:
        if comps.cluster is None:
            raise InputError("counting by cluster needs a cluster column")
        frame["cluster"] = comps.cluster
        keys.insert(0, "cluster")
    if a_first:
        if comps.a_first is None:
            raise InputError("counting by first side needs an a_first column")
        frame["a_first"] = np.where(a_is_lo, comps.a_first, ~comps.a_first)
        keys.insert(-2, "a_first")
    grouped = frame.groupby(keys, sort=True, observed=True)
    out = grouped.sum().reset_index()
    if bootstrap:
        out = pd.concat([out.assign(replicate=0),
                         _replicates(frame, keys, grouped.ngroup().to_numpy(), out, bootstrap, seed, file_index,
                                     np.arange(len(comps)) if rows is None else rows)], ignore_index=True)
    sorted_names = np.sort(names.astype(str)).astype(object)
    out["a"] = sorted_names[out.pop("lo").to_numpy()]
    out["b"] = sorted_names[out.pop("hi").to_numpy()]
    if cluster:
        labels = np.asarray(cluster_labels if cluster_labels is not None
                            else comps._cache.get("cluster_labels", np.arange(int(comps.cluster.max()) + 1)))
        out["cluster"] = np.asarray(labels).astype(str)[out["cluster"].to_numpy()]
    return ordered_counts(out)


def _replicates(frame: pd.DataFrame, keys: list[str], groups: np.ndarray, out: pd.DataFrame, n_boot: int, seed: int,
                file_index: int, rows: np.ndarray) -> pd.DataFrame:
    """Replicates 1..B of :func:`comparisons_to_counts`' grouped ``out`` (keys + sums of ``frame``'s rows in
    ``groups``), only the groups a replicate weights (``n`` > 0), as DuckDB's ``pairkit count --bootstrap`` has them."""
    from pairkit.scale._poisson import replicate_sums

    values = frame[["a_wins", "b_wins", "ties", "n"]].to_numpy(dtype=float).T
    parts = []
    for r0, sums in replicate_sums(values, groups, len(out), seed, file_index, rows, n_boot):
        g, t = np.nonzero(sums[3] > 0)
        part = out[keys].iloc[g].reset_index(drop=True)
        part["replicate"] = r0 + 1 + t
        for j, col in enumerate(("a_wins", "b_wins", "ties")):
            part[col] = sums[j, g, t]
        part["n"] = sums[3, g, t].astype(np.int64)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def counts_to_comparisons(counts: pd.DataFrame, *, source: str | None = None) -> Comparisons:
    """Weighted comparisons whose pair counts equal the count table's: a win, a loss and a tie row per pair.

    Fits from these equal fits from the original rows (Bradley–Terry-type models and their Fisher
    intervals; cluster-robust intervals too when the table is keyed by cluster). Row-level resampling
    (bootstrap by row) and order-dependent models (Elo, TrueSkill) need the original rows.

    A table with a ``replicate`` column (``pairkit count --bootstrap``) gives the comparisons of replicate 0 and keeps
    the Poisson-bootstrap weights of replicates 1..B (rows × B, aligned with the comparisons) in
    ``comparisons._cache["poisson_replicates"]``, which ``pairkit rank`` turns into bootstrap intervals.
    """
    where = source or "counts"
    if "replicate" in counts.columns:
        return _with_replicates(counts, where)
    missing = [c for c in COUNT_COLUMNS[:5] if c not in counts.columns]
    if missing:
        raise InputError(f"{where}: a count table needs columns {list(COUNT_COLUMNS[:5])}; missing {missing}")
    if len(counts) == 0:
        raise InputError(f"{where}: no count rows")
    a = counts["a"].astype(str).to_numpy()
    b = counts["b"].astype(str).to_numpy()
    vals = [pd.to_numeric(counts[c], errors="coerce").to_numpy(dtype=float) for c in ("a_wins", "b_wins", "ties")]
    for col, v in zip(("a_wins", "b_wins", "ties"), vals):
        bad = ~np.isfinite(v) | (v < 0)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise InputError(f"{where}, row {k + 1}, column {col!r}: a count must be finite and non-negative "
                             f"(value {counts[col].iloc[k]!r})")
    same = a == b
    if same.any():
        k = int(np.flatnonzero(same)[0])
        raise InputError(f"{where}, row {k + 1}: item {a[k]!r} is counted against itself")
    items, codes = np.unique(np.concatenate([a, b]), return_inverse=True)
    m = len(a)
    ia, ib = codes[:m], codes[m:]
    weight = np.concatenate(vals)
    keep = weight > 0
    outcome = np.repeat([1.0, 0.0, 0.5], m)
    rows = np.tile(np.arange(m), 3)[keep]
    cluster = None
    if "cluster" in counts.columns:
        cluster = pd.factorize(counts["cluster"].astype(str))[0][rows].astype(np.int64)
    a_first = None
    if "a_first" in counts.columns:
        a_first = counts["a_first"].astype(bool).to_numpy()[rows]
    comps = Comparisons(items=tuple(items.tolist()), a=ia[rows], b=ib[rows], outcome=outcome[keep],
                        weight=weight[keep], cluster=cluster, a_first=a_first, source=where)
    total = counts["n"].sum() if "n" in counts.columns else weight.sum()
    comps._cache["rows_counted"] = int(total) if float(total).is_integer() else float(total)
    return comps


def _with_replicates(counts: pd.DataFrame, where: str) -> Comparisons:
    """:func:`counts_to_comparisons` of replicate 0, with the replicates' weights aligned to its rows."""
    rep = pd.to_numeric(counts["replicate"], errors="coerce").to_numpy()
    if not (np.isfinite(rep).all() and (rep >= 0).all() and (rep == np.round(rep)).all()):
        raise InputError(f"{where}: column 'replicate' must hold non-negative integers")
    rep = rep.astype(np.int64)
    base = counts[rep == 0].drop(columns="replicate").reset_index(drop=True)
    comps = counts_to_comparisons(base, source=where)
    n_boot = int(rep.max())
    if n_boot == 0:
        return comps
    keys = [c for c in ("cluster", "a_first") if c in counts.columns] + ["a", "b"]
    index = base[keys].astype(str).assign(_pos=np.arange(len(base)))
    reps = counts[rep > 0].astype({k: str for k in keys}).merge(index, on=keys, how="left")
    if reps["_pos"].isna().any():
        k = int(np.flatnonzero(reps["_pos"].isna().to_numpy())[0])
        raise InputError(f"{where}: replicate {reps['replicate'].iloc[k]} counts the pair "
                         f"{reps['a'].iloc[k]!r}, {reps['b'].iloc[k]!r}, which replicate 0 (the data) does not")
    m, pos, r = len(base), reps["_pos"].to_numpy(dtype=np.int64), reps["replicate"].to_numpy(dtype=np.int64) - 1
    full = np.zeros((3 * m, n_boot))
    for k, col in enumerate(("a_wins", "b_wins", "ties")):
        full[k * m + pos, r] = pd.to_numeric(reps[col]).to_numpy(dtype=float)
    keep = np.concatenate([pd.to_numeric(base[c]).to_numpy(dtype=float) for c in ("a_wins", "b_wins", "ties")]) > 0
    lost = full[~keep].sum()
    if lost > 0:
        raise InputError(f"{where}: a replicate counts an outcome that replicate 0 (the data) does not")
    comps._cache["poisson_replicates"] = full[keep]
    return comps


def merge_counts(frames: Sequence[pd.DataFrame], *, files_counted: bool = False) -> pd.DataFrame:
    """Sum count tables (each pair written either way round) into one.

    ``files_counted``: the tables are the counts of distinct input files of one counting pass (their replicates'
    weights were drawn with each file's own index, so they add up)."""
    with_reps = sum("replicate" in f.columns for f in frames)
    if with_reps and len(frames) > 1 and not files_counted:
        raise InputError("count files with Poisson-bootstrap replicates cannot be summed (their weights were drawn "
                         "per file); count the rows together with --bootstrap instead")
    frame = pd.concat(frames, ignore_index=True)
    if "n" not in frame.columns:
        frame["n"] = 0
    a, b = frame["a"].astype(str).to_numpy(), frame["b"].astype(str).to_numpy()
    swap = a > b
    frame["a"], frame["b"] = np.where(swap, b, a), np.where(swap, a, b)
    wins_a = frame["a_wins"].to_numpy(dtype=float)
    wins_b = frame["b_wins"].to_numpy(dtype=float)
    frame["a_wins"], frame["b_wins"] = np.where(swap, wins_b, wins_a), np.where(swap, wins_a, wins_b)
    keys = [c for c in ("replicate", "cluster", "a_first") if c in frame.columns]
    if "a_first" in keys:
        frame["a_first"] = frame["a_first"].astype(bool).to_numpy() ^ swap
    if "cluster" in keys:
        frame["cluster"] = frame["cluster"].astype(str)
    out = frame.groupby(keys + ["a", "b"], sort=True, observed=True)[["a_wins", "b_wins", "ties", "n"]].sum()
    return ordered_counts(out.reset_index())


# ---------------------------------------------------------------------------------------------- counting
def count_pairs(
    paths: str | Path | Iterable[str | Path],
    *,
    engine: Engine = "duckdb",
    winner: str | None = None,
    loser: str | None = None,
    a: str | None = None,
    b: str | None = None,
    outcome: str | None = None,
    score_a: str | None = None,
    score_b: str | None = None,
    weight: str | None = None,
    cluster: str | None = None,
    a_first: str | bool | None = None,
    outcome_map: Mapping[str, float] | None = None,
    on_invalid: Literal["raise", "drop"] = "raise",
    ray_address: str | None = None,
    memory_limit: str | None = None,
    bootstrap: int = 0,
    seed: int = 0,
) -> pd.DataFrame:
    """Per-pair counts of comparisons in files too large for memory (or spread over a cluster).

    Column options are those of :func:`pairkit.read_comparisons` and so are the validation rules: a bad row
    raises :class:`InputError` naming the file, row and column, or is dropped with ``on_invalid="drop"``
    (counted in a :class:`DroppedRowsWarning`). Count files given as input (recognised by their columns) are
    summed instead. ``engine``: ``"duckdb"`` (streaming, bounded memory; ``memory_limit`` such as ``"1GB"``
    makes it spill to disk beyond), ``"ray"`` (Ray Data: blocks of rows counted on the cluster at ``ray_address``, or a
    local one, the partial counts summed as they arrive), or ``"memory"`` (each file read whole, in this process).

    ``bootstrap`` = B > 0 adds Poisson-bootstrap replicates drawn in the same pass (Hanley & MacGibbon 2006;
    Chamandy et al. 2012): the table gets a ``replicate`` column, 0 for the counts and 1..B for counts with every
    row weighted by an independent Poisson(1) draw, a hash of (``seed``, file, row number in the file,
    replicate) — the same whatever the engine, input format, threads or partitioning (see
    ``pairkit.scale.poisson_weights``; a file's rows are numbered from 0 in the order they are stored: Parquet rows,
    CSV data lines after the header, JSONL records). The long form keeps DuckDB's aggregate narrow (one row per
    pair and replicate, spilled to disk like any group), whatever B; the Ray and in-memory engines draw the same
    weights in numpy (Ray a block at a time, each row numbered in its file by the read).

    Returns the count table, sorted by its keys (see :mod:`pairkit.scale`).
    """
    if engine not in ("duckdb", "ray", "memory"):
        raise InputError(f"--engine must be one of duckdb, ray, memory; got {engine!r}")
    if on_invalid not in ("raise", "drop"):
        raise InputError(f"on_invalid must be 'raise' or 'drop', got {on_invalid!r}")
    _check_bootstrap(bootstrap, seed)
    files = expand_paths(paths)
    unknown = [f for f in files if file_kind(f) is None]
    if unknown:
        raise InputError(f"{unknown[0]}: unknown file type; use .parquet, .csv, .tsv, .jsonl or .json")
    counted = [is_counts(columns_of(f)) for f in files]
    if all(counted) and bootstrap:
        raise InputError("--bootstrap draws its weights from comparison rows; these inputs are count files")
    if all(counted):
        return merge_counts([_read_count_file(f) for f in files])
    if any(counted):
        first = files[counted.index(True)]
        raise InputError(f"{first} is a count table but other inputs hold comparison rows; count the rows "
                         "first (pairkit count ROWS --output c.parquet), then merge the count files")
    options: dict[str, Any] = dict(winner=winner, loser=loser, a=a, b=b, outcome=outcome, score_a=score_a,
                                   score_b=score_b, weight=weight, cluster=cluster, a_first=a_first,
                                   outcome_map=outcome_map)
    if engine == "duckdb":
        from pairkit.scale._duckdb import count_with_duckdb

        return count_with_duckdb(files, options, on_invalid=on_invalid, memory_limit=memory_limit,
                                 bootstrap=bootstrap, seed=seed)
    if engine == "ray":
        from pairkit.scale._ray import count_with_ray

        return count_with_ray(files, options, on_invalid=on_invalid, address=ray_address, bootstrap=bootstrap,
                              seed=seed)
    parts = [count_file(f, options, on_invalid, k, bootstrap, seed) for k, f in enumerate(files, 1)]
    return _merge_parts(parts)


def write_counts(
    paths: str | Path | Iterable[str | Path],
    output: str | Path,
    *,
    engine: Engine = "duckdb",
    memory_limit: str | None = None,
    bootstrap: int = 0,
    seed: int = 0,
    **options: Any,
) -> dict[str, int]:
    """:func:`count_pairs` into the file ``output`` (``.parquet`` or ``.csv``); returns ``{"pairs", "items",
    "comparisons"}``.

    With the DuckDB engine on comparison rows the table never enters Python: DuckDB counts into a table of its own
    (spilling to disk beyond its limit) and writes the file itself (``COPY … TO``), so memory stays bounded:
    ``memory_limit`` is the process's peak to aim for, DuckDB getting it less the process's own ~256 MiB
    (``pairkit.scale._duckdb.PROCESS_MEMORY``). Other engines and count-file inputs go through :func:`count_pairs`.
    The file is replaced atomically (a failure leaves the previous one whole). ``bootstrap``/``seed``: Poisson
    replicates, as in :func:`count_pairs` (the summary counts replicate 0, the data).
    """
    _check_bootstrap(bootstrap, seed)
    output = Path(output)
    if output.suffix.lower() not in (".parquet", ".pq", ".csv"):
        raise InputError(f"--output {output}: use a .parquet or .csv file name")
    files = expand_paths(paths)
    rows = engine == "duckdb" and all(file_kind(f) is not None and not is_counts(columns_of(f)) for f in files)
    if rows:
        from pairkit.scale._duckdb import count_with_duckdb

        on_invalid = options.pop("on_invalid", "raise")
        options.pop("ray_address", None)
        if on_invalid not in ("raise", "drop"):
            raise InputError(f"on_invalid must be 'raise' or 'drop', got {on_invalid!r}")
        known = ("winner", "loser", "a", "b", "outcome", "score_a", "score_b", "weight", "cluster", "a_first",
                 "outcome_map")
        unknown = set(options) - set(known)
        if unknown:
            raise InputError(f"unknown option(s) {sorted(unknown)}; the column options are {list(known)}")
        return count_with_duckdb(files, {k: options.get(k) for k in known}, on_invalid=on_invalid,
                                 memory_limit=memory_limit, output=output, bootstrap=bootstrap, seed=seed)
    table = count_pairs(files, engine=engine, memory_limit=memory_limit, bootstrap=bootstrap, seed=seed, **options)
    from pairkit._io import atomic_path

    with atomic_path(output) as tmp:
        if output.suffix.lower() == ".csv":
            table.to_csv(tmp, index=False)
        else:
            table.to_parquet(tmp, index=False)
    if "replicate" in table.columns:
        table = table[table["replicate"] == 0]
    items = pd.concat([table["a"], table["b"]], ignore_index=True).nunique()  # not a Python set per row
    return {"pairs": len(table), "items": int(items), "comparisons": int(table["n"].sum())}


def _check_bootstrap(bootstrap: int, seed: int) -> None:
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, (int, np.integer)) or not 0 <= bootstrap <= 100_000:
        raise InputError(f"--bootstrap must be an integer in [0, 100000] (0 = none); got {bootstrap!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"--seed must be a non-negative integer; got {seed!r}")


def count_file(path: Path, options: dict, on_invalid: str, file_index: int = 1, bootstrap: int = 0,
               seed: int = 0) -> tuple[pd.DataFrame, int, list[str]]:
    """Counts of one file read whole with the readers (their validation and messages), the rows dropped and the
    drop warnings: the unit of work of the in-memory and Ray engines. ``bootstrap``: Poisson replicates of the
    file's rows, the ``file_index``-th input (1-based), as :func:`count_pairs` draws them."""
    from pairkit.data.readers import read_comparisons

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DroppedRowsWarning)
        comps = read_comparisons(path, on_invalid=on_invalid, **options)
    notes = [str(w.message) for w in caught if issubclass(w.category, DroppedRowsWarning)]
    frame = comparisons_to_counts(comps, cluster=options.get("cluster") is not None,
                                  a_first=options.get("a_first") is not None, bootstrap=bootstrap, seed=seed,
                                  file_index=file_index, rows=comps._cache.get("rows_kept"))
    return frame, comps.n_dropped, notes


def _merge_parts(parts: list[tuple[pd.DataFrame, int, list[str]]]) -> pd.DataFrame:
    dropped = sum(p[1] for p in parts)
    if dropped:
        notes = "; ".join(note for p in parts for note in p[2])
        warnings.warn(f"dropped {dropped} invalid rows in all ({notes})", DroppedRowsWarning, stacklevel=3)
    return merge_counts([p[0] for p in parts], files_counted=True)


def _read_count_file(path: Path) -> pd.DataFrame:
    kind = file_kind(path)
    if kind == "parquet":
        frame = pd.read_parquet(path)
    elif kind in ("csv", "tsv"):
        frame = pd.read_csv(path, sep="\t" if kind == "tsv" else ",", dtype={"a": str, "b": str, "cluster": str})
    else:
        frame = pd.read_json(path, lines=kind == "jsonl", dtype=False)
    # counts_to_comparisons validates the values; here only the pair order is normalised
    counts_to_comparisons(frame, source=str(path))
    return frame


# ---------------------------------------------------------------------------------------------- the CLI's loader
def load_any(paths: str | Path | Sequence[str | Path], *, drop_invalid: bool = False, engine: Engine = "duckdb",
             **columns) -> Comparisons:
    """Comparisons from a rows file, a count file, or many files / a directory / a glob (counted first).

    A single rows file is read whole by :func:`pairkit.read_comparisons`; anything else goes through
    :func:`count_pairs` and :func:`counts_to_comparisons`.
    """
    from pairkit.data.readers import read_comparisons

    files = expand_paths(paths)
    single = len(files) == 1 and (isinstance(paths, (str, Path)) and Path(paths).is_file())
    if single and not is_counts(columns_of(files[0])):
        return read_comparisons(files[0], on_invalid="drop" if drop_invalid else "raise", **columns)
    counts = count_pairs(files, engine=engine, on_invalid="drop" if drop_invalid else "raise", **columns)
    name = str(files[0]) if len(files) == 1 else f"{len(files)} files"
    return counts_to_comparisons(counts, source=name)
