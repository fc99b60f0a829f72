"""Submitting a route's engine requests: engine refusals become HTTP errors (400/429)."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import Request

from sluicegate.gateway import errors
from sluicegate.gateway.generation import ClientDisconnected, Primed, open_streams, unless_disconnected
from sluicegate.gateway.state import AppState


async def submit(request: Request, state: AppState, prompt_ids: list[int], params: Sequence[object],
                 base_id: str) -> list[Primed]:
    """Submit one engine request per choice and wait for their first outputs; a client that goes
    away meanwhile ends them all (499, never read)."""
    try:
        return await unless_disconnected(
            request, open_streams(state.engine, prompt_ids, params, base_id, state.metrics))
    except ClientDisconnected:
        raise errors.APIError(499, "client disconnected") from None
    except Exception as exc:
        mapped = errors.from_engine_error(exc, state.settings.retry_after_s)
        if mapped is None:
            raise
        raise mapped from exc
