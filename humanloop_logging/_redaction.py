"""Finding the API key in an answer however a server spelt it, so that it is never repeated.

A server or a proxy that echoes the request may have JSON-escaped the key (a quote, a backslash,
anything non-ASCII) or percent-encoded it (in a URL, a form); a byte-for-byte match would miss it.
"""

from __future__ import annotations

import re

__all__ = ["key_pattern"]


#: How JSON may write a character with a short escape of its own (``/`` is optional, but some
#: servers escape it).
_JSON_SHORT = {
    '"': b'\\"',
    "\\": b"\\\\",
    "/": b"\\/",
    "\b": b"\\b",
    "\f": b"\\f",
    "\n": b"\\n",
    "\r": b"\\r",
    "\t": b"\\t",
}


def _hex(number: int, width: int) -> bytes:
    """A pattern for ``number`` in hexadecimal, in upper or lower case."""
    digits = f"{number:0{width}x}"
    return "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in digits).encode("ascii")


def _spellings(char: str) -> list[bytes]:
    """Patterns for one character of the key as a server may echo it: as sent (latin-1, as the
    header goes out) or as UTF-8; JSON-escaped; percent-encoded."""
    utf8 = char.encode("utf-8", "surrogatepass")
    code = ord(char)
    units = (
        [code] if code < 0x10000 else [0xD800 + ((code - 0x10000) >> 10), 0xDC00 + (code & 0x3FF)]
    )
    found = [b"".join(b"\\\\u" + _hex(unit, 4) for unit in units)]
    if char in _JSON_SHORT:
        found.append(re.escape(_JSON_SHORT[char]))
    found.append(b"".join(b"%" + _hex(byte, 2) for byte in utf8))
    if char == " ":
        found.append(b"\\+")
    found.append(re.escape(utf8))
    if 0x80 <= code <= 0xFF:
        found.append(re.escape(bytes([code])))
    return found


def key_pattern(key: str) -> re.Pattern[bytes]:
    """What finds ``key`` in an answer, however it is spelt there, even one character one way and
    the next another: a server or proxy echoing the request may have JSON-escaped it (a quote,
    a backslash, anything non-ASCII) or percent-encoded it (in a URL, a form)."""
    return re.compile(b"".join(b"(?:" + b"|".join(_spellings(char)) + b")" for char in key))
