"""Simulator: the WebSocket protocol (kis-api.md §5): acks, frames, encrypted notices, limits, PINGPONG."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from websockets.asyncio.client import connect as ws_connect

CODE = "005930"


def subscribe_message(approval_key: str, tr_id: str, tr_key: str, tr_type: str = "1") -> str:
    return json.dumps(
        {
            "header": {"approval_key": approval_key, "custtype": "P", "tr_type": tr_type, "content-type": "utf-8"},
            "body": {"input": {"tr_id": tr_id, "tr_key": tr_key}},
        }
    )


async def next_json(ws, timeout: float = 3.0) -> dict:
    while True:
        message = await asyncio.wait_for(ws.recv(), timeout)
        if message.startswith("{"):
            data = json.loads(message)
            if data["header"]["tr_id"] != "PINGPONG":
                return data


async def next_data(ws, tr_id: str, timeout: float = 3.0) -> str:
    while True:
        message = await asyncio.wait_for(ws.recv(), timeout)
        if message[0] in "01" and message.split("|")[1] == tr_id:
            return message


def decrypt(payload: str, key: str, iv: str) -> str:
    decryptor = Cipher(algorithms.AES(key.encode()), modes.CBC(iv.encode())).decryptor()
    padded = decryptor.update(base64.b64decode(payload)) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return (unpadder.update(padded) + unpadder.finalize()).decode()


async def test_subscribe_ack_has_the_documented_shape(sim, real):
    key = await real.approval_key()
    async with ws_connect(sim.real.ws_url + "/tryitout/H0STCNT0") as ws:
        await ws.send(subscribe_message(key, "H0STCNT0", CODE))
        ack = await next_json(ws)
    assert ack["header"] == {"tr_id": "H0STCNT0", "tr_key": CODE, "encrypt": "N"}
    body = ack["body"]
    assert (body["rt_cd"], body["msg_cd"], body["msg1"]) == ("0", "OPSP0000", "SUBSCRIBE SUCCESS")
    assert len(body["output"]["iv"]) == 16 and len(body["output"]["key"]) == 32


@pytest.mark.parametrize("path", ["", "/", "/tryitout"])
async def test_any_path_is_accepted(sim, real, path):
    key = await real.approval_key()
    async with ws_connect(sim.real.ws_url + path) as ws:
        await ws.send(subscribe_message(key, "H0STASP0", CODE))
        assert (await next_json(ws))["body"]["msg_cd"] == "OPSP0000"


async def test_trade_frames_carry_46_fields_per_record_and_concatenate(sim, real):
    key = await real.approval_key()
    async with ws_connect(sim.real.ws_url) as ws:
        await ws.send(subscribe_message(key, "H0STCNT0", CODE))
        await next_json(ws)
        first = await next_data(ws, "H0STCNT0")  # the current state
        sim.clock.advance(timedelta(seconds=10 * 25))  # 25 ticks pass between two pump passes
        frames = [await next_data(ws, "H0STCNT0") for _ in range(2)]
    enc, tr_id, count, payload = first.split("|", 3)
    assert (enc, tr_id, count) == ("0", "H0STCNT0", "001")
    fields = payload.split("^")
    assert len(fields) == 46
    assert fields[0] == CODE and fields[33] == "20240304"
    quote = sim.market.quote(CODE, sim.clock.now() - timedelta(seconds=250))
    assert fields[2] == str(quote.price)
    for frame in frames:
        _, _, count, payload = frame.split("|", 3)
        assert len(payload.split("^")) == 46 * int(count)
    assert any(int(frame.split("|")[2]) > 1 for frame in frames)


async def test_book_frames_carry_59_fields(sim, real):
    key = await real.approval_key()
    async with ws_connect(sim.real.ws_url) as ws:
        await ws.send(subscribe_message(key, "H0STASP0", CODE))
        await next_json(ws)
        frame = await next_data(ws, "H0STASP0")
    enc, tr_id, count, payload = frame.split("|", 3)
    assert (enc, tr_id, count) == ("0", "H0STASP0", "001")
    fields = payload.split("^")
    assert len(fields) == 59
    asks = [int(x) for x in fields[3:13]]
    bids = [int(x) for x in fields[13:23]]
    assert asks[0] > bids[0] and asks == sorted(asks)


async def test_order_and_fill_notices_are_aes_encrypted_26_fields(sim, paper):
    key = await paper.approval_key()
    async with ws_connect(sim.paper.ws_url + "/tryitout") as ws:
        await ws.send(subscribe_message(key, "H0STCNI9", paper.account.hts_id))
        ack = await next_json(ws)
        assert ack["header"]["encrypt"] == "Y"
        aes_key, aes_iv = ack["body"]["output"]["key"], ack["body"]["output"]["iv"]
        placed = (await paper.order("VTTC0802U", CODE, 3)).json()["output"]
        accepted = await next_data(ws, "H0STCNI9")
        sim.clock.advance(timedelta(minutes=10))
        filled = await next_data(ws, "H0STCNI9")
    for frame in (accepted, filled):
        enc, tr_id, count, _ = frame.split("|", 3)
        assert (enc, tr_id, count) == ("1", "H0STCNI9", "001")
    fields = decrypt(accepted.split("|", 3)[3], aes_key, aes_iv).split("^")
    assert len(fields) == 26
    assert fields[0] == paper.account.hts_id
    assert fields[1] == paper.account.cano + "01"
    assert fields[2] == placed["ODNO"]
    assert (fields[4], fields[5], fields[6], fields[8]) == ("02", "0", "01", CODE)
    assert (fields[9], fields[13], fields[14], fields[16]) == ("3", "1", "1", "3")
    fill = decrypt(filled.split("|", 3)[3], aes_key, aes_iv).split("^")
    assert len(fill) == 26 and fill[13] == "2" and fill[2] == placed["ODNO"]
    assert int(fill[10]) > 0 and 0 < int(fill[9]) <= 3


async def test_legacy_notice_layout_has_23_fields(start_sim, connect):
    async with start_sim(notice_layout=23) as sim, connect(sim, "real") as real:
        key = await real.approval_key()
        async with ws_connect(sim.real.ws_url) as ws:
            await ws.send(subscribe_message(key, "H0STCNI0", real.account.hts_id))
            ack = await next_json(ws)
            await real.order("TTTC0802U", CODE, 1)
            frame = await next_data(ws, "H0STCNI0")
    output = ack["body"]["output"]
    fields = decrypt(frame.split("|", 3)[3], output["key"], output["iv"]).split("^")
    assert len(fields) == 23 and fields[22] == "0"


async def test_41_registrations_then_max_subscribe_over(sim, real):
    key = await real.approval_key()
    async with ws_connect(sim.real.ws_url) as ws:
        for n in range(41):
            await ws.send(subscribe_message(key, "H0STASP0", f"{100000 + n:06d}"))
            assert (await next_json(ws))["body"]["msg_cd"] == "OPSP0000"
        await ws.send(subscribe_message(key, "H0STCNT0", CODE))
        over = await next_json(ws)
    assert (over["body"]["rt_cd"], over["body"]["msg_cd"], over["body"]["msg1"]) == (
        "1", "OPSP0008", "MAX SUBSCRIBE OVER"
    )


async def test_duplicate_and_unsubscribe_codes(sim, real):
    key = await real.approval_key()
    async with ws_connect(sim.real.ws_url) as ws:
        await ws.send(subscribe_message(key, "H0STCNT0", CODE))
        await next_json(ws)
        await ws.send(subscribe_message(key, "H0STCNT0", CODE))
        assert (await next_json(ws))["body"]["msg_cd"] == "OPSP0002"
        await ws.send(subscribe_message(key, "H0STCNT0", CODE, tr_type="2"))
        unsub = (await next_json(ws))["body"]
        assert unsub["msg_cd"] == "OPSP0001" and unsub["msg1"].startswith("UNSUB")
        await ws.send(subscribe_message(key, "H0STCNT0", CODE, tr_type="0"))
        assert (await next_json(ws))["body"]["msg_cd"] == "OPSP0003"


async def test_unknown_approval_key_gets_opsp0011(sim):
    async with ws_connect(sim.real.ws_url) as ws:
        await ws.send(subscribe_message("00000000-0000-0000-0000-000000000000", "H0STCNT0", CODE))
        body = (await next_json(ws))["body"]
    assert (body["rt_cd"], body["msg_cd"]) == ("1", "OPSP0011")


async def test_second_session_with_the_same_appkey_gets_opsp8996(sim, real):
    key = await real.approval_key()
    async with ws_connect(sim.real.ws_url) as first, ws_connect(sim.real.ws_url) as second:
        await first.send(subscribe_message(key, "H0STCNT0", CODE))
        assert (await next_json(first))["body"]["msg_cd"] == "OPSP0000"
        await second.send(subscribe_message(key, "H0STCNT0", "000660"))
        refused = await next_json(second)
    assert refused["header"]["tr_id"] == "(null)"
    assert (refused["body"]["rt_cd"], refused["body"]["msg_cd"]) == ("9", "OPSP8996")


async def test_pingpong_every_interval_and_echo_is_ignored(start_sim, connect):
    async with start_sim(ws_ping_interval_seconds=0.2) as sim, connect(sim, "real") as real:
        key = await real.approval_key()
        async with ws_connect(sim.real.ws_url) as ws:
            ping = json.loads(await asyncio.wait_for(ws.recv(), 2))
            assert ping["header"]["tr_id"] == "PINGPONG" and len(ping["header"]["datetime"]) == 14
            assert "body" not in ping
            await ws.send(json.dumps(ping))  # PK echoes the frame back
            await ws.send(subscribe_message(key, "H0STCNT0", CODE))
            # The next control answer is the subscription ack, not an error about the echo.
            assert (await next_json(ws))["body"]["msg_cd"] == "OPSP0000"
