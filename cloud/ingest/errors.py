"""Errors of the ingest path, each mapped once to what the sender is told."""


class IngestError(Exception):
    """Base of the ingest errors."""


class QueueUnavailable(IngestError):
    """Redis could not be reached or did not answer in time: a write it received may still have
    been done, so the sender retries with the same eventId (a stored one comes back a duplicate)."""

    reason = "unavailable"  # the sender's error code and the rejected counter's label


class QueueMisconfigured(QueueUnavailable):
    """This API's settings disagree with the workers': nothing was written; retry later."""


class BacklogFull(IngestError):
    """The stream holds more unprocessed entries than the configured bound: retry later."""

    reason = "backlog"
