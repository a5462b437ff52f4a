"""pairkit.arena: a self-hosted web app for collecting human pairwise judgments, with a live leaderboard.

``pairkit arena serve CANDIDATES.jsonl --db arena.sqlite`` starts it; see :func:`create_app` for the routes,
:class:`VoteStore` for the SQLite vote store, :class:`PairChooser` for the pair choice and
:mod:`pairkit.arena.export` for the way votes become comparisons and preference pairs. The web parts need the
``arena`` extra (FastAPI, uvicorn, Jinja2), imported only when an app is created.
"""

from pairkit.arena.app import (
    ArenaSettings,
    create_app,
    render_markdown,
)
from pairkit.arena.board import (
    annotator_stats,
    krippendorff_alpha_nominal,
    leaderboard_summary,
    votes_to_separate,
)
from pairkit.arena.export import (
    LOG_COLUMNS,
    comparisons_frame,
    jsonl_bytes,
    preference_pairs,
    table_bytes,
    to_comparisons,
    votes_frame,
    write_jsonl,
    write_table,
)
from pairkit.arena.judging import (
    JudgeRun,
    judge_votes,
)
from pairkit.arena.pairs import (
    PAIR_SCORES,
    GoldPair,
    PairChooser,
    Proposal,
    VoteTally,
    gold_pairs,
)
from pairkit.arena.store import (
    JUDGE_PREFIX,
    OUTCOMES,
    Annotator,
    ArenaError,
    Assignment,
    ClosedPair,
    UnknownPair,
    VoteStore,
)

DEMO_CANDIDATES = "demo_candidates.jsonl"
"""Package data: a small set of candidate answers to try the arena on (``pairkit arena serve --demo``)."""


def demo_candidates_path():
    """Path of the embedded demo candidates."""
    from importlib.resources import files

    return files("pairkit.arena") / DEMO_CANDIDATES


__all__ = [
    "Annotator",
    "ArenaError",
    "ArenaSettings",
    "Assignment",
    "ClosedPair",
    "DEMO_CANDIDATES",
    "GoldPair",
    "JUDGE_PREFIX",
    "JudgeRun",
    "LOG_COLUMNS",
    "OUTCOMES",
    "PAIR_SCORES",
    "PairChooser",
    "Proposal",
    "UnknownPair",
    "VoteStore",
    "VoteTally",
    "annotator_stats",
    "comparisons_frame",
    "create_app",
    "demo_candidates_path",
    "gold_pairs",
    "jsonl_bytes",
    "judge_votes",
    "krippendorff_alpha_nominal",
    "leaderboard_summary",
    "preference_pairs",
    "render_markdown",
    "table_bytes",
    "to_comparisons",
    "votes_frame",
    "votes_to_separate",
    "write_jsonl",
    "write_table",
]
