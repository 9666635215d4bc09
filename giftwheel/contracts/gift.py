"""The normalised gift event every source is mapped to, and the bounds every input is checked
against."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal, NamedTuple

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)
from pydantic.alias_generators import to_camel

from giftwheel.contracts import strict_json

CONTRACT_VERSION = 1

# Hard ceilings of the wire format itself. The configurable GiftBounds sit below these; the
# ceilings only exist so that a value can never overflow what Redis, JSON or a motor can hold.
_DIAMOND_CEILING = 10_000_000
_QUANTITY_CEILING = 1_000_000
_TEXT_CEILING = 1024

EventId = Annotated[
    str, StringConstraints(min_length=1, max_length=_TEXT_CEILING, pattern=r"^[A-Za-z0-9:._@/-]+$")
]
Platform = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
Text = Annotated[str, StringConstraints(min_length=1, max_length=_TEXT_CEILING)]


class GiftBounds(BaseModel):
    """Configurable limits applied to every incoming event (embedded in the service settings)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    diamond_max: int = Field(default=100_000, ge=1, le=_DIAMOND_CEILING)
    quantity_max: int = Field(default=10_000, ge=1, le=_QUANTITY_CEILING)
    event_id_max_len: int = Field(default=128, ge=8, le=_TEXT_CEILING)
    user_id_max_len: int = Field(default=128, ge=1, le=_TEXT_CEILING)
    user_name_max_len: int = Field(default=64, ge=1, le=_TEXT_CEILING)
    gift_name_max_len: int = Field(default=64, ge=1, le=_TEXT_CEILING)
    channel_max_len: int = Field(default=64, ge=1, le=_TEXT_CEILING)
    timestamp_max_age_s: int = Field(default=86_400, ge=1)
    timestamp_max_future_s: int = Field(default=300, ge=0)


class Problem(NamedTuple):
    """One reason an input was refused, named by its wire field ("" for the whole body)."""

    field: str
    reason: str


class GiftRejected(ValueError):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.field or 'body'}: {p.reason}" for p in problems))
        self.problems = problems


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class GiftEventIn(_Wire):
    """A gift event as a source sends it: the normalised shape with an optional eventId.

    The model checks types and the wire format's hard ceilings; ``parse_gift`` adds the
    configured GiftBounds and the clock.
    """

    event_id: EventId | None = None
    event: Literal["gift"]
    platform: Platform
    user_id: Text
    user_name: Text | None = None
    channel: Text | None = None
    gift_name: Text
    diamond: Annotated[int, Field(ge=1, le=_DIAMOND_CEILING, strict=True)]
    quantity: Annotated[int, Field(ge=1, le=_QUANTITY_CEILING, strict=True)] = 1
    timestamp: Annotated[int, Field(ge=0, strict=True)]

    @field_validator("event", mode="before")
    @classmethod
    def _known_event_type(cls, value: object) -> object:
        if isinstance(value, str) and value != "gift":
            raise ValueError(f"unknown event type {value!r}; supported: 'gift'")
        return value


def bound_violations(event: GiftEventIn, bounds: GiftBounds, now_ms: int) -> list[Problem]:
    # Messages are formatted only for what failed: this runs for every event of every batch.
    problems: list[Problem] = []
    if event.diamond > bounds.diamond_max:
        problems.append(Problem("diamond", f"must be <= {bounds.diamond_max}"))
    if event.quantity > bounds.quantity_max:
        problems.append(Problem("quantity", f"must be <= {bounds.quantity_max}"))
    lengths = (
        ("eventId", event.event_id, bounds.event_id_max_len),
        ("userId", event.user_id, bounds.user_id_max_len),
        ("userName", event.user_name, bounds.user_name_max_len),
        ("giftName", event.gift_name, bounds.gift_name_max_len),
        ("channel", event.channel, bounds.channel_max_len),
    )
    for field, value, limit in lengths:
        if value is not None and len(value) > limit:
            problems.append(Problem(field, f"longer than {limit} characters"))
    if event.timestamp < now_ms - bounds.timestamp_max_age_s * 1000:
        problems.append(Problem("timestamp", f"older than {bounds.timestamp_max_age_s} s"))
    if event.timestamp > now_ms + bounds.timestamp_max_future_s * 1000:
        problems.append(Problem("timestamp", f"more than {bounds.timestamp_max_future_s} s in the future"))
    return problems


class GiftEvent(_Wire):
    """A validated, normalised gift event with its idempotency key: what the stream carries."""

    v: int = CONTRACT_VERSION
    event_id: EventId
    event: Literal["gift"] = "gift"
    platform: Platform
    user_id: Text
    user_name: Text | None = None
    channel: Text | None = None
    gift_name: Text
    diamond: int
    quantity: int
    timestamp: int

    @property
    def rounds(self) -> int:
        """One round per diamond, before any rule multiplier: diamond * quantity."""
        return self.diamond * self.quantity

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(by_alias=True, exclude_none=True))


def derive_event_id(event: GiftEventIn) -> str:
    """A deterministic id from the payload, so a retried webhook without an eventId still dedupes.

    Two genuinely separate gifts with identical user, gift, quantity and millisecond timestamp
    collapse into one; sources that can tell them apart must send their own eventId.
    """
    fields: dict[str, Any] = event.model_dump(by_alias=True, exclude={"event_id"})
    digest = hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"{event.platform}:h:{digest[:40]}"


def normalise(event: GiftEventIn) -> GiftEvent:
    return GiftEvent(
        event_id=event.event_id or derive_event_id(event),
        platform=event.platform,
        user_id=event.user_id,
        user_name=event.user_name,
        channel=event.channel,
        gift_name=event.gift_name,
        diamond=event.diamond,
        quantity=event.quantity,
        timestamp=event.timestamp,
    )


def problems_of(error: ValidationError) -> list[Problem]:
    """Pydantic's errors in wire terms: the camelCase field path and a plain reason."""
    problems = []
    for item in error.errors(include_url=False):
        field = ".".join(str(part) for part in item["loc"])
        reason = item["msg"].removeprefix("Value error, ")
        if item["type"] == "json_invalid":
            reason = f"malformed JSON: {item.get('ctx', {}).get('error', reason)}"
        problems.append(Problem(field, reason))
    return problems


def parse_gift(raw: bytes | str, bounds: GiftBounds, now_ms: int) -> GiftEvent:
    """Validate one incoming event given as JSON text and normalise it (``strict_json``: a key
    given twice is refused). Raises GiftRejected naming every field that is wrong and why."""
    try:
        document = strict_json.loads(raw)
    except strict_json.DuplicateKeyError as exc:
        raise GiftRejected([Problem(exc.key, exc.reason)]) from None
    except ValueError as exc:
        raise GiftRejected([Problem("", f"malformed JSON: {exc}")]) from None
    return parse_gift_item(document, bounds, now_ms)


def parse_gift_item(item: object, bounds: GiftBounds, now_ms: int) -> GiftEvent:
    """Validate one event already decoded (an item of a batch or of a WebSocket frame) and
    normalise it. Only an object is an event: a string is never decoded a second time."""
    if not isinstance(item, dict):
        raise GiftRejected([Problem("", "an event must be a JSON object")])
    try:
        event_in = GiftEventIn.model_validate(item)
    except ValidationError as exc:
        raise GiftRejected(problems_of(exc)) from None
    problems = bound_violations(event_in, bounds, now_ms)
    if problems:
        raise GiftRejected(problems)
    return normalise(event_in)
