"""Online Bayesian ratings: pairkit vs the ``trueskill`` (0.4.5) and ``openskill`` (6.x) packages.

Each library rates the same matches in the same order from the same defaults; the table gives the wall time of
each, the ratio and the largest difference of the final μ and σ (a check that both computed the same thing).

    python benchmarks/bench_online_ratings.py                  # 100,000 1-vs-1 matches among 1,000 players
    python benchmarks/bench_online_ratings.py --matches 20000  # quicker
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from pairkit.data.comparisons import Comparisons
from pairkit.rating import Matches, trueskill_rate, weng_lin_rate


def pairwise_matches(n_players: int, n_matches: int, seed: int) -> tuple[list, list]:
    """Random pairings; outcomes from Bradley–Terry on random skills with 10% draws."""
    rng = np.random.default_rng(seed)
    skill = rng.normal(0.0, 1.0, n_players)
    a = rng.integers(0, n_players, n_matches)
    b = (a + rng.integers(1, n_players, n_matches)) % n_players
    p = 1 / (1 + np.exp(skill[b] - skill[a]))
    u = rng.random(n_matches)
    outcome = np.where(u < 0.1, 0.5, np.where(rng.random(n_matches) < p, 1.0, 0.0))
    teams = [[[int(x)], [int(y)]] for x, y in zip(a, b, strict=True)]
    ranks = [[0, 1] if o == 1 else [1, 0] if o == 0 else [0, 0] for o in outcome]
    return teams, ranks


def team_matches(n_players: int, n_matches: int, n_teams: int, team_size: int, seed: int) -> tuple[list, list]:
    rng = np.random.default_rng(seed)
    teams, ranks = [], []
    for _ in range(n_matches):
        players = rng.permutation(n_players)[: n_teams * team_size]
        teams.append([[int(p) for p in t] for t in players.reshape(n_teams, team_size)])
        ranks.append([int(r) for r in rng.permutation(n_teams)])
    return teams, ranks


def peer_loop(n_players, teams, ranks, create, rate, read):
    ratings = [create() for _ in range(n_players)]
    for match, rank in zip(teams, ranks, strict=True):
        out = rate([[ratings[p] for p in team] for team in match], rank)
        for team, new in zip(match, out, strict=True):
            for p, r in zip(team, new, strict=True):
                ratings[p] = r
    return np.array([read(r)[0] for r in ratings]), np.array([read(r)[1] for r in ratings])


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def pairkit_input(n_players, teams, ranks):
    """What a pairkit user passes: Comparisons (from arrays) for 1-vs-1 data, else Matches from the lists."""
    items = [str(k) for k in range(n_players)]
    if all(len(m) == 2 and len(m[0]) == 1 and len(m[1]) == 1 for m in teams):
        pairs = np.array([[m[0][0], m[1][0]] for m in teams])
        r = np.array(ranks)
        outcome = np.where(r[:, 0] < r[:, 1], 1.0, np.where(r[:, 0] > r[:, 1], 0.0, 0.5))
        return lambda: Comparisons.from_arrays(pairs[:, 0], pairs[:, 1], outcome, items=items)
    return lambda: Matches.from_lists(teams, ranks, items=items)


def run_case(label, n_players, teams, ranks, rows):
    import openskill.models as osk
    import trueskill

    data = pairkit_input(n_players, teams, ranks)  # built inside the timed call
    env = trueskill.TrueSkill()  # the package's defaults (its own approximate erfc backend)
    cases = [
        (
            "TrueSkill",
            "trueskill 0.4.5",
            lambda: trueskill_rate(data(), normal="trueskill"),
            lambda: peer_loop(
                n_players, teams, ranks, env.create_rating, lambda g, r: env.rate(g, ranks=r), lambda r: (r.mu, r.sigma)
            ),
        ),
    ]
    for name, cls in (
        ("plackett_luce", osk.PlackettLuce),
        ("bradley_terry_full", osk.BradleyTerryFull),
        ("thurstone_mosteller_full", osk.ThurstoneMostellerFull),
    ):
        model = cls()
        cases.append(
            (
                f"Weng–Lin {name}",
                f"openskill {cls.__name__}",
                lambda name=name: weng_lin_rate(data(), model=name),
                lambda model=model: peer_loop(
                    n_players,
                    teams,
                    ranks,
                    model.rating,
                    lambda g, r, model=model: model.rate(g, ranks=list(r)),
                    lambda r: (r.mu, r.sigma),
                ),
            )
        )
    for method, peer, ours, theirs in cases:
        t_ours, (mu, sigma) = timed(ours)  # includes building the input and scheduling the rounds
        t_peer, (mu_p, sigma_p) = timed(theirs)
        diff = max(np.abs(mu - mu_p).max(), np.abs(sigma - sigma_p).max())
        rows.append((label, method, peer, t_ours, t_peer, t_peer / t_ours, diff))
        print(
            f"  {label:<34} {method:<30} pairkit {t_ours:7.2f}s  {peer:<32} {t_peer:7.2f}s  "
            f"{t_peer / t_ours:6.1f}x  max|Δ| {diff:.1e}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--players", type=int, default=1000)
    parser.add_argument("--matches", type=int, default=100_000)
    parser.add_argument("--team-matches", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows: list[tuple] = []
    teams, ranks = pairwise_matches(args.players, args.matches, args.seed)
    run_case(f"1-vs-1, {args.matches:,} matches, {args.players:,} players", args.players, teams, ranks, rows)
    teams, ranks = team_matches(args.players, args.team_matches, 2, 3, args.seed + 1)
    run_case(f"3-vs-3, {args.team_matches:,} matches", args.players, teams, ranks, rows)
    teams, ranks = team_matches(args.players, args.team_matches // 4, 4, 2, args.seed + 2)
    run_case(f"4 teams of 2, {args.team_matches // 4:,} matches", args.players, teams, ranks, rows)
    print()
    print("| case | method | pairkit (s) | peer | peer (s) | speed-up | max abs diff μ, σ |")
    print("|---|---|---:|---|---:|---:|---:|")
    for label, method, peer, t_ours, t_peer, ratio, diff in rows:
        print(f"| {label} | {method} | {t_ours:.2f} | {peer} | {t_peer:.2f} | {ratio:.1f}× | {diff:.1e} |")


if __name__ == "__main__":
    main()
