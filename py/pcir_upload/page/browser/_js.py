"""Small conversions between Python and JavaScript values, in one place."""

from __future__ import annotations

from typing import Any

import js
from pyodide.ffi import to_js


def js_object(value: dict[str, Any]) -> Any:
    """A plain JavaScript object (not a Map), as Web APIs expect for their options."""
    return to_js(value, dict_converter=js.Object.fromEntries)


def uint8array(data: bytes) -> Any:
    """A JavaScript copy of `data`: Web APIs may keep a view after Python frees the bytes."""
    array = js.Uint8Array.new(len(data))
    array.assign(data)
    return array


def to_bytes(buffer: Any) -> bytes:
    """Python bytes from an ArrayBuffer or typed array."""
    return buffer.to_bytes()


def from_js(array: Any) -> bytearray:
    """A copy of a Uint8Array in Python: eight times as fast as `to_bytes()` (measured here,
    bench/stages.py), which matters for every byte of a disc."""
    copy = bytearray(array.length)
    array.assign_to(copy)
    return copy
