"""The durable entry of every gift: dedupe and append to the Redis Streams queue, atomically."""
