"""How much disc data a process still holds: the check behind "nothing is left behind".

Bytes objects are not tracked by the garbage collector themselves (they hold no references),
so they are found through what refers to them: every tracked object (module dicts, frames of
suspended coroutines, lists, instances) is asked for its referents.
"""

from __future__ import annotations

import gc


def large_buffers(min_size: int = 1 << 20) -> int:
    """How many bytes/bytearray/memoryview objects of at least `min_size` bytes are alive."""
    gc.collect()
    found: dict[int, object] = {}
    for holder in gc.get_objects():
        for item in gc.get_referents(holder):
            if isinstance(item, (bytes, bytearray, memoryview)) and len(item) >= min_size:
                found[id(item)] = item
    return len(found)
