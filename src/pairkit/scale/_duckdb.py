"""Pair counting with DuckDB: one streaming GROUP BY over every file, memory bounded (spilling to disk)."""

from __future__ import annotations

import tempfile
import warnings
from contextvars import ContextVar
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from pairkit._lazy import pandas as pd
from pairkit._optional import requires
from pairkit.data._rules import ROW_RULES
from pairkit.errors import DroppedRowsWarning, InputError

PARTIAL = "an outcome other than 0, 1/2 or 1 cannot be counted as a win, loss or tie"

SQL_RULES: dict[str, str] = {
    "nested": "nested",
    "missing_item": "na IS NULL OR nb IS NULL",
    "missing_outcome": "o IS NULL OR isnan(o)",
    "infinite_score": "NOT isfinite(sa) OR NOT isfinite(sb)",
    "outcome_range": "NOT (o >= 0 AND o <= 1)",
    "partial": "o NOT IN (0, 0.5, 1)",
    "self": "na = nb",
    "weight": "w IS NULL OR NOT isfinite(w) OR w < 0",
    "missing_cluster": "cluster_raw IS NULL",
    "boolean": "af IS NULL",
}
"""The readers' row rules (:data:`pairkit.data.readers.ROW_RULES`) as SQL conditions on a row's ``na, nb, o, sa,
sb, w, cluster_raw, af, nested``, in the order they are checked (the first that applies is the row's problem;
problem code = position + 1, 0 = valid). ``partial`` is the counting's own: a count table has no partial wins."""

CHECKED_AS = {"unknown_outcome": "missing_outcome", "non_numeric": "missing_outcome"}
"""Reader rules the SQL checks under another: an unknown label or a non-numeric score leaves no outcome."""

PROBLEMS = {
    k: PARTIAL if rule == "partial" else ROW_RULES[rule].format(what="a value")
    + (", unknown outcome label or non-numeric score" if rule == "missing_outcome" else "")
    for k, rule in enumerate(SQL_RULES, 1)
}
"""Problem code → what is wrong (the counts of dropped rows are reported with these)."""

_TYPES: ContextVar[dict[str, str] | None] = ContextVar("pairkit_duckdb_types", default=None)
"""DuckDB's type of each input column, while a query is built (JSON columns are read differently)."""

_SPACE = " \t\r\n\x0b\x0c"


PROCESS_MEMORY = 256 * 2**20
"""What a ``pairkit count`` process holds besides DuckDB's buffer pool (which ``memory_limit`` bounds): the
interpreter and its libraries (~130 MiB) and DuckDB's allocations outside the pool. Measured: with DuckDB's
limit at the whole ``--memory-limit`` the peak RSS ran 180–240 MiB above it (600MB–1GB, 3·10⁷–3·10⁸ rows)."""

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12,
          "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def memory_bytes(text: str | None) -> int | None:
    """Bytes of a memory limit as DuckDB writes them (``"1GB"`` = 10⁹, ``"600MiB"``), or ``None`` (no limit, or a
    form left to DuckDB to read)."""
    import re

    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", (text or "").lower())
    if not found or found.group(2) not in _UNITS:
        return None
    return int(float(found.group(1)) * _UNITS[found.group(2)])


def _q(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _raw_text(column: str) -> str:
    """The value as text: a JSON string without its quotes (a column of mixed JSON values has DuckDB's JSON type)."""
    if (_TYPES.get() or {}).get(column, "").upper() == "JSON":
        return f"json_extract_string({_q(column)}, '$')"
    return f"CAST({_q(column)} AS VARCHAR)"


def _text(column: str) -> str:
    return f"NULLIF(trim({_raw_text(column)}, {_lit(_SPACE)}), '')"


def _nested(column: str) -> str:
    """True where the value is a JSON object or array (never a valid name, label, cluster or flag)."""
    kind = (_TYPES.get() or {}).get(column, "").upper()
    if kind == "JSON":
        return f"coalesce(json_type({_q(column)}) IN ('OBJECT', 'ARRAY'), false)"
    if kind.startswith(("STRUCT", "MAP", "UNION")) or kind.endswith("]"):
        return f"({_q(column)} IS NOT NULL)"
    return "false"


def _nested_columns(spec: dict, options: dict) -> list[str]:
    """The columns where the readers refuse JSON objects and arrays: items, outcome labels, clusters, flags."""
    a_first = options.get("a_first")
    used = [spec.get(k) for k in ("winner", "loser", "a", "b", "outcome")]
    return list(dict.fromkeys(c for c in [*used, options.get("cluster"), a_first if isinstance(a_first, str) else None]
                              if c is not None))


def _source(files: list[Path], numbered: bool = False) -> str:
    """The DuckDB table function reading ``files`` (one type), with a ``filename`` column; ``numbered`` adds
    ``file_row_number``, each row's 0-based number in its file: Parquet's own, else ``row_number() OVER ()`` over
    each file read alone (a streaming window: DuckDB keeps the file's order for it, whatever the threads)."""
    from pairkit.scale._tables import file_kind

    kinds = {file_kind(f) for f in files}
    if len(kinds) > 1:
        raise InputError(f"the inputs mix file types ({', '.join(sorted(kinds))}); count each type separately "
                         "and merge the count files")
    kind = kinds.pop()
    if numbered and kind != "parquet":
        return "(" + " UNION ALL BY NAME ".join(
            f"SELECT *, row_number() OVER () - 1 AS file_row_number FROM {_source([f])}" for f in files) + ")"
    listing = "[" + ", ".join(_lit(str(f)) for f in files) + "]"
    if kind == "parquet":
        number = ", file_row_number = true" if numbered else ""
        return f"read_parquet({listing}, filename = true, union_by_name = true{number})"
    if kind in ("csv", "tsv"):
        delim = _lit("\t" if kind == "tsv" else ",")
        return (f"read_csv({listing}, all_varchar = true, header = true, delim = {delim}, filename = true, "
                "union_by_name = true)")
    form = "newline_delimited" if kind == "jsonl" else "array"
    return f"read_json({listing}, format = {_lit(form)}, filename = true, union_by_name = true)"


def _outcome_sql(spec: dict, outcome_map) -> str:
    from pairkit.data._rules import OUTCOME_LABELS

    if "winner" in spec:
        return "1.0"
    if "outcome" in spec:
        labels = dict(OUTCOME_LABELS)
        if outcome_map:
            labels.update({str(k).strip().lower(): float(v) for k, v in outcome_map.items()})
        text = f"lower({_text(spec['outcome'])})"
        cases = " ".join(f"WHEN {_lit(k)} THEN {float(v)!r}" for k, v in labels.items())
        return f"(CASE {text} {cases} ELSE TRY_CAST({text} AS DOUBLE) END)"
    sa = f"TRY_CAST({_text(spec['score_a'])} AS DOUBLE)"
    sb = f"TRY_CAST({_text(spec['score_b'])} AS DOUBLE)"
    return _scores_outcome(sa, sb)


def _scores_outcome(sa: str, sb: str) -> str:
    return f"(CASE WHEN {sa} > {sb} THEN 1.0 WHEN {sa} < {sb} THEN 0.0 WHEN {sa} = {sb} THEN 0.5 END)"


def _bool_sql(column: str) -> str:
    text = f"lower({_text(column)})"
    return (f"(CASE WHEN {text} IN ('true', '1', 'yes', '1.0') THEN true "
            f"WHEN {text} IN ('false', '0', 'no', '0.0') THEN false END)")


def count_with_duckdb(files: list[Path], options: dict, *, on_invalid: str, memory_limit: str | None = None,
                      output: Path | None = None, bootstrap: int = 0, seed: int = 0) -> pd.DataFrame | dict:
    """The count table of ``files`` in one pass; invalid rows are grouped by problem and reported.

    With ``output`` (a ``.parquet`` or ``.csv`` path) DuckDB writes the table there itself (``COPY … TO``: no
    table in Python) and the summary ``{"pairs", "items", "comparisons"}`` is returned instead. DuckDB runs with
    ``memory_limit`` (such as ``"1GB"``; default: DuckDB's own) is meant for the whole process: DuckDB gets it
    less :data:`PROCESS_MEMORY` (at least half of it), spilling to a temporary directory beyond, without keeping
    the insertion order (which would hold rows in memory).

    With ``bootstrap`` = B > 0 the table is long: ``replicate`` 0 holds the counts, 1..B the Poisson-bootstrap
    counts (:mod:`pairkit.scale._poisson`, drawn from ``seed`` and each row's file and row number)."""
    with requires("scale", "--engine duckdb"):
        import duckdb
    from pairkit.data._shapes import Source, column_mode, detect_shape
    from pairkit.scale._tables import file_kind

    src = _source(files)
    _check_headers(files)
    with tempfile.TemporaryDirectory(prefix="pairkit-duckdb-") as spill:
        limit = memory_bytes(memory_limit)
        duck = memory_limit if limit is None else f"{max(limit - PROCESS_MEMORY, limit // 2) // 2**20}MiB"
        con = duckdb.connect(config={"temp_directory": spill, "preserve_insertion_order": False,
                                     **({"memory_limit": duck} if memory_limit else {})})
        try:
            try:
                described = con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()
                columns = [row[0] for row in described]
                types = {row[0]: str(row[1]) for row in described}
            except duckdb.Error as exc:
                raise InputError(f"{files[0]}{' …' if len(files) > 1 else ''}: cannot read ({exc})") from exc
            spec = {k: options[k] for k in ("winner", "loser", "a", "b", "outcome", "score_a", "score_b")
                    if options.get(k) is not None}
            if not spec:
                # only the column names are looked at: no pandas import on this path
                spec = detect_shape(SimpleNamespace(columns=columns), Source(str(files[0]), 1))
            column_mode(spec)
            weight, cluster, a_first = options.get("weight"), options.get("cluster"), options.get("a_first")
            paths = {}  # dotted paths into nested values (``meta.model_a``), as the readers take them
            for col in [*spec.values(), weight, cluster, a_first if isinstance(a_first, str) else None]:
                if col is not None and col not in columns and "." in col:
                    paths[col] = _nested_path(con, src, col, columns, types, files[0])
                elif col is not None and col not in columns:
                    raise InputError(f"{files[0]}: no column {col!r}; columns are "
                                     f"{[c for c in columns if c != 'filename']}")
            nested = ", ".join(f"{expr} AS {_q(col)}" for col, expr in paths.items())
            if paths:  # the nested values become columns of their dotted names; the rest of the query is unchanged
                src = f"(SELECT *, {nested} FROM {src})"
                types.update({col: str(con.execute(f"DESCRIBE SELECT {_q(col)} FROM {src}").fetchall()[0][1])
                              for col in paths})
            grouped = None
            if weight is None and not paths and all(file_kind(f) == "parquet" for f in files):
                from pairkit.scale import _dense

                # two arrays of 8-byte counts while counting: at most a quarter of the limit
                cells = _dense.DENSE_CELLS if limit is None else min(_dense.DENSE_CELLS, limit // 64)
                grouped = _dense.dense_groups(files, _grouped_columns(spec, options), cells=cells)
            if grouped is not None:  # counted on the Parquet dictionary codes; DuckDB reads the groups
                con.register("_dense_groups", grouped[0])
                for k, values in enumerate(grouped[1].values()):
                    con.register(f"_dense_values{k}", values)
                chunked = ("_dense_groups", {c: f"_dense_values{k}" for k, c in enumerate(grouped[1])})
            else:
                chunks = _parquet_chunks(files, nested)
                chunked = None if chunks is None else (con, chunks)
            token = _TYPES.set(types)
            try:
                select, key_exprs, problem = _row_sql(spec, options)
                rows = _distinct_sql(spec, options, src, types, chunked)
            except duckdb.Error as exc:
                raise InputError(f"{files[0]}{' …' if len(files) > 1 else ''}: cannot count ({exc})") from exc
            finally:
                _TYPES.reset(token)
            keys = (["cluster"] if cluster is not None else []) + (["a_first"] if a_first is not None else [])
            key_sql = "".join(f"CASE WHEN problem = 0 THEN {k} END AS {k}, " for k in keys)
            # The rows are first grouped on their raw values (on Parquet dictionary codes in numpy when they
            # allow it, else by DuckDB's own GROUP BY); names are trimmed, labels mapped and every rule checked
            # once per distinct combination, not once per row.
            sql = f"""
                WITH r AS ({rows}),
                     p AS (SELECT *, {problem} AS problem, {"".join(k + ", " for k in key_exprs)}
                                  CASE WHEN na < nb THEN o ELSE 1 - o END AS s FROM r)
                SELECT problem, {key_sql}
                       CASE WHEN problem = 0 THEN least(na, nb) END AS a,
                       CASE WHEN problem = 0 THEN greatest(na, nb) END AS b,
                       sum(CASE WHEN s = 1 THEN w ELSE 0 END) AS a_wins,
                       sum(CASE WHEN s = 0 THEN w ELSE 0 END) AS b_wins,
                       sum(CASE WHEN s = 0.5 THEN w ELSE 0 END) AS ties,
                       sum(_n) AS n
                FROM p GROUP BY ALL"""
            reps = None
            if bootstrap:
                listing = "[" + ", ".join(_lit(str(f)) for f in files) + "]"
                numbered = _source(files, numbered=True)
                if paths:
                    numbered = f"(SELECT *, {nested} FROM {numbered})"
                rows = (f"SELECT * FROM (SELECT *, {problem} AS problem, {''.join(k + ', ' for k in key_exprs)}"
                        f"CASE WHEN na < nb THEN o ELSE 1 - o END AS s FROM (SELECT {select}, "
                        f"list_position({listing}, filename) AS _f, file_row_number AS _i FROM {numbered})) "
                        "WHERE problem = 0")
                reps = partial(_replicates, con, rows, keys, n_boot=bootstrap, seed=seed)
            if output is not None:
                return _write(con, sql, keys, output, (src, select, problem, files, options, on_invalid), reps)
            try:
                table = con.execute(sql).fetch_df()
            except duckdb.Error as exc:
                raise InputError(f"{files[0]}{' …' if len(files) > 1 else ''}: cannot count ({exc})") from exc
            bad = table[table["problem"] != 0]
            if len(bad):
                per = bad.groupby("problem")["n"].sum()
                _report(con, src, select, problem, list(zip(per.index, per)), files, options, on_invalid)
            good = table[table["problem"] == 0].drop(columns="problem")
            if reps is not None:
                con.register("_base", good)
                good = pd.concat([good.assign(replicate=0), con.execute(reps("SELECT * FROM _base")).fetch_df()],
                                 ignore_index=True)
        finally:
            con.close()
    if a_first is not None:
        good["a_first"] = good["a_first"].astype(bool)
    if len(good) == 0:
        raise InputError(f"{files[0]}: no data rows")
    from pairkit.scale._tables import ordered_counts

    good["n"] = good["n"].astype("int64")
    return ordered_counts(good.reset_index(drop=True))


def _write(con, sql: str, keys: list[str], output: Path, report: tuple, reps=None) -> dict:
    """Count into a DuckDB table (spilled to disk when large), report the invalid rows, then let DuckDB write the
    valid counts to ``output`` in the count tables' order (keys, then ``a``, ``b``)."""
    with requires("scale", "--engine duckdb"):
        import duckdb

    from pairkit._io import atomic_path

    src, select, problem, files, options, on_invalid = report
    try:
        con.execute(f"CREATE TEMP TABLE counted AS {sql}")
    except duckdb.Error as exc:
        raise InputError(f"{files[0]}{' …' if len(files) > 1 else ''}: cannot count ({exc})") from exc
    bad = con.execute("SELECT problem, sum(n) AS n FROM counted WHERE problem <> 0 GROUP BY problem "
                      "ORDER BY problem").fetchall()
    if len(bad):
        _report(con, src, select, problem, bad, files, options, on_invalid)
    pairs, comparisons = con.execute("SELECT count(*), sum(n) FROM counted WHERE problem = 0").fetchone()
    if not pairs:
        raise InputError(f"{files[0]}: no data rows")
    items = con.execute("SELECT count(*) FROM (SELECT a FROM counted WHERE problem = 0 UNION "
                        "SELECT b FROM counted WHERE problem = 0)").fetchone()[0]
    order = ", ".join([*keys, "a", "b"])
    columns = ", ".join([*keys, "a", "b", "a_wins", "b_wins", "ties", "CAST(n AS BIGINT) AS n"])
    query = f"SELECT {columns} FROM counted WHERE problem = 0"
    if reps is not None:  # long: replicate 0 = the counts, 1..B the Poisson replicates (one narrow row per pair)
        query = (f"SELECT 0 AS replicate, {columns} FROM counted WHERE problem = 0 "
                 f"UNION ALL SELECT replicate, {columns} FROM ({reps('SELECT * FROM counted WHERE problem = 0')})")
        order = "replicate, " + order
    form = "(FORMAT csv, HEADER true)" if output.suffix.lower() == ".csv" else "(FORMAT parquet)"
    with atomic_path(output) as tmp:  # a kill or a full disk leaves the previous counts whole
        con.execute(f"COPY ({query} ORDER BY {order}) TO {_lit(str(tmp))} {form}")
    return {"pairs": int(pairs), "items": int(items), "comparisons": int(comparisons)}


DENSE_REPLICATES = 1 << 25
"""Up to this many sums (4 × pairs × replicates, float64: 256 MB) the Poisson replicates are summed in numpy."""


def _replicates(con, rows: str, keys: list[str], base: str, *, n_boot: int, seed: int) -> str:
    """SQL of the Poisson replicates' long count rows (``replicate, keys…, a, b, a_wins, b_wins, ties, n``).

    ``rows``: the valid rows (``na, nb, s, w``, the keys, ``_f``, ``_i``); ``base``: the data's count rows
    (replicate 0). When the replicates' sums fit in :data:`DENSE_REPLICATES`, DuckDB streams each row's pair
    number (a join on the counted pairs) and numpy sums the hashed weights into a dense pairs × replicates array
    (:func:`pairkit.scale._poisson.replicate_sums`: ~6× less CPU than the SQL at B = 100); beyond, the SQL of
    :func:`pairkit.scale._poisson.replicate_sql` aggregates (row, replicate) pairs and spills like any group.
    Both draw the same weights, so the counts are the same."""
    from pairkit.scale._poisson import replicate_sql, replicate_sums

    names = [*keys, "a", "b"]
    con.execute(f"CREATE OR REPLACE TEMP TABLE _pairs AS SELECT row_number() OVER () - 1 AS _pair, "
                f"{', '.join(names)} FROM ({base})")
    n_pairs = con.execute("SELECT count(*) FROM _pairs").fetchall()[0][0]
    if 4 * n_pairs * n_boot > DENSE_REPLICATES:
        return replicate_sql(rows, keys, n_boot, seed)
    on = " AND ".join([f"p.{k} = r.{k}" for k in keys] + ["p.a = least(r.na, r.nb)", "p.b = greatest(r.na, r.nb)"])
    reader = con.sql(f"SELECT p._pair, CAST(r.s AS DOUBLE), CAST(r.w AS DOUBLE), r._f, r._i "
                     f"FROM ({rows}) r JOIN _pairs p ON {on}").to_arrow_reader(1 << 20)
    total = np.zeros((4, n_pairs, n_boot))
    for batch in reader:
        pair, s, w, f, i = (batch.column(k).to_numpy(zero_copy_only=False) for k in range(5))
        values = np.stack([w * (s == 1), w * (s == 0), w * (s == 0.5), np.ones(len(s))])
        for r0, sums in replicate_sums(values, pair, n_pairs, seed, f, i, n_boot):
            total[:, :, r0 : r0 + sums.shape[2]] += sums
    g, t = np.nonzero(total[3].T > 0)  # replicate by replicate
    frame = pd.DataFrame({"replicate": g + 1, "_pair": t, "a_wins": total[0, t, g], "b_wins": total[1, t, g],
                          "ties": total[2, t, g], "n": total[3, t, g].astype(np.int64)})
    con.register("_replicate_sums", frame)
    return (f"SELECT replicate, {', '.join(names)}, a_wins, b_wins, ties, n "
            "FROM _replicate_sums JOIN _pairs USING (_pair)")


def _nested_path(con, src: str, path: str, columns: list[str], types: dict[str, str], where: Path) -> str:
    """The SQL expression of a dotted ``path`` into nested values, as the readers resolve it
    (:func:`pairkit.data.readers.nested_field`): the longest leading part that is a column starts it; each further
    part is a field of a struct or JSON object, or (an integer) an element of a list."""
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        head = ".".join(parts[:cut])
        if head in columns:
            break
    else:
        raise InputError(f"{where}: no column {path!r} (nor a column {parts[0]!r} to read the nested field from); "
                         f"columns are {[c for c in columns if c != 'filename']}")
    expr, kind_text, done = _q(head), types[head], head
    for part in parts[cut:]:
        kind = kind_text.upper()
        index = part.lstrip("-").isdigit()
        if kind == "JSON":
            expr = f"json_extract({expr}, {_lit('$[' + part + ']' if index else '$.' + _q(part))})"
        elif kind.startswith("STRUCT"):
            fields = _struct_fields(kind_text)
            if part not in fields:
                raise InputError(f"{where}: no field {part!r} under {done!r} for the nested column {path!r}; its "
                                 f"fields are {fields[:12]}")
            expr = f"struct_extract({expr}, {_lit(part)})"
        elif kind.endswith("]") and index:
            expr = f"{expr}[{int(part) + 1 if int(part) >= 0 else int(part)}]"  # DuckDB lists count from 1
        else:
            raise InputError(f"{where}: no field {part!r} under {done!r} for the nested column {path!r}; its values "
                             f"are not JSON objects or lists ({kind})")
        kind_text = str(con.execute(f"DESCRIBE SELECT {expr} FROM {src}").fetchall()[0][1])
        done += "." + part
    return expr


def _struct_fields(kind: str) -> list[str]:
    """Field names of a DuckDB ``STRUCT(a VARCHAR, "b c" INTEGER, …)`` type string (top level only)."""
    body, fields, depth, start = kind[kind.index("(") + 1 : kind.rindex(")")], [], 0, 0
    pieces = []
    for k, ch in enumerate(body):
        depth += ch in "(["
        depth -= ch in ")]"
        if ch == "," and depth == 0:
            pieces.append(body[start:k])
            start = k + 1
    pieces.append(body[start:])
    for piece in pieces:
        piece = piece.strip()
        if piece.startswith('"'):
            end = piece.index('"', 1)
            while piece[end + 1 : end + 2] == '"':
                end = piece.index('"', end + 2)
            fields.append(piece[1:end].replace('""', '"'))
        else:
            fields.append(piece.split(" ", 1)[0])
    return fields


def _row_sql(spec: dict, options: dict, derived: dict | None = None) -> tuple[str, list[str], str]:
    """The per-row SELECT list (na, nb, o, w, cluster, a_first), the key expressions and the problem code.

    ``derived`` replaces the expressions of ``na``, ``nb``, ``o``, ``w`` or ``af`` (computed elsewhere)."""
    if "winner" in spec:
        na, nb = _text(spec["winner"]), _text(spec["loser"])
    else:
        na, nb = _text(spec["a"]), _text(spec["b"])
    weight, cluster, a_first = options.get("weight"), options.get("cluster"), options.get("a_first")
    exprs = {"na": na, "nb": nb, "o": _outcome_sql(spec, options.get("outcome_map")),
             "w": f"TRY_CAST({_text(weight)} AS DOUBLE)" if weight is not None else "1.0",
             "nested": " OR ".join(_nested(c) for c in _nested_columns(spec, options))}
    scores = "score_a" in spec
    if scores:
        exprs["sa"], exprs["sb"] = (f"TRY_CAST({_text(spec[k])} AS DOUBLE)" for k in ("score_a", "score_b"))
    if isinstance(a_first, str):
        exprs["af"] = _bool_sql(a_first)
    exprs.update(derived or {})
    parts = [f"{exprs[k]} AS {k}" for k in ("na", "nb", "o", "w", "nested", *(("sa", "sb") if scores else ()))]
    skip = set() if scores else {"infinite_score"}
    if cluster is not None:
        parts.append(f"{_raw_text(cluster)} AS cluster_raw")
    else:
        skip.add("missing_cluster")
    if a_first is True:
        parts.append("true AS af")
    elif a_first is not None:
        parts.append(f"{exprs['af']} AS af")
    if not isinstance(a_first, str):
        skip.add("boolean")
    checks = [f"WHEN {cond} THEN {code}" for code, (rule, cond) in enumerate(SQL_RULES.items(), 1) if rule not in skip]
    problem = "(CASE " + " ".join(checks) + " ELSE 0 END)"
    keys = []
    if cluster is not None:
        keys.append("cluster_raw AS cluster")
    if a_first is not None:
        keys.append("CASE WHEN na < nb THEN af ELSE NOT af END AS a_first")  # on the pair in name order
    return ", ".join(parts), keys, problem


def _grouped_columns(spec: dict, options: dict) -> list[str]:
    """The input columns whose raw values the rows are grouped on (all but the weight, which is summed)."""
    weight, cluster, a_first = options.get("weight"), options.get("cluster"), options.get("a_first")
    return list(dict.fromkeys(c for c in [*spec.values(), cluster, a_first if isinstance(a_first, str) else None]
                              if c is not None and c != weight))


def _distinct_sql(spec: dict, options: dict, src: str, types: dict[str, str],
                  chunked: tuple | None = None) -> str:
    """The query of :func:`_row_sql`'s rows, one per distinct combination of raw values, with its row count
    ``_n``; the weight ``w`` of a combination is the sum of its rows' weights (its row count without weights).

    Rows are grouped on the raw values of the columns used (the cost of DuckDB's own GROUP BY); names are then
    trimmed and labels mapped once per distinct value of each column (a small table joined back), so no string
    function runs once per row: the validation adds little to the counting.

    ``chunked`` = ``(con, sources)`` (:func:`_parquet_chunks`): the grouping runs on ``con`` now, a source at a
    time, into partial groups that are then summed (integer counts: exact), and the query reads the result; or
    ``chunked`` = ``(relation, {column: relation})`` names relations that already hold the groups and each
    column's distinct values (:func:`pairkit.scale._dense.dense_groups`)."""
    weight, cluster, a_first = options.get("weight"), options.get("cluster"), options.get("a_first")
    used = _grouped_columns(spec, options)
    columns, extra = [_q(c) for c in used], ["count(*) AS _n"]
    if weight is not None:
        numeric = types.get(weight, "VARCHAR").upper() not in ("VARCHAR", "JSON", "BLOB")
        value = f"TRY_CAST({_q(weight)} AS DOUBLE)" if numeric else f"TRY_CAST({_text(weight)} AS DOUBLE)"
        columns.append(f"({value} IS NULL OR NOT isfinite({value}) OR {value} < 0) AS _wbad")
        extra.append(f"sum({value}) AS _w")
    group = f"SELECT {', '.join(columns + extra)} FROM "
    if chunked is None:
        ctes = [f"g AS ({group}{src} GROUP BY ALL)"]
    elif isinstance(chunked[0], str):
        ctes = [f"g AS (SELECT * FROM {chunked[0]})"]
    else:
        con, sources = chunked
        for k, source in enumerate(sources):
            con.execute(("CREATE TEMP TABLE _parts AS " if k == 0 else "INSERT INTO _parts ") + group + source
                        + " GROUP BY ALL")
        names = [_q(c) for c in used] + (["_wbad"] if weight is not None else [])
        sums = ["CAST(sum(_n) AS BIGINT) AS _n"] + (["sum(_w) AS _w"] if weight is not None else [])
        con.execute(f"CREATE TEMP TABLE _groups AS SELECT {', '.join(names + sums)} FROM _parts GROUP BY ALL")
        con.execute("DROP TABLE _parts")
        ctes = ["g AS (SELECT * FROM _groups)"]
    distinct_values = chunked[1] if chunked is not None and isinstance(chunked[0], str) else {}
    # Per distinct value of a column: what the rows' expressions compute from it.
    per_value: dict[str, dict[str, str]] = {}
    first, second = (spec["winner"], spec["loser"]) if "winner" in spec else (spec["a"], spec["b"])
    per_value.setdefault(first, {})["na"] = _text(first)
    per_value.setdefault(second, {})["nb"] = _text(second)
    if "outcome" in spec:
        per_value.setdefault(spec["outcome"], {})["o"] = _outcome_sql(spec, options.get("outcome_map"))
    elif "score_a" in spec:
        for key, name in (("score_a", "sa"), ("score_b", "sb")):
            per_value.setdefault(spec[key], {})[name] = f"TRY_CAST({_text(spec[key])} AS DOUBLE)"
    if isinstance(a_first, str):
        per_value.setdefault(a_first, {})["af"] = _bool_sql(a_first)
    for k, column in enumerate(_nested_columns(spec, options)):
        per_value.setdefault(column, {})[f"nested{k}"] = _nested(column)
    joins, derived = [], {}
    for k, (column, outputs) in enumerate(per_value.items()):
        values = ", ".join(f"{expr} AS {name}" for name, expr in outputs.items())
        distinct = distinct_values.get(column) or f"(SELECT DISTINCT {_q(column)} FROM g)"
        ctes.append(f"m{k} AS MATERIALIZED (SELECT {_q(column)}, {values} FROM {distinct})")
        # a missing value joins nothing and reads as NULL, which is what every expression gives a NULL
        joins.append(f"LEFT JOIN m{k} ON g.{_q(column)} = m{k}.{_q(column)}")
        derived.update({name: f"m{k}.{name}" for name in outputs})
    if "score_a" in spec:
        derived["o"] = _scores_outcome(derived["sa"], derived["sb"])
    derived["nested"] = " OR ".join(derived.pop(name) for name in list(derived) if name.startswith("nested"))
    derived["w"] = "(CASE WHEN _wbad THEN NULL ELSE _w END)" if weight is not None else "CAST(_n AS DOUBLE)"
    select, _, _ = _row_sql(spec, options, derived)
    # _row_sql names the raw columns (cluster): read them from g, not from a joined table of the same column
    if cluster is not None:
        select = select.replace(f"{_raw_text(cluster)} AS cluster_raw", f"{_raw_text(cluster)} AS cluster_raw".replace(
            _q(cluster), f"g.{_q(cluster)}"))
    return f"WITH {', '.join(ctes)} SELECT {select}, _n FROM g {' '.join(joins)}"


CHUNK_ROWS = 1 << 26
"""Parquet input above this many rows is grouped a bounded number of row groups at a time (:func:`_parquet_chunks`)."""


def _parquet_chunks(files: list[Path], nested: str) -> list[str] | None:
    """Sources of consecutive pieces of Parquet ``files`` of at most :data:`CHUNK_ROWS` rows each (whole row
    groups; whole files together, a large file by ranges of ``file_row_number``, which DuckDB prunes to the row
    groups holding them), or ``None`` when one pass reads everything (fewer rows, other formats, or files whose
    columns differ).

    One GROUP BY over a whole large file on a high-cardinality key (every ordered pair × outcome: 3·10⁶ groups at
    1,000 items) runs DuckDB 2.0 out of memory at a 600 MB–1 GB limit beyond ~10⁸ rows, its own bare GROUP BY
    on the raw columns too: the aggregate keeps partitioned partial groups pinned per thread, and their number
    grows with the rows. Grouped a piece at a time, each piece's aggregate stays bounded, and the partial groups
    (a few per distinct combination per piece) are summed in a last, small GROUP BY."""
    from pairkit.scale._tables import file_kind

    if any(file_kind(f) != "parquet" for f in files):
        return None
    import pyarrow.parquet as pq

    metas = [pq.read_metadata(f) for f in files]
    if sum(m.num_rows for m in metas) <= CHUNK_ROWS or len({tuple(m.schema.names) for m in metas}) > 1:
        return None
    chunks: list[list[tuple[Path, int, int, bool]]] = []
    current: list[tuple[Path, int, int, bool]] = []
    rows = 0
    for path, meta in zip(files, metas):
        start = pos = 0
        for g in range(meta.num_row_groups):
            n = meta.row_group(g).num_rows
            if rows + pos - start + n > CHUNK_ROWS and (current or pos > start):
                if pos > start:
                    current.append((path, start, pos, False))
                chunks.append(current)
                current, rows, start = [], 0, pos
            pos += n
        if pos > start:
            current.append((path, start, pos, start == 0))
            rows += pos - start
    if current:
        chunks.append(current)
    sources = []
    for chunk in chunks:
        whole = [p for p, _, _, w in chunk if w]
        parts = [f"SELECT * FROM {_source(whole)}"] if whole else []
        parts += [f"SELECT * EXCLUDE (file_row_number) FROM {_source([p], numbered=True)} "
                  f"WHERE file_row_number >= {lo} AND file_row_number < {hi}" for p, lo, hi, w in chunk if not w]
        source = "(" + " UNION ALL BY NAME ".join(parts) + ")"
        sources.append(f"(SELECT *, {nested} FROM {source})" if nested else source)
    return sources


def _check_headers(files: list[Path]) -> None:
    """The readers' file rule: a CSV/TSV header must not repeat a name (DuckDB would rename the copy ``x_1``)."""
    from pairkit.scale._tables import file_kind

    for path in files:
        kind = file_kind(path)
        if kind in ("csv", "tsv"):
            from pairkit.data.readers import check_csv_header

            check_csv_header(path, "\t" if kind == "tsv" else ",", str(path))


def _report(con, src, select, problem, per: list[tuple[int, float]], files, options, on_invalid) -> None:
    """Raise naming the file, row and column of the first bad row (the readers say it), or warn and drop;
    ``per``: (problem code, rows) in code order."""
    total = int(sum(n for _, n in per))
    summary = "; ".join(f"{int(n)} × {PROBLEMS[int(k)]}" for k, n in per)
    if on_invalid == "drop":
        warnings.warn(f"dropped {total} invalid rows: {summary}", DroppedRowsWarning, stacklevel=4)
        return
    code = int(per[0][0])
    inner = f"SELECT {select}, filename FROM {src}"
    where = con.execute(f"SELECT filename FROM ({inner}) WHERE {problem} = {code} LIMIT 1").fetchone()
    path = where[0] if where else str(files[0])
    if list(SQL_RULES)[code - 1] != "partial":
        from pairkit.data.readers import read_comparisons

        read_comparisons(path, **options)  # raises with the file, row, column and value
    raise InputError(f"{path}: {PROBLEMS[code]}. {total} invalid row(s) in all ({summary}); fix them or pass "
                     "--drop-invalid (on_invalid='drop') to drop them.")
