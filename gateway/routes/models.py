"""GET /v1/models and /v1/models/{id}: the one model this server serves."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from sluicegate.gateway import errors
from sluicegate.gateway.protocol import ModelCard, ModelList
from sluicegate.gateway.state import AppState, Serving, check_api_key

router = APIRouter(dependencies=[Depends(check_api_key)])


def _card(state: AppState) -> ModelCard:
    max_len = getattr(state.engine, "max_model_len", None)
    return ModelCard(id=state.model_name, created=state.created, max_model_len=max_len)


@router.get("/v1/models")
async def list_models(state: Serving) -> ModelList:
    return ModelList(data=[_card(state)])


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, state: Serving) -> ModelCard:
    if model_id != state.model_name:
        raise errors.model_not_found(model_id)
    return _card(state)
