"""`pcir-upload deidentify` as the operator runs it: planted identifying values never reach
released/, what the repository promises to keep is kept, references resolve under the new
UIDs, every input ends in released/ or review/, bad input goes to review, and a second run
changes nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import EncapsulatedPDFStorage, ExplicitVRLittleEndian, generate_uid

import discs
from deidentifying import (contribution, dciodvfy_errors, deidentify, leaks, plant,
                           planted_strings, read)
from pcir_upload.cli import main
from pcir_upload.repository.deidentify import run as deid_run
from pcir_upload.repository.deidentify.age import age_string
from pcir_upload.repository.deidentify.descriptors import is_safe
from pcir_upload.repository.deidentify.method import IMPLEMENTATION_CLASS_UID
from pcir_upload.repository.deidentify.subject import normalise_name
from pcir_upload.repository.deidentify.uids import new_uid

STUDY = "1.2.826.0.1.3680043.8.498.77001"
FRAME = "1.2.826.0.1.3680043.8.498.77002"
CID_A, CID_B, CID_C = "a" * 32, "b" * 32, "c" * 32
HAVE_DCIODVFY = shutil.which("dciodvfy") is not None


def _save(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _study(folder: Path) -> dict[str, Path]:
    """One patient's study written by pydicom: CT, MR (with its own age), a structure set on
    the CT, a plan on the structure set, an SR citing the CT, an MR with an overlay."""
    ct = plant(pydicom.dcmread(get_testdata_file("CT_small.dcm")))
    ct.StudyInstanceUID, ct.FrameOfReferenceUID = STUDY, FRAME
    mr = plant(pydicom.dcmread(get_testdata_file("MR_small_implicit.dcm")))
    mr.StudyInstanceUID, mr.PatientAge = STUDY, "045Y"
    overlay = plant(pydicom.dcmread(get_testdata_file("examples_overlay.dcm")))
    overlay.StudyInstanceUID = STUDY
    ss = plant(pydicom.dcmread(get_testdata_file("rtstruct.dcm"), force=True))
    ss.StudyInstanceUID = STUDY
    frame = ss.ReferencedFrameOfReferenceSequence[0]
    frame.FrameOfReferenceUID = FRAME
    series = frame.RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    series.SeriesInstanceUID = ct.SeriesInstanceUID
    image = Dataset()
    image.ReferencedSOPClassUID, image.ReferencedSOPInstanceUID = ct.SOPClassUID, ct.SOPInstanceUID
    series.ContourImageSequence = Sequence([image])
    plan = plant(pydicom.dcmread(get_testdata_file("rtplan.dcm"), force=True))
    plan.StudyInstanceUID = STUDY
    plan.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID = ss.SOPInstanceUID
    sr = plant(pydicom.dcmread(get_testdata_file("test-SR.dcm")))
    sr.StudyInstanceUID = STUDY
    text, person = Dataset(), Dataset()
    for item, value_type in ((text, "TEXT"), (person, "PNAME")):
        item.RelationshipType, item.ValueType = "CONTAINS", value_type
        concept = Dataset()
        concept.CodeValue, concept.CodingSchemeDesignator, concept.CodeMeaning = "121106", "DCM", "Comment"
        item.ConceptNameCodeSequence = Sequence([concept])
    text.TextValue = "Mr Quilliam Zorbatron complained of pain"
    person.PersonName = "Zorbatron^Quilliam"
    sr.ContentSequence.extend([text, person])
    _first_image_reference(sr).ReferencedSOPInstanceUID = ct.SOPInstanceUID
    paths = {"ct": ct, "mr": mr, "overlay": overlay, "ss": ss, "plan": plan, "sr": sr}
    return {name: _save(ds, folder / f"{name}.dcm") for name, ds in paths.items()}


def _first_image_reference(sr: Dataset) -> Dataset:
    for ds in _walk(sr):
        if "ReferencedSOPSequence" in ds and "ReferencedSOPInstanceUID" in ds.ReferencedSOPSequence[0]:
            return ds.ReferencedSOPSequence[0]
    raise AssertionError("test-SR.dcm has no image reference")


def _walk(ds: Dataset):
    yield ds
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                yield from _walk(item)


def _released(out: Path) -> dict[str, Dataset]:
    """Released files by the original file's name, through the report."""
    found = {}
    for report in sorted((out / "review").glob("*/report.json")):
        for entry in json.loads(report.read_text())["files"]:
            if entry["outcome"] == "released":
                found[Path(entry["path"]).stem] = read(out / entry["to"])
    return found


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def study(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    sources = _study(tmp_path / "sources")
    unpacked = tmp_path / "unpacked"
    contribution(unpacked, CID_A, {f"disc-1/DICOM/{p.stem.upper()}": (p, "dicom") for p in sources.values()})
    return unpacked, sources


def test_planted_values_never_reach_released(tmp_path: Path, study: tuple[Path, dict[str, Path]]) -> None:
    unpacked, sources = study
    out, secret = tmp_path / "out", tmp_path / "secret"
    result = deidentify(unpacked, out, secret)
    assert result.returncode == 0, result.stdout + result.stderr
    released = _released(out)
    assert sorted(released) == sorted(p.stem.upper() for p in sources.values())
    assert leaks(out / "released", planted_strings()) == []
    originals = {name: read(path) for name, path in sources.items()}
    uids = {str(v) for ds in originals.values() for d in _walk(ds) for v in
            [d.get(k) for k in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "FrameOfReferenceUID")] if v}
    assert leaks(out / "released", sorted(uids)) == []
    # Nor the dates in any spelling a screen would show.
    assert leaks(out / "released", ["11.03.1947", "1947-03-11", "04.07.2019", "2019-07-04"]) == []


def test_kept_what_the_repository_promises(tmp_path: Path, study: tuple[Path, dict[str, Path]]) -> None:
    unpacked, sources = study
    out = tmp_path / "out"
    assert deidentify(unpacked, out, tmp_path / "secret").returncode == 0
    released = _released(out)
    ct, mr = released["CT"], released["MR"]
    assert (ct.PatientSex, float(ct.PatientSize), float(ct.PatientWeight), ct.PatientAge) == ("F", 1.62, 58.5, "072Y")
    assert mr.PatientAge == "045Y"
    assert ct.SeriesDescription == "AXIAL T1 POST CONTRAST"  # on the safe list, every word an imaging term
    assert "StudyDescription" not in ct  # names the patient
    assert ct.PixelData == read(sources["ct"]).PixelData  # a header-cleared image's pixels are untouched
    assert mr.PixelData == read(sources["mr"]).PixelData
    for ds in released.values():
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.LongitudinalTemporalInformationModified == "REMOVED"
        assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == ["113100", "113108", "113101", "113105", "113104"]
        assert ds.preamble == bytes(128)
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.file_meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
        assert "SourceApplicationEntityTitle" not in ds.file_meta
        assert not any(e.tag.is_private or e.tag.group & 0xFF00 in (0x5000, 0x6000) for d in _walk(ds) for e in d)
        assert str(ds.PatientName) == ""
        assert str(ds.StudyInstanceUID).startswith("2.25.")


def test_references_resolve_under_the_new_uids(tmp_path: Path, study: tuple[Path, dict[str, Path]]) -> None:
    unpacked, _ = study
    out = tmp_path / "out"
    assert deidentify(unpacked, out, tmp_path / "secret").returncode == 0
    r = _released(out)
    ct, ss, plan, sr = r["CT"], r["SS"], r["PLAN"], r["SR"]
    assert len({str(ds.StudyInstanceUID) for ds in r.values()}) == 1
    assert plan.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID == ss.SOPInstanceUID
    frame = ss.ReferencedFrameOfReferenceSequence[0]
    assert frame.FrameOfReferenceUID == ct.FrameOfReferenceUID
    series = frame.RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == ct.SeriesInstanceUID
    assert series.ContourImageSequence[0].ReferencedSOPInstanceUID == ct.SOPInstanceUID
    assert _first_image_reference(sr).ReferencedSOPInstanceUID == ct.SOPInstanceUID
    # The released tree is subject / study / series / instance, under pseudonyms only.
    for ds in r.values():
        path = out / "released" / str(ds.PatientID) / str(ds.StudyInstanceUID) / str(ds.SeriesInstanceUID) / f"{ds.SOPInstanceUID}.dcm"
        assert path.is_file()


def test_uids_follow_the_documented_formula(tmp_path: Path, study: tuple[Path, dict[str, Path]]) -> None:
    unpacked, sources = study
    out, secret = tmp_path / "out", tmp_path / "secret"
    assert deidentify(unpacked, out, secret).returncode == 0
    key = secret.read_bytes()
    expected = f"2.25.{int.from_bytes(hmac.new(key, STUDY.encode(), hashlib.sha256).digest()[:16], 'big')}"
    assert str(_released(out)["CT"].StudyInstanceUID) == expected == new_uid(key, STUDY)
    assert new_uid(key, "1.2.840.10008.5.1.4.1.1.2") == "1.2.840.10008.5.1.4.1.1.2"  # a SOP class stays


def test_a_later_contribution_of_the_study_matches(tmp_path: Path, study: tuple[Path, dict[str, Path]]) -> None:
    unpacked, sources = study
    out, secret = tmp_path / "out", tmp_path / "secret"
    assert deidentify(unpacked, out, secret).returncode == 0
    later = read(sources["ct"])
    later.SOPInstanceUID = later.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    later.PatientName = "ZORBATRON^QUILLIAM"  # spelled differently by the second hospital's export
    later_path = _save(later, tmp_path / "later" / "ct2.dcm")
    contribution(unpacked, CID_B, {"disc-1/IM1": (sources["ct"], "dicom"), "disc-1/IM2": (later_path, "dicom")})
    assert deidentify(unpacked, out, secret).returncode == 0
    first = _released(out)["CT"]
    report = json.loads((out / "review" / CID_B / "report.json").read_text())
    assert report["subject"] == str(first.PatientID)
    again = read(out / report["files"][0]["to"])
    assert again.SOPInstanceUID == first.SOPInstanceUID and again.StudyInstanceUID == first.StudyInstanceUID
    other = read(out / report["files"][1]["to"])
    assert other.StudyInstanceUID == first.StudyInstanceUID and other.SOPInstanceUID != first.SOPInstanceUID


def test_running_twice_changes_nothing(tmp_path: Path, study: tuple[Path, dict[str, Path]]) -> None:
    unpacked, _ = study
    out, secret = tmp_path / "out", tmp_path / "secret"
    assert deidentify(unpacked, out, secret).returncode == 0
    before = _snapshot(out)
    second = deidentify(unpacked, out, secret)
    assert second.returncode == 0 and "already done" in second.stdout
    assert _snapshot(out) == before
    assert not (out / ".scratch").exists() or not any((out / ".scratch").iterdir())
    # A run stopped before its done marker redoes the contribution, to the same bytes.
    (out / ".done" / CID_A).unlink()
    assert deidentify(unpacked, out, secret).returncode == 0
    assert _snapshot(out) == before


@pytest.mark.skipif(not HAVE_DCIODVFY or not shutil.which("dcmdump"), reason="needs dicom3tools and dcmtk (./dev test installs them)")
def test_released_files_are_valid_dicom(tmp_path: Path, study: tuple[Path, dict[str, Path]]) -> None:
    unpacked, _ = study
    out = tmp_path / "out"
    assert deidentify(unpacked, out, tmp_path / "secret").returncode == 0
    report = json.loads((out / "review" / CID_A / "report.json").read_text())
    for entry in report["files"]:
        released = out / entry["to"]
        dump = subprocess.run(["dcmdump", "-q", str(released)], capture_output=True, text=True, check=False)
        assert dump.returncode == 0 and "E:" not in dump.stderr, (entry["path"], dump.stderr)
        original = unpacked / CID_A / "files" / entry["path"]
        assert dciodvfy_errors(released) <= dciodvfy_errors(original), entry["path"]


def _pdf_object(path: Path) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = EncapsulatedPDFStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = EncapsulatedPDFStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY, generate_uid()
    ds.PatientName, ds.Modality, ds.MIMETypeOfEncapsulatedDocument = "Zorbatron^Quilliam", "DOC", "application/pdf"
    ds.EncapsulatedDocument = discs.one_page_pdf() + b"Zorbatron"
    return _save(ds, path)


def test_bad_input_goes_to_review_and_never_stops_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    sources = tmp_path / "sources"
    unknown = read(get_testdata_file("CT_small.dcm"))
    unknown.file_meta.TransferSyntaxUID = "1.2.3.4.5.6.7"
    unknown_path = sources / "unknown.dcm"
    unknown_path.parent.mkdir(parents=True)
    unknown.save_as(unknown_path)
    huge = sources / "huge.dcm"
    huge.write_bytes(Path(get_testdata_file("MR_small.dcm")).read_bytes() + bytes(2 << 20))  # over the lowered limit
    files = {
        "disc-1/TRUNC": (Path(get_testdata_file("MR_truncated.dcm")), "dicom"),
        "disc-1/GARBAGE": (b"\x00" * 128 + b"DICM" + os.urandom(500), "dicom"),
        "disc-1/UNKNOWN": (unknown_path, "dicom"),
        "disc-1/HUGE": (huge, "dicom"),
        "disc-1/PDF": (_pdf_object(sources / "pdf.dcm"), "dicom"),
        "disc-1/DICOMDIR": (Path(get_testdata_file("DICOMDIR")), "index"),
        "disc-1/VIEWER/viewer.exe": (discs.windows_program(), "viewer"),
        "disc-1/README.TXT": ("Patient Zorbatron".encode(), "disc-text"),
        "documents/letter.pdf": (discs.one_page_pdf(), "document"),
    }
    unpacked = tmp_path / "unpacked"
    # One contribution each: these files name different patients, which alone sends all to review.
    cids = {path: f"{n:032x}" for n, path in enumerate(files, start=1)}
    for path, cid in cids.items():
        contribution(unpacked, cid, {path: files[path]})
    broken = unpacked / CID_C
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json")
    monkeypatch.setattr(deid_run, "MAX_FILE_BYTES", 1 << 20)
    out = tmp_path / "out"
    code = main(["deidentify", "--in", str(unpacked), "--out", str(out), "--secret", str(tmp_path / "secret")])
    printed = capsys.readouterr().out
    assert code == 1 and f"{CID_C}: FAILED" in printed
    assert all(f"{cid}: 0 released, 1 for review" in printed for cid in cids.values()), printed
    assert not (out / "released").exists() or not any(p.is_file() for p in (out / "released").rglob("*"))
    reasons = {}
    for path, cid in cids.items():
        report = json.loads((out / "review" / cid / "report.json").read_text())
        reasons |= {e["path"]: e["reason"] for e in report["files"]}
        assert (out / "review" / cid / "files" / path).is_file()
        assert "why:" in (out / "review" / cid / "summary.txt").read_text()
    assert sorted(reasons) == sorted(files)
    assert "truncated" in reasons["disc-1/TRUNC"]
    assert "unknown transfer syntax" in reasons["disc-1/UNKNOWN"]
    assert "too large" in reasons["disc-1/HUGE"]
    assert "encapsulates a document" in reasons["disc-1/PDF"]
    assert "DICOMDIR" in reasons["disc-1/DICOMDIR"]
    assert all(reasons.values())


def test_discs_that_disagree_about_the_patient_go_to_review(tmp_path: Path) -> None:
    one = read(get_testdata_file("CT_small.dcm"))
    two = read(get_testdata_file("MR_small.dcm"))
    one.PatientBirthDate, two.PatientBirthDate = "19470311", "19610822"
    unpacked = tmp_path / "unpacked"
    contribution(unpacked, CID_A, {"disc-1/A": (_save(one, tmp_path / "a.dcm"), "dicom"),
                                   "disc-2/B": (_save(two, tmp_path / "b.dcm"), "dicom")})
    out = tmp_path / "out"
    assert deidentify(unpacked, out, tmp_path / "secret").returncode == 0
    report = json.loads((out / "review" / CID_A / "report.json").read_text())
    assert report["released"] == 0 and "disagree" in report["identity_problem"]
    assert not (out / "released").exists()


def test_the_secret_is_made_private_and_a_readable_one_refused(tmp_path: Path, capsys) -> None:
    (tmp_path / "unpacked").mkdir()
    secret = tmp_path / "secret"
    assert main(["deidentify", "--in", str(tmp_path / "unpacked"), "--out", str(tmp_path / "out"), "--secret", str(secret)]) == 0
    assert secret.stat().st_mode & 0o777 == 0o600 and len(secret.read_bytes()) == 32
    secret.chmod(0o644)
    assert main(["deidentify", "--in", str(tmp_path / "unpacked"), "--out", str(tmp_path / "out"), "--secret", str(secret)]) == 1
    assert "chmod 600" in capsys.readouterr().err


@pytest.mark.skipif(not discs.have_dcmtk(), reason="needs DCMTK (./dev test installs it)")
def test_a_disc_written_by_dcmtk(tmp_path: Path) -> None:
    disc = tmp_path / "disc"
    disc.mkdir()
    placed = discs.place_gp_images(disc)
    planted = {"(0010,0010)": "Quaxworth^Delphine", "(0010,0020)": "QX-44120", "(0010,0030)": "19520229",
               "(0008,0080)": "Nettlecombe General", "(0008,0050)": "ACCQX9913", "(0008,1030)": "Delphine knee"}
    for image in placed:
        same = ("-i", "(0010,0040)=F", "-i", "(0028,0301)=NO")  # one patient; headers that clear the CT
        discs.run("dcmodify", "-nb", "-imt", *same, *[a for tag, v in planted.items() for a in ("-i", f"{tag}={v}")], image)
    discs.make_dicomdir(disc)
    files = {f"disc-1/{p.relative_to(disc).as_posix()}": (p, "dicom") for p in placed}
    files["disc-1/DICOMDIR"] = (disc / "DICOMDIR", "index")
    unpacked = tmp_path / "unpacked"
    contribution(unpacked, CID_A, files)
    out = tmp_path / "out"
    result = deidentify(unpacked, out, tmp_path / "secret")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((out / "review" / CID_A / "report.json").read_text())
    assert sorted(e["path"] for e in report["files"]) == sorted(files)
    released = [out / e["to"] for e in report["files"] if e["outcome"] == "released"]
    assert released  # the CT and MR images at least
    assert leaks(out / "released", list(planted.values()) + ["QUAXWORTH", "Nettlecombe"]) == []
    for path in released:
        assert subprocess.run(["dcmdump", "-q", str(path)], capture_output=True, check=False).returncode == 0
    for entry in report["files"]:
        assert (out / entry["to"]).is_file()
        if entry["outcome"] == "released" and HAVE_DCIODVFY:
            original = unpacked / CID_A / "files" / entry["path"]
            assert dciodvfy_errors(out / entry["to"]) <= dciodvfy_errors(original), entry["path"]


def test_patient_age_in_as_units() -> None:
    from datetime import date

    assert age_string(date(2020, 1, 1), date(2020, 1, 15)) == "014D"
    assert age_string(date(2020, 1, 1), date(2020, 3, 1)) == "008W"
    assert age_string(date(2020, 1, 1), date(2021, 6, 1)) == "017M"
    assert age_string(date(1947, 3, 11), date(2019, 7, 4)) == "072Y"
    assert age_string(date(1947, 3, 11), date(2019, 3, 10)) == "071Y"
    assert age_string(date(2020, 1, 2), date(2020, 1, 1)) is None


def test_names_are_normalised_for_linkage() -> None:
    assert normalise_name("Doe^John^Q^Dr") == normalise_name("DOE^JOHN") == normalise_name(" doe ^ john ") == "DOE^JOHN"
    assert normalise_name("Müller^Jürgen") == "MULLER^JURGEN"
    assert normalise_name("Doe John") == "DOE^JOHN"


def test_descriptors_kept_only_when_plainly_safe() -> None:
    assert is_safe("CT HEAD W/O CONTRAST", [])
    assert is_safe("AX T2 FLAIR 5mm", [])
    assert not is_safe("HEAD DR SMITH", [])
    assert not is_safe("MRI 12.03.2024", [])
    assert not is_safe("KNEE LEFT", ["LEFT"])
    assert not is_safe("", [])


def test_identity_for_the_pixel_check_comes_from_the_original_headers() -> None:
    from pcir_upload.repository.deidentify.subject import Identity

    ds = Dataset()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.StudyDate = "Doe^John", "MRN42", "19470311", "20190704"
    ds.InstitutionName, ds.AccessionNumber, ds.StudyID = "General Hospital", "ACC1", "1"
    ds.OtherPatientIDsSequence = Sequence([Dataset()])
    ds.OtherPatientIDsSequence[0].PatientID = "OTHER7"
    identity = Identity()
    identity.add(ds)
    for expected in ("Doe^John", "Doe", "John", "John Doe", "Doe John", "MRN42", "OTHER7", "ACC1", "General Hospital",
                     "19470311", "11.03.1947", "11/03/1947", "1947-03-11", "04.07.2019", "2019-07-04"):
        assert expected in identity.strings, expected
    assert "1" not in identity.strings



def test_the_pixel_checks_verdict_decides_release_or_review(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The walk's side of the interface with pixels.py, its two functions replaced here."""
    import dataclasses
    import importlib

    pixels = importlib.import_module("pcir_upload.repository.deidentify.pixels")

    @dataclasses.dataclass(frozen=True)
    class Box:  # the fields of pixels.TextBox
        frame: int
        left: int
        top: int
        width: int
        height: int
        text: str
        reason: str

    verdict: dict[str, tuple[Box, ...]] = {}
    given: list[list[str]] = []

    def clean_pixels(ds: Dataset, identity: list[str]) -> object:
        given.append(list(identity))
        boxes = verdict["boxes"]
        return pixels.PixelResult(boxes, "text found in the pixels" if boxes else None)

    monkeypatch.setattr(pixels, "examine_reason", lambda ds: "ultrasound images often carry burned-in text")
    monkeypatch.setattr(pixels, "clean_pixels", clean_pixels)
    unpacked, out, secret = tmp_path / "unpacked", tmp_path / "out", tmp_path / "secret"
    for cid, boxes in ((CID_A, (Box(0, 4, 5, 60, 9, "DOE JOHN", "name"),)), (CID_B, ())):
        us = read(get_testdata_file("examples_rgb_color.dcm"))
        us.PatientName, us.PatientID, us.StudyDate = "Doe^John", "MRN1", "20190704"
        us.SOPInstanceUID = us.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        contribution(unpacked, cid, {"disc-1/US": (_save(us, tmp_path / f"{cid}.dcm"), "dicom")})
        verdict["boxes"] = boxes
        assert main(["deidentify", "--in", str(unpacked), "--out", str(out), "--secret", str(secret)]) == 0
    assert {"Doe^John", "Doe", "John", "MRN1", "04.07.2019", "2019-07-04"} <= set(given[0])
    found = json.loads((out / "review" / CID_A / "report.json").read_text())["files"][0]
    assert found["outcome"] == "review" and found["to"].startswith(f"review/{CID_A}/dicom/")
    assert found["pixels"]["boxes"][0]["text"] == "DOE JOHN" and found["reason"] == "text found in the pixels"
    assert (out / found["to"]).is_file()
    clear = json.loads((out / "review" / CID_B / "report.json").read_text())["files"][0]
    assert clear["outcome"] == "released" and clear["pixels"]["examined_because"].startswith("ultrasound")
    assert [p.name for p in (out / "released").rglob("*.dcm")] == [Path(clear["to"]).name]
    # A pixel check that fails sends the image to review and the run goes on.
    monkeypatch.setattr(pixels, "clean_pixels", lambda ds, identity: 1 / 0)
    contribution(unpacked, CID_C, {"disc-1/US": (tmp_path / f"{CID_B}.dcm", "dicom")})
    assert main(["deidentify", "--in", str(unpacked), "--out", str(out), "--secret", str(secret)]) == 0
    failed = json.loads((out / "review" / CID_C / "report.json").read_text())["files"][0]
    assert failed["outcome"] == "review" and "ZeroDivisionError" in failed["reason"]


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "image_dfl.dcm"])
def test_pixel_data_is_copied_in_pieces_byte_for_byte(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Deferred pixel data is appended from the original in pieces (write.py) in every
    encoding; a deflated dataset is written whole by pydicom."""
    monkeypatch.setattr(deid_run, "DEFER_SIZE", 1024)
    monkeypatch.setattr("pcir_upload.repository.deidentify.write.PIECE", 1000)
    from pcir_upload.repository.deidentify import write

    streamed = []
    real = write._streamable
    monkeypatch.setattr(write, "_streamable", lambda ds, deflated: streamed.append(real(ds, deflated)) or streamed[-1])
    ds = read(get_testdata_file(name))
    ds.ImageType, ds.BurnedInAnnotation, ds.Modality = ["ORIGINAL", "PRIMARY"], "NO", "CT"
    # A sequence larger than the defer size (as per-frame functional groups are) is still cleaned.
    frames = []
    for n in range(40):
        frame = Dataset()
        content = Dataset()
        content.FrameAcquisitionDateTime, content.FrameComments = "20190704113307", f"Quilliam frame {n}"
        frame.FrameContentSequence = Sequence([content])
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    source = tmp_path / "source.dcm"
    ds.save_as(source)
    contribution(tmp_path / "unpacked", CID_A, {"disc-1/IM": (source, "dicom")})
    out = tmp_path / "out"
    assert main(["deidentify", "--in", str(tmp_path / "unpacked"), "--out", str(out), "--secret", str(tmp_path / "s")]) == 0
    [released] = list((out / "released").rglob("*.dcm"))
    again = read(released)
    assert again.PixelData == read(source).PixelData
    assert again.file_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID
    assert (streamed[0] is None) == (name == "image_dfl.dcm")
    assert leaks(out / "released", ["Quilliam", "20190704"]) == []
    if shutil.which("dcmdump"):
        dump = subprocess.run(["dcmdump", "-q", str(released)], capture_output=True, text=True, check=False)
        assert dump.returncode == 0 and "E:" not in dump.stderr


def _attempt(folder: Path, out: Path, secret: bytes, killed_after_moves: int = 0) -> int:
    """deidentify_contribution in a process of its own, SIGKILLed (by itself, as a machine
    dies) right after its `killed_after_moves`-th rename into place; its wait status."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            if killed_after_moves:
                moves, replace = [0], os.replace

                def moving(source, target):
                    replace(source, target)
                    moves[0] += 1
                    if moves[0] == killed_after_moves:
                        os.kill(os.getpid(), signal.SIGKILL)

                os.replace = moving
            deid_run.deidentify_contribution(folder, out, secret)
            code = 0
        finally:
            os._exit(code)
    return os.waitpid(pid, 0)[1]


def test_an_attempt_killed_while_moving_into_place_counts_for_nothing_and_is_redone_the_same(
        tmp_path: Path, study: tuple[Path, dict[str, Path]]) -> None:
    unpacked, _ = study
    secret, whole, out = b"k" * 32, tmp_path / "whole", tmp_path / "out"
    deid_run.deidentify_contribution(unpacked / CID_A, whole, secret)
    assert json.loads((whole / "review" / CID_A / "report.json").read_text())["released"] >= 3
    status = _attempt(unpacked / CID_A, out, secret, killed_after_moves=2)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    # Two released files are in place, each whole; no report, no done marker: nothing says
    # the contribution is done, and the review page does not list it.
    placed = [p for p in (out / "released").rglob("*") if p.is_file()]
    assert len(placed) == 2 and all(p.read_bytes() == (whole / p.relative_to(out)).read_bytes() for p in placed)
    assert not (out / "review").exists() and not (out / ".done").exists()
    assert any(p.is_file() for p in (out / ".scratch" / CID_A).rglob("*"))
    assert deid_run.deidentify_contribution(unpacked / CID_A, out, secret).endswith("for review")
    assert _snapshot(out) == _snapshot(whole)  # the scratch folder of the killed attempt gone too


def test_attempts_at_once_make_one_result(tmp_path: Path, study: tuple[Path, dict[str, Path]]) -> None:
    """Queued jobs of one contribution may run at once (a worker thought dead that was only
    cut off): whichever finishes first, the others change nothing of its result."""
    unpacked, _ = study
    secret, whole, out = b"k" * 32, tmp_path / "whole", tmp_path / "out"
    deid_run.deidentify_contribution(unpacked / CID_A, whole, secret)
    pids = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                deid_run.deidentify_contribution(unpacked / CID_A, out, secret)
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
    assert 0 in codes and set(codes) <= {0, 1}
    assert _snapshot(out) == _snapshot(whole)
