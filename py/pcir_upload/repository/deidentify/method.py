"""What PS3.15 E.1.1 asks beyond the table: say that and how the object was de-identified,
and give it a new preamble and new File Meta Information (the old ones name the source's
software and AE title, and the old MediaStorageSOPInstanceUID would undo the new UIDs)."""

from __future__ import annotations

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID

from pcir_upload.repository.deidentify.profile import edition

# CID 7050 De-identification Method: the options applied (profile.py).
METHOD_CODES = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113108", "Retain Patient Characteristics Option"),
    ("113101", "Clean Pixel Data Option"),
    ("113105", "Clean Descriptors Option"),
    ("113104", "Clean Structured Content Option"),
)
METHOD_TEXT = [f"PS3.15 E.1-1 {edition()} Basic Profile", "Retain Patient Characteristics",
               "Clean Pixel Data", "Clean Descriptors", "Clean Structured Content", "pcir-upload"]
# This implementation's own identity: 2.25 and the integer of a UUID made once for it.
IMPLEMENTATION_CLASS_UID = UID("2.25.286757447715999493389155559556379648026")
IMPLEMENTATION_VERSION_NAME = "PCIR_DEID_1"


def mark(ds: Dataset) -> None:
    """Patient Identity Removed, the method in words and in codes, and dates removed."""
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = METHOD_TEXT
    codes = []
    for value, meaning in METHOD_CODES:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
        codes.append(item)
    ds.DeidentificationMethodCodeSequence = codes
    ds.LongitudinalTemporalInformationModified = "REMOVED"


def new_file_meta(ds: Dataset, transfer_syntax: str) -> None:
    """Fresh File Meta Information: nothing of the source's (AE titles, its implementation,
    private information) survives; the instance UID is the new one."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    ds.file_meta = meta
    ds.preamble = bytes(128)
