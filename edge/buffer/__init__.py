"""The local Redis buffer: per-motor command streams, commandId dedupe, progress, telemetry outbox."""
