"""The review page's routes (Starlette): login, the list, a contribution, its pictures, and
the forms that append decisions.

Every route but the login form answers only with a live session: without one, a page is a
303 to /login and anything else (pictures, forms) a 401, both with an empty body.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from starlette.concurrency import run_in_threadpool

from pcir_upload.repository.review import decisions, pages, render, views
from pcir_upload.repository.review.identity import UNKNOWN, Verdict, compare, person_strings
from pcir_upload.repository.review.auth import COOKIE, IDLE, Session, Sessions, csrf_ok
from pcir_upload.repository.review.cleaning import check_redaction, current_path, reclean, redacted_page
from pcir_upload.repository.review.decisions import Log
from pcir_upload.repository.review.index import DOCUMENT, IMAGE, Index, Summary, kind, load_report
from pcir_upload.repository.review.release import NotCleaned, refresh, release_document, release_image

MAX_FORM = 16 * 1024
FAILED_LOGIN_DELAY = 1.0
HEADERS = {"Content-Security-Policy": pages.CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-store", "X-Frame-Options": "DENY", "Cross-Origin-Resource-Policy": "same-origin"}


class Review:
    """The state one `pcir-upload review` holds: the index, the log, the sessions."""

    def __init__(self, out: Path, secret: str, unpacked: Path | None = None):
        self.out = out
        self.unpacked = unpacked  # the originals, for whose documents these are
        self.verdicts: dict[tuple[str, str], Verdict] = {}
        self.index = Index(out)
        self.log = Log(out)
        self.sessions = Sessions(secret)
        self.releasing = threading.Lock()  # one release at a time rewrites the DICOMDIR


def _html(text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status, headers=HEADERS)


def _png(data: bytes) -> Response:
    return Response(data, media_type="image/png", headers=HEADERS)


def _nothing(request: Request) -> Response:
    """No session: a page goes to the login form, anything else is refused, and neither says more."""
    if request.method == "GET" and not request.url.path.endswith(".png"):
        return Response(status_code=303, headers={**HEADERS, "Location": "/login"})
    return Response(status_code=401, headers=HEADERS)


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_FORM:
        return {}
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}


def _session(request: Request) -> Session | None:
    return request.app.state.review.sessions.get(request.cookies.get(COOKIE))


def _contribution(request: Request) -> tuple[Summary, dict[str, Any]] | None:
    review: Review = request.app.state.review
    summary = review.index.get(request.path_params["cid"])
    return (summary, load_report(review.out, summary.cid)) if summary else None


def _entry(report: dict[str, Any], request: Request) -> dict[str, Any] | None:
    n = request.path_params["n"]
    files = report["files"]
    return files[n] if 0 <= n < len(files) and files[n]["outcome"] == "review" else None


def _shown(request: Request, wanted: str) -> tuple[Summary, dict[str, Any]] | None:
    """The contribution and the file in review that the address names, if it is a `wanted` one
    (an image's address never shows a document, nor the other way round)."""
    found = _contribution(request)
    entry = _entry(found[1], request) if found else None
    if found is None or entry is None or kind(found[0].cid, entry) != wanted:
        return None
    return found[0], entry


async def login_form(request: Request) -> Response:
    return _html(pages.login())


async def login(request: Request) -> Response:
    form = await _form(request)
    sid = request.app.state.review.sessions.login(form.get("token", ""), form.get("operator", ""))
    if sid is None:
        await asyncio.sleep(FAILED_LOGIN_DELAY)  # a guess a second, at most, per connection
        return _html(pages.login("That token is not right, or the name is missing."), 403)
    response = RedirectResponse("/", 303, headers=HEADERS)
    response.set_cookie(COOKIE, sid, max_age=IDLE, httponly=True, samesite="strict", path="/",
                        secure=request.url.scheme == "https")
    return response


Handler = Callable[[Request, Session, dict[str, str]], Awaitable[Response]]


def guarded(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """The session check every route but the login form goes through; POSTs also need the CSRF token."""

    async def endpoint(request: Request) -> Response:
        session = _session(request)
        if session is None:
            return _nothing(request)
        form: dict[str, str] = {}
        if request.method == "POST":
            form = await _form(request)
            if not csrf_ok(session, form.get("csrf", "")):
                return Response("The form is out of date: go back and reload the page.", 403, headers=HEADERS)
        return await handler(request, session, form)

    endpoint.__name__ = handler.__name__
    return endpoint


@guarded
async def logout(request: Request, session: Session, form: dict[str, str]) -> Response:
    request.app.state.review.sessions.logout(request.cookies.get(COOKIE))
    response = RedirectResponse("/login", 303, headers=HEADERS)
    response.delete_cookie(COOKIE, path="/")
    return response


@guarded
async def contributions(request: Request, session: Session, form: dict[str, str]) -> Response:
    review: Review = request.app.state.review
    try:
        page = int(request.query_params.get("page", "1"))
    except ValueError:
        page = 1
    return _html(views.contributions(list(review.index.contributions.values()), review.log.state, page,
                                     request.query_params.get("sort", "waiting"), session.operator, session.csrf))


def _show(request: Request, session: Session, error: str = "", status: int = 200) -> Response:
    review: Review = request.app.state.review
    found = _contribution(request)
    if found is None:
        return _html(pages.layout("Not found", "<h1>No such contribution</h1>", session.operator, session.csrf), 404)
    summary, report = found
    verdicts = None if review.unpacked is None else \
        {path: verdict for (cid, path), verdict in review.verdicts.items() if cid == summary.cid}
    return _html(views.contribution(review.out, summary, report, review.log.contribution(summary.cid),
                                    review.log.entries(summary.cid), session.operator, session.csrf, verdicts, error),
                 status)


def _read_documents(review: Review, cid: str, report: dict[str, Any]) -> None:
    """OCR of the documents' pages against the originals' patient, once per document."""
    if review.unpacked is None:
        return
    documents = [f for f in report["files"] if f["outcome"] == "review" and kind(cid, f) == DOCUMENT
                 and (cid, f["path"]) not in review.verdicts]
    if not documents:
        return
    try:
        person = person_strings(review.unpacked, cid)
    except (OSError, ValueError) as exc:
        person, problem = set(), f"the originals could not be read: {exc}"
    else:
        problem = ""
    for entry in documents:
        source = review.out / entry["to"]
        try:
            pictures = [render.page_png(source, n) for n in range(render.page_count(source))]
            verdict = compare(pictures, person) if person else Verdict(UNKNOWN, problem or "the originals name no patient")
        except Exception as exc:  # noqa: BLE001 - a document that cannot be read is told, not fatal
            verdict = Verdict(UNKNOWN, f"the document could not be rendered: {type(exc).__name__}")
        review.verdicts[(cid, entry["path"])] = verdict


@guarded
async def contribution(request: Request, session: Session, form: dict[str, str]) -> Response:
    found = _contribution(request)
    if found is not None:
        await run_in_threadpool(_read_documents, request.app.state.review, found[0].cid, found[1])
    return _show(request, session)


@guarded
async def image(request: Request, session: Session, form: dict[str, str]) -> Response:
    review: Review = request.app.state.review
    shown = _shown(request, IMAGE)
    if shown is None:
        return Response(status_code=404, headers=HEADERS)
    summary, entry = shown
    state = review.log.contribution(summary.cid).files.get(entry["path"])
    path = current_path(review.out, summary.cid, entry, state.boxes if state else [])
    if not path.exists():
        return Response(status_code=404, headers=HEADERS)
    strip = request.url.path.split("/")[3] == "strip"
    return _png(await run_in_threadpool(render.strip_png if strip else render.dicom_png, path))


@guarded
async def page(request: Request, session: Session, form: dict[str, str]) -> Response:
    review: Review = request.app.state.review
    shown = _shown(request, DOCUMENT)
    if shown is None:
        return Response(status_code=404, headers=HEADERS)
    summary, entry = shown
    state = review.log.contribution(summary.cid).files.get(entry["path"])
    try:  # as it will be released: the redactions black, never the page under them
        return _png(await run_in_threadpool(redacted_page, review.out, entry, request.path_params["page"],
                                            state.boxes if state else []))
    except (IndexError, OSError):
        return Response(status_code=404, headers=HEADERS)


def _back(cid: str, n: int | None = None) -> Response:
    anchor = f"#file-{n}" if n is not None else ""
    return RedirectResponse(f"/c/{quote(cid, safe='')}{anchor}", 303, headers=HEADERS)


@guarded
async def decide(request: Request, session: Session, form: dict[str, str]) -> Response:
    """Accept or reject one file; accept only what may leave review/."""
    review: Review = request.app.state.review
    found = _contribution(request)
    entry = _entry(found[1], request) if found else None
    if found is None or entry is None:
        return Response(status_code=404, headers=HEADERS)
    summary, report = found
    action = request.path_params["action"]
    if action not in (decisions.ACCEPT, decisions.REJECT):
        return Response(status_code=404, headers=HEADERS)
    why = form.get("why", "").strip()
    state = review.log.contribution(summary.cid)
    if not why:
        return _show(request, session, "Say why: every decision is recorded with its reason.", 400)
    decided = state.files.get(entry["path"])
    if state.rejected or (decided and (decided.released_to or decided.decision == decisions.REJECT)):
        return _show(request, session, "That file is no longer waiting for a decision: a rejection is final.", 409)
    if action == decisions.ACCEPT and (kind(summary.cid, entry) not in (IMAGE, DOCUMENT) or report.get("identity_problem")):
        return _show(request, session, "This file cannot be accepted: it is not a cleaned image or a document.", 409)
    review.log.append(session.operator, action, summary.cid, why, file=entry["path"])
    return _back(summary.cid, request.path_params["n"])


@guarded
async def boxes(request: Request, session: Session, form: dict[str, str]) -> Response:
    """The operator's box joins the file's boxes: an image is cleaned again with them all, a
    document's pages are from then on shown and released with them black."""
    review: Review = request.app.state.review
    found = _contribution(request)
    entry = _entry(found[1], request) if found else None
    what = kind(found[0].cid, entry) if found and entry else None
    if found is None or entry is None or what not in (IMAGE, DOCUMENT):
        return Response(status_code=404, headers=HEADERS)
    summary = found[0]
    why = form.get("why", "").strip()
    names = ("page", "x", "y", "w", "h") if what == DOCUMENT else ("x", "y", "w", "h")
    try:
        box = {name: int(form.get(name, "")) for name in names}
    except ValueError:
        return _show(request, session, f"{', '.join(names)} must be whole numbers.", 400)
    if not why:
        return _show(request, session, "Say why: every decision is recorded with its reason.", 400)
    state = review.log.contribution(summary.cid).file(entry["path"])
    if state.released_to or state.decision == decisions.REJECT or review.log.contribution(summary.cid).rejected:
        return _show(request, session, "That file is no longer waiting for a decision.", 409)
    if what == IMAGE:
        box["frame"] = -1
    drawn = [*state.boxes, box]
    try:  # on the event loop, not a thread: the boxes read above are still the file's when the line is appended
        if what == IMAGE:
            reclean(review.out, summary.cid, entry, drawn)
        else:
            check_redaction(review.out, entry, box)
    except ValueError as exc:
        return _show(request, session, str(exc), 400)
    review.log.append(session.operator, decisions.BOXES if what == IMAGE else decisions.REDACT, summary.cid, why,
                      file=entry["path"], boxes=drawn)
    return _back(summary.cid, request.path_params["n"])


@guarded
async def reject_contribution(request: Request, session: Session, form: dict[str, str]) -> Response:
    review: Review = request.app.state.review
    found = _contribution(request)
    if found is None:
        return Response(status_code=404, headers=HEADERS)
    why = form.get("why", "").strip()
    if not why:
        return _show(request, session, "Say why the contribution is rejected.", 400)
    review.log.append(session.operator, decisions.REJECT_CONTRIBUTION, found[0].cid, why)
    return _back(found[0].cid)


@guarded
async def release(request: Request, session: Session, form: dict[str, str]) -> Response:
    """Every accepted file of the contribution into released/; then the DICOMDIR and manifest."""
    review: Review = request.app.state.review
    found = _contribution(request)
    if found is None:
        return Response(status_code=404, headers=HEADERS)
    summary, report = found
    why = form.get("why", "").strip() or "accepted after review"
    released: dict[str, list[str]] = {}
    with review.releasing:
        state = review.log.contribution(summary.cid)
        if state.rejected:
            return _show(request, session, "The contribution was rejected: nothing is released.", 409)
        try:
            for entry in report["files"]:
                file_state = state.files.get(entry["path"])
                if entry["outcome"] != "review" or not file_state or file_state.decision != decisions.ACCEPT \
                        or file_state.released_to:
                    continue
                if kind(summary.cid, entry) == IMAGE:
                    released[entry["path"]] = [release_image(review.out, summary.cid, summary.subject, entry, file_state.boxes)]
                elif kind(summary.cid, entry) == DOCUMENT:
                    released[entry["path"]] = release_document(review.out, summary.cid, summary.subject, entry,
                                                                file_state.boxes)
        except NotCleaned as exc:
            return _show(request, session, str(exc), 409)
        finally:
            if released:  # what moved is recorded even when a later file failed
                review.log.append(session.operator, decisions.RELEASE, summary.cid, why, released=released)
        if not released:
            return _show(request, session, "Nothing accepted waits to be released.", 409)
        refresh(review.out)
    return _back(summary.cid)


async def _not_found(request: Request, exc: Exception) -> Response:
    """Unknown addresses say nothing either, to whoever has no session."""
    if _session(request) is None:
        return _nothing(request)
    return Response(status_code=getattr(exc, "status_code", 404), headers=HEADERS)


def app(out: Path, secret: str, unpacked: Path | None = None) -> Starlette:
    routes = [
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/", contributions, methods=["GET"]),
        Route("/c/{cid}", contribution, methods=["GET"]),
        Route("/c/{cid}/image/{n:int}.png", image, methods=["GET"]),
        Route("/c/{cid}/strip/{n:int}.png", image, methods=["GET"]),
        Route("/c/{cid}/page/{n:int}/{page:int}.png", page, methods=["GET"]),
        Route("/c/{cid}/file/{n:int}/boxes", boxes, methods=["POST"]),
        Route("/c/{cid}/file/{n:int}/{action:str}", decide, methods=["POST"]),
        Route("/c/{cid}/reject", reject_contribution, methods=["POST"]),
        Route("/c/{cid}/release", release, methods=["POST"]),
    ]
    application = Starlette(routes=routes, exception_handlers={404: _not_found, 405: _not_found})
    application.state.review = Review(out, secret, unpacked)
    return application
