"""The MQTT codec: every packet survives encode -> frame -> decode, in 3.1.1 and 5; bad bytes are refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud.mqtt import codec

VERSIONS = [codec.MQTT_3_1_1, codec.MQTT_5]
topics = st.text(
    st.characters(exclude_characters="+#\x00", exclude_categories=["Cs"]), min_size=1, max_size=60
)


def frames(data: bytes, limit: int = 1 << 20) -> list[tuple[int, bytes]]:
    return list(codec.FrameReader(limit).feed(data))


def roundtrip(data: bytes, version: int) -> codec.Packet:
    [(first, body)] = frames(data)
    return codec.decode(first, body, version)


@pytest.mark.parametrize("version", VERSIONS)
@given(topic=topics, payload=st.binary(max_size=300), qos=st.sampled_from([0, 1]), pid=st.integers(1, 65535))
def test_publish_roundtrip(version: int, topic: str, payload: bytes, qos: int, pid: int) -> None:
    packet = roundtrip(codec.encode_publish(topic, payload, qos, pid if qos else None, version), version)
    assert packet == codec.Publish(topic, payload, qos, pid if qos else None)


@pytest.mark.parametrize("version", VERSIONS)
def test_connect_roundtrip_with_credentials_and_will(version: int) -> None:
    sent = codec.Connect(version, "client-1", clean_start=False, keepalive_s=120, username="token",
                         password=b"pw", will_topic="w", will_payload=b"bye")  # fmt: skip
    assert roundtrip(codec.encode_connect(sent), version) == sent


def test_v5_connect_properties_are_decoded() -> None:
    sent = codec.Connect(
        codec.MQTT_5, "c", username="t", properties={0x11: 3600, 0x21: 20, 0x26: [("k", "v")]}
    )
    assert roundtrip(codec.encode_connect(sent), codec.MQTT_5) == sent


@pytest.mark.parametrize(
    ("version", "reason", "expected"),
    [(codec.MQTT_3_1_1, 0x90, b"\x40\x02\x00\x07"), (codec.MQTT_5, 0x90, b"\x40\x03\x00\x07\x90"),
     (codec.MQTT_5, 0, b"\x40\x02\x00\x07")],
)  # fmt: skip
def test_puback_bytes(version: int, reason: int, expected: bytes) -> None:
    assert codec.encode_puback(7, reason, version) == expected
    assert roundtrip(expected, version) == codec.PubAck(7, reason if version == codec.MQTT_5 else 0)


@pytest.mark.parametrize("version", VERSIONS)
def test_subscribe_suback_unsubscribe(version: int) -> None:
    sub = roundtrip(codec.encode_subscribe(3, [("a/b", 1), ("c", 0)], version), version)
    assert sub == codec.Subscribe(3, [("a/b", 1), ("c", 0)])
    assert roundtrip(codec.encode_suback(3, [1, 0x80], version), version) == codec.SubAck(3, [1, 0x80])
    assert roundtrip(codec.encode_unsubscribe(4, ["a/b"], version), version) == codec.Unsubscribe(4, ["a/b"])
    unsuback = roundtrip(codec.encode_unsuback(4, 1, version), version)
    assert unsuback == codec.UnsubAck(4, [0] if version == codec.MQTT_5 else [])


def test_connack_v5_has_empty_properties() -> None:
    assert codec.encode_connack(True, 0x86, codec.MQTT_5) == b"\x20\x03\x01\x86\x00"
    assert codec.encode_connack(False, 0x05, codec.MQTT_3_1_1) == b"\x20\x02\x00\x05"


def test_frames_split_anywhere() -> None:
    stream = codec.encode_publish("t", b"x" * 200, 1, 9, 4) + codec.encode_pingreq()
    reader = codec.FrameReader(1 << 20)
    got = [f for i in range(len(stream)) for f in reader.feed(stream[i : i + 1])]
    assert [first >> 4 for first, _ in got] == [codec.PacketType.PUBLISH, codec.PacketType.PINGREQ]


def test_oversized_packet_is_refused_before_buffering() -> None:
    header = bytes((0x30,)) + codec.encode_varint(65537)
    with pytest.raises(codec.PacketTooLarge):
        frames(header, limit=65536)


@pytest.mark.parametrize(
    "data",
    [
        b"\x30\x03\x00\x05a",  # topic length past the end
        b"\x32\x03\x00\x01a",  # QoS 1 without packet id
        b"\x36\x05\x00\x01a\x00\x01",  # QoS 3
        b"\x30\x04\x00\x02a#",  # wildcard in a PUBLISH topic
        b"\x80\x02\x00\x01",  # SUBSCRIBE with wrong flags
        b"\x30\xff\xff\xff\xff\x01",  # 5-byte remaining length
    ],
)
def test_malformed_packets_raise(data: bytes) -> None:
    def decode_all() -> None:
        for first, body in frames(data):
            codec.decode(first, body, codec.MQTT_3_1_1)

    with pytest.raises(codec.MalformedPacket):
        decode_all()


@given(st.binary(max_size=64))
def test_garbage_never_crashes_decoder(data: bytes) -> None:
    try:
        for first, body in frames(data, limit=1024):
            codec.decode(first, body, codec.MQTT_5)
    except codec.MalformedPacket:
        pass
