import pytest

from pairkit.arena import ArenaSettings, PairChooser, VoteStore, create_app
from pairkit.select import Pool

HOSTILE = [
    '<script>window.__xss = 1</script>',
    '<img src=x onerror="window.__xss = 2">',
    '![x](javascript:window.__xss=3) [click](javascript:window.__xss=4)',
    '"><svg onload=window.__xss=5>',
]


def candidate_rows(n_items=4, contexts=("p1", "p2", "p3"), texts=None):
    rows = []
    for c in contexts:
        for i in range(n_items):
            text = texts[i] if texts else f"answer **{i}** to {c}"
            rows.append({"context_id": c, "context": f"prompt {c}", "candidate_id": f"m{i}", "text": text})
    return rows


@pytest.fixture
def arena(tmp_path):
    """A store with two annotators and a chooser over 4 candidates in 3 prompts (18 pairs each)."""
    store = VoteStore(tmp_path / "arena.sqlite")
    rows = candidate_rows()
    store.set_candidates(rows)
    chooser = PairChooser(Pool.from_records(rows), "round_robin", seed=0)
    tokens = {name: store.add_annotator(name) for name in ("alice", "bob")}
    admin = store.new_admin_token()
    yield store, chooser, tokens, admin
    store.close()


@pytest.fixture
def client(arena):
    from fastapi.testclient import TestClient

    store, chooser, tokens, admin = arena
    app = create_app(store, chooser, ArenaSettings(quota=20, completion_code="C0DE"))
    with TestClient(app) as c:
        yield c, store, tokens, admin
