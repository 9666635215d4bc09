"""Gson as ThingsBoard's MQTT transport uses it: parse a payload, read an element as long or string.

ThingsBoard reads every JSON payload with ``JsonParser.parseString`` and converts with
``JsonElement`` accessors, so what it accepts is Gson's behaviour, Java exceptions included: which
exception class a bad value raises decides whether the transport answers PUBACK 0x99 or closes the
channel. Sources: google/gson ``gson/src/main/java/com/google/gson/`` ``JsonParser.java``,
``JsonPrimitive.java``, ``JsonArray.java``, ``JsonElement.java``, ``internal/LazilyParsedNumber.java``,
``internal/NumberLimits.java``, ``stream/JsonWriter.java`` @gson-parent-2.13.1 (these accessors are the
same in 2.11.0; ThingsBoard takes Gson from spring-boot-dependencies).

The tree is plain Python: dict, list, str, bool, None, int for an integer literal, and
:class:`JsonNumber` (a float that keeps its literal, as Gson's ``LazilyParsedNumber`` does) for a
literal with a fraction or an exponent. Strict JSON takes the standard library's C parser; what it
refuses, Gson's lenient reader (gson_reader.py) reads as ThingsBoard does.
"""

from __future__ import annotations

import json
import unicodedata
from decimal import Decimal
from typing import Any

import orjson

from devstack.tb_emulator.gson_reader import NESTING_LIMIT, MalformedJson, parse_lenient, too_deep
from devstack.tb_emulator.jackson import java_double_to_string

LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
LONG_DIGITS = 19  # digits of LONG_MAX
_LONG_SPAN = 2**64
_INT_SPAN = 2**32
# NumberLimits: LazilyParsedNumber refuses longer literals and larger scales (NumberFormatException)
_MAX_NUMBER_STRING_LENGTH = 10_000
_MAX_SCALE = 10_000
_INT_DIGITS_SAFE = 4_000  # below sys.int_info.default_max_str_digits


class JavaRuntimeException(Exception):
    """A Java RuntimeException Gson raises; the subclass names the Java class a caller catches."""


class JsonSyntaxException(JavaRuntimeException):
    """com.google.gson.JsonSyntaxException (malformed JSON, or JsonConverter's "Can't parse value")."""


class IllegalStateException(JavaRuntimeException):
    """java.lang.IllegalStateException: getAsJsonObject of a non-object, getAsLong of an array not of
    size 1."""


class NumberFormatException(JavaRuntimeException):
    """java.lang.NumberFormatException: getAsLong of a string or boolean Long.parseLong refuses."""


class UnsupportedOperationException(JavaRuntimeException):
    """java.lang.UnsupportedOperationException: getAsLong / getAsString of a JSON null or object."""


class NullPointerException(JavaRuntimeException):
    """java.lang.NullPointerException: a member read with ``get(name)`` is absent."""


class JsonNumber(float):
    """A number literal with a fraction or exponent: its value as a float, its text as Gson keeps it."""

    __slots__ = ("literal",)
    literal: str

    def __new__(cls, literal: str) -> JsonNumber:
        number = super().__new__(cls, literal)
        number.literal = literal
        return number

    def __repr__(self) -> str:
        return f"JsonNumber({self.literal!r})"


def _int_literal(text: str) -> int | JsonNumber:
    """An integer literal within the long range is an int; a larger one keeps its literal (orjson
    writes no integer beyond 64 bits, and Python parses no more than ~4,300 digits)."""
    if len(text) < LONG_DIGITS:  # 18 characters: any such integer fits a long
        return int(text)
    number = int(text) if len(text) <= _INT_DIGITS_SAFE else None
    return number if number is not None and LONG_MIN <= number <= LONG_MAX else JsonNumber(text)


def _number(literal: str) -> int | JsonNumber:
    """A number literal as Gson's JsonReader gives it to LazilyParsedNumber."""
    if literal == "-0" or not literal.lstrip("-").isdigit():
        return JsonNumber(literal)  # "-0" too: Gson keeps its literal, and an int would lose the sign
    return _int_literal(literal)


def _strict_number(literal: str) -> int | JsonNumber | str:
    # JsonReader reads a number of 1,024 characters or more as an unquoted string
    return literal if len(literal) >= _READER_BUFFER else _number(literal)


# The fast path for strict JSON, read as Gson reads it: NaN, Infinity and -Infinity are unquoted
# literals, which JsonReader peeks as STRING, so they become strings; control characters are
# allowed. Anything else goes to the lenient reader (gson_reader.py).
_READER_BUFFER = 1024
_DECODER = json.JSONDecoder(
    parse_float=_strict_number, parse_int=_strict_number, parse_constant=str, strict=False
)


def parse(payload: bytes) -> Any:
    """JsonParser.parseString(payload.toString(UTF_8)); malformed -> JsonSyntaxException.

    Netty's ``ByteBuf.toString(UTF_8)`` replaces invalid UTF-8 with U+FFFD instead of failing.
    """
    text = payload.decode("utf-8", errors="replace").removeprefix("\ufeff")  # fillBuffer skips a BOM
    try:
        tree = _DECODER.decode(text)
        if (
            isinstance(tree, (dict, list))
            and text.count("[") + text.count("{") > NESTING_LIMIT
            and too_deep(tree)
        ):
            raise JsonSyntaxException(f"malformed JSON: Nesting limit {NESTING_LIMIT} reached")
    except (json.JSONDecodeError, RecursionError):
        try:
            tree = parse_lenient(text, _number)
        except MalformedJson as exc:
            raise JsonSyntaxException(f"malformed JSON: {exc}") from None
    if "\\u" in text:
        # an escaped lone surrogate parses in Gson as in Python, but no UTF-8 encoder takes it:
        # Java's String.getBytes writes '?', as Python's "replace" error handler does
        tree = _replace_lone_surrogates(tree)
    return tree


def _replace_lone_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {_replace_lone_surrogates(k): _replace_lone_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_lone_surrogates(v) for v in value]
    return value


def get_as_long(value: Any) -> int:
    """JsonElement.getAsLong, per element class.

    - number: ``LazilyParsedNumber.longValue``: ``Long.parseLong(literal)``, else
      ``new BigDecimal(literal).longValue()``: the fraction is truncated toward zero and a value
      beyond 64 bits keeps its low 64 bits (two's complement). So 1.7e12 -> 1700000000000,
      1700000000000.9 -> 1700000000000, -1.5 -> -1, 1e19 -> -8446744073709551616. A literal over
      10,000 characters, or with a scale of 10,000 or more (1e10000): NumberFormatException.
    - string: ``Long.parseLong``: an optional sign and decimal digits, within the long range:
      "1700000000000" -> 1700000000000; "17e11", "1.5", " 5", "abc", "": NumberFormatException.
    - boolean: ``Long.parseLong("true")``: NumberFormatException.
    - array: its only element's getAsLong ([5] -> 5); any other size: IllegalStateException.
    - null or object: UnsupportedOperationException.
    """
    if isinstance(value, bool):
        return parse_long(get_as_string(value))
    if isinstance(value, int):
        return _wrap_long(value)
    if isinstance(value, JsonNumber):
        return _big_decimal_long_value(value.literal)
    if isinstance(value, str):
        return parse_long(value)
    if isinstance(value, list):
        return get_as_long(_single_element(value))
    raise UnsupportedOperationException(_class_name(value))


def member(obj: dict[str, Any], name: str) -> Any:
    """``JsonObject.get(name)`` with a getter called on the result: an absent member is Java's null,
    so the call is a NullPointerException (a JSON null is JsonNull, whose getters raise
    UnsupportedOperationException)."""
    if name not in obj:
        raise NullPointerException(f'"{name}" is absent: JsonObject.get returned null')
    return obj[name]


def get_as_json_object(value: Any) -> dict[str, Any]:
    """JsonElement.getAsJsonObject: anything but an object is an IllegalStateException."""
    if not isinstance(value, dict):
        raise IllegalStateException("Not a JSON Object: " + to_string(value))
    return value


def get_as_json_array(value: Any) -> list[Any]:
    """JsonElement.getAsJsonArray: anything but an array is an IllegalStateException."""
    if not isinstance(value, list):
        raise IllegalStateException("Not a JSON Array: " + to_string(value))
    return value


def get_as_int(value: Any) -> int:
    """JsonElement.getAsInt, per element class.

    - number: ``LazilyParsedNumber.intValue``: ``Integer.parseInt(literal)``, else
      ``(int) Long.parseLong(literal)``, else ``new BigDecimal(literal).intValue()``: all three
      keep the integer part's low 32 bits, so 5.7 -> 5, -1.5 -> -1, 2147483648 -> -2147483648,
      1e10 -> 1410065408; the literal limits of :func:`get_as_long` apply.
    - string: ``Integer.parseInt``: "5" -> 5; "5.7", " 5", "2147483648": NumberFormatException.
    - boolean: ``Integer.parseInt("true")``: NumberFormatException.
    - array: its only element's getAsInt; any other size: IllegalStateException.
    - null or object: UnsupportedOperationException.
    """
    if isinstance(value, bool):
        return parse_long(get_as_string(value), bits=32)
    if isinstance(value, (int, JsonNumber)):
        return (get_as_long(value) + _INT_SPAN // 2) % _INT_SPAN - _INT_SPAN // 2
    if isinstance(value, str):
        return parse_long(value, bits=32)
    if isinstance(value, list):
        return get_as_int(_single_element(value))
    raise UnsupportedOperationException(_class_name(value))


def get_as_boolean(value: Any) -> bool:
    """JsonElement.getAsBoolean: a boolean's value; any other primitive is
    ``Boolean.parseBoolean(getAsString())``, true only for "true" in any case ("TRUE"; "yes", "1",
    1 and "true " are false; Java's case folding maps no other character onto these four letters);
    an array: its only element's getAsBoolean, else IllegalStateException; null or object:
    UnsupportedOperationException."""
    if isinstance(value, bool):
        return value
    if isinstance(value, list):
        return get_as_boolean(_single_element(value))
    text = get_as_string(value)
    return text.isascii() and text.lower() == "true"


def get_as_string(value: Any) -> str:
    """JsonElement.getAsString: a primitive's text (a number's literal), a one-element array's element;
    null or object: UnsupportedOperationException."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return literal(value)
    if isinstance(value, list):
        return get_as_string(_single_element(value))
    raise UnsupportedOperationException(_class_name(value))


def literal(value: int | float) -> str:
    """A number primitive's getAsString: its literal as it arrived (an integer's decimal digits); a
    float that came from no literal (a converted DOUBLE_V, which ThingsBoard holds as a Double) is
    ``Double.toString``, as Gson writes and reads back a ``JsonPrimitive(Double)``."""
    if isinstance(value, JsonNumber):
        return value.literal
    return java_double_to_string(value) if isinstance(value, float) else str(value)


def _single_element(array: list[Any]) -> Any:
    if len(array) != 1:
        raise IllegalStateException(f"Array must have size 1, but has size {len(array)}")
    return array[0]


def _class_name(value: Any) -> str:
    return "JsonNull" if value is None else "JsonObject"


def parse_long(text: str, bits: int = 64) -> int:
    """java.lang.Long.parseLong(text, 10) (bits=32: Integer.parseInt): a sign, then digits
    (Character.digit: any Unicode decimal digit of the Basic Multilingual Plane), nothing else,
    within the range."""
    digits = text[1:] if text[:1] in ("-", "+") else text
    if not digits or not all(ch.isdecimal() and ch <= "\uffff" for ch in digits):
        raise NumberFormatException(f'For input string: "{text}"')
    if not digits.isascii():
        digits = "".join(str(unicodedata.decimal(ch)) for ch in digits)
    digits = digits.lstrip("0") or "0"
    if len(digits) <= LONG_DIGITS:
        number = -int(digits) if text[0] == "-" else int(digits)
        if -(2 ** (bits - 1)) <= number < 2 ** (bits - 1):
            return number
    raise NumberFormatException(f'For input string: "{text}"')


def _wrap_long(number: int) -> int:
    """BigDecimal.longValue beyond 64 bits: the low-order 64 bits, as a signed long."""
    return (number - LONG_MIN) % _LONG_SPAN + LONG_MIN


def _big_decimal_long_value(text: str) -> int:
    if len(text) > _MAX_NUMBER_STRING_LENGTH:
        raise NumberFormatException(f"Number string too large: {text[:30]}...")
    decimal = Decimal(text)
    exponent = decimal.as_tuple().exponent
    assert isinstance(exponent, int)  # a JSON literal is finite
    if abs(exponent) >= _MAX_SCALE:
        raise NumberFormatException(f"Number has unsupported scale: {text}")
    return _wrap_long(int(decimal))  # int() truncates toward zero, as longValue does


def dumps(value: Any) -> str:
    """Compact JSON of a tree or any emulator value; a JsonNumber is written as its literal."""
    return orjson.dumps(value, default=_literal_fragment).decode()


def _literal_fragment(value: Any) -> orjson.Fragment:
    if isinstance(value, JsonNumber):
        return orjson.Fragment(value.literal)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def to_string(value: Any) -> str:
    """JsonElement.toString: compact, number literals as they arrived, JsonWriter's escapes (orjson's
    plus U+2028 and U+2029)."""
    return dumps(value).replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
