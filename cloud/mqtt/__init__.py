"""MQTT on the wire: one codec (packets <-> bytes, both directions) and the asyncio client built on it."""
