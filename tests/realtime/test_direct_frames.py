"""Direct frames: an idle viewer's events are written at once as one shared frame, in order, state first."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from cloud.realtime.outbox import text_frame
from tests.feedback.conftest import Api, Viewer, frames_by_path, progress
from tests.waiting import wait_until


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65_535, 65_536, 70_000])
def test_text_frame_is_what_a_websocket_parser_reads(size: int) -> None:
    payload = ("é" * size).encode()[:size]  # multi-byte text cut anywhere is still bytes to frame
    reader = StreamReader()
    reader.feed_data(text_frame(payload))
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False, max_size=None)
    try:
        next(parser)
    except StopIteration as parsed:
        frame: Frame = parsed.value
    assert (frame.opcode, frame.fin, frame.data) == (Opcode.TEXT, True, payload)
    assert reader.at_eof()


async def test_an_idle_viewer_gets_events_written_directly_after_its_state(api: Api) -> None:
    viewer = await Viewer.open(api.viewer_url())
    await viewer.wait_for("state")
    before = await frames_by_path(api)
    for done in range(1, 6):
        assert (await api.post_feedback(progress(done))).status_code == 200
    await viewer.wait_for("motor.done")
    assert [e["event"] for e in viewer.events] == ["state"] + ["motor.progress"] * 4 + ["motor.done"]
    assert [e["data"]["commandRoundsDone"] for e in viewer.events[1:]] == [1, 2, 3, 4, 5]
    after = await frames_by_path(api)
    assert after["direct"] - before["direct"] == 5
    assert after["queued"] == before["queued"]
    await viewer.close()


async def test_viewers_vanishing_mid_fanout_never_cost_the_others_an_event(api: Api) -> None:
    viewers = [await Viewer.open(api.viewer_url()) for _ in range(20)]
    for viewer in viewers:
        await viewer.wait_for("state")
    gone, staying = viewers[:10], viewers[10:]
    for done in range(1, 4):
        if done == 2:
            for viewer in gone:
                viewer.ws.transport.abort()  # a reset, no closing handshake: as a phone losing signal
        assert (await api.post_feedback(progress(done, 3))).status_code == 200
    for viewer in staying:
        await viewer.wait_for("motor.done")
        assert [e["data"]["commandRoundsDone"] for e in viewer.events[1:]] == [1, 2, 3]
    hub = api.services().realtime.hub
    await wait_until(lambda: hub.viewers == 10, 5, "the server let the reset viewers go")
    for viewer in viewers:
        await viewer.close()
