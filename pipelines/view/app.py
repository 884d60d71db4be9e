"""The page's app: the page, its JSON, and the task that follows the run's files.

Behind the service's guards (:func:`lc_async_pipelines.service.secured_app`):
loopback Host names only unless a token is set; with a token, everything
but the page and ``/healthz`` needs it; the same CSP and headers. The page
polls ``/api/state`` and the table's page each second; it has no script or
style from anywhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from lc_async_pipelines.service import ServiceSettings, secured_app
from lc_async_pipelines.view.watch import RunWatch

__all__ = ["create_view_app", "view_page"]

log = logging.getLogger("lc_async_pipelines.view")

_REFRESH_S = 1.0
router = APIRouter()


def view_page() -> str:
    """Return the page's HTML (its script and style inline, allowed by hash in the CSP)."""
    return resources.files("lc_async_pipelines").joinpath("static/view.html").read_text("utf-8")


async def follow(watch: RunWatch, poll_s: float) -> None:
    """Read the run's files for ever: the records as they grow, the sidecars each second."""
    refreshed = -_REFRESH_S
    while True:
        more = await asyncio.to_thread(watch.step)
        if time.monotonic() - refreshed >= _REFRESH_S or not more:
            await asyncio.to_thread(watch.refresh)
            refreshed = time.monotonic()
        if not more:
            await asyncio.sleep(poll_s)


def create_view_app(
    output: Path, *, settings: ServiceSettings | None = None, poll_s: float = 0.5
) -> FastAPI:
    """Build the app of ``pipelines view OUTPUT``.

    Args:
        output: the run's ``--output`` (records, or a table whose records are beside it).
        settings: token, hosts and limits (default :meth:`ServiceSettings.from_env`).
        poll_s: seconds between reads once the records are read to their end.

    Returns:
        A FastAPI app; serve it with :func:`lc_async_pipelines.service.serve`.
        Its ``state.watch`` is the :class:`RunWatch` it answers from.
    """
    settings = settings or ServiceSettings.from_env()
    watch = RunWatch(output)
    html = view_page()  # read once: the page served is the one the CSP hashes

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(follow(watch, poll_s))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = secured_app(
        settings,
        pages=[html],
        title=f"pipelines view {output.name}",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.watch = watch
    app.state.page = html
    app.include_router(router)
    return app


def _watch(request: Request) -> RunWatch:
    watch: RunWatch = request.app.state.watch
    return watch


@router.get("/", response_class=HTMLResponse)
async def page(request: Request) -> HTMLResponse:
    """The page."""
    return HTMLResponse(request.app.state.page)


@router.get("/healthz")
async def healthz(request: Request) -> dict[str, Any]:
    """Liveness, and whether the rest needs the bearer token."""
    return {"status": "ok", "token_required": request.app.state.settings.api_token is not None}


@router.get("/api/state")
async def state(request: Request) -> dict[str, Any]:
    """Everything the page shows but the table (:meth:`RunWatch.state`)."""
    return await run_in_threadpool(_watch(request).state)


@router.get("/api/records")
async def records(
    request: Request,
    page: Annotated[int, Query(ge=1)] = 1,
    size: Annotated[int, Query(ge=1, le=200)] = 25,
    failed: bool = False,
) -> dict[str, Any]:
    """Page ``page`` of the records, ``size`` a page, failed ones only with ``failed``."""
    return await run_in_threadpool(_watch(request).page, page, size, failed_only=failed)


@router.get("/api/search")
async def search(
    request: Request,
    q: Annotated[str, Query(min_length=1, max_length=200)],
    start: Annotated[int, Query(ge=0)] = 0,
    size: Annotated[int, Query(ge=1, le=200)] = 25,
    failed: bool = False,
) -> dict[str, Any]:
    """Records whose id, input, output or error holds ``q``, from record ``start`` on.

    One request reads a bounded share of the file; ``next`` says where to go
    on (None: searched to the end of what is indexed).
    """
    found = await run_in_threadpool(_watch(request).search, q, start, size, failed_only=failed)
    return {"rows": found.rows, "next": found.next, "scanned": found.scanned}
