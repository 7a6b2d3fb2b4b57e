"""PS3.15 Table E.1-1 resolved into one action per element for the options this repository applies.

The repository promises to remove names, dates, device and institution identity and UIDs, and
to keep the patient's sex, age, size and weight: that is the Basic Application Level
Confidentiality Profile with Retain Patient Characteristics, Clean Descriptors, Clean
Structured Content and Clean Pixel Data (the last in pixels.py), and none of the Retain
Longitudinal Temporal, Device Identity, Institution Identity, UIDs or Safe Private options.

Combined codes need to know whether the IOD requires the element (Type 1: D, Type 2: Z); the
table does not say, and guessing X would break conformance, so each resolves to the weakest
action that keeps any IOD valid: X/Z -> Z, X/D, Z/D and X/Z/D -> D, X/Z/U* -> U (keep the
sequence, its UIDs replaced, its items cleaned). None of these keeps identifying content.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from pydicom.tag import BaseTag

TABLE_PATH = Path(__file__).with_name("profile_table.json")

# Options applied: their column's code, when present, overrides the Basic Profile's.
APPLIED_OPTIONS = ("retain_patient_characteristics", "clean_descriptors", "clean_structured_content")

COMBINED = {"X/Z": "Z", "X/D": "D", "Z/D": "D", "X/Z/D": "D", "X/Z/U*": "U"}


@dataclass(frozen=True)
class Rule:
    """What to do with one element: `action` is X, Z, D, U, K or C (clean), `fallback` the
    Basic Profile's resolved action for when cleaning cannot keep the value."""

    action: str
    fallback: str
    name: str
    option: str = ""  # the option whose column gave `action`, if any


@cache
def table() -> dict[str, object]:
    return json.loads(TABLE_PATH.read_text(encoding="utf-8"))


def edition() -> str:
    return str(table()["edition"])


def _resolve(code: str) -> str:
    return COMBINED.get(code, code)


@cache
def _rules() -> dict[int, Rule]:
    """The rows with an exact tag. The others are the repeating groups (curves 50xx, overlays
    60xx: X, handled whole by is_curve_or_overlay) and private attributes (X, handled by
    is_private): both removed entirely here."""
    rules: dict[int, Rule] = {}
    for row in table()["rows"]:  # type: ignore[union-attr]
        group, _, element = row["tag"].strip("()").partition(",")
        try:
            tag = int(group, 16) << 16 | int(element, 16)
        except ValueError:
            continue
        basic = _resolve(row["basic"])
        option = next((o for o in APPLIED_OPTIONS if o in row), "")
        rules[tag] = Rule(row[option] if option else basic, basic, row["name"], option)
    return rules


CURVE_OR_OVERLAY = Rule("X", "X", "Curve or Overlay group")


def rule_for(tag: BaseTag) -> Rule | None:
    """The table's rule for `tag`, or None when the table does not list it.

    A curve or overlay loses its whole group: the table removes the data and comments, and
    a header left without its data would be invalid and could still carry text (labels).
    """
    if is_curve_or_overlay(tag):
        return CURVE_OR_OVERLAY
    return _rules().get(int(tag))


def is_curve_or_overlay(tag: BaseTag) -> bool:
    """Groups 5000-501E (curves, retired) and 6000-601E (overlays), even groups only."""
    return tag.group & 0xFF01 in (0x5000, 0x6000) and tag.group & 0xFF <= 0x1E
