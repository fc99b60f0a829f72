"""Liveness (/health: the process answers), readiness (/ready: 503 while loading or draining) and
Prometheus metrics (/metrics). None of these need the API key: probes and scrapers call them."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from sluicegate.gateway.state import app_state

router = APIRouter()


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready")
async def ready(request: Request) -> JSONResponse:
    state = app_state(request)
    if state.accepting():
        return JSONResponse({"status": "ready", "model": state.model_name})
    status = "draining" if state.draining else ("failed" if state.load_error else "loading")
    body = {"status": status, "error": state.load_error} if state.load_error else {"status": status}
    return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    state = app_state(request)
    state.metrics.refresh_engine(state.engine if state.ready else None, state.accepting())
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
