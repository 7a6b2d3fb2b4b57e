"""What one contribution holds: the patient's discs (one or more) and scanned documents, put
side by side in the package, and an honest account of what is left out.

Each disc keeps its own folder (`disc-1/`, `disc-2/`, …) so that two CDs with the same
layout do not collide; documents go under `documents/`. A disc's viewer program is left out
unless the patient asks for everything; what is left out is listed in the manifest, so the
repository knows the package is not the whole disc and why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pcir_upload.page.disc.disc import DiscFile

DOCUMENTS = "documents"


@dataclass(frozen=True)
class ScannedDisc:
    listing: Sequence[DiscFile]  # paths relative to the disc
    summary: dict[str, Any]  # discovery's DiscSummary.to_json()


@dataclass
class Contents:
    listing: list[DiscFile]  # package paths, sorted
    sources: dict[str, tuple[int | None, str]]  # package path -> (disc index or None, its own path)
    manifest: dict[str, Any] = field(default_factory=dict)  # "discs" and "not_sent"


def disc_label(index: int) -> str:
    return f"disc-{index + 1}"


def assemble(discs: Sequence[ScannedDisc], documents: Sequence[DiscFile],
             include_viewer: Sequence[bool]) -> Contents:
    """The package's listing and the manifest's account of the discs, for what was chosen."""
    contents = Contents([], {}, {"discs": [], "not_sent": []})
    for index, disc in enumerate(discs):
        label = disc_label(index)
        roles = disc.summary.get("roles", {})
        viewer = bool(include_viewer[index]) if index < len(include_viewer) else False
        summary = {k: v for k, v in disc.summary.items() if k != "roles"}
        contents.manifest["discs"].append({"label": label, "viewer_sent": viewer, "summary": summary})
        for f in disc.listing:
            role = roles.get(f.path)
            path = f"{label}/{f.path}"
            if role == "viewer" and not viewer:
                contents.manifest["not_sent"].append(
                    {"path": path, "size": f.size, "role": role,
                     "reason": "the disc's viewer program; the patient did not ask to send it"})
                continue
            original = f"{label}/{f.original}" if f.original is not None else None
            contents.listing.append(DiscFile(path, f.size, original, role))
            contents.sources[path] = (index, f.path)
    for f in documents:
        path = f"{DOCUMENTS}/{f.path}"
        original = f"{DOCUMENTS}/{f.original}" if f.original is not None else None
        contents.listing.append(DiscFile(path, f.size, original, "document"))
        contents.sources[path] = (None, f.path)
    contents.listing.sort(key=lambda f: f.path)
    return contents
