"""Async client for the Korea Investment & Securities (KIS) Open API (REST + WebSocket).

``KisClient`` (REST endpoints, typed results), ``KisWebSocket`` (real-time events), the
``TokenStore`` port with file/database/memory adapters, and the KIS error classes, all
following ``/work/shared/kis-api.md``. The simulator lives in ``common.kis.sim``.
"""

from common.kis.client import KisClient
from common.kis.errors import (
    KisConflict,
    KisError,
    KisInvalidInput,
    KisNotFound,
    KisOperational,
    KisRateLimited,
    KisRejected,
    KisUnavailable,
    MarketClosed,
    OrderOutcomeUnknown,
    SubscriptionLimitExceeded,
    TokenIssueThrottled,
)
from common.kis.models import (
    Balance,
    BalanceSummary,
    BookLevel,
    BuyingPower,
    DailyBar,
    DailyOrders,
    DailyOrdersSummary,
    Holding,
    MinuteBar,
    OrderAck,
    OrderBookSnapshot,
    OrderRecord,
    Quote,
)
from common.kis.realtime import (
    Connected,
    Disconnected,
    ExecutionNotice,
    KisEvent,
    MalformedFrame,
    OrderBookUpdate,
    Reconnecting,
    Subscription,
    SubscriptionFailed,
    TradeTick,
)
from common.kis.settings import KisDomain, KisSettings
from common.kis.tokens import DbTokenStore, FileTokenStore, MemoryTokenStore, StoredToken, TokenStore
from common.kis.websocket import KisWebSocket

__all__ = [
    "Balance",
    "BalanceSummary",
    "BookLevel",
    "BuyingPower",
    "Connected",
    "DailyBar",
    "DailyOrders",
    "DailyOrdersSummary",
    "DbTokenStore",
    "Disconnected",
    "ExecutionNotice",
    "FileTokenStore",
    "Holding",
    "KisClient",
    "KisConflict",
    "KisDomain",
    "KisError",
    "KisEvent",
    "KisInvalidInput",
    "KisNotFound",
    "KisOperational",
    "KisRateLimited",
    "KisRejected",
    "KisSettings",
    "KisUnavailable",
    "KisWebSocket",
    "MalformedFrame",
    "MarketClosed",
    "MemoryTokenStore",
    "MinuteBar",
    "OrderAck",
    "OrderBookSnapshot",
    "OrderBookUpdate",
    "OrderOutcomeUnknown",
    "OrderRecord",
    "Quote",
    "Reconnecting",
    "StoredToken",
    "Subscription",
    "SubscriptionFailed",
    "SubscriptionLimitExceeded",
    "TokenIssueThrottled",
    "TokenStore",
    "TradeTick",
]
