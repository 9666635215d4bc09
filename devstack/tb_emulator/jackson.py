"""A JSON tree read into a Java bean as ThingsBoard's JacksonUtil.OBJECT_MAPPER reads it.

Rule nodes read their configuration with ``TbNodeUtils.convert`` -> ``JacksonUtil.treeToValue``
(thingsboard/thingsboard common/util/src/main/java/org/thingsboard/common/util/JacksonUtil.java
@v4.3.0.1 and @dfe65d5): a plain ``JsonMapper`` with only the Jdk8 module, so jackson-databind's
defaults apply (2.18 under Spring Boot 3.4 at v4.3.0.1, 2.19 under 3.5 at dfe65d5; the rules below
are the same in both, read from FasterXML/jackson-databind ``cfg/CoercionConfigs.java`` and
``deser/std/StdDeserializer.java``, ``EnumDeserializer.java`` @jackson-databind-2.18.3):

- an unknown property fails (FAIL_ON_UNKNOWN_PROPERTIES) unless the class says
  ``@JsonIgnoreProperties(ignoreUnknown = true)``: :class:`JavaBean` / :class:`LenientJavaBean`;
- a missing property keeps the Java default: 0 / false for primitives, null for objects;
- scalars coerce (ALLOW_COERCION_OF_SCALARS and ACCEPT_FLOAT_AS_INT on, FAIL_ON_NULL_FOR_PRIMITIVES
  off): an int or long takes an integer, a float (truncated), a numeric string, or null / "" / "null"
  (0); a boolean takes true/false, an integer (0 is false), "true"/"True"/"TRUE",
  "false"/"False"/"FALSE", or null / "" / "null" (false); a String takes any scalar as its text;
  an enum takes its exact name (surrounding blanks trimmed) or its index; arrays and objects are
  never unwrapped into a scalar.

Pydantic does the binding; the ``Annotated`` types here do Jackson's coercions first, so the model
sees the value Java would hold. Errors read like Jackson's, naming the Java class.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from decimal import Decimal
from enum import Enum
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

_INTEGER = re.compile(r"[+-]?\d+")
_INT_BITS = 32
_LONG_BITS = 64


class JavaBindError(ValueError):
    """The JSON does not bind to the Java class (Jackson would throw a JsonMappingException)."""


def _int(bits: int, java_type: str) -> Callable[[Any], int]:
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def coerce(value: Any) -> int:
        if value is None:
            return 0  # FAIL_ON_NULL_FOR_PRIMITIVES is off
        if isinstance(value, bool):
            raise ValueError(f"Cannot deserialize value of type `{java_type}` from Boolean value")
        if isinstance(value, float):
            # ACCEPT_FLOAT_AS_INT: JsonNode.asInt()/asLong() is a Java narrowing cast (clamps, NaN 0)
            return 0 if math.isnan(value) else max(low, min(high, int(value)))
        if isinstance(value, int):
            if not low <= value <= high:
                raise ValueError(f"Numeric value ({value}) out of range of `{java_type}`")
            return value
        if isinstance(value, str):
            text = value.strip()
            if text in ("", "null"):  # empty/blank String coerces AsNull; "null" is a textual null
                return 0
            if _INTEGER.fullmatch(text) and low <= int(text) <= high:
                return int(text)
            raise ValueError(f'Cannot deserialize value of type `{java_type}` from String "{value}"')
        raise ValueError(f"Cannot deserialize value of type `{java_type}` from {_shape(value)}")

    return coerce


def _boolean(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0  # _coerceBooleanFromInt
    if isinstance(value, str):
        text = value.strip()
        if text in ("true", "True", "TRUE"):
            return True
        if text in ("false", "False", "FALSE", "", "null"):
            return False
        raise ValueError(
            f'Cannot deserialize value of type `boolean` from String "{value}": only "true"/"True"/'
            '"TRUE" or "false"/"False"/"FALSE" recognized'
        )
    raise ValueError(f"Cannot deserialize value of type `boolean` from {_shape(value)}")


def java_double_to_string(value: float) -> str:
    """Double.toString as JDK 19+ prints it (ThingsBoard 4.4 runs on 25): the shortest digits that read
    back as the same double, but at least two, the second one closest to the exact value (4.9E-324);
    plain from 10^-3 to 10^7 ("21.5", "100.0"), else computerized scientific ("1.0E7", "1.5E-4").
    (4.3 runs on JDK 17, whose older algorithm gives a few doubles a digit more: 9.999999999999999E22
    for 1e23.)"""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    sign = "-" if value < 0 else ""
    decimal = Decimal(repr(abs(value))).normalize()
    if len(decimal.as_tuple().digits) == 1:  # two digits, the second as near the exact value as it gets
        exact = Decimal(abs(value))
        decimal = exact.quantize(Decimal(1).scaleb(decimal.adjusted() - 1)).normalize()
    if 1e-3 <= abs(value) < 1e7:
        text = format(decimal, "f")
        return sign + (text if "." in text else text + ".0")
    digits = decimal.as_tuple().digits
    mantissa = str(digits[0]) + "." + ("".join(map(str, digits[1:])) or "0")
    return f"{sign}{mantissa}E{decimal.adjusted()}"


def _string(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return java_double_to_string(value)
    raise ValueError(f"Cannot deserialize value of type `java.lang.String` from {_shape(value)}")


def _shape(value: Any) -> str:
    if isinstance(value, list):
        return "Array value (token `JsonToken.START_ARRAY`)"
    if isinstance(value, dict):
        return "Object value (token `JsonToken.START_OBJECT`)"
    return f"{type(value).__name__} value"


E = TypeVar("E", bound=Enum)


def java_enum(enum: type[E]) -> Callable[[Any], E | None]:
    """EnumDeserializer with the default features: name, trimmed name, or ordinal index."""
    members = list(enum)

    def coerce(value: Any) -> E | None:
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            if 0 <= value < len(members):
                return members[value]
            raise ValueError(f"Cannot deserialize value of type `{enum.__name__}` from number {value}")
        if isinstance(value, str):
            name = value.strip()
            for member in members:
                if member.name == name:
                    return member
            # a quoted index, but not "007" (EnumDeserializer._deserializeAltString)
            quoted_index = name.isdigit() and not (name[0] == "0" and len(name) > 1)
            if quoted_index and int(name) < len(members):
                return members[int(name)]
            raise ValueError(
                f'Cannot deserialize value of type `{enum.__name__}` from String "{value}": not one of '
                f"the values accepted for Enum class: [{', '.join(m.name for m in members)}]"
            )
        raise ValueError(f"Cannot deserialize value of type `{enum.__name__}` from {_shape(value)}")

    return coerce


def _string_map(value: Any) -> dict[str, str | None] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"Cannot deserialize value of type `java.util.Map` from {_shape(value)}")
    return {key: _string(item) for key, item in value.items()}


def _list(value: Any) -> list[Any] | None:
    if value is None or isinstance(value, list):
        return value
    raise ValueError(f"Cannot deserialize value of type `java.util.List` from {_shape(value)}")


def _object(value: Any) -> Any:
    if value is None or isinstance(value, dict):
        return value
    raise ValueError(
        f"Cannot construct instance from {_shape(value)}: no delegate- or property-based Creator"
    )


java_int = _int(_INT_BITS, "int")
JInt = Annotated[int, BeforeValidator(java_int)]
JLong = Annotated[int, BeforeValidator(_int(_LONG_BITS, "long"))]
JBool = Annotated[bool, BeforeValidator(_boolean)]
JString = Annotated[str | None, BeforeValidator(_string)]
JStringMap = Annotated[dict[str, str | None] | None, BeforeValidator(_string_map)]
JList = BeforeValidator(_list)  # Annotated[list[X] | None, JList]
JObject = BeforeValidator(_object)  # Annotated[Bean | None, JObject]


class JavaBean(BaseModel):
    """A Java class without ``@JsonIgnoreProperties(ignoreUnknown = true)``: unknown properties fail.

    Fields are snake_case in Python and camelCase on the wire, as the Java property names are.
    """

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, frozen=True)
    JAVA_CLASS: ClassVar[str] = ""


class LenientJavaBean(JavaBean):
    """A Java class with ``@JsonIgnoreProperties(ignoreUnknown = true)``."""

    model_config = ConfigDict(extra="ignore")


B = TypeVar("B", bound=JavaBean)


def read(bean: type[B], data: Any) -> B:
    """``JacksonUtil.treeToValue(data, bean)``, raising JavaBindError with Jackson's wording."""
    if not isinstance(data, dict):
        raise JavaBindError(f"Cannot construct instance of `{bean.JAVA_CLASS}` from {_shape(data)}")
    try:
        return bean.model_validate(data)
    except ValidationError as exc:
        raise JavaBindError(_describe(bean, exc)) from None


def _describe(bean: type[JavaBean], exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False):
        path = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            problems.append(f'Unrecognized field "{error["loc"][-1]}" at {path}, not marked as ignorable')
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{path}: {message}")
    return f"Can't convert value to `{bean.JAVA_CLASS}`: " + "; ".join(problems)


def write(bean: JavaBean) -> dict[str, Any]:
    """``JacksonUtil.valueToTree(bean)``: every property, nulls included, under its Java name."""
    return bean.model_dump(mode="json", by_alias=True)
