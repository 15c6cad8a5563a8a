"""Bus handlers: ``features.v1`` into decisions, ``model.promoted.v1`` into a model swap.

Replicas share ``inferencer.features`` (each bar is decided once, by whichever replica takes
it); every replica hears every promotion on a queue of its own, which goes away with it.
"""

from __future__ import annotations

import os
import socket
import uuid

import structlog

from common.bus import MessageBus
from common.contracts import Envelope, FeaturesV1, ModelPromotedV1

from .service import InferencerService

log = structlog.get_logger(__name__)

FEATURES_QUEUE = "inferencer.features"
MODELS_QUEUE = "inferencer.models"


def replica_queue(base: str) -> str:
    """A queue name of this process's own: host, pid and a random part (a pid repeats in containers)."""
    return f"{base}.{socket.gethostname()[:40]}.{os.getpid()}.{uuid.uuid4().hex[:8]}"


async def subscribe(bus: MessageBus, service: InferencerService) -> None:
    async def on_features(envelope: Envelope) -> None:
        if isinstance(envelope.payload, FeaturesV1):
            await service.on_features(envelope.payload)
        else:
            log.warning("inferencer.unexpected_message", queue=FEATURES_QUEUE, kind=envelope.kind)

    async def on_model(envelope: Envelope) -> None:
        if isinstance(envelope.payload, ModelPromotedV1):
            await service.on_promoted(envelope.payload)
        else:
            log.warning("inferencer.unexpected_message", queue=MODELS_QUEUE, kind=envelope.kind)

    await bus.subscribe(FEATURES_QUEUE, ["features.*.*"], on_features)
    await bus.subscribe(replica_queue(MODELS_QUEUE), ["model.promoted", "model.promoted.#"], on_model, transient=True)
