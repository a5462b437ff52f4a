"""Construction rules: building preference pairs and hard negatives from what a model or a verifier said.

Composition-aware hard negatives by swapping same-kind words (NegCLIP), artifact-removing augmentation for
reward models (RRM), point-sifting plus pair-ranking construction (UnifiedReward) and outcome-verified
correct/incorrect reasoning pairs. Outputs are rows the pairkit trainers read (``{prompt, chosen, rejected}`` or
``{prompt, response_a, response_b, winner}`` for :func:`pairkit.train.train_pairwise_judge`) or index arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from pairkit._spec import Interval, Option
from pairkit.curate._registry import as_rng, rule
from pairkit.errors import InputError

__all__ = ["negclip_negative", "rrm_augment", "unified_reward_pairs", "verified_pairs"]


@rule(
    "negclip",
    "construction",
    data="a caption's tokens and their part-of-speech tags",
    aliases=("negclip_swap",),
)
def negclip_negative(tokens: Sequence[str], tags: Sequence[str], *, kinds=("NOUN", "ADJ", "VERB", "ADV"), seed=None):
    """A composition-breaking hard negative: the caption with two different words of one kind swapped.

    "the horse is eating the grass" → "the grass is eating the horse": the same bag of words, another meaning.
    A kind (tag in ``kinds``) with at least two different words is drawn uniformly, then two of its positions
    holding different words. Yuksekgonul, Bianchi, Kalluri, Jurafsky & Zou (2023), "When and Why
    Vision-Language Models Behave like Bags-of-Words, and What to Do About It?" (NegCLIP, ICLR). Tags come from
    any tagger (e.g. spaCy's ``token.pos_``). Returns the new token list, or ``None`` when no swap changes it.
    """
    tokens, tags = list(tokens), list(tags)
    if len(tokens) != len(tags):
        raise InputError(f"tokens and tags must have one length, got {len(tokens)} and {len(tags)}")
    rng = as_rng(seed)
    by_kind = {}
    for kind in kinds:
        pos = [i for i, t in enumerate(tags) if t == kind]
        if len({tokens[i] for i in pos}) >= 2:
            by_kind[kind] = pos
    if not by_kind:
        return None
    pos = by_kind[list(by_kind)[rng.integers(len(by_kind))]]
    pairs = [(i, j) for a, i in enumerate(pos) for j in pos[a + 1 :] if tokens[i] != tokens[j]]
    i, j = pairs[rng.integers(len(pairs))]
    out = list(tokens)
    out[i], out[j] = out[j], out[i]
    return out


def _field(row: Any, names: tuple[str, ...], where: str):
    for n in names:
        if isinstance(row, dict) and n in row:
            return row[n]
    raise InputError(f"{where}: needs one of {', '.join(names)}")


@rule(
    "rrm",
    "construction",
    Option("include_rejected", bool, doc="also: the prompt's rejected answer beats the other prompt's answers"),
    Option("ties", bool, doc="also: two answers to another prompt tie"),
    data="preference rows {prompt, chosen, rejected}",
    aliases=("rrm_augmentation",),
)
def rrm_augment(rows: Sequence[dict], *, include_rejected: bool = True, ties: bool = True, seed=None) -> list[dict]:
    """Artifact-removing augmentation for reward-model training: answers to other prompts as contrasts.

    For every row :math:`(x_i, y^w_i, y^l_i)` another row :math:`j \\ne i` is drawn (a random derangement), and
    under :math:`x_i`

    .. math::

        y^w_i \\succ y^w_j,\\quad y^w_i \\succ y^l_j,\\quad
        [\\,y^l_i \\succ y^w_j,\\; y^l_i \\succ y^l_j\\,],\\quad [\\,y^w_j \\sim y^l_j\\,]

    An answer that addresses the prompt beats one written for another prompt, whatever its length or style, and
    two off-prompt answers tie: artifacts that do not depend on the prompt stop predicting the label. Liu et al.
    (2025), "RRM: Robust Reward Model Training Mitigates Reward Hacking" (ICLR). Returns the original pairs
    followed by the new ones as ``{prompt, response_a, response_b, winner}`` rows (``winner`` "a" or "tie",
    randomly ordered sides for ties), ready for :func:`pairkit.train.train_pairwise_judge`.
    """
    n = len(rows)
    if n < 2:
        raise InputError(f"RRM augmentation needs at least 2 rows (answers to other prompts), got {n}")
    rng = as_rng(seed)
    x, w, lo = [], [], []
    for i, r in enumerate(rows, start=1):
        x.append(_field(r, ("prompt", "context"), f"row {i}"))
        w.append(_field(r, ("chosen",), f"row {i}"))
        lo.append(_field(r, ("rejected",), f"row {i}"))
    shift = rng.integers(1, n)  # j = (π(i) + shift) in a random order: never i
    perm = rng.permutation(n)
    other = np.empty(n, int)
    other[perm] = perm[(np.arange(n) + shift) % n]
    out = [{"prompt": x[i], "response_a": w[i], "response_b": lo[i], "winner": "a"} for i in range(n)]
    for i in range(n):
        j = int(other[i])
        winners = [w[i], lo[i]] if include_rejected else [w[i]]
        out += [
            {"prompt": x[i], "response_a": a, "response_b": b, "winner": "a"} for a in winners for b in (w[j], lo[j])
        ]
        if ties:
            a, b = (w[j], lo[j]) if rng.random() < 0.5 else (lo[j], w[j])
            out.append({"prompt": x[i], "response_a": a, "response_b": b, "winner": "tie"})
    return out


@rule(
    "unified_reward",
    "construction",
    data="pairwise verdicts within groups and a pointwise score per candidate",
    aliases=("point_sift_pair_rank",),
)
def unified_reward_pairs(group, first, second, first_won, scores) -> pd.DataFrame:
    """One (chosen, rejected) pair per group: pair-ranking splits winners from losers, point-sifting picks the ends.

    Pair ranking: every judged pair sends its winner to the group's *chosen* list and its loser to the
    *rejected* list. Point sifting: the chosen answer is the highest-scored member of the chosen list, the
    rejected answer the lowest-scored member of the rejected list (a candidate on both lists may be either):

    .. math::

        y^+ = \\arg\\max_{y \\in W_g} s(y),\\qquad y^- = \\arg\\min_{y \\in L_g} s(y),\\qquad y^+ \\ne y^-

    Wang, Zang, Ding, Wang et al. (2025), "Unified Reward Model for Multimodal Understanding and Generation"
    (UnifiedReward's preference-data construction). ``group``, ``first``, ``second`` (candidate ids, integers
    indexing ``scores``), ``first_won`` (bool): ``[m]`` pairwise verdicts; ``scores``: ``[K]`` pointwise scores.
    Returns a DataFrame ``group, chosen, rejected`` (groups where no distinct pair exists are left out; ties
    of scores keep the lower id).
    """
    g = np.asarray(group)
    a, b = np.asarray(first, dtype=int), np.asarray(second, dtype=int)
    won = np.asarray(first_won, dtype=bool)
    s = np.asarray(scores, dtype=float)
    if not (len(g) == len(a) == len(b) == len(won)) or len(g) == 0:
        raise InputError("group, first, second and first_won must be non-empty and of one length")
    if min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= len(s) or not np.all(np.isfinite(s)):
        raise InputError(f"candidate ids must index scores (0..{len(s) - 1}) and scores must be finite")
    win_c, lose_c = np.where(won, a, b), np.where(won, b, a)
    rows = []
    for key, idx in pd.Series(np.arange(len(g))).groupby(g, sort=True).indices.items():
        wins, losses = np.unique(win_c[idx]), np.unique(lose_c[idx])  # sorted ids: ties keep the lower id
        best, worst = wins[np.argmax(s[wins])], losses[np.argmin(s[losses])]
        if best != worst:
            rows.append((key, int(best), int(worst)))
            continue
        # the same candidate tops both lists: keep whichever runner-up leaves the larger score gap
        other_w, other_l = wins[wins != best], losses[losses != worst]
        options = []
        if len(other_w):
            c = other_w[np.argmax(s[other_w])]
            options.append((s[c] - s[worst], int(c), int(worst)))
        if len(other_l):
            r = other_l[np.argmin(s[other_l])]
            options.append((s[best] - s[r], int(best), int(r)))
        if options:
            _, c, r = max(options, key=lambda o: o[0])
            rows.append((key, c, r))
    return pd.DataFrame(rows, columns=["group", "chosen", "rejected"])


@rule(
    "verified_pairs",
    "construction",
    Option("max_pairs", int, Interval(1, None), none=True, doc="pairs kept per group (random subset)"),
    data="group id and verifier outcome (correct or not) per sampled solution",
    aliases=("outcome_verified_pairs",),
)
def verified_pairs(group, correct, *, max_pairs: int | None = None, seed=None) -> np.ndarray:
    """(correct, incorrect) solution pairs within each problem: ``[n, 2]`` row indices (chosen, rejected).

    .. math::

        \\{(i, j) : g_i = g_j,\\; v_i = 1,\\; v_j = 0\\}

    The outcome-verified pairs of iterative reasoning preference optimisation (Pang et al. 2024, "Iterative
    Reasoning Preference Optimization"): a verifier (the final answer checked against the reference, unit tests)
    decides, not a judge. ``max_pairs`` keeps a uniform random subset per group. Groups with only correct or
    only incorrect solutions give no pair.
    """
    g = np.asarray(group)
    v = np.asarray(correct)
    if g.shape != v.shape or g.ndim != 1:
        raise InputError(f"group and correct must be 1-d of one length, got {g.shape} and {v.shape}")
    if v.dtype != bool and not np.isin(v, (0, 1)).all():
        raise InputError("correct must be booleans (or 0/1): the verifier's verdict per solution")
    v = v.astype(bool)
    frame = pd.DataFrame({"g": g, "i": np.arange(len(g))})
    pairs = frame[v].merge(frame[~v], on="g", suffixes=("_c", "_r"))
    if max_pairs is not None and len(pairs):
        rng = as_rng(seed)
        pairs = pairs.assign(u=rng.random(len(pairs))).sort_values(["g", "u"]).groupby("g").head(max_pairs)
        pairs = pairs.sort_values(["i_c", "i_r"])
    return pairs[["i_c", "i_r"]].to_numpy(dtype=int).reshape(-1, 2)
