"""The one way out of the web app: the gateway's ``/api/v1``, with the session's token.

Every answer other than a 2xx becomes one of a few errors the pages know how to show:
the gateway not answering at all, the session no longer valid (back to the login page), a
role too small, invalid input (with the gateway's messages per field), or another refusal.
"""

from __future__ import annotations

from typing import Any

import httpx

API = "/api/v1"


class GatewayError(Exception):
    """A gateway call that did not succeed; ``message`` is fit to show the user."""

    status = 502

    def __init__(self, message: str, *, status: int | None = None, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        if status is not None:
            self.status = status


class GatewayUnreachable(GatewayError):
    """The gateway itself did not answer (down, refused, timed out)."""

    status = 503


class NotLoggedIn(GatewayError):
    """No session, or the gateway no longer accepts its token."""

    status = 401


class NotPermitted(GatewayError):
    """The user's role is not enough for this."""

    status = 403


class Invalid(GatewayError):
    """The gateway (or the service behind it) refused the input: 422 with per-field messages."""

    status = 422

    def field_errors(self) -> dict[str, str]:
        """``{"a3c.lr": "Input should be greater than 0", ...}`` from the platform's 422 detail."""
        errors: dict[str, str] = {}
        detail = self.detail
        if isinstance(detail, dict):
            detail = detail.get("errors", detail.get("detail"))
        if isinstance(detail, list):
            for item in detail:
                if not isinstance(item, dict):
                    continue
                loc = [str(p) for p in item.get("loc", []) if p not in ("body", "query", "path")]
                errors.setdefault(".".join(loc) or "_", str(item.get("msg", "invalid")))
        return errors


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def error_for(response: httpx.Response) -> GatewayError:
    body = _body(response)
    message = str(body.get("message") or body.get("detail") or response.reason_phrase or "request failed")
    detail = body.get("detail")
    status = response.status_code
    if status == 401:
        return NotLoggedIn("Your session has ended; please log in again.", detail=detail)
    if status == 403:
        return NotPermitted(message, detail=detail)
    if status == 422:
        return Invalid(message, detail=detail if detail is not None else body)
    if status == 429:
        retry = response.headers.get("Retry-After")
        wait = f" Try again in {retry} s." if retry else ""
        return GatewayError(f"Too many requests.{wait}", status=429, detail=detail)
    if status in (502, 503, 504):
        return GatewayError(message, status=503, detail=detail)
    return GatewayError(message, status=status if 400 <= status < 500 else 502, detail=detail)


class Gateway:
    """Calls the gateway on behalf of one user (``token``) or anonymously."""

    def __init__(self, client: httpx.AsyncClient, base_url: str) -> None:
        self.client = client
        self.base_url = base_url

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None,
        params: Any = None,
        json: Any = None,
        data: dict[str, str] | None = None,
    ) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            response = await self.client.request(
                method, f"{API}{path}", params=params, json=json, data=data, headers=headers
            )
        except httpx.HTTPError as exc:
            raise GatewayUnreachable(
                f"The API gateway at {self.base_url} is not answering ({type(exc).__name__}). "
                "Is it running? The page will work again as soon as it is."
            ) from exc
        if response.is_success:
            return response.json() if response.content else None
        raise error_for(response)

    async def get(self, path: str, *, token: str | None, params: Any = None) -> Any:
        return await self.call("GET", path, token=token, params=params)
