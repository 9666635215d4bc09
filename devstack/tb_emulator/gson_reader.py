"""Gson's JsonReader in its lenient mode, which ``JsonParser.parseString`` uses: for the payloads strict
JSON refuses and ThingsBoard still reads.

A port of google/gson gson/src/main/java/com/google/gson/stream/JsonReader.java @gson-parent-2.13.1
(``doPeek``, ``peekKeyword``, ``peekNumber``, ``isLiteral``, ``nextNonWhitespace``,
``nextQuotedValue``, ``nextUnquotedValue``, ``readEscapeCharacter``, ``consumeNonExecutePrefix``) and
of the tree building in ``JsonElementTypeAdapter`` / ``Streams.parse`` / ``JsonParser.parseReader``.
What leniency adds: comments (``//``, ``#``, ``/* */``), single-quoted strings and names, unquoted
names and values (``{a: 01}`` is ``{"a": "01"}``), ``=`` or ``=>`` after a name, ``;`` between
elements, an omitted array element is null (``[1,,2]``, ``[1,]``), true/false/null in any case,
``\\'`` and an escaped newline in strings, a ``)]}'`` line before the document. A number literal of
1,024 characters or more is a string (it does not fit the reader's buffer); a document that is just
whitespace or comments is JSON null, and so is ``null`` followed by anything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_BUFFER_SIZE = 1024  # JsonReader.BUFFER_SIZE: the longest number literal it reads as a number
NESTING_LIMIT = 255  # JsonReader.DEFAULT_NESTING_LIMIT: arrays and objects within one another
_NOT_LITERAL = frozenset("/\\;#={}[]:, \t\f\r\n")  # isLiteral
_WHITESPACE = frozenset(" \t\r\n")  # nextNonWhitespace (no '\f')
_ESCAPES = {
    "t": "\t",
    "b": "\b",
    "n": "\n",
    "r": "\r",
    "f": "\f",
    "\n": "\n",
    "'": "'",
    '"': '"',
    "\\": "\\",
    "/": "/",
}
_HEX = frozenset("0123456789abcdefABCDEF")
_NON_EXECUTE_PREFIX = ")]}'\n"
# scopes (JsonScope)
_EMPTY_ARRAY, _NONEMPTY_ARRAY, _EMPTY_OBJECT, _DANGLING_NAME, _NONEMPTY_OBJECT = range(5)
_EMPTY_DOCUMENT, _NONEMPTY_DOCUMENT = 6, 7


class MalformedJson(ValueError):
    """Gson's MalformedJsonException or an EOFException inside a document (JsonSyntaxException)."""


class _Eof(Exception):
    """EOFException: at the start of a document it means an empty one (JSON null)."""


class _Reader:
    def __init__(self, text: str, number: Callable[[str], Any]) -> None:
        self.text = text
        self.pos = 0
        self.stack = [_EMPTY_DOCUMENT]
        self.number = number

    # ------------------------------------------------------------------ characters

    def _error(self, message: str) -> MalformedJson:
        return MalformedJson(f"{message} at character {self.pos}")

    def next_char(self) -> str:
        """nextNonWhitespace(true): the end of the input is an EOFException."""
        c = self.next_non_whitespace(throw_on_eof=True)
        assert c is not None
        return c

    def next_non_whitespace(self, throw_on_eof: bool) -> str | None:
        text, n = self.text, len(self.text)
        while self.pos < n:
            c = text[self.pos]
            self.pos += 1
            if c in _WHITESPACE:
                continue
            if c == "/" and self.pos < n and text[self.pos] in "*/":
                if text[self.pos] == "*":
                    end = text.find("*/", self.pos + 1)
                    if end < 0:
                        raise self._error("Unterminated comment")
                    self.pos = end + 2
                else:
                    self.pos += 1
                    self._skip_to_end_of_line()
                continue
            if c == "#":
                self._skip_to_end_of_line()
                continue
            return c
        if throw_on_eof:
            raise _Eof
        return None

    def _skip_to_end_of_line(self) -> None:
        while self.pos < len(self.text):
            c = self.text[self.pos]
            self.pos += 1
            if c in "\n\r":
                return

    def _quoted(self, quote: str) -> str:
        """nextQuotedValue: escapes as readEscapeCharacter reads them; raw control characters pass."""
        text, out = self.text, []
        while True:
            end = min(
                (i for i in (text.find(quote, self.pos), text.find("\\", self.pos)) if i >= 0), default=-1
            )
            if end < 0:
                raise self._error("Unterminated string")
            out.append(text[self.pos : end])
            self.pos = end + 1
            if text[end] == quote:
                return _join_utf16("".join(out))
            out.append(self._escape())

    def _escape(self) -> str:
        if self.pos >= len(self.text):
            raise self._error("Unterminated escape sequence")
        escaped = self.text[self.pos]
        self.pos += 1
        if escaped == "u":
            digits = self.text[self.pos : self.pos + 4]
            if len(digits) < 4:
                raise self._error("Unterminated escape sequence")
            if not all(d in _HEX for d in digits):
                raise self._error("Malformed Unicode escape \\u" + digits)
            self.pos += 4
            return chr(int(digits, 16))
        if escaped not in _ESCAPES:
            raise self._error("Invalid escape sequence")
        return _ESCAPES[escaped]

    def _unquoted(self) -> str:
        """nextUnquotedValue: up to the first character that is not a literal's."""
        start, text = self.pos, self.text
        while self.pos < len(text) and text[self.pos] not in _NOT_LITERAL:
            self.pos += 1
        return text[start : self.pos]

    # ------------------------------------------------------------------ tokens

    def next_token(self) -> tuple[str, Any]:
        """doPeek, and the reading of what it peeked: ("begin_object" | "end_object" | "begin_array" |
        "end_array" | "name" | "string" | "number" | "boolean" | "null" | "eof", value)."""
        scope = self.stack[-1]
        if scope == _EMPTY_ARRAY:
            self.stack[-1] = _NONEMPTY_ARRAY
        elif scope == _NONEMPTY_ARRAY:
            c = self.next_char()
            if c == "]":
                return self._pop("end_array")
            if c not in ",;":
                raise self._error("Unterminated array")
        elif scope in (_EMPTY_OBJECT, _NONEMPTY_OBJECT):
            self.stack[-1] = _DANGLING_NAME
            if scope == _NONEMPTY_OBJECT:
                c = self.next_char()
                if c == "}":
                    return self._pop("end_object")
                if c not in ",;":
                    raise self._error("Unterminated object")
            c = self.next_char()
            if c in ('"', "'"):
                return "name", self._quoted(c)
            if c == "}":
                if scope == _NONEMPTY_OBJECT:
                    raise self._error("Expected name")
                return self._pop("end_object")
            self.pos -= 1
            if c in _NOT_LITERAL:
                raise self._error("Expected name")
            return "name", self._unquoted()
        elif scope == _DANGLING_NAME:
            self.stack[-1] = _NONEMPTY_OBJECT
            c = self.next_char()
            if c == "=":
                if self.text.startswith(">", self.pos):
                    self.pos += 1
            elif c != ":":
                raise self._error("Expected ':'")
        elif scope == _EMPTY_DOCUMENT:
            self._consume_non_execute_prefix()
            self.stack[-1] = _NONEMPTY_DOCUMENT
        elif scope == _NONEMPTY_DOCUMENT:
            if self.next_non_whitespace(False) is None:
                return "eof", None
            self.pos -= 1
        return self._value(scope)

    def _value(self, scope: int) -> tuple[str, Any]:
        c = self.next_char()
        if c == "]" and scope == _EMPTY_ARRAY:
            return self._pop("end_array")
        if c in ("]", ",", ";"):
            if scope in (_EMPTY_ARRAY, _NONEMPTY_ARRAY):  # an omitted element
                self.pos -= 1
                return "null", None
            raise self._error("Unexpected value")
        if c in ("'", '"'):
            return "string", self._quoted(c)
        if c in "[{":
            if len(self.stack) - 1 >= NESTING_LIMIT:
                raise self._error(f"Nesting limit {NESTING_LIMIT} reached")
            self.stack.append(_EMPTY_ARRAY if c == "[" else _EMPTY_OBJECT)
            return ("begin_array" if c == "[" else "begin_object"), None
        self.pos -= 1
        keyword = self._keyword()
        if keyword is not None:
            return keyword
        number = self._number()
        if number is not None:
            return "number", number
        if c in _NOT_LITERAL:
            raise self._error("Expected value")
        return "string", self._unquoted()

    def _pop(self, token: str) -> tuple[str, Any]:
        self.stack.pop()
        return token, None

    def _consume_non_execute_prefix(self) -> None:
        self.next_char()
        self.pos -= 1
        if self.text.startswith(_NON_EXECUTE_PREFIX, self.pos):
            self.pos += len(_NON_EXECUTE_PREFIX)

    def _keyword(self) -> tuple[str, Any] | None:
        """peekKeyword: true / false / null, each letter in either case, not followed by a literal."""
        for word, token in (
            ("true", ("boolean", True)),
            ("false", ("boolean", False)),
            ("null", ("null", None)),
        ):
            candidate = self.text[self.pos : self.pos + len(word)]
            if len(candidate) == len(word) and all(
                a in (b, b.upper()) for a, b in zip(candidate, word, strict=True)
            ):
                after = self.pos + len(word)
                if after < len(self.text) and self.text[after] not in _NOT_LITERAL:
                    return None
                self.pos = after
                return token
        return None

    def _number(self) -> str | None:
        """peekNumber: a JSON number ending where a non-literal does (or the document ends), no
        leading zero, shorter than the buffer; else None (then it is an unquoted string)."""
        text, start, i, last = self.text, self.pos, 0, "none"
        while True:
            if i == _BUFFER_SIZE:
                return None
            if start + i == len(text):
                break
            c = text[start + i]
            if c == "-" and last in ("none", "e"):
                last = "sign" if last == "none" else "exp_sign"
            elif c == "+" and last == "e":
                last = "exp_sign"
            elif c in "eE" and last in ("digit", "zero", "fraction"):
                last = "e"
            elif c == "." and last in ("digit", "zero"):
                last = "decimal"
            elif "0" <= c <= "9":
                if last in ("none", "sign"):
                    last = "digit" if c != "0" else "zero"
                elif last == "zero":
                    return None  # a leading '0' (could be octal)
                elif last == "decimal":
                    last = "fraction"
                elif last in ("e", "exp_sign"):
                    last = "exp_digit"
            elif c in _NOT_LITERAL:
                break
            else:
                return None
            i += 1
        if last not in ("digit", "zero", "fraction", "exp_digit"):
            return None
        self.pos = start + i
        return text[start : self.pos]


def _join_utf16(text: str) -> str:
    """Escaped surrogate pairs (\\ud83d\\ude00) are one character, as in a Java string."""
    if any("\ud800" <= ch <= "\udfff" for ch in text):
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "surrogatepass")
    return text


def parse_lenient(text: str, number: Callable[[str], Any]) -> Any:
    """JsonParser.parseString: one element (``number`` makes a number from its literal); then, unless
    the element is null, nothing but whitespace: parseReader checks the end with the reader's
    strictness restored (LEGACY_STRICT), so not even a comment."""
    reader = _Reader(text, number)
    try:
        kind, value = reader.next_token()
    except _Eof:
        return None  # Streams.parse: an empty document is JsonNull
    try:
        tree = _element(reader, kind, value)
    except _Eof:
        raise MalformedJson("End of input") from None
    if tree is not None and text[reader.pos :].strip(" \t\r\n"):
        raise MalformedJson("Did not consume the entire document.")
    return tree


def too_deep(tree: Any) -> bool:
    """Whether arrays and objects nest deeper than JsonReader's limit."""
    level = [tree]
    for _ in range(NESTING_LIMIT):
        level = [v for node in level for v in (node.values() if isinstance(node, dict) else node)]
        level = [v for v in level if isinstance(v, (dict, list))]
        if not level:
            return False
    return True


def _element(reader: _Reader, kind: str, value: Any) -> Any:
    """JsonElementTypeAdapter.read, iteratively (a deep document does not exhaust the stack)."""
    if kind == "number":
        return reader.number(value)
    if kind not in ("begin_object", "begin_array"):
        if kind in ("string", "boolean", "null"):
            return value
        raise MalformedJson(f"Expected a value but was {kind}")
    root: Any = {} if kind == "begin_object" else []
    stack = [root]
    name = ""
    while stack:
        current = stack[-1]
        kind, value = reader.next_token()
        if kind in ("end_object", "end_array"):
            stack.pop()
            continue
        if isinstance(current, dict):
            name = value
            kind, value = reader.next_token()
        if kind == "begin_object" or kind == "begin_array":
            child: Any = {} if kind == "begin_object" else []
            stack.append(child)
        elif kind == "number":
            child = reader.number(value)
        elif kind in ("string", "boolean", "null"):
            child = value
        else:
            raise MalformedJson(f"Unexpected {kind}")
        if isinstance(current, dict):
            current[name] = child
        else:
            current.append(child)
    return root
