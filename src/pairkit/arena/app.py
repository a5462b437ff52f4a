"""The arena's web app: FastAPI routes over a :class:`~pairkit.arena.store.VoteStore` and a pair chooser.

Annotators open ``/a/<token>`` (their private link): the page shows the prompt and two anonymised answers
(markdown rendered with raw HTML escaped), takes a vote as a plain form POST and redirects back, so a reload,
a closed tab or a server restart continues where they were. The owner opens ``/admin/<token>``: the
leaderboard, refreshed live through server-sent events, and the annotators' statistics.

Safe by default: tokens are compared as digests in constant time; every form carries a CSRF token; request
bodies are size-limited; a Content-Security-Policy allows only the arena's own script; an annotator can only
see and vote on their own pairs.
"""


import asyncio
import math
import threading
from dataclasses import dataclass
from typing import Annotated, Any

from pairkit._optional import requires
from pairkit.arena.board import annotator_stats, leaderboard_summary
from pairkit.arena.pairs import PairChooser, VoteTally
from pairkit.arena.store import Annotator, ArenaError, Assignment, VoteStore
from pairkit.select import Pool

__all__ = ["ArenaSettings", "create_app", "render_markdown"]

PROLIFIC_PARAMS = ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID")
OUTCOME_CHOICES = {
    "left": ("left", 1), "left:2": ("left", 2), "right": ("right", 1), "right:2": ("right", 2),
    "tie": ("tie", 1), "both_bad": ("both_bad", 1), "skip": ("skip", 1),
}
EXPORT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


@dataclass
class ArenaSettings:
    """Options of one arena.

    Args:
        title: shown on every page.
        quota: votes per annotator (skips not counted) unless their own quota says otherwise; None: no quota.
        reveal: show which models the answers came from after each vote.
        completion_code: shown when an annotator is done (e.g. a Prolific completion code).
        prior: virtual games per item in the leaderboard fit (0: the MLE, with a warning when it does not exist).
        level: coverage of the leaderboard's intervals.
        max_body: largest request body accepted, in bytes.
        max_reason: longest free-text reason accepted, in characters.
    """

    title: str = "pairkit arena"
    quota: int | None = None
    reveal: bool = False
    completion_code: str | None = None
    prior: float = 0.0
    level: float = 0.95
    max_body: int = 32_768
    max_reason: int = 2_000
    poll_seconds: float = 0.25


def render_markdown(text: str | None) -> str:
    """Markdown → HTML with raw HTML escaped and only safe link/image schemes (markdown-it-py, CommonMark)."""
    with requires("arena", "the arena's markdown rendering"):
        from markdown_it import MarkdownIt

    global _MD
    if _MD is None:
        _MD = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
    return _MD.render(text or "")


_MD = None


def _templates():
    with requires("arena", "the arena's pages"):
        import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pairkit.arena", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["markdown"] = lambda text: jinja2.utils.markupsafe.Markup(render_markdown(text))
    env.filters["num"] = _num
    return env


def _num(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}"


def create_app(store: VoteStore, chooser: PairChooser, settings: ArenaSettings | None = None):
    """The FastAPI application of one arena (serve it with uvicorn)."""
    with requires("arena", "the arena's web app"):
        from fastapi import FastAPI, Form, Request
        from fastapi.responses import (
            HTMLResponse,
            JSONResponse,
            PlainTextResponse,
            RedirectResponse,
            Response,
            StreamingResponse,
        )
        from fastapi.staticfiles import StaticFiles

    settings = settings or ArenaSettings()
    env = _templates()
    pool: Pool = chooser.pool
    texts = {(r["context_id"], r["candidate_id"]): r["text"] for r in store.candidates()}
    choose_lock = threading.Lock()
    tally = VoteTally(pool)  # kept in memory, read forward from the log: a new pair costs no re-tally
    board_cache: dict[str, Any] = {}
    board_lock = threading.Lock()

    app = FastAPI(title=settings.title, docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(packages=[("pairkit.arena", "static")]), name="static")

    def page(name: str, status: int = 200, **context) -> HTMLResponse:
        html = env.get_template(name).render(title=settings.title, **context)
        return HTMLResponse(html, status_code=status)

    def wants_json(request: Request) -> bool:
        return "application/json" in request.headers.get("accept", "")

    def refuse(request: Request, status: int, message: str):
        if wants_json(request):
            return JSONResponse({"error": message}, status_code=status)
        return page("error.html", status=status, message=message)

    app.add_middleware(_Guard, max_body=settings.max_body)

    @app.exception_handler(ArenaError)
    async def arena_error(request: Request, exc: ArenaError):
        return refuse(request, exc.status, str(exc))

    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz() -> str:
        return "ok"

    # ---------------------------------------------------------------- annotators
    def annotator(token: str) -> Annotator:
        found = store.annotator_by_token(token)
        if found is None:
            raise _Forbidden("unknown or revoked annotator link; ask the arena's owner for your private link")
        return found

    @app.exception_handler(_Forbidden)
    async def forbidden(request: Request, exc: _Forbidden):
        return refuse(request, 403, str(exc))

    def quota_of(who: Annotator) -> int | None:
        return who.quota if who.quota is not None else settings.quota

    def current(who: Annotator) -> Assignment | None:
        open_now = store.open_assignment(who.id)
        if open_now is not None:
            return open_now
        with choose_lock:  # one chooser at a time: two annotators never get the same pending pair
            proposal = chooser.next(
                who.id,
                tally.sync(store),
                store.pending(),
                store.annotator_pairs(who.id),
                history=lambda: store.votes(annotator_id=who.id),
            )
            if proposal is None:
                return None
            return store.assign(
                who.id,
                pool.contexts[proposal.context],
                pool.items[proposal.left],
                pool.items[proposal.right],
                kind=proposal.kind,
                expected=proposal.expected,
                more=[pool.items[m] for m in proposal.more],
            )

    def vote_state(token: str, who: Annotator) -> dict[str, Any]:
        done = store.n_votes(who.id)
        quota = quota_of(who)
        last = store.last_vote(who.id)
        state: dict[str, Any] = {
            "token": token, "done": done, "quota": quota, "csrf": store.csrf_token(str(who.id)),
            "can_undo": last is not None, "reveal": None, "finished": False, "assignment": None,
        }
        if settings.reveal and last is not None and last["kind"] == "normal":
            state["reveal"] = {"left": last["left_id"], "right": last["right_id"], "outcome": last["outcome"]}
        if quota is not None and done >= quota:
            state["finished"] = True
            return state
        a = current(who)
        if a is None:
            state["finished"] = True
            return state
        c = pool.contexts.index(a.context_id)
        state["assignment"] = {
            "id": a.id,
            "context": pool.context_text[c],
            "reference": pool.references[c] if pool.references else None,
            "left": texts[(a.context_id, a.left_id)],
            "right": texts[(a.context_id, a.right_id)],
            "answers": [texts[(a.context_id, item)] for item in a.items] if a.is_battle else None,
        }
        return state

    @app.get("/a/{token}", response_class=HTMLResponse)
    def vote_page(token: str, request: Request):
        who = annotator(token)
        params = {k: request.query_params[k][:200] for k in PROLIFIC_PARAMS if k in request.query_params}
        if params and any(who.params.get(k) != v for k, v in params.items()):
            store.update_annotator_params(who.id, params)
        state = vote_state(token, who)
        if state["finished"]:
            return page("done.html", code=settings.completion_code, **state)
        return page("vote.html", **state)

    @app.get("/a/{token}/state")
    def vote_json(token: str):
        """The annotator's current pair as JSON (for scripted clients and the load test): ids stay hidden."""
        who = annotator(token)
        return vote_state(token, who)

    def signed(token: str, csrf: str, again: str = "") -> Annotator:
        """The annotator of ``token`` if the form's CSRF token is theirs."""
        who = annotator(token)
        if not store.check_csrf(str(who.id), csrf):
            raise _Forbidden(f"the form's CSRF token is not valid for this link; reload the page{again}")
        return who

    def check_reason(reason: str) -> str:
        if len(reason) > settings.max_reason:
            raise ArenaError(f"the reason has {len(reason)} characters; at most {settings.max_reason} are kept")
        return reason.strip()

    def answered(request: Request, token: str, stored: bool, vote_id: str):
        if wants_json(request):
            return {"stored": stored, "vote_id": vote_id}
        return RedirectResponse(f"/a/{token}", status_code=303)

    def prolific(who: Annotator) -> dict[str, str]:
        return {k: v for k, v in who.params.items() if k in PROLIFIC_PARAMS}

    @app.post("/a/{token}/vote")
    def vote(
        token: str,
        request: Request,
        vote_id: str = Form(..., max_length=64),
        outcome: str = Form(..., max_length=16),
        csrf: str = Form(..., max_length=128),
        reason: str = Form("", max_length=100_000),
    ):
        who = signed(token, csrf, " and vote again")
        if outcome not in OUTCOME_CHOICES:
            raise ArenaError(f"outcome must be one of {', '.join(OUTCOME_CHOICES)}; got {outcome[:20]!r}")
        reason = check_reason(reason)
        label, strength = OUTCOME_CHOICES[outcome]
        stored = store.record_vote(vote_id, who.id, label, strength=strength, reason=reason, params=prolific(who))
        return answered(request, token, stored, vote_id)

    @app.post("/a/{token}/rank")
    def rank(
        token: str,
        request: Request,
        rank: Annotated[list[str], Form(max_length=8)],  # at most 8 answers per battle
        vote_id: str = Form(..., max_length=64),
        csrf: str = Form(..., max_length=128),
        reason: str = Form("", max_length=100_000),
    ):
        """The ranking of a K-wise battle: one ``rank`` field per answer, in the order shown (1 = best)."""
        who = signed(token, csrf, " and rank again")
        stored = store.record_ranking(vote_id, who.id, rank, reason=check_reason(reason), params=prolific(who))
        return answered(request, token, stored, vote_id)

    @app.post("/a/{token}/undo")
    def undo(token: str, request: Request, csrf: str = Form(..., max_length=128)):
        who = signed(token, csrf)
        again = store.undo_last(who.id)
        if wants_json(request):
            return {"undone": again is not None}
        return RedirectResponse(f"/a/{token}", status_code=303)

    # ---------------------------------------------------------------- the owner
    def admin(token: str) -> None:
        if not store.check_admin(token):
            raise _Forbidden("unknown admin link; `pairkit arena admin --db ...` issues a new one")

    def board_state() -> dict[str, Any]:
        with board_lock:
            version = store.version
            if board_cache.get("version") != version:
                votes = store.votes()
                board_cache.update(
                    version=version,
                    board=leaderboard_summary(votes, pool.items, prior=settings.prior, level=settings.level),
                    stats=annotator_stats(store.votes(include_undone=True)),
                )
            return board_cache

    @app.get("/admin/{token}", response_class=HTMLResponse)
    def admin_page(token: str):
        admin(token)
        state = board_state()
        return page("admin.html", token=token, board=state["board"], stats=state["stats"], version=state["version"])

    @app.get("/admin/{token}/board", response_class=HTMLResponse)
    def admin_board(token: str):
        admin(token)
        state = board_state()
        return page("_board.html", board=state["board"], stats=state["stats"], version=state["version"])

    @app.get("/admin/{token}/leaderboard.json")
    def admin_json(token: str):
        admin(token)
        board = board_state()["board"]
        return JSONResponse(_jsonable({k: v for k, v in board.items() if k != "board"}))

    @app.get("/admin/{token}/export/{name}")
    def admin_export(token: str, name: str):
        """Downloads: ``comparisons.{csv,jsonl,parquet}``, ``pairs.jsonl``, ``votes.{csv,jsonl,parquet}``."""
        from pairkit.arena.export import comparisons_frame, jsonl_bytes, preference_pairs, table_bytes, votes_frame

        admin(token)
        stem, _, suffix = name.partition(".")
        if stem == "pairs" and suffix == "jsonl":
            body = jsonl_bytes(preference_pairs(store.votes(), store.candidates()))
        elif stem in ("comparisons", "votes") and suffix in EXPORT_TYPES:
            if stem == "comparisons":
                frame = comparisons_frame(store.votes())
            else:
                frame = votes_frame(store.votes(include_undone=True))
            body = table_bytes(frame, "." + suffix)
        else:
            raise ArenaError(
                f"no export {name!r}; choose comparisons.{{csv,jsonl,parquet}}, pairs.jsonl or votes.{{csv,jsonl,"
                "parquet}"
            )
        return Response(
            body,
            media_type=EXPORT_TYPES.get(suffix, "application/octet-stream"),
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @app.get("/admin/{token}/events")
    async def admin_events(token: str, request: Request):
        admin(token)

        async def stream():
            seen = None
            idle = 0.0
            while not await request.is_disconnected():
                if store.version != seen:
                    seen = store.version
                    idle = 0.0
                    yield f"event: update\ndata: {seen}\n\n"
                elif idle >= 15:
                    idle = 0.0
                    yield ": keep-alive\n\n"
                await asyncio.sleep(settings.poll_seconds)
                idle += settings.poll_seconds

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"})

    app.state.store = store
    app.state.chooser = chooser
    app.state.settings = settings
    return app


class _Forbidden(Exception):
    pass


_SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),  # private links never leak through a Referer
]


class _Guard:
    """Body-size limit and security headers as a plain ASGI middleware.

    Starlette's ``@app.middleware("http")`` wraps every response in extra streams and tasks; under 50 concurrent
    annotators that overhead alone was a large share of each request's time.
    """

    def __init__(self, app, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "POST":
            length = dict(scope["headers"]).get(b"content-length")
            refusal = None
            if length is None:
                refusal = (411, "a Content-Length header is required")
            elif not length.isdigit() or int(length) > self.max_body:
                refusal = (413, f"request body too large ({length.decode(errors='replace')} bytes; at most "
                           f"{self.max_body})")
            if refusal is not None:
                await _plain(send, *refusal)
                return
        cache = not scope["path"].startswith("/static")

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", [])) + _SECURITY_HEADERS
                if cache:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _plain(send, status: int, text: str) -> None:
    body = text.encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
               *_SECURITY_HEADERS]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _jsonable(value: Any) -> Any:
    """JSON-safe copy: numpy scalars as Python numbers, non-finite floats as null."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
