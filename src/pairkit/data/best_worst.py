"""Best–worst (MaxDiff) data: from "best and worst of this set" answers to pairwise comparisons and count scores.

A best–worst answer on a set S says that ``best`` beat every other item of S and that every item of S beat
``worst``. :func:`best_worst_comparisons` writes those implied pairs (best over each other item, each middle item
over worst; best over worst once) with the set as the cluster, so that the dependence of pairs from one answer
is carried to sandwich intervals and the cluster bootstrap. :func:`best_worst_scores` gives the classical
best-minus-worst count per appearance, which orders the items like the maxdiff model's strengths
(Marley & Louviere 2005).

References:
    Marley, A. A. J. & Louviere, J. J. (2005). Some probabilistic models of best, worst, and best–worst choices.
    Journal of Mathematical Psychology 49(6).
    Louviere, J. J., Flynn, T. N. & Marley, A. A. J. (2015). Best-Worst Scaling: Theory, Methods and
    Applications. Cambridge University Press.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pairkit._lazy import pandas as pd
from pairkit.data.comparisons import Comparisons
from pairkit.errors import InputError

__all__ = ["best_worst_comparisons", "best_worst_scores"]


def _flatten(sets: Sequence[Sequence], best: Sequence, worst: Sequence, source: str):
    """(set id per entry, item per entry, best per set, worst per set), validated, names as strings."""
    if not (len(sets) == len(best) == len(worst)):
        raise InputError(f"{source}: sets, best and worst must have equal lengths: {len(sets)}, {len(best)}, "
                         f"{len(worst)}")
    if not len(sets):
        raise InputError(f"{source}: no best–worst answers")
    shown = pd.Series(list(sets), dtype=object).explode()
    if shown.isna().any():
        k = int(shown.index[shown.isna()][0])
        raise InputError(f"{source}, answer {k + 1}: an empty set (or a missing item)")
    set_id = shown.index.to_numpy(dtype=np.int64)
    item = shown.astype(str).str.strip().to_numpy()
    best = np.asarray([str(x).strip() for x in best], dtype=object)
    worst = np.asarray([str(x).strip() for x in worst], dtype=object)
    frame = pd.DataFrame({"set": set_id, "item": item})
    dup = frame.duplicated().to_numpy()
    if dup.any():
        k = int(np.argmax(dup))
        raise InputError(f"{source}, answer {set_id[k] + 1}: item {item[k]!r} is shown twice in one set")
    size = np.bincount(set_id, minlength=len(best))
    for name, chosen in (("best", best), ("worst", worst)):
        inside = np.bincount(set_id, item == chosen[set_id], len(best)) > 0
        if not inside.all():
            k = int(np.argmin(inside))
            raise InputError(f"{source}, answer {k + 1}: {name} {chosen[k]!r} is not one of the items shown")
    bad = (size < 2) | (best == worst)
    if bad.any():
        k = int(np.argmax(bad))
        raise InputError(f"{source}, answer {k + 1}: best and worst must be two different items of a set of 2 or more")
    return set_id, item, best, worst


def best_worst_comparisons(
    sets: Sequence[Sequence], best: Sequence, worst: Sequence, *, source: str = "best–worst answers"
) -> Comparisons:
    """Pairwise comparisons implied by best–worst answers, clustered by answer.

    .. math::

        \\text{best} \\succ j \\ \\ (j \\in S \\setminus \\{\\text{best}\\}),\\qquad
        j \\succ \\text{worst} \\ \\ (j \\in S \\setminus \\{\\text{best}, \\text{worst}\\})

    Args:
        sets: R sets of items shown (names), each with at least two items.
        best, worst: (R,) the item chosen as best and as worst in each set.

    Returns:
        :class:`Comparisons` with ``a`` the preferred item (outcome 1) and ``cluster`` the answer index; an answer
        on a set of size s gives ``2s − 3`` pairs.
    """
    set_id, item, best, worst = _flatten(sets, best, worst, source)
    is_best = item == best[set_id]
    is_worst = item == worst[set_id]
    over_best = ~is_best  # best beats every other shown item
    middle = ~is_best & ~is_worst  # middle items beat worst
    winners = np.concatenate([best[set_id[over_best]], item[middle]])
    losers = np.concatenate([item[over_best], worst[set_id[middle]]])
    clusters = np.concatenate([set_id[over_best], set_id[middle]])
    return Comparisons.from_arrays(winners, losers, cluster=clusters, source=source)


def best_worst_scores(sets: Sequence[Sequence], best: Sequence, worst: Sequence) -> pd.DataFrame:
    """Best-minus-worst count scores: ``(#best − #worst) / #shown`` per item, best first.

    Columns ``item``, ``best``, ``worst``, ``shown``, ``score`` (in [−1, 1]).
    """
    set_id, item, best, worst = _flatten(sets, best, worst, "best–worst answers")
    names, code = np.unique(item, return_inverse=True)
    index = pd.Index(names)
    n = len(names)
    shown = np.bincount(code, minlength=n)
    n_best = np.bincount(index.get_indexer(best), minlength=n)
    n_worst = np.bincount(index.get_indexer(worst), minlength=n)
    frame = pd.DataFrame({"item": names, "best": n_best, "worst": n_worst, "shown": shown,
                          "score": (n_best - n_worst) / shown})
    return frame.sort_values(["score", "item"], ascending=[False, True], kind="stable").reset_index(drop=True)
