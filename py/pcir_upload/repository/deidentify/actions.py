"""The header actions: every element of every item of every nested sequence gets its Table
E.1-1 action (profile.py), and what the table does not list is handled by the few rules below.

Beyond the table, because a table lags behind the standard and behind what devices write:
private elements go (Retain Safe Private is not applied); whole curve and overlay groups go;
group lengths go (they would be wrong); any person name (PN), date (DA), date-time (DT) or
value of unknown VR (UN: a tag newer than pydicom's dictionary, read implicitly) the table
does not list goes; any UID (UI) the table does not list is replaced like a U
(registry UIDs stay); and the free text of SR TEXT items and presentation-state text objects
(Text Value, Unformatted Text Value) becomes a dummy, which is Clean Structured Content for
elements the 2024b table does not name. A code sequence to be given a dummy (Institution
Code Sequence, Person Identification Code Sequence) gets one dummy code item: its original
code meaning is the institution's or the person's name.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag, Tag

from pcir_upload.repository.deidentify.descriptors import SAFE_DESCRIPTORS, is_safe
from pcir_upload.repository.deidentify.profile import Rule, rule_for
from pcir_upload.repository.deidentify.uids import new_uid

TEXT_DUMMY = "ANONYMIZED"
DUMMIES: dict[str, object] = {
    "AE": "ANONYMOUS", "AS": "000Y", "CS": TEXT_DUMMY, "DA": "19000101", "DT": "19000101000000",
    "TM": "000000", "LO": TEXT_DUMMY, "LT": TEXT_DUMMY, "SH": TEXT_DUMMY, "ST": TEXT_DUMMY,
    "UT": TEXT_DUMMY, "UC": TEXT_DUMMY, "PN": TEXT_DUMMY, "IS": "0", "DS": "0",
    "US": 0, "SS": 0, "UL": 0, "SL": 0, "UV": 0, "SV": 0, "FL": 0.0, "FD": 0.0,
}
BEYOND_TABLE = {
    Tag(0x0040, 0xA160): Rule("D", "D", "Text Value (SR TEXT item)"),
    Tag(0x0070, 0x0006): Rule("D", "D", "Unformatted Text Value (presentation text object)"),
}
REMOVED_VRS = {"PN": "person name", "DA": "date", "DT": "date-time", "UN": "element of unknown VR"}


@dataclass
class Changes:
    """What happened to one file's header, by element name, for the report."""

    removed: Counter[str] = field(default_factory=Counter)
    emptied: Counter[str] = field(default_factory=Counter)
    dummied: Counter[str] = field(default_factory=Counter)
    uids_replaced: Counter[str] = field(default_factory=Counter)
    kept: Counter[str] = field(default_factory=Counter)  # what the table says to keep (K)
    kept_descriptors: Counter[str] = field(default_factory=Counter)
    added: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        return {k: dict(sorted(v.items())) if isinstance(v, Counter) else v for k, v in vars(self).items()}


@dataclass(frozen=True)
class Context:
    secret: bytes
    subject: str  # the subject pseudonym: Patient ID's dummy, so released data can be grouped
    identity: Collection[str]  # the contribution's identifying strings (Clean Descriptors)


def _name(tag: BaseTag, rule: Rule | None) -> str:
    return keyword_for_tag(tag) or (rule.name if rule else "") or str(tag)


def _vr(ds: Dataset, tag: BaseTag) -> str:
    raw = ds._dict[tag]
    if raw.VR:
        return str(raw.VR)
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"


def _is_deferred(raw: DataElement | RawDataElement) -> bool:
    """A value over dcmread's defer_size (pixel data, large binaries): not read into memory,
    and left unread unless it is written out as it is."""
    return isinstance(raw, RawDataElement) and raw.value is None and raw.length not in (0, 0xFFFFFFFF)


def clean(ds: Dataset, context: Context, changes: Changes | None = None) -> Changes:
    """Apply the actions to `ds` in place, recursively."""
    changes = changes or Changes()
    for tag in list(ds.keys()):
        tag = Tag(tag)
        # ds._dict, not ds[tag]: indexing would read a deferred value from the file.
        raw = ds._dict[tag]
        rule = BEYOND_TABLE.get(tag) or rule_for(tag)
        if tag.is_private:
            del ds[tag]
            changes.removed["private elements"] += 1
            continue
        if tag.element == 0:
            del ds[tag]  # a group length, wrong once anything in the group changes
            continue
        vr = _vr(ds, tag)
        if rule is None and vr in REMOVED_VRS:
            rule = Rule("X", "X", REMOVED_VRS[vr])
        if _is_deferred(raw):
            if rule is not None and rule.action != "K":
                del ds[tag]
                changes.removed[_name(tag, rule)] += 1
            continue
        _apply(ds, ds[tag], vr, rule, context, changes)
    return changes


def _apply(ds: Dataset, elem: DataElement, vr: str, rule: Rule | None, context: Context, changes: Changes) -> None:
    name = _name(elem.tag, rule)
    action = rule.action if rule else ("U" if vr == "UI" else "K")
    if action == "C":
        if vr == "SQ" and rule and rule.option == "clean_structured_content":
            action = "K"  # its items are cleaned below, element by element
        elif elem.keyword in SAFE_DESCRIPTORS and _values(elem) and all(
                is_safe(str(v), context.identity) for v in _values(elem)):
            changes.kept_descriptors[name] += 1
            return
        else:
            action = rule.fallback if rule else "X"
    if action == "X":
        del ds[elem.tag]
        changes.removed[name] += 1
    elif vr == "SQ":
        if action == "Z":
            elem.value = []
            changes.emptied[name] += 1
        elif action == "D" and name.endswith("CodeSequence"):
            # An identification code (institution, person): its meaning is the name itself.
            elem.value = [_dummy_code()]
            changes.dummied[name] += 1
        else:  # K, D, U: keep the sequence; its items are cleaned like any dataset
            for item in elem.value:
                clean(item, context, changes)
    elif action == "Z":
        elem.value = None
        changes.emptied[name] += 1
    elif action == "U" or vr == "UI":
        _replace_uids(elem, context.secret, name, changes)
    elif action == "K" and rule is not None:
        changes.kept[name] += 1
    elif action == "D":
        if elem.keyword == "PatientID":
            elem.value = context.subject
        else:
            elem.value = DUMMIES.get(vr, b"" if vr in ("OB", "OW", "OD", "OF", "OL", "OV", "UN") else "")
        changes.dummied[name] += 1


def _dummy_code() -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "ANONYMIZED", "99PCIR", TEXT_DUMMY
    return item


def _values(elem: DataElement) -> list[object]:
    value = elem.value
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, MultiValue) else [value]


def _replace_uids(elem: DataElement, secret: bytes, name: str, changes: Changes) -> None:
    values = _values(elem)
    replaced = [new_uid(secret, str(v)) for v in values]
    if replaced != [str(v) for v in values]:
        changes.uids_replaced[name] += 1
    elem.value = replaced if isinstance(elem.value, MultiValue) else (replaced[0] if replaced else elem.value)
