"""The database layer shared by every service: engines, the request-owned session, the one
declarative ``Base``, the inbox for exactly-once consumers, and the packaged migrations."""

from common.db import (
    collection,  # noqa: F401 — registers the data collector's tables on Base
    processing,  # noqa: F401 — registers the data processor's tables on Base
)
from common.db.engine import create_engine, create_sessionmaker, is_unreachable, normalise_url, ping, redact_url
from common.db.inbox import InboxHandler, idempotent, prune_inbox
from common.db.migrate import downgrade, head_revisions, migrate
from common.db.models import (
    NAMING_CONVENTION,
    BarRecord,
    Base,
    FeatureRecord,
    KisToken,
    ProcessedMessage,
    TickRecord,
    UtcDateTime,
    kis_token_key,
)
from common.db.session import SessionDep, get_session, write_transaction
from common.db.storage import StorageKind, storage_kind, timescale_available
from common.db.upsert import insert_ignoring_duplicates

__all__ = [
    "NAMING_CONVENTION",
    "BarRecord",
    "Base",
    "FeatureRecord",
    "InboxHandler",
    "KisToken",
    "ProcessedMessage",
    "SessionDep",
    "StorageKind",
    "TickRecord",
    "UtcDateTime",
    "create_engine",
    "create_sessionmaker",
    "downgrade",
    "get_session",
    "head_revisions",
    "idempotent",
    "insert_ignoring_duplicates",
    "is_unreachable",
    "kis_token_key",
    "migrate",
    "normalise_url",
    "ping",
    "prune_inbox",
    "redact_url",
    "storage_kind",
    "timescale_available",
    "write_transaction",
]
