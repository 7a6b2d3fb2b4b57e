"""The leftover check itself must see a buffer that is still held, wherever it is held."""

from __future__ import annotations

import asyncio

from pcir_upload.page.session.leftovers import large_buffers

MIB = 1 << 20


def test_it_sees_buffers_in_containers_and_suspended_coroutines() -> None:
    baseline = large_buffers(MIB)
    held = [bytes(2 * MIB)]
    assert large_buffers(MIB) == baseline + 1
    held.append(bytearray(3 * MIB))
    assert large_buffers(MIB) == baseline + 2
    del held
    assert large_buffers(MIB) == baseline

    async def holding() -> int:
        data = bytes(MIB)  # a local of a coroutine that is waiting
        await asyncio.sleep(0)
        return len(data) + large_buffers(MIB)

    assert asyncio.run(holding()) == MIB + baseline + 1
    assert large_buffers(MIB) == baseline
