"""The arena's vote store: one SQLite file in WAL mode holding candidates, annotators, assignments and votes.

The same discipline as the judges' :class:`~pairkit.judges.JudgmentCache`: one connection behind a lock, every
write committed (``synchronous=FULL``) before the caller acknowledges it, so a server killed at any moment
loses no acknowledged vote and a restart continues where everyone was.

* An *assignment* is a pair shown to one annotator, with the sides as displayed (``left_id`` first).
* A *vote* answers an assignment; its id **is** the assignment id, so submitting twice is harmless.
* Undo marks the last vote ``undone`` (it stays in the log) and shows the same pair, same sides, again.
* Tokens (one per annotator, one admin token) are random, stored only as SHA-256 digests and compared in
  constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pairkit.errors import InputError

__all__ = [
    "JUDGE_PREFIX",
    "OUTCOMES",
    "Annotator",
    "ArenaError",
    "Assignment",
    "ClosedPair",
    "UnknownPair",
    "VoteStore",
]

OUTCOMES = ("left", "right", "tie", "both_bad", "skip")
"""What an annotator can answer: the answer shown on the left (A) or right (B) is better, a tie, both bad,
or skip (no judgment)."""

JUDGE_PREFIX = "judge:"
"""Annotator names of LLM judges voting in the arena (:func:`pairkit.arena.judge_votes`); their votes are compared
with the humans' but kept out of the leaderboard and the pair choice."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS candidates (
    context_id TEXT NOT NULL, candidate_id TEXT NOT NULL, context TEXT NOT NULL, text TEXT NOT NULL,
    reference TEXT, position INTEGER NOT NULL, PRIMARY KEY (context_id, candidate_id));
CREATE TABLE IF NOT EXISTS annotators (
    id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, token_hash TEXT UNIQUE NOT NULL, quota INTEGER,
    created REAL NOT NULL, params TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS assignments (
    id TEXT PRIMARY KEY, annotator_id INTEGER NOT NULL, context_id TEXT NOT NULL, left_id TEXT NOT NULL,
    right_id TEXT NOT NULL, kind TEXT NOT NULL, expected TEXT, shown_at REAL NOT NULL,
    closed INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS assignments_open ON assignments (annotator_id, closed);
CREATE TABLE IF NOT EXISTS votes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, vote_id TEXT UNIQUE NOT NULL, annotator_id INTEGER NOT NULL,
    context_id TEXT NOT NULL, left_id TEXT NOT NULL, right_id TEXT NOT NULL, outcome TEXT NOT NULL,
    strength INTEGER NOT NULL DEFAULT 1, reason TEXT, kind TEXT NOT NULL, expected TEXT, shown_at REAL NOT NULL,
    voted_at REAL NOT NULL, latency_ms REAL NOT NULL, undone INTEGER NOT NULL DEFAULT 0,
    params TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS votes_annotator ON votes (annotator_id, undone);
CREATE INDEX IF NOT EXISTS votes_undone ON votes (undone);
"""

_INSERT_VOTE = (
    "INSERT INTO votes (vote_id, annotator_id, context_id, left_id, right_id, outcome, strength, reason, kind, "
    "expected, shown_at, voted_at, latency_ms, params) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class ArenaError(InputError):
    """A request the arena refuses; ``status`` is the HTTP status the web app answers with."""

    status = 400


class UnknownPair(ArenaError):
    """The vote names a pair that was never shown to this annotator."""

    status = 404


class ClosedPair(ArenaError):
    """The pair was closed (answered then undone, or replaced) and takes no more votes."""

    status = 409


@dataclass(frozen=True)
class Annotator:
    id: int
    name: str
    quota: int | None
    params: dict[str, Any]


@dataclass(frozen=True)
class Assignment:
    """A pair shown to one annotator: ``left_id`` is displayed first (as A), ``right_id`` second (as B)."""

    id: str
    annotator_id: int
    context_id: str
    left_id: str
    right_id: str
    kind: str  # "normal", "gold" (known answer) or "repeat" (a consistency check)
    expected: str | None
    shown_at: float
    items: tuple[str, ...] = ()  # a K-wise battle: every candidate shown, in display order (``()`` for a pair)

    @property
    def is_battle(self) -> bool:
        return len(self.items) > 2


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class VoteStore:
    """The SQLite vote store of one arena (``path=":memory:"`` for tests)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._lock = threading.RLock()
        self.version = 0  # bumped on every vote and undo: the live leaderboard's change signal
        self._secret: bytes | None = None
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            if self.path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # an acknowledged vote survives a crash
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(assignments)")}
            if "items" not in columns:  # a database from before K-wise battles
                self._db.execute("ALTER TABLE assignments ADD COLUMN items TEXT")
        except sqlite3.Error as exc:
            raise InputError(f"cannot open arena database {self.path!r}: {exc}; pass a writable file path") from None
        self.version = self._scalar("SELECT COUNT(*) FROM votes") + self._scalar(
            "SELECT COUNT(*) FROM votes WHERE undone = 1"
        )

    # ------------------------------------------------------------------ plumbing
    def _scalar(self, sql: str, args: Sequence = ()) -> Any:
        with self._lock:
            row = self._db.execute(sql, args).fetchone()
        return None if row is None else row[0]

    def _rows(self, sql: str, args: Sequence = ()) -> list[sqlite3.Row]:
        with self._lock:
            cur = self._db.execute(sql, args)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]

    def _transaction(self, *, durable: bool = True):
        return _Transaction(self, durable)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def meta(self, key: str) -> str | None:
        return self._scalar("SELECT value FROM meta WHERE key = ?", (key,))

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    @property
    def secret(self) -> bytes:
        """A random per-arena secret (CSRF tokens are HMACs of it); created on first use."""
        if self._secret is None:
            with self._lock:
                value = self.meta("secret")
                if value is None:
                    value = secrets.token_hex(32)
                    self.set_meta("secret", value)
                self._secret = bytes.fromhex(value)
        return self._secret

    # ------------------------------------------------------------------ candidates
    def set_candidates(self, rows: Sequence[Mapping[str, Any]], *, source: str = "candidates") -> None:
        """Store the candidates on first use; later, check that the same candidates are given.

        An arena's votes refer to these texts, so serving the same database with other candidates is refused.
        """
        fresh = [
            (
                str(r["context_id"]),
                str(r["candidate_id"]),
                str(r.get("context", r["context_id"])),
                str(r["text"]),
                None if r.get("reference") is None else str(r["reference"]),
                k,
            )
            for k, r in enumerate(rows)
        ]
        with self._transaction() as db:
            stored = db.execute(
                "SELECT context_id, candidate_id, context, text, reference, position FROM candidates "
                "ORDER BY position"
            ).fetchall()
            if not stored:
                db.executemany("INSERT INTO candidates VALUES (?, ?, ?, ?, ?, ?)", fresh)
                return
        if sorted(x[:5] for x in stored) != sorted(x[:5] for x in fresh):
            old = {x[:2] for x in stored}
            new = {x[:2] for x in fresh}
            raise InputError(
                f"{source}: the arena database {self.path!r} was started with other candidates "
                f"({len(old)} stored, {len(new)} given, {len(old ^ new)} (context, candidate) keys differ or texts "
                "changed); serve it without a candidates file to continue, or use a new --db"
            )

    def candidates(self) -> list[dict[str, Any]]:
        """The stored candidate rows in their original order."""
        rows = self._rows(
            "SELECT context_id, candidate_id, context, text, reference FROM candidates ORDER BY position"
        )
        for row in rows:
            if row["reference"] is None:
                del row["reference"]
        return rows

    # ------------------------------------------------------------------ tokens and annotators
    def add_annotator(self, name: str, *, quota: int | None = None) -> str:
        """Register an annotator; returns their private token (only its digest is stored)."""
        name = str(name).strip()
        if not name:
            raise InputError("annotator name must not be empty")
        if quota is not None and quota < 1:
            raise InputError(f"--quota must be an integer >= 1, got {quota}")
        token = secrets.token_urlsafe(24)
        try:
            with self._lock:
                self._db.execute(
                    "INSERT INTO annotators (name, token_hash, quota, created) VALUES (?, ?, ?, ?)",
                    (name, hash_token(token), quota, time.time()),
                )
        except sqlite3.IntegrityError:
            raise InputError(
                f"annotator {name!r} already exists in {self.path!r}; choose another name "
                "(tokens are stored hashed and cannot be shown again)"
            ) from None
        return token

    def annotators(self) -> list[Annotator]:
        return [
            Annotator(r["id"], r["name"], r["quota"], json.loads(r["params"]))
            for r in self._rows("SELECT id, name, quota, params FROM annotators ORDER BY id")
        ]

    def annotator_by_token(self, token: str) -> Annotator | None:
        """The annotator holding ``token``, or None (digests compared in constant time)."""
        digest = hash_token(token)
        rows = self._rows("SELECT id, name, quota, params, token_hash FROM annotators WHERE token_hash = ?", (digest,))
        if not rows or not hmac.compare_digest(rows[0]["token_hash"], digest):
            return None
        r = rows[0]
        return Annotator(r["id"], r["name"], r["quota"], json.loads(r["params"]))

    def update_annotator_params(self, annotator_id: int, params: Mapping[str, str]) -> None:
        """Merge URL parameters (e.g. Prolific's participant, study and session ids) into the annotator's."""
        with self._transaction() as db:
            old = json.loads(db.execute("SELECT params FROM annotators WHERE id = ?", (annotator_id,)).fetchone()[0])
            db.execute("UPDATE annotators SET params = ? WHERE id = ?", (json.dumps({**old, **params}), annotator_id))

    def new_admin_token(self) -> str:
        """Issue a new admin token (the previous one stops working)."""
        token = secrets.token_urlsafe(24)
        self.set_meta("admin_token_hash", hash_token(token))
        return token

    def has_admin(self) -> bool:
        return self.meta("admin_token_hash") is not None

    def check_admin(self, token: str) -> bool:
        stored = self.meta("admin_token_hash")
        return stored is not None and hmac.compare_digest(stored, hash_token(token))

    def csrf_token(self, scope: str) -> str:
        """The CSRF token of a session scope (an annotator id or "admin"): an HMAC of the arena's secret."""
        return hmac.new(self.secret, f"csrf:{scope}".encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, scope: str, token: str) -> bool:
        return hmac.compare_digest(self.csrf_token(scope), str(token))

    # ------------------------------------------------------------------ assignments
    def open_assignment(self, annotator_id: int) -> Assignment | None:
        """The pair the annotator is looking at (the latest unanswered one), or None."""
        rows = self._rows(
            "SELECT * FROM assignments WHERE annotator_id = ? AND closed = 0 ORDER BY shown_at DESC, rowid DESC "
            "LIMIT 1",
            (annotator_id,),
        )
        return None if not rows else _assignment(rows[0])

    def assign(
        self,
        annotator_id: int,
        context_id: str,
        left_id: str,
        right_id: str,
        *,
        kind: str = "normal",
        expected: str | None = None,
        more: Sequence[str] = (),
    ) -> Assignment:
        """Show a pair to an annotator (closing any pair they left unanswered); ``more``: further candidates shown
        after the first two, making a K-wise battle that is answered with :meth:`record_ranking`."""
        items = (left_id, right_id, *more) if more else ()
        if len(set(items)) != len(items):
            raise ArenaError(f"a battle shows each candidate once; got {list(items)}")
        a = Assignment(
            uuid.uuid4().hex, annotator_id, context_id, left_id, right_id, kind, expected, time.time(), tuple(items)
        )
        with self._transaction(durable=False) as db:
            db.execute("UPDATE assignments SET closed = 1 WHERE annotator_id = ? AND closed = 0", (annotator_id,))
            db.execute(
                "INSERT INTO assignments (id, annotator_id, context_id, left_id, right_id, kind, expected, shown_at, "
                "closed, items) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
                (a.id, a.annotator_id, a.context_id, a.left_id, a.right_id, a.kind, a.expected, a.shown_at,
                 json.dumps(list(items)) if items else None),
            )
        return a

    def pending(self) -> list[dict[str, Any]]:
        """Open assignments of everyone (pairs being looked at right now)."""
        return self._rows("SELECT annotator_id, context_id, left_id, right_id FROM assignments WHERE closed = 0")

    # ------------------------------------------------------------------ votes
    def record_vote(
        self,
        vote_id: str,
        annotator_id: int,
        outcome: str,
        *,
        strength: int = 1,
        reason: str | None = None,
        params: Mapping[str, str] | None = None,
    ) -> bool:
        """Store a vote on the annotator's assignment ``vote_id``; returns False if it was already stored.

        Raises :class:`UnknownPair` (never shown to this annotator) or :class:`ClosedPair` (closed unanswered, or
        its vote undone).
        """
        if outcome not in OUTCOMES:
            raise ArenaError(f"outcome must be one of {', '.join(OUTCOMES)}; got {outcome!r}")
        if strength not in (1, 2):
            raise ArenaError(f"strength must be 1 (better) or 2 (much better); got {strength!r}")
        now = time.time()
        with self._transaction() as db:
            row = db.execute(
                "SELECT id, annotator_id, context_id, left_id, right_id, kind, expected, shown_at, closed, items "
                "FROM assignments WHERE id = ?",
                (vote_id,),
            ).fetchone()
            if row is None or row[1] != annotator_id:  # an annotator sees only their own pairs
                raise UnknownPair(f"no pair {vote_id!r} was shown to you; reload the page for your current pair")
            if row[9]:
                raise ArenaError(f"{vote_id!r} is a battle of {len(json.loads(row[9]))} answers: rank them instead")
            if _stored_before(db, vote_id, closed=bool(row[8]), what=f"pair {vote_id!r}"):
                return False
            db.execute(
                _INSERT_VOTE,
                (
                    vote_id, annotator_id, row[2], row[3], row[4], outcome,
                    strength if outcome in ("left", "right") else 1, reason or None, row[5], row[6], row[7], now,
                    1000.0 * (now - row[7]), json.dumps(dict(params or {})),
                ),
            )
            db.execute("UPDATE assignments SET closed = 1 WHERE id = ?", (vote_id,))
            self.version += 1
        return True

    def record_ranking(
        self,
        vote_id: str,
        annotator_id: int,
        ranks: Sequence[int],
        *,
        reason: str | None = None,
        params: Mapping[str, str] | None = None,
    ) -> bool:
        """Store the ranking of a K-wise battle: ``ranks[i]`` (1 = best; equal ranks tie) of the ``i``-th answer
        shown. Returns False if it was already stored.

        The ranking is stored as its K(K−1)/2 pairwise votes (rank breaking, as K-Sort Arena does), each with
        vote id ``<battle id>/<i>-<j>`` and the earlier-shown answer on the left, in one transaction: all or none.
        The pairs of one ranking are not independent; their shared battle id lets an analysis cluster them.
        """
        now = time.time()
        with self._transaction() as db:
            row = db.execute(
                "SELECT annotator_id, context_id, kind, shown_at, closed, items FROM assignments WHERE id = ?",
                (vote_id,),
            ).fetchone()
            if row is None or row[0] != annotator_id:
                raise UnknownPair(f"no battle {vote_id!r} was shown to you; reload the page for your current one")
            if not row[5]:
                raise ArenaError(f"{vote_id!r} is a pair, not a battle: vote left/right/tie instead")
            items = json.loads(row[5])
            try:
                ranks = [int(r) for r in ranks]
            except (TypeError, ValueError):
                raise ArenaError(f"ranks must be integers 1..{len(items)}; got {list(ranks)!r}") from None
            if len(ranks) != len(items) or not all(1 <= r <= len(items) for r in ranks):
                raise ArenaError(f"give one rank in 1..{len(items)} per answer ({len(items)} ranks); got {ranks}")
            if _stored_before(db, f"{vote_id}/0-1", closed=bool(row[4]), what=f"battle {vote_id!r}"):
                return False
            rows = []
            for i in range(len(items)):
                for j in range(i + 1, len(items)):
                    outcome = "left" if ranks[i] < ranks[j] else "right" if ranks[i] > ranks[j] else "tie"
                    rows.append((
                        f"{vote_id}/{i}-{j}", annotator_id, row[1], items[i], items[j], outcome, 1, reason or None,
                        row[2], None, row[3], now, 1000.0 * (now - row[3]), json.dumps(dict(params or {})),
                    ))
            db.executemany(
                _INSERT_VOTE,
                rows,
            )
            db.execute("UPDATE assignments SET closed = 1 WHERE id = ?", (vote_id,))
            self.version += 1
        return True

    def undo_last(self, annotator_id: int) -> Assignment | None:
        """Undo the annotator's last vote and show its pair again (same sides); None if nothing to undo."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT vote_id, context_id, left_id, right_id, kind, expected FROM votes "
                "WHERE annotator_id = ? AND undone = 0 ORDER BY seq DESC LIMIT 1",
                (annotator_id,),
            ).fetchone()
            if row is None:
                return None
            battle = row[0].split("/", 1)[0] if "/" in row[0] else None
            if battle is None:
                db.execute("UPDATE votes SET undone = 1 WHERE vote_id = ?", (row[0],))
                self.version += 1
                return self.assign(annotator_id, row[1], row[2], row[3], kind=row[4], expected=row[5])
            # A battle's ranking is undone whole, and the battle shown again in the same order.
            db.execute("UPDATE votes SET undone = 1 WHERE vote_id LIKE ? ESCAPE '\\'", (_like_prefix(battle),))
            items = json.loads(db.execute("SELECT items FROM assignments WHERE id = ?", (battle,)).fetchone()[0])
            self.version += 1
            return self.assign(annotator_id, row[1], items[0], items[1], kind=row[4], expected=row[5], more=items[2:])

    def n_votes(self, annotator_id: int) -> int:
        """Votes the annotator has made and not undone (skips not counted)."""
        return self._scalar(
            "SELECT COUNT(*) FROM votes WHERE annotator_id = ? AND undone = 0 AND outcome != 'skip' "
            "AND (instr(vote_id, '/') = 0 OR vote_id LIKE '%/0-1')",  # a battle's ranking counts once
            (annotator_id,),
        )

    def last_vote(self, annotator_id: int) -> dict[str, Any] | None:
        rows = self._rows(
            "SELECT * FROM votes WHERE annotator_id = ? AND undone = 0 ORDER BY seq DESC LIMIT 1", (annotator_id,)
        )
        return rows[0] if rows else None

    def votes(
        self, *, include_undone: bool = False, annotator_id: int | None = None, after: int = 0
    ) -> list[dict[str, Any]]:
        """The vote log, oldest first, with annotator names (``after``: only votes with ``seq`` above it)."""
        where, args = [], []
        if not include_undone:
            where.append("v.undone = 0")
        if annotator_id is not None:
            where.append("v.annotator_id = ?")
            args.append(annotator_id)
        if after:
            where.append("v.seq > ?")
            args.append(after)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        return self._rows(
            f"SELECT v.*, a.name AS annotator FROM votes v JOIN annotators a ON a.id = v.annotator_id {clause} "
            "ORDER BY v.seq",
            args,
        )

    def n_undone(self) -> int:
        """Votes undone so far (by any process on this database): a change means tallies must be rebuilt."""
        return self._scalar("SELECT COUNT(*) FROM votes WHERE undone = 1")

    def annotator_pairs(self, annotator_id: int) -> Iterable[tuple[str, str, str]]:
        """(context, left, right) of every pair this annotator was shown."""
        with self._lock:
            return self._db.execute(
                "SELECT context_id, left_id, right_id FROM assignments WHERE annotator_id = ?", (annotator_id,)
            ).fetchall()


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` under the store's lock (rolled back on error).

    ``durable=False`` commits without waiting for the disk (``synchronous=NORMAL`` in WAL mode: safe against a
    killed process, not against power loss). Used for showing a pair: losing one only means the annotator is
    shown another, while every vote commit still waits for the disk — and carries the pairs written before it.
    """

    def __init__(self, store: VoteStore, durable: bool = True) -> None:
        self.store = store
        self.relaxed = not durable and store.path != ":memory:"

    def __enter__(self) -> sqlite3.Connection:
        self.store._lock.acquire()
        self.depth = self.store._db.in_transaction
        if not self.depth:
            if self.relaxed:
                self.store._db.execute("PRAGMA synchronous=NORMAL")
            self.store._db.execute("BEGIN IMMEDIATE")
        return self.store._db

    def __exit__(self, kind, exc, tb) -> None:
        try:
            if not self.depth:
                self.store._db.execute("COMMIT" if kind is None else "ROLLBACK")
        finally:
            try:
                if not self.depth and self.relaxed:
                    self.store._db.execute("PRAGMA synchronous=FULL")
            finally:
                self.store._lock.release()


def _assignment(row: Mapping[str, Any]) -> Assignment:
    return Assignment(
        row["id"], row["annotator_id"], row["context_id"], row["left_id"], row["right_id"], row["kind"],
        row["expected"], row["shown_at"], tuple(json.loads(row["items"])) if row.get("items") else (),
    )


def _stored_before(db: sqlite3.Connection, key: str, *, closed: bool, what: str) -> bool:
    """True if the answer stored under ``key`` is there (a resubmission, harmless); raises :class:`ClosedPair` if
    it was undone, or if nothing is stored and the pair or battle was closed unanswered."""
    previous = db.execute("SELECT undone FROM votes WHERE vote_id = ?", (key,)).fetchone()
    if previous is not None:
        if previous[0]:
            raise ClosedPair(f"your answer to {what} was undone; answer the one shown again")
        return True
    if closed:
        raise ClosedPair(f"{what} is closed (another one replaced it); reload the page")
    return False


def _like_prefix(battle: str) -> str:
    """A LIKE pattern for the pairwise votes of one battle (``<battle>/...``), wildcards escaped."""
    return battle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/%"
