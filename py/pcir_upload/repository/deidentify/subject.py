"""Who a contribution is about, read from the original headers before anything is removed.

Two uses: the subject pseudonym that groups released data (the FAQ promises that a person's
contributions over time are matched), and the identifying strings that the pixel check
looks for in burned-in text.

The pseudonym is HMAC-SHA256 under the repository's secret of the normalised name, birth
date and sex together with the contributor id of the page's session marker. Patient IDs are
not in it: each hospital issues its own, and a patient bringing discs from two hospitals is
one subject. They are used to find disagreement instead: two discs that name different
people, or the same issuer with two different IDs, send the contribution to review, because
releasing one person's images under another's pseudonym cannot be undone.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

PSEUDONYM_HEX = 20  # 80 bits: no collisions among any realistic number of subjects


def normalise_name(value: object) -> str:
    """FAMILY^GIVEN in capitals without accents, spaces collapsed; middle names, prefixes,
    suffixes and the ideographic and phonetic groups dropped, as hospitals differ in them."""
    text = str(value or "").split("=")[0]
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    parts = [" ".join(p.upper().replace(",", " ").replace(".", " ").split()) for p in text.split("^")]
    family, given = (parts + ["", ""])[:2]
    if family and not given and " " in family and "^" not in text:
        family, _, given = family.partition(" ")  # "DOE JOHN" written without a ^
    return f"{family}^{given}".strip("^")


def _text(ds: Dataset, keyword: str) -> str:
    return str(ds.get(keyword, "") or "").strip()


@dataclass(frozen=True)
class Person:
    """One file's idea of the patient."""

    name: str
    birth_date: str
    sex: str
    ids: frozenset[tuple[str, str]]  # (issuer, patient id)

    @classmethod
    def of(cls, ds: Dataset) -> Person:
        pid = _text(ds, "PatientID")
        return cls(normalise_name(ds.get("PatientName")), _text(ds, "PatientBirthDate")[:8],
                   _text(ds, "PatientSex").upper()[:1], frozenset({(_text(ds, "IssuerOfPatientID"), pid)} if pid else ()))

    def disagreement(self, other: Person) -> str | None:
        """Why `other` cannot be the same person, or None. Missing values agree with anything."""
        for what, a, b in (("name", self.name, other.name), ("birth date", self.birth_date, other.birth_date),
                           ("sex", self.sex, other.sex)):
            if a and b and a != b:
                return f"the files disagree about the patient's {what}"
        issuers = {i: p for i, p in self.ids if i}
        if any(i in issuers and issuers[i] != p for i, p in other.ids if i):
            return "the files give two different patient IDs from the same issuer"
        return None

    def merged(self, other: Person) -> Person:
        return Person(self.name or other.name, self.birth_date or other.birth_date,
                      self.sex or other.sex, self.ids | other.ids)


def pseudonym(secret: bytes, person: Person, contributor_id: str) -> str:
    message = "\x00".join(("pcir-subject-1", person.name, person.birth_date, person.sex, contributor_id))
    return hmac.new(secret, message.encode("utf-8"), hashlib.sha256).hexdigest()[:PSEUDONYM_HEX]


IDENTIFYING = (
    "PatientName", "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName", "PatientID",
    "OtherPatientIDs", "IssuerOfPatientID", "AccessionNumber", "StudyID", "InstitutionName",
    "InstitutionAddress", "InstitutionalDepartmentName", "ReferringPhysicianName",
    "PerformingPhysicianName", "NameOfPhysiciansReadingStudy", "OperatorsName",
    "PhysiciansOfRecord", "RequestingPhysician", "PatientAddress", "PatientTelephoneNumbers",
    "StationName", "DeviceSerialNumber",
)
DATES = ("PatientBirthDate", "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")


def date_spellings(yyyymmdd: str) -> list[str]:
    """A DICOM date as it is printed on screens and in reports."""
    if len(yyyymmdd) < 8 or not yyyymmdd[:8].isdigit():
        return []
    y, m, d = yyyymmdd[:4], yyyymmdd[4:6], yyyymmdd[6:8]
    return [f"{y}{m}{d}", f"{d}.{m}.{y}", f"{d}/{m}/{y}", f"{y}-{m}-{d}", f"{m}/{d}/{y}", f"{d}-{m}-{y}",
            f"{d}.{m}.{y[2:]}", f"{d}/{m}/{y[2:]}"]


@dataclass
class Identity:
    """What a contribution's original headers say about who and where: the strings the
    pixel check must not find, and the people the files name."""

    strings: set[str] = field(default_factory=set)
    people: list[Person] = field(default_factory=list)

    def add(self, ds: Dataset) -> None:
        found = [(k, ds.get(k)) for k in IDENTIFYING]
        found += [("PatientID", item.get("PatientID")) for item in ds.get("OtherPatientIDsSequence", [])]
        for keyword, value in found:
            for item in (value if isinstance(value, MultiValue) else [value]):
                text = str(item or "").strip()
                if len(text) < 2:  # a study numbered "1" identifies nobody, and OCR reads it everywhere
                    continue
                self.strings.add(text)
                if "^" in text or keyword.endswith("Name") or keyword.endswith("Names"):
                    parts = [p.strip() for p in text.replace("^", " ").split() if len(p.strip()) > 1]
                    self.strings.update(parts)
                    if len(parts) > 1:
                        self.strings.update({" ".join(parts), " ".join(reversed(parts)), ", ".join(parts)})
        for keyword in DATES:
            self.strings.update(date_spellings(_text(ds, keyword)))
        person = Person.of(ds)
        if person not in self.people:
            self.people.append(person)

    def subject(self) -> tuple[Person, str | None]:
        """The merged person, and why the files disagree (None when they do not)."""
        merged = Person("", "", "", frozenset())
        for person in self.people:
            problem = merged.disagreement(person)
            if problem:
                return merged, problem
            merged = merged.merged(person)
        return merged, None
