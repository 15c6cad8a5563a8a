"""HTTP routes of the inferencer: parse, call the service, map the result."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from common.contracts import Symbol
from common.db import SessionDep
from common.errors import Conflict, Unavailable

from .model import manifest_summary
from .repository import decisions
from .schemas import DecisionView, ModelView, PredictionView, PredictRequest
from .service import InferencerService


def inferencer_service(request: Request) -> InferencerService:
    service: InferencerService = request.app.state.inferencer
    return service


ServiceDep = Annotated[InferencerService, Depends(inferencer_service)]

router = APIRouter(prefix="/inference", tags=["inference"])


@router.post("/predict", response_model=PredictionView, summary="A decision for given or latest features, no trade")
async def predict(body: PredictRequest, service: ServiceDep) -> PredictionView:
    model = service.engine.model
    if model is None:
        raise Unavailable("no model is loaded yet (none promoted in the registry)")
    timeframe = body.timeframe or model.manifest.timeframe
    result = await service.predict(body.symbol, timeframe, body.features, body.position)
    if result is None:
        window = model.manifest.window
        given = (
            "the features given" if body.features is not None else f"the latest {timeframe} features of {body.symbol}"
        )
        raise Conflict(f"model {model.version} needs {window} rows; {given} have fewer")
    used, prediction, latest = result
    return PredictionView(
        symbol=body.symbol,
        model_id=used.manifest.model_id,
        model_version=used.version,
        action_index=prediction.action_index,
        target_exposure=prediction.target_exposure,
        confidence=prediction.confidence,
        value=prediction.value,
        probabilities=prediction.probabilities,
        source="latest" if latest else "given",
    )


@router.get("/model", response_model=ModelView, summary="The model being served")
async def model(service: ServiceDep) -> ModelView:
    current = service.engine.model
    return ModelView(loaded=current is not None, model=manifest_summary(current) if current else None)


@router.get("/decisions", response_model=list[DecisionView], summary="Decisions, newest first")
async def list_decisions(
    session: SessionDep,
    symbol: Annotated[Symbol | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DecisionView]:
    return [DecisionView.of(d) for d in await decisions(session, symbol, limit)]
