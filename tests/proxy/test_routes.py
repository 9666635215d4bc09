"""Everything a client does with the API works through the front door: HTTP, both WebSockets and
Socket.IO (polling, then the upgrade), over TLS, with browser origins."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import connect

from cloud.ledger.store import Ledger
from giftwheel.contracts import event_streams
from tests.feedback.conftest import Api, Viewer, new_command, progress
from tests.ingest.conftest import API_KEY, gift, read_metrics
from tests.proxy.conftest import FrontDoor

pytestmark = pytest.mark.slow


@pytest.fixture
async def api(proxied: FrontDoor) -> AsyncIterator[Api]:
    async with httpx.AsyncClient(base_url=proxied.url, verify=proxied.ssl_context(), timeout=10) as client:
        yield Api(proxied.url, client)


async def test_events_are_posted_over_tls(api: Api, proxied: FrontDoor) -> None:
    answer = await api.post_gift(eventId="tiktok:proxy-post")
    assert answer.status_code == 202
    assert answer.json() == {"eventId": "tiktok:proxy-post", "duplicate": False}
    assert (await api.post_gift(eventId="tiktok:proxy-post")).json()["duplicate"] is True
    # Prometheus scrapes the API itself; the front door does not publish its metrics.
    assert (await api.client.get("/metrics")).status_code == 404
    async with httpx.AsyncClient(base_url=proxied.api.url) as scraper:
        assert "giftwheel_ingest" in await read_metrics(scraper)


async def test_plain_http_is_redirected_except_lets_encrypts_challenge(proxied: FrontDoor) -> None:
    plain = f"http://{proxied.nginx.values['NGINX_HTTP_LISTEN']}"
    acme = proxied.nginx.workdir / "acme" / ".well-known" / "acme-challenge"
    acme.mkdir(parents=True, exist_ok=True)
    (acme / "token-1").write_text("token-1.thumbprint")
    async with httpx.AsyncClient() as client:
        redirect = await client.post(f"{plain}/v1/events?x=1", content=b"{}")
        challenge = await client.get(f"{plain}/.well-known/acme-challenge/token-1")
    assert redirect.status_code == 308  # a POST stays a POST
    assert redirect.headers["location"].startswith("https://")
    assert redirect.headers["location"].endswith("/v1/events?x=1")
    assert (challenge.status_code, challenge.text) == (200, "token-1.thumbprint")


async def test_a_browser_viewer_gets_its_events_over_wss(api: Api, proxied: FrontDoor) -> None:
    # A browser sends the page's origin: the API's same-origin check sees the host and port the
    # browser used, and https, only because nginx passes them on.
    viewer = await Viewer.open(f"{proxied.ws_url}/v1/realtime", ssl=proxied.ssl_context(), origin=proxied.url)
    await viewer.wait_for("state")
    assert (await api.post_gift(eventId="tiktok:proxy-viewer")).status_code == 202
    (accepted,) = await viewer.wait_for("gift.accepted")
    assert accepted["eventId"] == "tiktok:proxy-viewer"
    # The ledger knows the command, as after a worker sent it; the webhook reports nothing else.
    redis = Redis.from_url(proxied.redis_url)
    command = await new_command(Ledger(redis, streams=event_streams(1), ttl_s=60), "tiktok:proxy-cmd", 2)
    await redis.aclose()
    feedback = progress(1, 2, command_id=command.command_id)
    assert (await api.post_feedback(feedback, device=command.device)).status_code == 200
    (update,) = await viewer.wait_for("motor.progress")
    assert update["commandRoundsDone"] == 1
    await viewer.close()


async def test_another_sites_browser_is_still_refused(proxied: FrontDoor) -> None:
    with pytest.raises(Exception, match="403"):
        await connect(
            f"{proxied.ws_url}/v1/realtime",
            ssl=proxied.ssl_context(),
            origin="https://evil.example",  # type: ignore[arg-type]
        )


async def test_ingest_frames_are_acknowledged_over_wss(proxied: FrontDoor) -> None:
    async with connect(
        f"{proxied.ws_url}/v1/ingest",
        ssl=proxied.ssl_context(),
        additional_headers={"Authorization": f"Bearer {API_KEY}"},
    ) as ws:
        await ws.send(orjson.dumps(gift(eventId="tiktok:proxy-ws-1")).decode())
        await ws.send(orjson.dumps([gift(eventId="tiktok:proxy-ws-2"), {"event": "gift"}]).decode())
        acks: dict[int, dict[str, object]] = {}
        while len(acks) < 3:
            answer = orjson.loads(await ws.recv())
            acks.update((ack["seq"], ack) for ack in (answer if isinstance(answer, list) else [answer]))
    assert acks[0] == {"seq": 0, "eventId": "tiktok:proxy-ws-1", "duplicate": False}
    assert acks[1] == {"seq": 1, "eventId": "tiktok:proxy-ws-2", "duplicate": False}
    assert acks[2]["error"] == "rejected"


async def test_socketio_connects_by_polling_then_upgrades(api: Api, proxied: FrontDoor) -> None:
    path = "/socket.io/?EIO=4&transport=polling"
    opened = (await api.client.get(path, headers={"Origin": proxied.url})).text
    assert opened.startswith("0{")
    handshake = orjson.loads(opened[1:])
    # The largest polling POST engine.io takes is the one the front door lets through.
    assert handshake["maxPayload"] == 1_000_000
    assert f"client_max_body_size {handshake['maxPayload']};" in proxied.nginx.config_text()
    session = f"{path}&sid={handshake['sid']}"
    assert (await api.client.post(session, content=b"40")).text == "OK"
    packets = (await api.client.get(session)).text.split("\x1e")
    assert packets[0].startswith("40{")
    if len(packets) == 1:  # the state may come in the next poll
        packets += (await api.client.get(session)).text.split("\x1e")
    assert orjson.loads(packets[1][2:])[0] == "state"

    upgrade = f"{proxied.ws_url}/socket.io/?EIO=4&transport=websocket&sid={handshake['sid']}"
    async with connect(upgrade, ssl=proxied.ssl_context(), origin=proxied.url) as ws:  # type: ignore[arg-type]
        await ws.send("2probe")
        assert await ws.recv() == "3probe"
        await ws.send("5")
        assert (await api.post_gift(eventId="tiktok:proxy-socketio")).status_code == 202
        async with asyncio.timeout(10):
            # Gifts the module's other tests posted may be announced first.
            while True:
                packet = str(await ws.recv())
                if packet == "2":  # engine.io's ping
                    await ws.send("3")
                elif packet.startswith("42"):
                    name, data = orjson.loads(packet[2:])
                    if (name, data.get("eventId")) == ("gift.accepted", "tiktok:proxy-socketio"):
                        break
