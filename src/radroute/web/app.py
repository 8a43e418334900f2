"""The FastAPI application: the status and review pages, the REST API, authentication.

Pages are rendered on the server (Jinja2, autoescaped) with a little inline JavaScript; every
response carries a strict Content-Security-Policy whose nonce admits only that inline code.
"""
from __future__ import annotations

import asyncio
import secrets
import time
from contextlib import asynccontextmanager
from pathlib import Path as FilePath
from typing import Optional
from urllib.parse import parse_qsl

from fastapi import Body, FastAPI, Path, Query, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from radroute import __version__
from radroute.errors import InvalidConfigError
from radroute.routing.config import RouterConfig
from radroute.routing.journal import Journal, ReviewNotFound, ReviewSettled
from radroute.web.auth import SESSION_COOKIE, Authenticator, Identity
from radroute.web.review import LabelsNotAllowed, ReviewQueue, item_dict
from radroute.web.schemas import (Conflict, Health, Problem, Reason, ReviewAction, ReviewItem, State,
                                  Status, Unprocessable)
from radroute.web.status import status_view
from radroute.web.thumbnails import ThumbnailError, ThumbnailRenderer

#: largest id SQLite stores (a bigger one is simply not found)
MAX_ID = 2 ** 63 - 1
_UNAUTHORIZED = {401: {"model": Problem, "description": "no valid credentials"}}
_FORBIDDEN = {403: {"model": Problem, "description": "a cookie session without its CSRF token"}}
_NOT_FOUND = {404: {"model": Problem, "description": "no review queue entry with that id"}}
_UNPROCESSABLE = {422: {"model": Unprocessable, "description": "invalid request, or labels the model "
                        "does not have (``allowed`` lists every label per task)"}}
_OPENAPI_DESCRIPTION = """The status of a radroute router and its review queue.

Every route but `GET /healthz` needs credentials: `Authorization: Bearer <[web] token>`, HTTP
Basic with a `[[web.users]]` name and password, or the session cookie the login form sets
(state-changing requests then also need the `X-CSRF-Token` header of the page)."""


def _form(body: bytes) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (the last value of a repeated field wins)."""
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _local(target: str | None) -> str:
    """Where to go after signing in: a path on this site only (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def create_app(cfg: RouterConfig, journal: Journal | None = None, *, auth_key: bytes | None = None,
               thumbnail_workers: int = 1) -> FastAPI:
    """The web application for the router configured by ``cfg`` (its ``[web]`` section).

    ``journal``: an open journal to use (default: the router's, opened read-write beside it,
    closed with the application). Raises :class:`InvalidConfigError` without ``[web]``.
    """
    if cfg.web is None:
        raise InvalidConfigError('no [web] section: the web page needs [web] token = "..." or '
                                 "[[web.users]] entries", cfg.source_path)
    own_journal = journal is None
    journal = journal or Journal(cfg.spool)
    queue = ReviewQueue(cfg, journal)
    auth = Authenticator(cfg.web, auth_key)
    thumbnails = ThumbnailRenderer(FilePath(cfg.spool) / "web-cache", cfg.web.thumbnail_size,
                                   workers=thumbnail_workers)
    templates = Environment(loader=PackageLoader("radroute.web", "templates"),
                            autoescape=select_autoescape(default=True, default_for_string=True))
    templates.filters["when"] = lambda t: time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) if t else "-"

    @asynccontextmanager
    async def lifespan(_app):
        yield
        thumbnails.close()
        if own_journal:
            journal.close()

    app = FastAPI(title="radroute web", version=__version__, description=_OPENAPI_DESCRIPTION,
                  docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.journal, app.state.queue, app.state.auth = journal, queue, auth
    app.state.thumbnails = thumbnails

    # ---- authentication and headers ----------------------------------------------------------
    def page(request: Request, name: str, status_code: int = 200, **context) -> HTMLResponse:
        identity: Identity | None = getattr(request.state, "identity", None)
        csrf = auth.csrf_token(identity.session) if identity and identity.session else ""
        html = templates.get_template(name).render(
            nonce=request.state.nonce, identity=identity, csrf=csrf, path=request.url.path,
            review_pending=journal.status(0)["review"].get("pending", 0) if identity else 0, **context)
        return HTMLResponse(html, status_code)

    def wants_html(request: Request) -> bool:
        return (request.method == "GET" and not request.url.path.startswith("/api/")
                and "text/html" in request.headers.get("accept", ""))

    def unauthorized(request: Request, message: str | None = None) -> Response:
        if wants_html(request) or request.url.path == "/login":
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return page(request, "login.html", 401, next=_local(target), error=message)
        return JSONResponse({"detail": message or "authentication required"}, 401,
                            headers={"WWW-Authenticate": 'Bearer realm="radroute"'})

    @app.middleware("http")
    async def authenticate(request: Request, call_next):
        request.state.nonce = secrets.token_urlsafe(16)
        public = ((request.url.path == "/healthz" and request.method in ("GET", "HEAD"))
                  or (request.url.path == "/login" and request.method == "POST"))
        identity = None
        if not public:
            identity = await run_in_threadpool(auth.identify, request.headers.get("authorization"),
                                               request.cookies.get(SESSION_COOKIE))
        if public or identity is not None:
            request.state.identity = identity
            response = await call_next(request)
        else:
            response = unauthorized(request)
        nonce = request.state.nonce
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Content-Security-Policy"] = (
            f"default-src 'none'; img-src 'self'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}';"
            " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
        return response

    def check_csrf(request: Request, token: str | None) -> Response | None:
        if auth.check_csrf(request.state.identity, token):
            return None
        return JSONResponse({"detail": "missing or wrong CSRF token"}, 403)

    def by(request: Request) -> str:
        return request.state.identity.principal

    # ---- OpenAPI -----------------------------------------------------------------------------
    def openapi_schema() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer", "description": "[web] token"},
                "basic": {"type": "http", "scheme": "basic", "description": "[[web.users]]"}}
            schema["security"] = [{"bearer": []}, {"basic": []}]
            schema["paths"]["/healthz"]["get"]["security"] = []
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi_schema

    @app.get("/openapi.json", include_in_schema=False)
    def openapi_json() -> JSONResponse:
        return JSONResponse(app.openapi())

    # ---- sign in / out -----------------------------------------------------------------------
    @app.get("/healthz", response_model=Health, tags=["service"])
    def healthz() -> dict:
        """Liveness, without credentials."""
        return {"status": "ok"}

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = _form(await request.body())
        principal = await run_in_threadpool(auth.login, form.get("name", "").strip(), form.get("password", ""))
        if principal is None:
            await asyncio.sleep(1.0)  # slows guessing down
            return unauthorized(request, "wrong name, password or token")
        response = RedirectResponse(_local(form.get("next")), 303)
        response.set_cookie(SESSION_COOKIE, auth.session_cookie(principal),
                            max_age=int(auth.session_seconds), httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", path="/")
        return response

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        refused = check_csrf(request, _form(await request.body()).get("csrf"))
        if refused is not None:
            return refused
        response = RedirectResponse("/", 303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # ---- pages -------------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def status_page(request: Request) -> HTMLResponse:
        return page(request, "status.html", view=status_view(cfg, journal))

    def review_page(request: Request, reason: str | None, state: str, message: str | None = None,
                    status_code: int = 200) -> HTMLResponse:
        rows = queue.items(state, reason, limit=60)
        cards = [{"item": item_dict(r), "choices": queue.choices(r)} for r in rows]
        counts = journal.status(0)["review"]
        return page(request, "review.html", status_code, cards=cards, reason=reason, state=state,
                    counts=counts, message=message, route_after_review=cfg.route_after_review)

    @app.get("/review", response_class=HTMLResponse, include_in_schema=False)
    def review_html(request: Request, reason: Optional[Reason] = None,
                    state: State = "pending") -> HTMLResponse:
        return review_page(request, reason, state)

    @app.post("/review/{instance_id}", include_in_schema=False)
    async def review_form(request: Request, instance_id: int = Path(ge=1, le=MAX_ID)) -> Response:
        form = _form(await request.body())
        refused = check_csrf(request, form.get("csrf"))
        if refused is not None:
            return refused
        action = form.get("action")
        labels = {k[len("label:"):]: v for k, v in form.items() if k.startswith("label:") and v}
        kwargs = {"accept": {"accept": True}, "not_medical": {"not_medical": True},
                  "labels": {"labels": labels}}.get(action)
        if kwargs is None:
            return review_page(request, None, "pending", f"unknown action {action!r}", 422)
        try:
            await run_in_threadpool(lambda: queue.settle(instance_id, by=by(request), **kwargs))
        except ReviewNotFound:
            return review_page(request, None, "pending", f"no review entry {instance_id}", 404)
        except ReviewSettled as exc:
            return review_page(request, None, "pending",
                               f"entry {instance_id} was settled already by {exc.row.settled_by}", 409)
        except LabelsNotAllowed as exc:
            return review_page(request, None, "pending", str(exc), 422)
        return RedirectResponse(_local(form.get("next") or "/review"), 303)

    # ---- REST API ----------------------------------------------------------------------------
    @app.get("/api/status", response_model=Status, tags=["status"],
             responses={**_UNAUTHORIZED, **_UNPROCESSABLE})
    def api_status(recent: int = Query(10, ge=0, le=1000, description="recent errors to list")) -> dict:
        """The router's counts per state and destination and its recent errors: the JSON of
        ``radroute status --json``."""
        return journal.status(recent)

    @app.get("/api/review", response_model=list[ReviewItem], tags=["review"],
             responses={**_UNAUTHORIZED, **_UNPROCESSABLE})
    def api_review(reason: Optional[Reason] = Query(None, description="both when absent"),
                   state: State = Query("pending"), limit: int = Query(100, ge=1, le=1000),
                   offset: int = Query(0, ge=0, le=MAX_ID)) -> list[dict]:
        """The review queue, oldest first: abstained instances and tag-vs-prediction disagreements."""
        return [item_dict(r) for r in queue.items(state, reason, limit, offset)]

    @app.get("/api/review/{instance_id}", response_model=ReviewItem, tags=["review"],
             responses={**_UNAUTHORIZED, **_NOT_FOUND, **_UNPROCESSABLE})
    def api_review_item(instance_id: int = Path(ge=1, le=MAX_ID)):
        """One review queue entry."""
        try:
            return item_dict(queue.item(instance_id))
        except ReviewNotFound:
            return JSONResponse({"detail": f"no review entry {instance_id}"}, 404)

    @app.get("/api/review/{instance_id}/thumbnail.png", tags=["review"], response_class=Response,
             responses={200: {"content": {"image/png": {}}, "description": "the first frame, windowed "
                              "as the reader does"}, **_UNAUTHORIZED, **_NOT_FOUND, **_UNPROCESSABLE})
    def api_thumbnail(instance_id: int = Path(ge=1, le=MAX_ID)) -> Response:
        """A PNG of the instance (longer side ``[web] thumbnail_size``); 422 when it cannot be decoded."""
        try:
            row = queue.item(instance_id)
        except ReviewNotFound:
            return JSONResponse({"detail": f"no review entry {instance_id}"}, 404)
        try:
            png = thumbnails.png(row.spool_path)
        except ThumbnailError as exc:
            status = 404 if exc.error.get("type") == "not_found" else 422
            return JSONResponse({"detail": f"{exc.error.get('type')}: {exc.error.get('message')}"}, status)
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=86400"})

    @app.post("/api/review/{instance_id}", response_model=ReviewItem, tags=["review"],
              responses={400: {"model": Problem, "description": "the body is not JSON"},
                         **_UNAUTHORIZED, **_FORBIDDEN, **_NOT_FOUND,
                         409: {"model": Conflict, "description": "settled already"}, **_UNPROCESSABLE})
    def api_settle(request: Request, instance_id: int = Path(ge=1, le=MAX_ID),
                   action: ReviewAction = Body(...)):
        """Settle an entry: accept the prediction, give labels per task, or mark it "not a medical
        image". The first to settle an entry wins; later attempts get 409."""
        refused = check_csrf(request, request.headers.get("x-csrf-token"))
        if refused is not None:
            return refused
        try:
            row = queue.settle(instance_id, by=by(request), labels=action.labels, accept=action.accept,
                               not_medical=action.not_medical)
        except ReviewNotFound:
            return JSONResponse({"detail": f"no review entry {instance_id}"}, 404)
        except ReviewSettled as exc:
            return JSONResponse({"detail": f"settled already by {exc.row.settled_by}",
                                 "item": item_dict(exc.row)}, 409)
        except LabelsNotAllowed as exc:
            return JSONResponse({"detail": str(exc), "allowed": exc.allowed}, 422)
        return item_dict(row)

    @app.get("/api/labels.csv", tags=["review"], response_class=Response,
             responses={200: {"content": {"text/csv": {}}, "description": "columns path,patient_id and "
                              "one per task"}, **_UNAUTHORIZED})
    def api_labels() -> Response:
        """Every settled instance (but "not medical" ones) as a training manifest for
        ``radroute train --data labels.csv``: ``path`` (the spooled file), ``patient_id`` (the
        salted hash, for patient-grouped splits) and one column per task."""
        return Response(queue.labels_csv(), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="labels.csv"'})

    return app


__all__ = ["create_app"]
