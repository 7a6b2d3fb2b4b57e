"""Which Zstandard level the link can take, file by file.

On a fast link the packers are what the patient waits for, and the fastest level wins; on a
home uplink of a few Mbit/s the packers sit idle
waiting for the network, and a slower, tighter level sends fewer bytes in the same time. So the level follows what held the upload
back lately: waiting for the link moves it up a step, waiting for the packers moves it down.

The levels chosen are part of the package (they decide its bytes), so a resumed upload must
choose the same ones for the files an earlier session packed: they come back as `runs`
(first file, level) covering the first `files` files, and only later files are chosen anew.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Sequence

# Measured on CT-like data (docs/BENCHMARKS.md): level 2 is two and a half times as fast as
# deflate's run lengths (the old floor) for 9 % fewer bytes, level 1 faster still but only 3 %
# fewer; above 9, Zstandard gets four times slower for less than 1 % fewer bytes.
LOWEST, HIGHEST = 2, 9
START = 3
SETTLE = 3.0  # seconds between steps: a change shows only once the pieces ahead are sent
LINK_BOUND = 0.5  # waiting for the link this share of the time: a step up
PACKER_BOUND = 0.2  # waiting for the packers this share of the time: a step down


class Levels:
    """`level(file index)` for the packager; `waited(for_link, seconds)` from the upload."""

    def __init__(
        self,
        runs: Sequence[tuple[int, int]] = (),
        files: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._fixed = sorted(runs)
        self._fixed_files = files
        self._clock = clock
        self._level = self._fixed[-1][1] if self._fixed else START
        self._since = clock()
        self._link = self._packers = 0.0
        self.runs: list[tuple[int, int]] = []  # what was chosen, for the resumption record
        self.files = 0  # files whose level is chosen

    def level(self, index: int) -> int:
        if index < self._fixed_files:
            at = bisect.bisect_right(self._fixed, (index, HIGHEST + 1)) - 1
            chosen = self._fixed[at][1] if at >= 0 else START
        else:
            self._adjust()
            chosen = self._level
        if not self.runs or self.runs[-1][1] != chosen:
            self.runs.append((index, chosen))
        self.files = max(self.files, index + 1)
        return chosen

    def waited(self, for_link: bool, seconds: float) -> None:
        """The upload waited `seconds` for a free place on the link, or for the packers."""
        if for_link:
            self._link += seconds
        else:
            self._packers += seconds

    def _adjust(self) -> None:
        now = self._clock()
        elapsed = now - self._since
        if elapsed < SETTLE:
            return
        if self._link >= LINK_BOUND * elapsed:
            self._level = min(self._level + 1, HIGHEST)
        elif self._packers >= PACKER_BOUND * elapsed:
            self._level = max(self._level - 1, LOWEST)
        self._since, self._link, self._packers = now, 0.0, 0.0
