"""Patient's Age (AS) from the birth date and the examination's date, written before the dates
are removed: the repository promises to keep the age at the time of the examination."""

from __future__ import annotations

from datetime import date

from pydicom.dataset import Dataset

# The first of these the dataset has is the examination's date.
EXAMINATION_DATES = ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")


def _date(value: object) -> date | None:
    text = str(value or "").strip()
    if len(text) < 8 or not text[:8].isdigit():
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None


def age_string(born: date, examined: date) -> str | None:
    """nnnD under a month, nnnW under three months, nnnM under two years, else nnnY
    (PS3.5 AS: the unit that says most without false precision)."""
    days = (examined - born).days
    if days < 0:
        return None
    months = (examined.year - born.year) * 12 + examined.month - born.month - (examined.day < born.day)
    if days < 31:
        return f"{days:03d}D"
    if months < 3:
        return f"{days // 7:03d}W"
    if months < 24:
        return f"{months:03d}M"
    return f"{min(months // 12, 999):03d}Y"


def add_age(ds: Dataset) -> str | None:
    """Write PatientAge when it is missing or empty and both dates are known; returns it."""
    if str(ds.get("PatientAge", "") or "").strip():
        return None
    born = _date(ds.get("PatientBirthDate"))
    examined = next((d for d in (_date(ds.get(k)) for k in EXAMINATION_DATES) if d), None)
    if born is None or examined is None:
        return None
    age = age_string(born, examined)
    if age is not None:
        ds.PatientAge = age
    return age
