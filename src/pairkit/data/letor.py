"""Reader for learning-to-rank data in the LETOR / SVMlight format.

Two layouts are read:

* LETOR / SVMlight with query ids: ``<label> qid:<id> <index>:<value> ... [# comment]`` (Qin et al., 2010,
  "LETOR: A benchmark collection for research on learning to rank for information retrieval"; Joachims'
  SVMlight format). Documents of one query must be consecutive.
* LightGBM style: the same lines without ``qid:``, and a separate ``.query`` file (one integer per line:
  the number of documents of each query, in file order). By default ``<file>.query`` next to the data is used.

The result is padded for batched losses and metrics: ``features [queries, max_list, n_features]``,
``labels [queries, max_list]`` and a boolean ``mask [queries, max_list]`` of real documents (padding is 0 and
masked, never a sentinel value). Feature indices are 1-based as in LETOR unless ``zero_based=True``; a feature
absent from a line is 0 (sparse SVMlight semantics). Malformed input raises :class:`~pairkit.errors.InputError`
naming the file, the line and the offending token.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pairkit.errors import InputError

__all__ = ["LetorData", "pad_lists", "read_letor"]


@dataclass(frozen=True)
class LetorData:
    """Padded learning-to-rank lists.

    ``features``: ``[queries, max_list, n_features]``; ``labels``: ``[queries, max_list]``; ``mask``:
    ``[queries, max_list]`` (True = real document); ``qids``: ``[queries]`` query ids as strings (from the
    ``qid:`` fields, or ``"0", "1", ...`` in file order with a ``.query`` file).
    """

    features: np.ndarray
    labels: np.ndarray
    mask: np.ndarray
    qids: np.ndarray

    @property
    def n_queries(self) -> int:
        return int(self.mask.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.features.shape[-1])

    @property
    def list_sizes(self) -> np.ndarray:
        """Number of documents of each query, ``[queries]``."""
        return self.mask.sum(-1)


def pad_lists(values: np.ndarray, sizes, *, fill=0) -> tuple[np.ndarray, np.ndarray]:
    """Pad consecutive groups of rows into ``[groups, max_size, ...]`` and return it with the validity mask.

    ``values``: ``[n, ...]`` rows in group order; ``sizes``: ``[groups]`` positive counts summing to ``n``.
    """
    values = np.asarray(values)
    sizes = np.asarray(sizes, dtype=np.int64)
    if sizes.ndim != 1 or (sizes < 1).any() or sizes.sum() != len(values):
        raise InputError(
            f"sizes must be positive group sizes summing to the number of rows {len(values)}; "
            f"got {sizes.size} sizes summing to {int(sizes.sum())}"
        )
    n_groups = len(sizes)
    max_size = int(sizes.max()) if n_groups else 0
    group = np.repeat(np.arange(n_groups), sizes)
    starts = np.cumsum(sizes) - sizes
    position = np.arange(len(values)) - np.repeat(starts, sizes)
    out = np.full((n_groups, max_size, *values.shape[1:]), fill, dtype=values.dtype)
    out[group, position] = values
    mask = np.zeros((n_groups, max_size), dtype=bool)
    mask[group, position] = True
    return out, mask


def _parse_float(token: str, where: str, what: str) -> float:
    try:
        value = float(token)
    except ValueError:
        raise InputError(f"{where}: {what} {token!r} is not a number") from None
    if not np.isfinite(value):
        raise InputError(f"{where}: {what} {token!r} is not finite")
    return value


def _explain_bad_features(tokens: list[str], where: str, zero_based: bool, n_features: int | None):
    """Raise an :class:`InputError` naming the first malformed ``index:value`` token."""
    seen: set[int] = set()
    for token in tokens:
        idx_s, sep, val_s = token.partition(":")
        if not sep or ":" in val_s:
            raise InputError(f"{where}: token {token!r} is not <index>:<value>")
        try:
            idx = int(idx_s)
        except ValueError:
            raise InputError(f"{where}: feature index {idx_s!r} in {token!r} is not an integer") from None
        col = idx if zero_based else idx - 1
        if col < 0:
            hint = "" if zero_based else " (indices are 1-based; pass zero_based=True for 0-based files)"
            raise InputError(f"{where}: feature index {idx} in {token!r} is out of range{hint}")
        if n_features is not None and col >= n_features:
            raise InputError(f"{where}: feature index {idx} in {token!r} exceeds n_features={n_features}")
        if col in seen:
            raise InputError(f"{where}: feature index {idx} appears twice")
        seen.add(col)
        _parse_float(val_s, where, f"value of feature {idx}")


def _check_feature_arrays(idx, vals, rows, zero_based: bool, n_features: int | None) -> np.ndarray | None:
    """0-based columns if every ``index:value`` is well formed, else None."""
    if not (np.isfinite(idx).all() and (idx == np.round(idx)).all() and np.isfinite(vals).all()):
        return None
    cols = idx.astype(np.int64) - (0 if zero_based else 1)
    if (cols < 0).any() or (n_features is not None and (cols >= n_features).any()):
        return None
    key = np.sort(rows * (int(cols.max()) + 1 if cols.size else 1) + cols)
    if (key[1:] == key[:-1]).any():
        return None
    return cols


def _parse_lines(path: Path, zero_based: bool, n_features: int | None):
    labels: list[float] = []
    qids: list[str | None] = []
    first_line: list[int] = []
    feature_tokens: list[list[str]] = []
    with open(path, encoding="utf-8") as fh:
        for line_no, raw in enumerate(fh, start=1):
            text = raw.split("#", 1)[0].strip()
            if not text:
                continue
            where = f"{path}, line {line_no}"
            tokens = text.split()
            labels.append(_parse_float(tokens[0], where, "label"))
            first_line.append(line_no)
            rest = tokens[1:]
            qid = None
            if rest and rest[0].startswith("qid:"):
                qid = rest[0][4:]
                if not qid:
                    raise InputError(f"{where}: empty query id in {rest[0]!r}; expected qid:<id>")
                rest = rest[1:]
            qids.append(qid)
            feature_tokens.append(rest)
    counts = np.fromiter((len(t) for t in feature_tokens), dtype=np.int64, count=len(feature_tokens))
    rows = np.repeat(np.arange(len(counts)), counts)
    # One numpy parse of all "index:value" tokens; only on failure are lines re-read one by one for the message.
    joined = " ".join(" ".join(t) for t in feature_tokens)
    cols = vals = None
    if joined.count(":") == counts.sum():
        try:
            flat = np.array(joined.replace(":", " ").split(), dtype=float)
        except ValueError:
            flat = None
        if flat is not None and flat.size == 2 * counts.sum():
            vals = flat[1::2]
            cols = _check_feature_arrays(flat[0::2], vals, rows, zero_based, n_features)
    if cols is None:
        for tokens, line_no in zip(feature_tokens, first_line):
            _explain_bad_features(tokens, f"{path}, line {line_no}", zero_based, n_features)
        raise InputError(f"{path}: malformed <index>:<value> features")  # defensive; a line raises first
    return labels, qids, first_line, rows, cols, vals


def _sizes_from_qids(qids: list[str], first_line: list[int], path: Path) -> tuple[np.ndarray, np.ndarray]:
    qid_arr = np.asarray(qids, dtype=object)
    starts = np.flatnonzero(np.r_[True, qid_arr[1:] != qid_arr[:-1]])
    run_qids = qid_arr[starts]
    uniq, counts = np.unique(run_qids.astype(str), return_counts=True)
    if (counts > 1).any():
        q = uniq[np.argmax(counts > 1)]
        later = starts[np.flatnonzero(run_qids.astype(str) == q)[1]]
        raise InputError(
            f"{path}, line {first_line[later]}: documents of qid:{q} are not consecutive (the query appeared "
            "earlier in the file); sort the file by query"
        )
    sizes = np.diff(np.r_[starts, len(qids)])
    return sizes, run_qids.astype(str)


def _sizes_from_query_file(query_file: Path, n_docs: int) -> np.ndarray:
    sizes: list[int] = []
    with open(query_file, encoding="utf-8") as fh:
        for line_no, raw in enumerate(fh, start=1):
            text = raw.strip()
            if not text:
                continue
            try:
                size = int(text)
            except ValueError:
                raise InputError(f"{query_file}, line {line_no}: {text!r} is not a document count") from None
            if size < 1:
                raise InputError(f"{query_file}, line {line_no}: document count {size} must be positive")
            sizes.append(size)
    total = sum(sizes)
    if total != n_docs:
        raise InputError(
            f"{query_file}: the query sizes sum to {total} documents but the data file has {n_docs}; "
            "the .query file must list the documents per query of exactly this data file"
        )
    return np.asarray(sizes, dtype=np.int64)


def read_letor(
    path: str | os.PathLike,
    *,
    query_file: str | os.PathLike | None = None,
    n_features: int | None = None,
    zero_based: bool = False,
    dtype=np.float32,
) -> LetorData:
    """Read a LETOR/SVMlight ranking file (with ``qid:`` or a LightGBM ``.query`` file) into padded arrays.

    ``query_file`` defaults to ``<path>.query`` when the lines carry no ``qid:``. ``n_features`` fixes the
    feature dimension (default: the largest index seen), e.g. to read train and test files alike.
    Returns :class:`LetorData` with ``features [queries, max_list, n_features]`` (``dtype``), ``labels``,
    ``mask`` and ``qids``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if n_features is not None and (isinstance(n_features, bool) or n_features < 1):
        raise InputError(f"n_features must be a positive integer; got {n_features!r}")
    labels, qids, first_line, rows, cols, vals = _parse_lines(path, zero_based, n_features)
    if not labels:
        raise InputError(f"{path}: no data lines")
    has_qid = [q is not None for q in qids]
    if any(has_qid) and not all(has_qid):
        bad = has_qid.index(not has_qid[0])
        raise InputError(
            f"{path}, line {first_line[bad]}: some lines have qid: and others do not; use qid: on every line "
            "or on none (with a .query file)"
        )
    if all(has_qid):
        if query_file is not None:
            raise InputError(f"{path}: the lines carry qid: fields, so query_file={str(query_file)!r} is ambiguous")
        sizes, qid_names = _sizes_from_qids(qids, first_line, path)  # type: ignore[arg-type]
    else:
        qf = Path(query_file) if query_file is not None else path.with_name(path.name + ".query")
        if not qf.is_file():
            raise InputError(
                f"{path}: lines have no qid: field and the query file {qf} does not exist; pass query_file= "
                "(documents per query, one count per line)"
            )
        sizes = _sizes_from_query_file(qf, len(labels))
        qid_names = np.arange(len(sizes)).astype(str)
    width = n_features if n_features is not None else (int(cols.max()) + 1 if cols.size else 0)
    dense = np.zeros((len(labels), width), dtype=dtype)
    dense[rows, cols] = vals.astype(dtype)
    features, mask = pad_lists(dense, sizes)
    padded_labels, _ = pad_lists(np.asarray(labels, dtype=dtype), sizes)
    return LetorData(features=features, labels=padded_labels, mask=mask, qids=qid_names)
