"""Schemathesis against the gateway's own OpenAPI document: no input, valid or not, gets a 5xx.

Everything runs on 127.0.0.1: the gateway (uvicorn, real socket) in front of echoing fake
services. Examples are bounded per operation so the run takes well under a couple of minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from pydantic import SecretStr
from schemathesis import GenerationMode

from api_gateway.app import build_gateway
from api_gateway.roles import Role
from common.runtime import Runtime
from common.settings import Mode, RuntimeSettings
from tests.api_gateway.conftest import SERVICES, fake_service, gateway_settings
from tests.api_gateway.test_openapi_and_health import TRADER_OPENAPI

MAX_EXAMPLES = 12


@contextlib.contextmanager
def running_gateway(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The gateway and fake services in a background event loop; yields (base URL, admin key)."""
    ready = threading.Event()
    found: dict[str, str] = {}
    problems: list[BaseException] = []
    stop: list[asyncio.Event] = []
    loop_holder: list[asyncio.AbstractEventLoop] = []

    async def main() -> None:
        stop.append(asyncio.Event())
        loop_holder.append(asyncio.get_running_loop())
        async with contextlib.AsyncExitStack() as stack:
            upstreams: dict[str, str | list[str]] = {}
            for name in SERVICES:
                openapi = TRADER_OPENAPI if name == "trader" else None
                _, url = await stack.enter_async_context(fake_service(name, openapi=openapi))
                upstreams[name] = url
            runtime_settings = RuntimeSettings(
                mode=Mode.ALLINONE, database_url=SecretStr(f"sqlite+aiosqlite:///{tmp_path / 'fuzz.db'}")
            )
            runtime = await stack.enter_async_context(Runtime.from_settings(runtime_settings))
            app = build_gateway(runtime, gateway_settings(upstreams))
            server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on"))
            task = asyncio.create_task(server.serve())
            while not server.started:
                if task.done():
                    await task
                await asyncio.sleep(0.02)
            async with runtime.sessionmaker() as session:
                created = await app.state.gateway.accounts.create_key(session, "fuzz", Role.ADMIN, "test")
                await session.commit()
            found["url"] = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
            found["key"] = created.plaintext
            ready.set()
            await stop[0].wait()
            server.should_exit = True
            await task

    def thread_main() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # reported to the test below
            problems.append(exc)
            ready.set()

    thread = threading.Thread(target=thread_main, name="gateway-under-fuzz", daemon=True)
    thread.start()
    assert ready.wait(60), "gateway did not start"
    if problems:
        raise problems[0]
    try:
        yield found["url"], found["key"]
    finally:
        loop_holder[0].call_soon_threadsafe(stop[0].set)
        thread.join(30)


@pytest.mark.timeout(240)
def test_no_generated_request_makes_the_gateway_answer_5xx(tmp_path: Path) -> None:
    with running_gateway(tmp_path) as (base_url, key):
        schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
        failures: list[str] = []
        statuses: list[int] = []
        operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
        assert len(operations) > 30
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                strategy = operation.as_strategy(generation_mode=mode)

                @settings(
                    max_examples=MAX_EXAMPLES,
                    deadline=None,
                    database=None,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck),
                )
                @given(case=strategy, authenticated=st.booleans())
                def call(case: schemathesis.Case[Any], authenticated: bool) -> None:
                    headers = {"X-API-Key": key} if authenticated else {}
                    response = case.call(base_url=base_url, headers=headers, timeout=30)
                    statuses.append(response.status_code)
                    if response.status_code >= 500:
                        failures.append(
                            f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:200]}"
                        )

                try:
                    call()
                except Unsatisfiable:
                    # Nothing to make invalid (an operation without parameters or body).
                    assert mode is GenerationMode.NEGATIVE, operation.label
        assert failures == []
        # The run really exercised the API: many calls, both refusals and successes.
        assert len(statuses) > 10 * len(operations)
        assert {401, 422} <= set(statuses) and 200 in statuses
