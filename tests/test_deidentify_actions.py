"""The header actions element by element, on datasets built here: each class of Table E.1-1
and each rule beyond it (deidentify/actions.py)."""

from __future__ import annotations

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from pcir_upload.repository.deidentify.actions import Context, clean
from pcir_upload.repository.deidentify.profile import edition, rule_for, table
from pcir_upload.repository.deidentify.uids import new_uid

SECRET = bytes(range(32))
CONTEXT = Context(SECRET, "0123456789abcdef0123", frozenset({"SMITH"}))


def _item(**values: object) -> Dataset:
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def test_the_table_is_the_standards_and_named() -> None:
    assert edition() == "2024b" and len(table()["rows"]) == 621
    assert rule_for(DataElement(0x00100010, "PN", "").tag).action == "Z"  # Patient's Name
    assert rule_for(DataElement(0x00101010, "AS", "").tag).action == "K"  # Patient's Age, retained


def test_each_action_class() -> None:
    ds = _item(PatientName="Smith^Jo", PatientAddress="1 Road", PatientID="MRN1", InstitutionName="General",
               ContentDate="20200101", StudyDate="20200101", StudyInstanceUID="1.2.3.4", PatientSex="F",
               PatientSexNeutered="ALTERED", EthnicGroup="X1", PatientWeight=60, Modality="CT",
               SOPClassUID="1.2.840.10008.5.1.4.1.1.2", SeriesDescription="AXIAL", StudyDescription="HEAD SMITH")
    changes = clean(ds, CONTEXT)
    assert not ds.PatientName and "PatientName" in ds and "PatientAddress" not in ds  # Z, X
    assert ds.PatientID == CONTEXT.subject  # Z/D: the subject pseudonym
    assert ds.InstitutionName == "ANONYMIZED" and ds.ContentDate == "19000101"  # X/Z/D, Z/D -> D
    assert not ds.StudyDate and "StudyDate" in ds  # Z
    assert ds.StudyInstanceUID == new_uid(SECRET, "1.2.3.4")  # U
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"  # a registry UID stays
    assert (ds.PatientSex, ds.PatientSexNeutered, ds.EthnicGroup, ds.PatientWeight) == ("F", "ALTERED", "X1", 60)  # K
    assert ds.SeriesDescription == "AXIAL" and "StudyDescription" not in ds  # C: safe kept, else X
    assert changes.kept_descriptors == {"SeriesDescription": 1}


def test_nested_sequences_private_blocks_curves_overlays_and_unknown_elements() -> None:
    deep = _item(ReferencedSOPClassUID="1.2.840.10008.5.1.4.1.1.2", ReferencedSOPInstanceUID="1.2.3.9",
                 ReferencedFrameNumber=1)
    deep.add_new(0x00110010, "LO", "ACME")
    deep.add_new(0x00111001, "LO", "private in an item")
    ds = _item(ReferencedImageSequence=Sequence([deep]),  # X/Z/U*: kept, UIDs mapped
               InstitutionCodeSequence=Sequence([_item(CodeValue="H1", CodingSchemeDesignator="L", CodeMeaning="General")]),
               OtherPatientIDsSequence=Sequence([_item(PatientID="OTHER1")]))
    ds.add_new(0x60000010, "US", 2)
    ds.add_new(0x60003000, "OW", b"\x00\x01")
    ds.add_new(0x50000022, "LO", "curve")
    ds.add_new(0x00990010, "LO", "VENDOR")
    ds.add_new(0x00991001, "SQ", Sequence([_item(PatientName="Smith^Jo")]))
    ds.add_new(0x00211234, "LO", "odd")  # private without its creator
    ds.add_new(0x0019FFFE, "UN", b"Smith")
    ds.add_new(0x0055AAAA, "UN", b"Smith")  # an even group pydicom does not know: UN
    ds.add_new(0x00200000, "UL", 99)  # a stale group length
    clean(ds, CONTEXT)
    kept = ds.ReferencedImageSequence[0]
    assert kept.ReferencedSOPInstanceUID == new_uid(SECRET, "1.2.3.9") and kept.ReferencedFrameNumber == 1
    assert not [e for e in kept if e.tag.is_private]
    assert [(c.CodeValue, c.CodeMeaning) for c in ds.InstitutionCodeSequence] == [("ANONYMIZED", "ANONYMIZED")]
    assert "OtherPatientIDsSequence" not in ds
    assert sorted(e.keyword for e in ds) == ["InstitutionCodeSequence", "ReferencedImageSequence"]


def test_structured_content_is_cleaned_item_by_item() -> None:
    concept = _item(CodeValue="121106", CodingSchemeDesignator="DCM", CodeMeaning="Comment")
    text = _item(RelationshipType="CONTAINS", ValueType="TEXT", ConceptNameCodeSequence=Sequence([concept]),
                 TextValue="Mrs Smith said")
    person = _item(RelationshipType="CONTAINS", ValueType="PNAME", PersonName="Smith^Jo")
    date = _item(RelationshipType="CONTAINS", ValueType="DATE", Date="20200101")
    image = _item(RelationshipType="CONTAINS", ValueType="IMAGE", ReferencedSOPSequence=Sequence([
        _item(ReferencedSOPClassUID="1.2.840.10008.5.1.4.1.1.2", ReferencedSOPInstanceUID="1.2.3.7")]))
    ds = _item(ContentSequence=Sequence([text, person, date, image]), VerifyingObserverSequence=Sequence([
        _item(VerifyingObserverName="Smith^Doc", VerifyingOrganization="General", VerificationDateTime="20200101")]))
    clean(ds, CONTEXT)
    text, person, date, image = ds.ContentSequence
    assert text.TextValue == "ANONYMIZED" and text.ConceptNameCodeSequence[0].CodeMeaning == "Comment"
    assert person.PersonName == "ANONYMIZED" and date.Date == "19000101"
    assert image.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == new_uid(SECRET, "1.2.3.7")
    observer = ds.VerifyingObserverSequence[0]
    assert (observer.VerifyingObserverName, observer.VerifyingOrganization) == ("ANONYMIZED", "ANONYMIZED")
    assert observer.VerificationDateTime == "19000101000000"
