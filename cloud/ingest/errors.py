"""Errors of the ingest path, each mapped once to what the sender is told."""


class IngestError(Exception):
    """Base of the ingest errors."""


class QueueUnavailable(IngestError):
    """Redis could not be reached or did not answer: nothing was stored, the sender should retry."""


class BacklogFull(IngestError):
    """The stream holds more unprocessed entries than the configured bound: retry later."""
