"""MQTT 3.1.1 and 5 packets: bytes in, small dataclasses out, and back. No I/O, no ThingsBoard logic.

Both directions are here, client and server side: the worker's client (``cloud.mqtt.client``), the
ThingsBoard emulator's broker side and the test and benchmark clients all speak through this one
module. Decoding refuses what the MQTT specification forbids (``MalformedPacket``), as a broker
must: among it a packet identifier 0 (s.2.3.1, MQTT-2.3.1-1), which ThingsBoard's decoder (netty's
MqttDecoder.decodeMessageId, "invalid messageId") refuses in every packet that carries one. A client
may opt out for PUBLISH only (``decode(..., zero_publish_id=True)``): ThingsBoard itself sends one
with id 0 (see ``cloud.mqtt.client``). QoS 2 is decoded but never granted.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

MQTT_3_1 = 3
MQTT_3_1_1 = 4
MQTT_5 = 5
MAX_REMAINING_LENGTH = 268_435_455  # the largest variable byte integer (s.1.5.5)


class PacketType(IntEnum):
    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15


class MalformedPacket(ValueError):
    """The bytes are not a valid MQTT packet; the connection cannot continue."""


class PacketTooLarge(MalformedPacket):
    pass


class UnsupportedProtocol(MalformedPacket):
    def __init__(self, name: str, level: int) -> None:
        super().__init__(f"unsupported protocol {name!r} level {level}")
        self.level = level


# MQTT 5 property id -> wire type (spec 2.2.2.2). "pair" is the UTF-8 string pair of User Property.
_PROPERTY_TYPES: dict[int, str] = {
    0x01: "byte", 0x02: "int4", 0x03: "str", 0x08: "str", 0x09: "bin", 0x0B: "varint",
    0x11: "int4", 0x12: "str", 0x13: "int2", 0x15: "str", 0x16: "bin", 0x17: "byte",
    0x18: "int4", 0x19: "byte", 0x1A: "str", 0x1C: "str", 0x1F: "str", 0x21: "int2",
    0x22: "int2", 0x23: "int2", 0x24: "byte", 0x25: "byte", 0x26: "pair", 0x27: "int4",
    0x28: "byte", 0x29: "byte", 0x2A: "byte",
}  # fmt: skip
USER_PROPERTY = 0x26
TOPIC_ALIAS = 0x23

Properties = dict[int, Any]


@dataclass(slots=True)
class Connect:
    protocol_level: int
    client_id: str
    clean_start: bool = True
    keepalive_s: int = 60
    username: str | None = None
    password: bytes | None = None
    will_topic: str | None = None
    will_payload: bytes | None = None
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class ConnAck:
    session_present: bool
    reason_code: int
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int = 0
    packet_id: int | None = None
    retain: bool = False
    dup: bool = False
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class PubAck:
    packet_id: int
    reason_code: int = 0


@dataclass(slots=True)
class Subscribe:
    packet_id: int
    # (topic filter, options byte); QoS is options & 0x03
    filters: list[tuple[str, int]]
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class SubAck:
    packet_id: int
    reason_codes: list[int]


@dataclass(slots=True)
class Unsubscribe:
    packet_id: int
    topics: list[str]


@dataclass(slots=True)
class UnsubAck:
    packet_id: int
    reason_codes: list[int]


@dataclass(slots=True)
class PingReq:
    pass


@dataclass(slots=True)
class PingResp:
    pass


@dataclass(slots=True)
class Disconnect:
    reason_code: int = 0


@dataclass(slots=True)
class Unsupported:
    """A well-formed packet the emulator does not act on (PUBREC/PUBREL/PUBCOMP/AUTH)."""

    packet_type: int


Packet = (
    Connect
    | ConnAck
    | Publish
    | PubAck
    | Subscribe
    | SubAck
    | Unsubscribe
    | UnsubAck
    | PingReq
    | PingResp
    | Disconnect
    | Unsupported
)


# ---------------------------------------------------------------- primitives


def encode_varint(value: int) -> bytes:
    if not 0 <= value <= MAX_REMAINING_LENGTH:
        raise ValueError(f"varint out of range: {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for shift in (0, 7, 14, 21):
        if pos >= len(buf):
            raise MalformedPacket("truncated variable byte integer")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
    raise MalformedPacket("variable byte integer longer than 4 bytes")


def _u16(buf: bytes, pos: int) -> tuple[int, int]:
    if pos + 2 > len(buf):
        raise MalformedPacket("truncated two-byte integer")
    return (buf[pos] << 8) | buf[pos + 1], pos + 2


def _packet_id(buf: bytes, pos: int, kind: str) -> tuple[int, int]:
    packet_id, pos = _u16(buf, pos)
    if packet_id == 0:
        raise MalformedPacket(f"{kind} with packet id 0")
    return packet_id, pos


def _bin(buf: bytes, pos: int) -> tuple[bytes, int]:
    length, pos = _u16(buf, pos)
    if pos + length > len(buf):
        raise MalformedPacket("truncated string or binary field")
    return bytes(buf[pos : pos + length]), pos + length


def _str(buf: bytes, pos: int) -> tuple[str, int]:
    raw, pos = _bin(buf, pos)
    try:
        return raw.decode("utf-8"), pos
    except UnicodeDecodeError:
        raise MalformedPacket("string field is not valid UTF-8") from None


def _enc_str(value: str) -> bytes:
    raw = value.encode("utf-8")
    return struct.pack("!H", len(raw)) + raw


def _enc_bin(value: bytes) -> bytes:
    return struct.pack("!H", len(value)) + value


def _properties(buf: bytes, pos: int) -> tuple[Properties, int]:
    length, pos = _varint(buf, pos)
    end = pos + length
    if end > len(buf):
        raise MalformedPacket("properties run past the packet")
    props: Properties = {}
    while pos < end:
        pid, pos = _varint(buf, pos)
        kind = _PROPERTY_TYPES.get(pid)
        value: Any
        if kind == "byte":
            if pos >= end:
                raise MalformedPacket("truncated property")
            value, pos = buf[pos], pos + 1
        elif kind == "int2":
            value, pos = _u16(buf, pos)
        elif kind == "int4":
            if pos + 4 > end:
                raise MalformedPacket("truncated property")
            value, pos = struct.unpack_from("!I", buf, pos)[0], pos + 4
        elif kind == "varint":
            value, pos = _varint(buf, pos)
        elif kind == "str":
            value, pos = _str(buf, pos)
        elif kind == "bin":
            value, pos = _bin(buf, pos)
        elif kind == "pair":
            key, pos = _str(buf, pos)
            val, pos = _str(buf, pos)
            props.setdefault(USER_PROPERTY, []).append((key, val))
            continue
        else:
            raise MalformedPacket(f"unknown property id 0x{pid:02x}")
        props[pid] = value
    if pos != end:
        raise MalformedPacket("property length mismatch")
    return props, end


def encode_properties(props: Properties) -> bytes:
    body = bytearray()
    for pid, value in props.items():
        kind = _PROPERTY_TYPES[pid]
        if kind == "pair":
            for key, val in value:
                body += encode_varint(pid) + _enc_str(key) + _enc_str(val)
            continue
        body += encode_varint(pid)
        if kind == "byte":
            body.append(value)
        elif kind == "int2":
            body += struct.pack("!H", value)
        elif kind == "int4":
            body += struct.pack("!I", value)
        elif kind == "varint":
            body += encode_varint(value)
        elif kind == "str":
            body += _enc_str(value)
        else:
            body += _enc_bin(value)
    return encode_varint(len(body)) + bytes(body)


def _frame(first_byte: int, body: bytes) -> bytes:
    return bytes((first_byte,)) + encode_varint(len(body)) + body


# ---------------------------------------------------------------- framing


class FrameReader:
    """Splits a byte stream into (first byte, body) frames; refuses bodies over ``max_packet_bytes``.

    The limit applies to the remaining length, as Netty's MqttDecoder does (ThingsBoard's
    NETTY_MAX_PAYLOAD_SIZE), so it is checked before the body is buffered.
    """

    __slots__ = ("_buf", "max_packet_bytes")

    def __init__(self, max_packet_bytes: int) -> None:
        self._buf = bytearray()
        self.max_packet_bytes = max_packet_bytes

    def feed(self, data: bytes) -> Iterator[tuple[int, bytes]]:
        buf = self._buf
        buf += data
        pos = 0
        size = len(buf)
        try:
            while size - pos >= 2:
                first = buf[pos]
                # Inline varint: the hot path of every message.
                length = 0
                shift = 0
                idx = pos + 1
                while True:
                    if idx >= size:
                        return
                    byte = buf[idx]
                    idx += 1
                    length |= (byte & 0x7F) << shift
                    if not byte & 0x80:
                        break
                    shift += 7
                    if shift > 21:
                        raise MalformedPacket("remaining length longer than 4 bytes")
                if length > self.max_packet_bytes:
                    raise PacketTooLarge(f"packet of {length} bytes exceeds {self.max_packet_bytes}")
                end = idx + length
                if end > size:
                    return
                yield first, bytes(buf[idx:end])
                pos = end
        finally:
            if pos:
                del buf[:pos]


# ---------------------------------------------------------------- decoding


def decode(first_byte: int, body: bytes, version: int, *, zero_publish_id: bool = False) -> Packet:
    """One frame to a packet. ``version`` is the session's protocol level (ignored for CONNECT);
    ``zero_publish_id`` lets a QoS 1 PUBLISH with packet id 0 through (a client's choice)."""
    kind = first_byte >> 4
    flags = first_byte & 0x0F
    v5 = version == MQTT_5
    if kind == PacketType.PUBLISH:
        return _decode_publish(flags, body, v5, zero_publish_id)
    if kind == PacketType.PUBACK:
        packet_id, pos = _packet_id(body, 0, "PUBACK")
        return PubAck(packet_id, body[pos] if v5 and len(body) > pos else 0)
    if kind == PacketType.CONNECT:
        return _decode_connect(body)
    if kind == PacketType.SUBSCRIBE:
        return _decode_subscribe(flags, body, v5)
    if kind == PacketType.UNSUBSCRIBE:
        return _decode_unsubscribe(flags, body, v5)
    if kind == PacketType.PINGREQ:
        return PingReq()
    if kind == PacketType.PINGRESP:
        return PingResp()
    if kind == PacketType.DISCONNECT:
        return Disconnect(body[0] if v5 and body else 0)
    if kind == PacketType.CONNACK:
        if len(body) < 2:
            raise MalformedPacket("short CONNACK")
        props: Properties = {}
        if v5 and len(body) > 2:
            props, _ = _properties(body, 2)
        return ConnAck(bool(body[0] & 1), body[1], props)
    if kind == PacketType.SUBACK:
        packet_id, pos = _packet_id(body, 0, "SUBACK")
        if v5:
            _, pos = _properties(body, pos)
        return SubAck(packet_id, list(body[pos:]))
    if kind == PacketType.UNSUBACK:
        packet_id, pos = _packet_id(body, 0, "UNSUBACK")
        if v5:
            _, pos = _properties(body, pos)
        return UnsubAck(packet_id, list(body[pos:]))
    if kind in (PacketType.PUBREC, PacketType.PUBREL, PacketType.PUBCOMP):
        _packet_id(body, 0, PacketType(kind).name)
        return Unsupported(kind)
    if kind == PacketType.AUTH:
        return Unsupported(kind)
    raise MalformedPacket(f"reserved packet type {kind}")


def _decode_publish(flags: int, body: bytes, v5: bool, zero_id: bool) -> Publish:
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise MalformedPacket("PUBLISH with QoS 3")
    topic, pos = _str(body, 0)
    packet_id = None
    if qos:
        packet_id, pos = _u16(body, pos) if zero_id else _packet_id(body, pos, "PUBLISH")
    props: Properties = {}
    if v5:
        props, pos = _properties(body, pos)
    if any(c in topic for c in "+#\x00"):
        raise MalformedPacket("wildcard or NUL in PUBLISH topic")
    return Publish(topic, body[pos:], qos, packet_id, bool(flags & 1), bool(flags & 8), props)


def _decode_connect(body: bytes) -> Connect:
    name, pos = _str(body, 0)
    if pos + 4 > len(body):
        raise MalformedPacket("short CONNECT")
    level = body[pos]
    flags = body[pos + 1]
    keepalive = (body[pos + 2] << 8) | body[pos + 3]
    pos += 4
    if (name, level) not in (("MQTT", MQTT_3_1_1), ("MQTT", MQTT_5), ("MQIsdp", MQTT_3_1)):
        raise UnsupportedProtocol(name, level)
    if flags & 0x01:
        raise MalformedPacket("CONNECT reserved flag set")
    props: Properties = {}
    if level == MQTT_5:
        props, pos = _properties(body, pos)
    client_id, pos = _str(body, pos)
    will_topic = will_payload = None
    if flags & 0x04:
        if level == MQTT_5:
            _, pos = _properties(body, pos)
        will_topic, pos = _str(body, pos)
        will_payload, pos = _bin(body, pos)
    username = password = None
    if flags & 0x80:
        username, pos = _str(body, pos)
    if flags & 0x40:
        password, pos = _bin(body, pos)
    return Connect(
        protocol_level=level,
        client_id=client_id,
        clean_start=bool(flags & 0x02),
        keepalive_s=keepalive,
        username=username,
        password=password,
        will_topic=will_topic,
        will_payload=will_payload,
        properties=props,
    )


def _decode_subscribe(flags: int, body: bytes, v5: bool) -> Subscribe:
    if flags != 0x02:
        raise MalformedPacket("SUBSCRIBE flags must be 0x2")
    packet_id, pos = _packet_id(body, 0, "SUBSCRIBE")
    props: Properties = {}
    if v5:
        props, pos = _properties(body, pos)
    filters: list[tuple[str, int]] = []
    while pos < len(body):
        topic, pos = _str(body, pos)
        if pos >= len(body):
            raise MalformedPacket("SUBSCRIBE filter without options")
        filters.append((topic, body[pos]))
        pos += 1
    if not filters:
        raise MalformedPacket("SUBSCRIBE without topic filters")
    return Subscribe(packet_id, filters, props)


def _decode_unsubscribe(flags: int, body: bytes, v5: bool) -> Unsubscribe:
    if flags != 0x02:
        raise MalformedPacket("UNSUBSCRIBE flags must be 0x2")
    packet_id, pos = _packet_id(body, 0, "UNSUBSCRIBE")
    if v5:
        _, pos = _properties(body, pos)
    topics: list[str] = []
    while pos < len(body):
        topic, pos = _str(body, pos)
        topics.append(topic)
    if not topics:
        raise MalformedPacket("UNSUBSCRIBE without topics")
    return Unsubscribe(packet_id, topics)


# ---------------------------------------------------------------- encoding


def encode_connect(packet: Connect) -> bytes:
    flags = 0x02 if packet.clean_start else 0
    if packet.username is not None:
        flags |= 0x80
    if packet.password is not None:
        flags |= 0x40
    if packet.will_topic is not None:
        flags |= 0x04
    name = "MQIsdp" if packet.protocol_level == MQTT_3_1 else "MQTT"
    body = _enc_str(name) + bytes((packet.protocol_level, flags)) + struct.pack("!H", packet.keepalive_s)
    v5 = packet.protocol_level == MQTT_5
    if v5:
        body += encode_properties(packet.properties)
    body += _enc_str(packet.client_id)
    if packet.will_topic is not None:
        if v5:
            body += encode_properties({})
        body += _enc_str(packet.will_topic) + _enc_bin(packet.will_payload or b"")
    if packet.username is not None:
        body += _enc_str(packet.username)
    if packet.password is not None:
        body += _enc_bin(packet.password)
    return _frame(PacketType.CONNECT << 4, body)


def encode_connack(session_present: bool, reason_code: int, version: int) -> bytes:
    body = bytes((1 if session_present else 0, reason_code))
    if version == MQTT_5:
        body += b"\x00"  # ThingsBoard sends no CONNACK properties
    return _frame(PacketType.CONNACK << 4, body)


def encode_publish(
    topic: str, payload: bytes, qos: int, packet_id: int | None, version: int, *, dup: bool = False
) -> bytes:
    raw_topic = topic.encode("utf-8")
    head = struct.pack("!H", len(raw_topic)) + raw_topic
    if qos:
        if packet_id is None:
            raise ValueError("QoS > 0 needs a packet id")
        head += struct.pack("!H", packet_id)
    if version == MQTT_5:
        head += b"\x00"
    first = (PacketType.PUBLISH << 4) | (qos << 1) | (0x08 if dup else 0)
    return bytes((first,)) + encode_varint(len(head) + len(payload)) + head + payload


def encode_puback(packet_id: int, reason_code: int, version: int) -> bytes:
    if version == MQTT_5 and reason_code:
        return bytes((0x40, 3)) + struct.pack("!HB", packet_id, reason_code)
    return bytes((0x40, 2)) + struct.pack("!H", packet_id)


def encode_subscribe(packet_id: int, filters: list[tuple[str, int]], version: int) -> bytes:
    body = struct.pack("!H", packet_id)
    if version == MQTT_5:
        body += b"\x00"
    for topic, options in filters:
        body += _enc_str(topic) + bytes((options,))
    return _frame((PacketType.SUBSCRIBE << 4) | 0x02, body)


def encode_suback(packet_id: int, reason_codes: list[int], version: int) -> bytes:
    body = struct.pack("!H", packet_id)
    if version == MQTT_5:
        body += b"\x00"
    return _frame(PacketType.SUBACK << 4, body + bytes(reason_codes))


def encode_unsubscribe(packet_id: int, topics: list[str], version: int) -> bytes:
    body = struct.pack("!H", packet_id)
    if version == MQTT_5:
        body += b"\x00"
    for topic in topics:
        body += _enc_str(topic)
    return _frame((PacketType.UNSUBSCRIBE << 4) | 0x02, body)


def encode_unsuback(packet_id: int, count: int, version: int) -> bytes:
    body = struct.pack("!H", packet_id)
    if version == MQTT_5:
        body += b"\x00" + bytes(count)
    return _frame(PacketType.UNSUBACK << 4, body)


def encode_pingreq() -> bytes:
    return bytes((PacketType.PINGREQ << 4, 0))


def encode_pingresp() -> bytes:
    return bytes((PacketType.PINGRESP << 4, 0))


def encode_disconnect(reason_code: int, version: int) -> bytes:
    if version == MQTT_5:
        return _frame(PacketType.DISCONNECT << 4, bytes((reason_code,)))
    return bytes((PacketType.DISCONNECT << 4, 0))
