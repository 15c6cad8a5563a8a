"""Bus handlers: ``features.v1`` into decisions, ``model.promoted.v1`` into a model swap."""

from __future__ import annotations

from common.bus import MessageBus
from common.contracts import Envelope, FeaturesV1, ModelPromotedV1

from .service import InferencerService

FEATURES_QUEUE = "inferencer.features"
MODELS_QUEUE = "inferencer.models"


async def subscribe(bus: MessageBus, service: InferencerService) -> None:
    async def on_features(envelope: Envelope) -> None:
        if isinstance(envelope.payload, FeaturesV1):
            await service.on_features(envelope.payload)

    async def on_model(envelope: Envelope) -> None:
        if isinstance(envelope.payload, ModelPromotedV1):
            await service.on_promoted(envelope.payload)

    await bus.subscribe(FEATURES_QUEUE, ["features.*.*"], on_features)
    await bus.subscribe(MODELS_QUEUE, ["model.promoted", "model.promoted.#"], on_model)
