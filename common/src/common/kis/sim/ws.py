"""The real-time WebSocket side of the simulator (kis-api.md §5), one listener per domain, any path.

Clients subscribe with their approval key; the hub answers with the §5.3 acknowledgement,
streams ``0|H0STCNT0|NNN|…`` trades and ``0|H0STASP0|001|…`` books from the market's tick path,
pushes AES-256-CBC encrypted ``1|H0STCNI0|001|…`` (H0STCNI9 on paper) order/fill notices, and
sends a PINGPONG frame every ``ws_ping_interval_seconds``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import string
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import structlog
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from common.clock import to_kst
from common.kis.sim import views
from common.kis.sim.exchange import Notice
from common.kis.sim.settings import Domain
from common.kis.sim.state import SimState

log = structlog.get_logger(__name__)

TRADES = "H0STCNT0"
BOOK = "H0STASP0"
NOTICE_TR: dict[Domain, str] = {"real": "H0STCNI0", "paper": "H0STCNI9"}
# Overseas order notices exist on the live service; the simulator accepts them but has nothing to send.
SILENT_TRS: dict[Domain, str] = {"real": "H0GSCNI0", "paper": "H0GSCNI9"}
SUBSCRIBE = "1"
UNSUBSCRIBE = {"2", "0"}
_KEY_ALPHABET = string.ascii_letters + string.digits


def _random_text(length: int) -> str:
    return "".join(secrets.choice(_KEY_ALPHABET) for _ in range(length))


def encrypt_notice(plain: str, key: str, iv: str) -> str:
    """AES-256-CBC with the ack's ASCII key/iv, PKCS#7 padding, base64 (kis-api.md §5.4)."""
    padder = padding.PKCS7(128).padder()
    data = padder.update(plain.encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key.encode()), modes.CBC(iv.encode())).encryptor()
    return base64.b64encode(encryptor.update(data) + encryptor.finalize()).decode()


@dataclass(eq=False)
class Session:
    """One WebSocket connection; it belongs to an app key from its first valid approval key."""

    connection: ServerConnection
    domain: Domain
    key: str = field(default_factory=lambda: _random_text(32))
    iv: str = field(default_factory=lambda: _random_text(16))
    appkey: str | None = None
    subscriptions: set[tuple[str, str]] = field(default_factory=set)
    # Last tick index published per (tr_id, code) and the day it belongs to.
    cursors: dict[tuple[str, str], tuple[date, int]] = field(default_factory=dict)
    outbox: asyncio.Queue[str] = field(default_factory=asyncio.Queue)


def control(tr_id: str, tr_key: str, rt_cd: str, msg_cd: str, msg1: str, encrypt: str = "N",
            output: dict[str, str] | None = None) -> str:
    """A control message in the §5.3 shape."""
    body: dict[str, Any] = {"rt_cd": rt_cd, "msg_cd": msg_cd, "msg1": msg1}
    if output is not None:
        body["output"] = output
    return json.dumps(
        {"header": {"tr_id": tr_id, "tr_key": tr_key, "encrypt": encrypt}, "body": body}, ensure_ascii=False
    )


class WebSocketHub:
    """All live sessions of both domains, fed by the exchange (notices) and the pump (market data)."""

    def __init__(self, state: SimState) -> None:
        self._state = state
        self.sessions: set[Session] = set()
        state.exchange.subscribe(self._on_notice)

    # -- connection lifecycle -------------------------------------------------------------------------

    async def handle(self, connection: ServerConnection, domain: Domain) -> None:
        session = Session(connection=connection, domain=domain)
        self.sessions.add(session)
        path = connection.request.path if connection.request else "/"
        log.info("kis_sim.ws.connected", domain=domain, path=path)
        writer = asyncio.create_task(self._write(session), name=f"kis-sim-ws-writer-{id(session)}")
        pinger = asyncio.create_task(self._ping(session), name=f"kis-sim-ws-ping-{id(session)}")
        try:
            async for message in connection:
                if isinstance(message, bytes):
                    message = message.decode("utf-8", errors="replace")
                self._on_message(session, message)
        except ConnectionClosed:
            pass
        finally:
            self.sessions.discard(session)
            for task in (writer, pinger):
                task.cancel()
            for task in (writer, pinger):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            log.info("kis_sim.ws.disconnected", domain=domain, subscriptions=len(session.subscriptions))

    async def _write(self, session: Session) -> None:
        while True:
            frame = await session.outbox.get()
            try:
                await session.connection.send(frame)
            except ConnectionClosed:
                return

    async def _ping(self, session: Session) -> None:
        interval = self._state.settings.ws_ping_interval_seconds
        while True:
            await self._state.wall.sleep(interval)
            stamp = to_kst(self._state.clock.now()).strftime("%Y%m%d%H%M%S")
            session.outbox.put_nowait(json.dumps({"header": {"tr_id": "PINGPONG", "datetime": stamp}}))

    def drop_all(self) -> int:
        """Fault injection: cut every session as a network failure would (no close handshake)."""
        count = 0
        for session in list(self.sessions):
            transport = session.connection.transport
            if transport is not None:
                transport.abort()
                count += 1
        log.warning("kis_sim.ws.dropped_all", sessions=count)
        return count

    # -- control messages ---------------------------------------------------------------------------

    def _reply(self, session: Session, text: str) -> None:
        session.outbox.put_nowait(text)

    def _on_message(self, session: Session, message: str) -> None:
        try:
            data = json.loads(message)
            header = data["header"]
            tr_id_header = str(header.get("tr_id", ""))
        except (ValueError, KeyError, TypeError, AttributeError):
            self._reply(session, control("(null)", "", "1", "OPSP0007", "JSON PARSING ERROR : invalid json format"))
            return
        if tr_id_header == "PINGPONG":
            return  # a client echoing our keep-alive (PK does); nothing to answer
        try:
            approval_key = str(header["approval_key"])
            tr_type = str(header["tr_type"])
            body_input = data["body"]["input"]
            tr_id = str(body_input["tr_id"])
            tr_key = str(body_input["tr_key"])
        except (KeyError, TypeError):
            self._reply(session, control("(null)", "", "1", "OPSP0007", "JSON PARSING ERROR : missing field"))
            return
        appkey = self._state.approvals.appkey_for(approval_key)
        account = self._state.account(appkey) if appkey else None
        if account is None or account.domain != session.domain:
            self._reply(session, control(tr_id, tr_key, "1", "OPSP0011", "invalid approval : NOT FOUND"))
            return
        if session.appkey is None:
            taken = any(s.appkey == account.appkey for s in self.sessions if s is not session)
            if taken:
                self._reply(session, control("(null)", "", "9", "OPSP8996", "ALREADY IN USE appkey"))
                return
            session.appkey = account.appkey
        elif session.appkey != account.appkey:
            self._reply(session, control("(null)", "", "9", "OPSP8996", "ALREADY IN USE appkey"))
            return
        if tr_type == SUBSCRIBE:
            self._subscribe(session, tr_id, tr_key)
        elif tr_type in UNSUBSCRIBE:
            self._unsubscribe(session, tr_id, tr_key)
        else:
            self._reply(session, control(tr_id, tr_key, "1", "OPSP0007", "INVALID TR_TYPE"))

    def _subscribe(self, session: Session, tr_id: str, tr_key: str) -> None:
        supported = {TRADES, BOOK, NOTICE_TR[session.domain], SILENT_TRS[session.domain]}
        if tr_id not in supported:
            self._reply(session, control(tr_id, tr_key, "1", "OPSP0007", f"SUBSCRIBE ERROR : invalid tr_id {tr_id}"))
            return
        encrypt = "Y" if tr_id in (NOTICE_TR[session.domain], SILENT_TRS[session.domain]) else "N"
        if (tr_id, tr_key) in session.subscriptions:
            self._reply(session, control(tr_id, tr_key, "1", "OPSP0002", "ALREADY IN SUBSCRIBE", encrypt))
            return
        if len(session.subscriptions) >= self._state.settings.ws_max_subscriptions:
            self._reply(session, control(tr_id, tr_key, "1", "OPSP0008", "MAX SUBSCRIBE OVER", encrypt))
            return
        session.subscriptions.add((tr_id, tr_key))
        output = {"iv": session.iv, "key": session.key}
        self._reply(session, control(tr_id, tr_key, "0", "OPSP0000", "SUBSCRIBE SUCCESS", encrypt, output))
        log.info("kis_sim.ws.subscribed", domain=session.domain, tr_id=tr_id, count=len(session.subscriptions))

    def _unsubscribe(self, session: Session, tr_id: str, tr_key: str) -> None:
        encrypt = "Y" if tr_id in (NOTICE_TR[session.domain], SILENT_TRS[session.domain]) else "N"
        if (tr_id, tr_key) not in session.subscriptions:
            self._reply(session, control(tr_id, tr_key, "1", "OPSP0003", "UNSUBSCRIBE ERROR(not found!)", encrypt))
            return
        session.subscriptions.discard((tr_id, tr_key))
        session.cursors.pop((tr_id, tr_key), None)
        output = {"iv": session.iv, "key": session.key}
        self._reply(session, control(tr_id, tr_key, "0", "OPSP0001", "UNSUBSCRIBE SUCCESS", encrypt, output))

    # -- data ---------------------------------------------------------------------------------------

    def _on_notice(self, notice: Notice) -> None:
        config = notice.account.config
        tr_id = NOTICE_TR[config.domain]
        layout = self._state.settings.notice_layout
        plain = "^".join(views.notice_record(notice, layout))
        for session in self.sessions:
            if session.domain == config.domain and (tr_id, config.hts_id) in session.subscriptions:
                cipher = encrypt_notice(plain, session.key, session.iv)
                session.outbox.put_nowait(f"1|{tr_id}|001|{cipher}")

    def publish_market(self) -> None:
        """Send every tick (and the resulting book) that happened since the last pass."""
        now = self._state.clock.now()
        market = self._state.market
        per_frame = self._state.settings.ws_max_records_per_frame
        for session in list(self.sessions):
            for tr_id, code in sorted(session.subscriptions):
                if tr_id not in (TRADES, BOOK):
                    continue
                quote = market.quote(code, now)
                if quote is None:
                    continue
                if not quote.opened:
                    # Subscribed before the open: every print of the day is news, the first included.
                    session.cursors.setdefault((tr_id, code), (quote.day, -1))
                    continue
                last_day, last_index = session.cursors.get((tr_id, code), (quote.day, quote.index))
                if (tr_id, code) not in session.cursors:
                    # A new subscription starts with the current state, as the live feed does.
                    last_index = quote.index - 1
                if last_day != quote.day:
                    last_index = -1
                if quote.index <= last_index:
                    continue
                session.cursors[(tr_id, code)] = (quote.day, quote.index)
                if tr_id == BOOK:
                    record = views.book_record(quote)
                    session.outbox.put_nowait(f"0|{BOOK}|001|{'^'.join(record)}")
                    continue
                # Under heavy acceleration many ticks pass between passes: send at most a few frames' worth.
                first = max(last_index + 1, quote.index - per_frame * 5 + 1)
                indices = [i for i in range(first, quote.index + 1) if quote.path.volumes[i] > 0] or [quote.index]
                for start in range(0, len(indices), per_frame):
                    chunk = indices[start : start + per_frame]
                    fields: list[str] = []
                    for index in chunk:
                        fields.extend(views.trade_record(market, quote.path, index))
                    session.outbox.put_nowait(f"0|{TRADES}|{len(chunk):03d}|{'^'.join(fields)}")
