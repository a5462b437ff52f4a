"""Pairwise judge trainer variants and instruction distillation, on simulated votes with a known utility, one run.

No pretrained causal LM ships offline, so every model is a tiny Llama built from a config (2 layers, hidden 32) and
trained from scratch; the task is learnable from the words alone. Answers are 1–4 words drawn from
``good``/``bad``/fillers; the utility of an answer is ``#good − #bad`` and each vote is drawn from
``P(a ≻ b) = σ(2 (u_a − u_b))`` (equal utilities: a coin). Peers, all on the same votes and held-out pairs:

- the constant judge (chance);
- :func:`pairkit.train.train_pairwise_judge` with a sequence-classification head (cross-encoder);
- the same with the causal-LM verdict head (``verdicts=("A", "B")``, the LM's next-token logits after the prompt).

Held-out accuracy is against the drawn votes (with a Clopper–Pearson 95% interval) and against the noiseless order
(``u_a ≠ u_b`` pairs). Then instruction distillation: the trained verdict-head judge is the pairwise teacher of
lists of 4 answers, and a pointwise causal-LM student (Yes/No logits) is trained with RankNet on its order; reported:
held-out agreement of the student with the teacher and with the true utility, against the untrained student, and the
judge calls per list (K(K−1)/2 for the teacher, K for the student).

    python benchmarks/bench_judge_variants.py [--votes 400] [--epochs 6] [--seed 0]
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import torch
from bench_online import tiny_model_and_tokenizer

FILLERS = ["alpha", "beta", "gamma", "delta", "yes", "no"]
# the verdict and template words, so that they are whole tokens of the tiny tokenizer
CORPUS = " A B tie Answer The better answer is Yes No Query Candidate good bad"


def answer(rng) -> str:
    words = [rng.choice(["good", "bad", *FILLERS]) for _ in range(rng.integers(1, 5))]
    return " ".join(words)


def utility(text: str) -> int:
    w = text.split()
    return w.count("good") - w.count("bad")


def votes(n: int, rng) -> list[dict]:
    rows = []
    for i in range(n):
        a, b = answer(rng), answer(rng)
        while a == b:
            b = answer(rng)
        p = 1 / (1 + np.exp(-2 * (utility(a) - utility(b))))
        won = "a" if rng.random() < p else "b"
        rows.append({"prompt": f"q {i % 9}", "response_a": a, "response_b": b, "winner": won})
    return rows


def classifier(tok, seed):
    import transformers

    torch.manual_seed(seed)
    config = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                      num_labels=2, pad_token_id=tok.pad_token_id)  # fmt: skip
    return transformers.LlamaForSequenceClassification(config)


def true_order_accuracy(judge, rows) -> float:
    from pairkit.judges import Request

    keep = [r for r in rows if utility(r["response_a"]) != utility(r["response_b"])]
    js = judge.judge_many([Request(r["prompt"], r["response_a"], r["response_b"]) for r in keep])
    right = [(j.p_a > 0.5) == (utility(r["response_a"]) > utility(r["response_b"])) for j, r in zip(js, keep)]
    return float(np.mean(right))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--votes", type=int, default=400)
    parser.add_argument("--held-out", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lists", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from pairkit.judges import CallableJudge, PairwiseClassifierJudge
    from pairkit.judges.pairwise_classifier import VERDICTS
    from pairkit.train import (
        TrainConfig,
        evaluate_pairwise_judge,
        evaluate_pointwise_ranker,
        teacher_scores,
        train_instruction_distillation,
        train_pairwise_judge,
    )

    rng = np.random.default_rng(args.seed)
    train, test = votes(args.votes, rng), votes(args.held_out, rng)
    config = TrainConfig(epochs=args.epochs, batch_size=16, lr=3e-3, schedule="constant", max_length=64)
    print(f"{args.votes} training votes, {args.held_out} held-out, {args.epochs} epochs, seed {args.seed}")
    print("| judge | held-out accuracy vs votes [95% CI] | vs true order | position consistency | train s |")
    print("|---|---|---|---|---|")
    const = CallableJudge(lambda c, a, b: 0.5, judge_id="constant")
    print(f"| constant (chance) | 0.500 | {true_order_accuracy(const, test):.3f} | – | – |")
    judges = {}
    for name, verdicts in (("cross-encoder (classification head)", None), ("causal LM, verdict head", VERDICTS[:2])):
        lm, tok = tiny_model_and_tokenizer(seed=args.seed + 1, corpus=CORPUS)
        model = lm if verdicts else classifier(tok, args.seed + 1)
        t0 = time.perf_counter()
        train_pairwise_judge(model, tok, train, verdicts=verdicts, config=config)
        seconds = time.perf_counter() - t0
        res = evaluate_pairwise_judge(model, tok, test, max_length=64, verdicts=verdicts)
        judge = PairwiseClassifierJudge(model, tok, max_length=64, verdicts=verdicts)
        judges[name] = judge
        print(
            f"| {name} | {res['accuracy']:.3f} [{res['ci_low']:.3f}, {res['ci_high']:.3f}] | "
            f"{true_order_accuracy(judge, test):.3f} | {res['position_consistency']:.3f} | {seconds:.1f} |"
        )

    teacher = judges["causal LM, verdict head"]
    lists = [{"query": f"q {i % 9}", "candidates": [answer(rng) for _ in range(4)]} for i in range(2 * args.lists)]
    for r, t in zip(lists, teacher_scores(teacher, lists)):
        r["teacher_scores"] = t.tolist()
    fit_lists, eval_lists = lists[: args.lists], lists[args.lists :]
    truth = [{**r, "teacher_scores": [utility(c) for c in r["candidates"]]} for r in eval_lists]
    student, tok = tiny_model_and_tokenizer(seed=args.seed + 2, corpus=CORPUS)
    words = ("Yes", "No")
    before = evaluate_pointwise_ranker(student, tok, eval_lists, yes_no=words, max_length=64)
    before_true = evaluate_pointwise_ranker(student, tok, truth, yes_no=words, max_length=64)
    t0 = time.perf_counter()
    train_instruction_distillation(student, tok, fit_lists, yes_no=words, config=config)
    seconds = time.perf_counter() - t0
    after = evaluate_pointwise_ranker(student, tok, eval_lists, yes_no=words, max_length=64)
    after_true = evaluate_pointwise_ranker(student, tok, truth, yes_no=words, max_length=64)
    teacher_true = np.mean([
        np.mean([(ts[i] > ts[j]) == (utility(r["candidates"][i]) > utility(r["candidates"][j]))
                 for i, j in itertools.permutations(range(4), 2)
                 if utility(r["candidates"][i]) > utility(r["candidates"][j])])
        for r, ts in zip(eval_lists, [r["teacher_scores"] for r in eval_lists])
        if len({utility(c) for c in r["candidates"]}) > 1
    ])  # fmt: skip
    print()
    print(f"instruction distillation: {args.lists} training lists of 4, {args.lists} held-out; teacher: verdict head")
    print("| ranker | agreement with the teacher | agreement with the true order | judge calls per list | train s |")
    print("|---|---|---|---|---|")
    print(f"| pairwise teacher (verdict head, all pairs) | 1.000 | {teacher_true:.3f} | 6 | – |")
    print(f"| pointwise student, untrained | {before['agreement']:.3f} | {before_true['agreement']:.3f} | 4 | – |")
    print(f"| pointwise student, distilled (RankNet) | {after['agreement']:.3f} | {after_true['agreement']:.3f} | 4 "
          f"| {seconds:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
