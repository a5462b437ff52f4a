"""pairkit.arena: a self-hosted web app for collecting human pairwise judgments, with a live leaderboard.

``pairkit arena serve CANDIDATES.jsonl --db arena.sqlite`` starts it; see :func:`create_app` for the routes,
:class:`VoteStore` for the SQLite vote store, :class:`PairChooser` for the pair choice and
:mod:`pairkit.arena.export` for the way votes become comparisons and preference pairs. The web parts need the
``arena`` extra (FastAPI, uvicorn, Jinja2), imported only when an app is created.
"""

from pairkit.arena import app as _app
from pairkit.arena import board as _board
from pairkit.arena import export as _export
from pairkit.arena import judging as _judging
from pairkit.arena import pairs as _pairs
from pairkit.arena import store as _store
from pairkit.arena.app import *  # noqa: F403
from pairkit.arena.board import *  # noqa: F403
from pairkit.arena.export import *  # noqa: F403
from pairkit.arena.judging import *  # noqa: F403
from pairkit.arena.pairs import *  # noqa: F403
from pairkit.arena.store import *  # noqa: F403

DEMO_CANDIDATES = "demo_candidates.jsonl"
"""Package data: a small set of candidate answers to try the arena on (``pairkit arena serve --demo``)."""


def demo_candidates_path():
    """Path of the embedded demo candidates."""
    from importlib.resources import files

    return files("pairkit.arena") / DEMO_CANDIDATES


__all__ = [
    "DEMO_CANDIDATES",
    "demo_candidates_path",
    *_app.__all__,
    *_board.__all__,
    *_export.__all__,
    *_judging.__all__,
    *_pairs.__all__,
    *_store.__all__,
]
