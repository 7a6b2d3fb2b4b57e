"""The operator's decisions: an append-only log of JSON lines, each fsynced before it counts.

The log is the review's only memory. The page's state (what is accepted, rejected, released)
is the log replayed, so what a person decided can always be shown, and nothing is decided
by the page without a line that says who, when and why.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LOG_NAME = "decisions.jsonl"

ACCEPT = "accept"  # an image as cleaned, or a document as shown
REJECT = "reject"  # one file: it is never released
BOXES = "boxes"  # blanking boxes drawn by the operator, and the image cleaned again
REDACT = "redact"  # boxes on a document's pages, black in what is shown and released
REJECT_CONTRIBUTION = "reject-contribution"
RELEASE = "release"
ACTIONS = (ACCEPT, REJECT, BOXES, REDACT, REJECT_CONTRIBUTION, RELEASE)


@dataclass
class FileState:
    """What was decided about one file waiting in review."""

    decision: str | None = None  # ACCEPT or REJECT
    # The operator's, in pixel coordinates: an image's blanking boxes, or a document's
    # redactions, each with the page it is on (from 1, as the page shows it).
    boxes: list[dict[str, int]] = field(default_factory=list)
    released_to: list[str] = field(default_factory=list)


@dataclass
class ContributionState:
    files: dict[str, FileState] = field(default_factory=dict)
    rejected: str | None = None  # the reason, when the whole contribution was rejected
    releases: int = 0

    def file(self, path: str) -> FileState:
        return self.files.setdefault(path, FileState())


class Log:
    """decisions.jsonl beside released/ and review/, and the state it adds up to."""

    def __init__(self, out: Path):
        self.path = out / LOG_NAME
        self.state: dict[str, ContributionState] = {}
        self._lock = threading.Lock()
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    self._apply(json.loads(line))

    def contribution(self, cid: str) -> ContributionState:
        return self.state.setdefault(cid, ContributionState())

    def append(self, operator: str, action: str, contribution: str, why: str, **details: Any) -> dict[str, Any]:
        """Write one decision and fsync it; only then does the page's state change."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        if not operator.strip() or not why.strip():
            raise ValueError("every decision needs the operator's name and a reason")
        entry = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "operator": operator,
                 "action": action, "contribution": contribution, "why": why, **details}
        line = json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n"
        with self._lock:
            new = not self.path.exists()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
            if new:  # the file's name must survive a crash too
                folder = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(folder)
                finally:
                    os.close(folder)
            self._apply(entry)
        return entry

    def entries(self, contribution: str | None = None) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        entries = [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return [e for e in entries if contribution is None or e["contribution"] == contribution]

    def _apply(self, entry: dict[str, Any]) -> None:
        state = self.contribution(entry["contribution"])
        action = entry["action"]
        if action in (ACCEPT, REJECT):
            state.file(entry["file"]).decision = action
        elif action in (BOXES, REDACT):
            state.file(entry["file"]).boxes = list(entry["boxes"])
            state.file(entry["file"]).decision = None  # a changed image or document needs a new look
        elif action == REJECT_CONTRIBUTION:
            state.rejected = entry["why"]
        elif action == RELEASE:
            state.releases += 1
            for path, targets in entry.get("released", {}).items():
                state.file(path).released_to = list(targets)
