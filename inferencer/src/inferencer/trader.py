"""The trader as the inferencer sees it: one or several base URLs, the first that answers wins.

Several URLs are the trader's replicas (or a gateway in front of them): a replica that is
unreachable, or answers 503 (passive: another holds the account lease), passes the call to the
next one, and the one that answered is tried first next time. Every call carries the decision's
idempotency key, so asking a second replica after a timeout can never trade twice.
"""

from __future__ import annotations

from typing import Any

import httpx

ROLE_HEADERS = {"X-Tradebot-Role": "trader"}


class TraderClient:
    def __init__(self, clients: list[httpx.AsyncClient]) -> None:
        if not clients:
            raise ValueError("at least one trader client is needed")
        self._clients = clients
        self._preferred = 0

    @classmethod
    def for_urls(cls, urls: list[str], *, timeout: float, headers: dict[str, str] | None = None) -> TraderClient:
        return cls([httpx.AsyncClient(base_url=url, timeout=timeout, headers=headers) for url in urls])

    async def execute(self, body: dict[str, Any]) -> httpx.Response:
        """POST /trade/execute on the first replica that takes it; raises the last transport error."""
        error: httpx.TransportError | None = None
        count = len(self._clients)
        for offset in range(count):
            index = (self._preferred + offset) % count
            try:
                response = await self._clients[index].post("/trade/execute", json=body, headers=ROLE_HEADERS)
            except httpx.TransportError as e:
                error = e
                continue
            if response.status_code == 503 and offset < count - 1:
                continue
            self._preferred = index
            return response
        assert error is not None
        raise error

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()
