"""Generators of large comparison files for the scale benchmarks (never commit their output).

Run:  python benchmarks/gen_scale.py arena OUT.parquet --rows 10_000_000 --items 1000
      python benchmarks/gen_scale.py sparse OUT.parquet --rows 107_000 --items 6100
      python benchmarks/gen_scale.py arena OUTDIR --rows 30_000_000 --items 1000 --parts 8   (a partitioned dataset)
      python benchmarks/gen_scale.py arena BIG.parquet --rows 300_000_000 --items 1000 --plain --stream 1_000_000
          (streamed: a 1M-row table per row group of 1M rows, names as plain strings; the 3×10⁸-row count case)

``arena``: uniform random pairs of ``model_NNNN`` names, Bradley–Terry outcomes with ~10% ties (LMArena's
columns model_a, model_b, winner). ``sparse``: heavy-tailed (Zipf-like) item degrees, winner/loser columns,
so many items have only wins or only losses — a twin of a crowdsourced data set.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy import special


def arena_table(rows: int, items: int, seed: int = 0, ties: float = 0.1) -> pa.Table:
    """LMArena-shaped rows: model_a, model_b (dictionary-encoded names), winner label."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(0, 1, items)
    a = rng.integers(0, items, rows)
    b = (a + rng.integers(1, items, rows)) % items
    u = rng.random(rows)
    p = special.expit(theta[a] - theta[b])
    tie = rng.random(rows) < ties
    code = np.where(tie, 2, np.where(u < p, 0, 1)).astype(np.int8)
    names = pa.array([f"model_{k:05d}" for k in range(items)])
    labels = pa.array(["model_a", "model_b", "tie"])
    return pa.table({
        "model_a": pa.DictionaryArray.from_arrays(pa.array(a.astype(np.int32)), names),
        "model_b": pa.DictionaryArray.from_arrays(pa.array(b.astype(np.int32)), names),
        "winner": pa.DictionaryArray.from_arrays(pa.array(code), labels),
    })


def sparse_table(rows: int, items: int, seed: int = 0, exponent: float = 1.1) -> pa.Table:
    """Winner/loser rows over a heavy-tailed degree distribution (many items seen once or twice)."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(0, 1.5, items)
    weight = 1.0 / np.arange(1, items + 1) ** exponent
    weight /= weight.sum()
    a = rng.choice(items, rows, p=weight)
    b = rng.choice(items, rows, p=weight)
    same = a == b
    b[same] = (b[same] + 1 + rng.integers(0, items - 1, int(same.sum()))) % items
    a_won = rng.random(rows) < special.expit(theta[a] - theta[b])
    names = pa.array([f"item_{k:07d}" for k in range(items)])
    w, lo = np.where(a_won, a, b), np.where(a_won, b, a)
    return pa.table({
        "winner": pa.DictionaryArray.from_arrays(pa.array(w.astype(np.int32)), names),
        "loser": pa.DictionaryArray.from_arrays(pa.array(lo.astype(np.int32)), names),
    })


def write(table: pa.Table, out: Path, parts: int = 1, plain: bool = False) -> None:
    """Write Parquet (one file, or ``parts`` files in a directory) or CSV; ``plain`` stores names as strings."""
    if plain:
        table = table.cast(pa.schema([(f.name, pa.string()) for f in table.schema]))
    if parts <= 1:
        if out.suffix == ".csv":
            import pyarrow.csv as pcsv

            pcsv.write_csv(table.cast(pa.schema([(f.name, pa.string()) for f in table.schema])), out)
        else:
            pq.write_table(table, out)
        return
    out.mkdir(parents=True, exist_ok=True)
    size = -(-len(table) // parts)
    for k in range(parts):
        pq.write_table(table.slice(k * size, size), out / f"part-{k:04d}.parquet")


def stream(make, out: Path, rows: int, items: int, seed: int, size: int, plain: bool) -> None:
    """``rows`` rows into one Parquet file, ``size`` rows (a row group) at a time."""
    writer = None
    for k in range(-(-rows // size)):
        table = make(min(size, rows - k * size), items, seed + k)
        if plain:
            table = table.cast(pa.schema([(f.name, pa.string()) for f in table.schema]))
        writer = writer or pq.ParquetWriter(out, table.schema)
        writer.write_table(table, row_group_size=size)
    writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["arena", "sparse"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--parts", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plain", action="store_true", help="store names as plain strings, not dictionaries")
    parser.add_argument("--stream", type=int, default=0, help="write one Parquet file this many rows at a time "
                        "(each a row group, seeded seed + k), never holding more in memory")
    args = parser.parse_args()
    make = arena_table if args.kind == "arena" else sparse_table
    if args.stream:
        stream(make, args.out, args.rows, args.items, args.seed, args.stream, args.plain)
        return
    write(make(args.rows, args.items, args.seed), args.out, args.parts, args.plain)


if __name__ == "__main__":
    main()
