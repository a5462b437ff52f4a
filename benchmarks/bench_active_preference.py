"""Active acquisition for learning a preference: labels needed to reach a target accuracy, active vs random.

A simulated preference with a known optimum: ``--candidates`` points uniform in [0, 1]², utility
``u(x) = -8 ||x - (0.7, 0.3)||²``, each label drawn from the probit ``P(a ≻ b) = Φ((u_a - u_b)/√2)`` (the model's
own likelihood, noise 1). Every strategy feeds the same learner, :class:`pairkit.curate.PairwiseGP` (RBF,
lengthscale 0.25, outputscale 4, refitted every 5 labels); they differ only in which pairs they ask for:

- random pairs (the baseline);
- preference entropy (uncertainty sampling) and EUBO, each maximised over 500 random candidate pairs per batch;
- dueling bandits over the candidates as arms (RUCB, Double Thompson Sampling), which ignore the features;
- with the exact skew-GP posterior (:class:`pairkit.curate.SkewGP`, 300 samples after 100 burn-in steps) as the
  learner instead: random pairs, EUBO over 500 random pairs, and the hallucination believer (current best vs the UCB
  maximiser of a GP conditioned on one posterior sample, one sample per pair of the batch).

Accuracy: the fraction of all candidate pairs whose true order the GP mean gets right. Regret: the optimum's
utility minus that of the GP's best candidate. "Labels to target": the first checkpoint (every 10 labels) from
which the accuracy stays at or above the target; the median over ``--repeats`` seeds (label noise, random pairs
and candidate pools; the candidates are the same), all in one run.

    python benchmarks/bench_active_preference.py [--candidates 100] [--budget 300] [--target 0.95] [--repeats 5]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from scipy import special

from pairkit.curate import RUCB, DoubleThompson, PairwiseGP, SkewGP, eubo, hallucination_believer, preference_entropy

OPTIMUM = np.array([0.7, 0.3])


def run(strategy: str, x: np.ndarray, u: np.ndarray, budget: int, seed: int, batch: int = 5, every: int = 10):
    rng = np.random.default_rng(seed)
    n = len(x)
    ia, ib = np.triu_indices(n, 1)
    truth = np.sign(u[ia] - u[ib])
    bandit = {"rucb": RUCB, "dts": DoubleThompson}.get(strategy)
    bandit = bandit(n, seed=seed) if bandit else None
    comps: list[tuple[int, int]] = []
    gp = None
    curve = []

    def label(i: int, j: int) -> None:
        a_won = rng.random() < special.ndtr((u[i] - u[j]) / math.sqrt(2))
        comps.append((i, j) if a_won else (j, i))
        if bandit is not None:
            bandit.update(i, j, float(a_won))

    skew = strategy.startswith("skew")
    while len(comps) < budget:
        if strategy == "skew_hb" and gp is not None:
            for b in range(batch):
                i, j = hallucination_believer(gp, x, seed=seed * 100_000 + len(comps) + b)
                label(i, j)
        elif bandit is not None:
            for _ in range(batch):
                label(*bandit.select())
        elif strategy in ("random", "skew_random", "skew_hb") or gp is None:
            for _ in range(batch):
                i, j = rng.choice(n, 2, replace=False)
                label(int(i), int(j))
        else:
            pool = rng.choice(len(ia), 500, replace=False)
            xa, xb = x[ia[pool]], x[ib[pool]]
            score = eubo(gp, xa, xb) if "eubo" in strategy else preference_entropy(gp.prob_prefer(xa, xb))
            for k in np.argsort(-score)[:batch]:
                label(int(ia[pool[k]]), int(ib[pool[k]]))
        used = np.unique(np.array(comps))
        pos = np.full(n, -1)
        pos[used] = np.arange(len(used))
        if skew:
            learner = SkewGP(lengthscale=0.25, outputscale=4.0, samples=300, burn_in=100, seed=seed + len(comps))
        else:
            learner = PairwiseGP(lengthscale=0.25, outputscale=4.0)
        gp = learner.fit(x[used], pos[np.array(comps)])
        if len(comps) % every == 0:
            mean, _ = gp.predict(x)
            acc = float(np.mean(np.sign(mean[ia] - mean[ib]) == truth))
            curve.append((len(comps), acc, float(u.max() - u[int(np.argmax(mean))])))
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--budget", type=int, default=300)
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    x = rng.random((args.candidates, 2))
    u = -8.0 * ((x - OPTIMUM) ** 2).sum(1)
    print(
        f"{args.candidates} candidates, budget {args.budget} labels, target accuracy {args.target} "
        f"(all {args.candidates * (args.candidates - 1) // 2} candidate pairs), "
        f"seeds {args.seed}..{args.seed + args.repeats - 1}"
    )
    print(
        "| strategy | labels to target (median; per seed) | mean accuracy at 100 / 200 / end | mean regret | time s |"
    )
    print("|---|---|---|---|---|")
    names = {"random": "random pairs (baseline)", "entropy": "preference entropy (uncertainty)", "eubo": "EUBO",
             "rucb": "RUCB (dueling bandit)", "dts": "Double Thompson (dueling bandit)",
             "skew_random": "skew GP: random pairs (baseline)", "skew_eubo": "skew GP: EUBO",
             "skew_hb": "skew GP: hallucination believer"}  # fmt: skip
    for strategy, name in names.items():
        t0 = time.perf_counter()
        curves = [run(strategy, x, u, args.budget, args.seed + r) for r in range(args.repeats)]
        seconds = time.perf_counter() - t0
        reach = [_reach(c, args.target) for c in curves]
        med = np.median([r if r is not None else np.inf for r in reach])
        each = ", ".join(str(r) if r is not None else ">" + str(args.budget) for r in reach)
        acc = {n: np.mean([dict((k, a) for k, a, _ in c)[n] for c in curves]) for n, _, _ in curves[0]}
        shown = " / ".join(f"{acc[k]:.3f}" if k in acc else "–" for k in (100, 200, curves[0][-1][0]))
        regret = np.mean([c[-1][2] for c in curves])
        label = f"{med:.0f}" if np.isfinite(med) else f"> {args.budget}"
        print(f"| {name} | {label} ({each}) | {shown} | {regret:.3f} | {seconds:.1f} |")


def _reach(curve, target: float):
    """The first label count from which the accuracy stays at or above ``target`` (None: never)."""
    ok = [acc >= target for _, acc, _ in curve]
    for k in range(len(ok)):
        if all(ok[k:]):
            return curve[k][0]
    return None


if __name__ == "__main__":
    main()
