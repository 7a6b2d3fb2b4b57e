"""Disc discovery against real DICOMDIRs: pydicom's shipped test disc and one written by DCMTK."""

from __future__ import annotations

import io
import json
import random
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file

from pcir_upload.page.disc.disc import DiscFile
from pcir_upload.page.disc.discovery import describe_disc, find_dicomdirs

# pydicom's test disc: a DICOMDIR written by dcmmkdir, variants of it, and TINY_ALPHA/DICOMDIR.
DISC = Path(get_testdata_file("DICOMDIR-reordered")).parent

# (name, id, studies, series, images) per patient, counted with dcmdump on both DICOMDIRs.
EXPECTED = [
    ("Doe^Archibald", "77654033", 2, 4, 7),
    ("Doe^Peter", "98890234", 4, 9, 24),
    ("Citizen^Jan", "12345678", 1, 1, 50),
]
REFERENCED = 81  # 31 in DICOMDIR + 50 in TINY_ALPHA/DICOMDIR
BROKEN_LINKS = "its internal links are broken"


def listing_of(root: Path) -> list[DiscFile]:
    """The listing the browser would hand over for `root`."""
    files = (p for p in root.rglob("*") if p.is_file())
    return sorted((DiscFile(p.relative_to(root).as_posix(), p.stat().st_size) for p in files), key=lambda f: f.path)


def dicomdir_bytes(root: Path, listing: list[DiscFile]) -> dict[str, bytes]:
    return {f.path: (root / f.path).read_bytes() for f in find_dicomdirs(listing)}


def shape(summary: dict) -> list[tuple[str, str, int, int, int]]:
    return [
        (
            p["name"],
            p["id"],
            len(p["studies"]),
            sum(len(s["series"]) for s in p["studies"]),
            sum(s["images"] for s in p["studies"]),
        )
        for p in summary["patients"]
    ]


def describe(listing: list[DiscFile], dicomdirs: dict[str, bytes]) -> dict:
    summary = describe_disc(listing, dicomdirs).to_json()
    assert json.loads(json.dumps(summary)) == summary
    assert summary["referenced"] + summary["unreferenced"] == summary["files"] == len(listing)
    return summary


def resave(data: bytes, edit) -> bytes:
    """The DICOMDIR re-encoded by pydicom after `edit(dataset)`; UL edits keep all offsets in place."""
    ds = pydicom.dcmread(io.BytesIO(data))
    edit(ds)
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


@pytest.fixture(scope="module")
def disc() -> tuple[list[DiscFile], dict[str, bytes]]:
    listing = listing_of(DISC)
    return listing, dicomdir_bytes(DISC, listing)


def test_pydicom_test_disc(disc):
    listing, dicomdirs = disc
    summary = describe(listing, dicomdirs)

    assert summary["files"] == 91
    assert summary["bytes"] == sum((DISC / f.path).stat().st_size for f in listing)
    assert summary["dicomdirs"] == ["DICOMDIR", "TINY_ALPHA/DICOMDIR"]
    assert shape(summary) == EXPECTED
    assert summary["missing"] == []
    assert summary["problems"] == []
    assert summary["referenced"] == REFERENCED
    # DICOMDIR, its 6 variants, README.txt, TINY_ALPHA/DICOMDIR and TINY_ALPHA/README.
    assert summary["unreferenced"] == 10

    # The same totals counted straight from the records, without following any offsets.
    kinds: Counter[str] = Counter()
    for data in dicomdirs.values():
        for record in pydicom.dcmread(io.BytesIO(data)).DirectoryRecordSequence:
            kinds[record.DirectoryRecordType] += 1
            kinds["file"] += "ReferencedFileID" in record
    assert [kinds[k] for k in ("PATIENT", "STUDY", "SERIES", "file")] == [
        len(EXPECTED),
        sum(e[2] for e in EXPECTED),
        sum(e[3] for e in EXPECTED),
        REFERENCED,
    ]

    ct_study = summary["patients"][0]["studies"][1]
    assert ct_study == {
        "date": "19950903",
        "description": "CT, HEAD/BRAIN WO CONTRAST",
        "uid": "1.3.6.1.4.1.5962.1.1.0.0.0.1196530851.28319.0.1",
        "modalities": ["CT"],
        "series": [
            {
                "modality": "CT",
                "number": "2",
                "description": "",
                "uid": "1.3.6.1.4.1.5962.1.1.0.0.0.1196530851.28319.0.2",
                "images": 4,
            }
        ],
        "images": 4,
    }
    assert summary["patients"][1]["studies"][0]["description"] == ""


@pytest.mark.parametrize("variant", ["DICOMDIR-reordered", "DICOMDIR-nooffset", "DICOMDIR-bigEnd", "DICOMDIR-implicit"])
def test_encodings_and_record_orders_follow_the_offsets(disc, variant):
    """'reordered' stores IMAGE, SERIES, STUDY, PATIENT first: only the offsets give the right tree."""
    listing, dicomdirs = disc
    summary = describe(listing, {**dicomdirs, "DICOMDIR": (DISC / variant).read_bytes()})
    assert shape(summary) == EXPECTED
    assert summary["problems"] == []
    assert summary["referenced"] == REFERENCED


def test_lowercased_disc_gives_the_same_summary(disc, tmp_path):
    listing, dicomdirs = disc
    for f in listing:
        target = tmp_path / f.path.lower()
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DISC / f.path, target)
    lower_listing = listing_of(tmp_path)
    assert "77654033/cr1/6154" in {f.path for f in lower_listing}

    lower = describe(lower_listing, dicomdir_bytes(tmp_path, lower_listing))
    original = describe(listing, dicomdirs)
    assert lower["dicomdirs"] == ["dicomdir", "tiny_alpha/dicomdir"]
    assert {**lower, "dicomdirs": None, "roles": None} == {**original, "dicomdirs": None, "roles": None}
    assert lower["roles"] == {path.lower(): role for path, role in original["roles"].items()}


def test_iso9660_version_suffixes_and_trailing_dots(disc):
    """Some CD mounts show 'IM000001;1' and 'DICOMDIR.;1'; the index spells 'IM000001'."""
    listing, dicomdirs = disc
    mounted = [DiscFile(f.path + (".;1" if "DICOMDIR" in f.path else ";1"), f.size) for f in listing]
    renamed = {path + ".;1": data for path, data in dicomdirs.items()}
    summary = describe(mounted, renamed)
    assert summary["dicomdirs"] == ["DICOMDIR.;1", "TINY_ALPHA/DICOMDIR.;1"]
    assert shape(summary) == EXPECTED
    assert summary["referenced"] == REFERENCED
    assert summary["missing"] == []


def test_dicomdir_in_a_subfolder(disc):
    listing, dicomdirs = disc
    nested = [DiscFile(f"Patient CD/{f.path}", f.size) for f in listing]
    nested_dicomdirs = {f"Patient CD/{path}": data for path, data in dicomdirs.items()}
    summary = describe(nested, nested_dicomdirs)
    assert summary["dicomdirs"] == ["Patient CD/DICOMDIR", "Patient CD/TINY_ALPHA/DICOMDIR"]
    assert shape(summary) == EXPECTED
    assert summary["referenced"] == REFERENCED
    assert summary["missing"] == []
    assert summary["problems"] == []


# Shipped files of different kinds that dcmmkdir's general purpose profile accepts.
DCMTK_SOURCES = [
    "CT_small.dcm",  # CT image
    "MR_small.dcm",  # MR image
    "test-SR.dcm",  # SR DOCUMENT record, no PatientID (dcmmkdir +I invents one)
    "examples_rgb_color.dcm",  # US image
    "waveform_ecg.dcm",  # WAVEFORM record
    "liver_1frame.dcm",  # SEG
]


@pytest.mark.skipif(shutil.which("dcmmkdir") is None, reason="DCMTK's dcmmkdir is not on PATH (apt install dcmtk)")
def test_dicomdir_written_by_dcmtk(tmp_path):
    expected = {}
    for number, name in enumerate(DCMTK_SOURCES, start=1):
        source = get_testdata_file(name)
        target = tmp_path / f"DICOM/ST{number:06d}/SE000001/IM000001"
        target.parent.mkdir(parents=True)
        shutil.copyfile(source, target)
        ds = pydicom.dcmread(source, stop_before_pixels=True)
        expected[str(ds.PatientName)] = (str(ds.get("PatientID", "")), [ds.Modality], 1)
    subprocess.run(
        ["dcmmkdir", "-Pgp", "+I", "+r", "+id", ".", "+D", "DICOMDIR", "DICOM"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    listing = listing_of(tmp_path)
    records = pydicom.dcmread(tmp_path / "DICOMDIR").DirectoryRecordSequence
    leaf_types = {r.DirectoryRecordType for r in records if "ReferencedFileID" in r}
    assert {"IMAGE", "SR DOCUMENT", "WAVEFORM"} <= leaf_types

    summary = describe(listing, dicomdir_bytes(tmp_path, listing))
    found = {
        p["name"]: (p["id"], p["studies"][0]["modalities"], p["studies"][0]["images"])
        for p in summary["patients"]
    }
    invented_id = found["Test^S R"][0]
    assert invented_id.startswith("DCMTKPAT")  # test-SR.dcm has an empty PatientID
    assert found == {**expected, "Test^S R": (invented_id, ["SR"], 1)}
    assert all(len(p["studies"]) == 1 and len(p["studies"][0]["series"]) == 1 for p in summary["patients"])
    assert summary["dicomdirs"] == ["DICOMDIR"]
    assert summary["referenced"] == len(DCMTK_SOURCES)
    assert summary["unreferenced"] == 1  # the DICOMDIR itself
    assert summary["missing"] == []
    assert summary["problems"] == []


def test_missing_and_unreferenced_files(disc):
    listing, dicomdirs = disc
    gone = {"77654033/CT2/17166", "TINY_ALPHA/PT000000/ST000000/SE000000/IM000007"}
    kept = [f for f in listing if f.path not in gone]
    with_extra = kept + [DiscFile("AUTORUN.INF", 60), DiscFile("VIEWER/viewer.exe", 1000)]
    summary = describe(with_extra, dicomdirs)

    assert summary["missing"] == ["77654033/CT2/17166", "TINY_ALPHA/PT000000/ST000000/SE000000/IM000007"]
    assert summary["referenced"] == REFERENCED - 2
    assert summary["unreferenced"] == 10 + 2
    assert summary["files"] == 91
    # Counts are what the index says the disc should hold; the gap is reported as a problem.
    assert shape(summary) == EXPECTED
    assert summary["problems"] == [
        "2 file(s) listed in the disc index are not on the disc, so they cannot be sent; "
        "the disc may be incomplete or damaged."
    ]


def test_missing_paths_are_spelled_as_the_index_under_the_listing_folder(disc):
    listing, dicomdirs = disc
    lowered = [DiscFile(f"cd/{f.path.lower()}", f.size) for f in listing if f.path != "77654033/CR2/6247"]
    summary = describe(lowered, {f"cd/{p.lower()}": d for p, d in dicomdirs.items()})
    assert summary["missing"] == ["cd/77654033/CR2/6247"]
    assert summary["referenced"] == REFERENCED - 1


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[:300], id="truncated-300"),
        pytest.param(lambda data: random.Random(0).randbytes(4096), id="random"),
        pytest.param(lambda data: b"", id="empty"),
    ],
)
def test_unreadable_dicomdir_is_a_problem_not_an_error(disc, damage):
    listing, dicomdirs = disc
    data = damage(dicomdirs["DICOMDIR"])
    summary = describe(listing, {**dicomdirs, "DICOMDIR": data})

    assert len(summary["problems"]) == 1
    assert summary["problems"][0].startswith("The disc index (DICOMDIR) is damaged: ")
    assert summary["problems"][0].endswith("; all files will still be sent.")
    # TINY_ALPHA/DICOMDIR still counts; every file of the damaged index is unreferenced.
    assert shape(summary) == EXPECTED[2:]
    assert summary["referenced"] == 50
    assert summary["unreferenced"] == 41
    assert summary["files"] == 91


def test_dicomdir_cut_short_inside_its_records(disc):
    """pydicom reads a sequence cut short without complaint; the dangling offsets give it away."""
    listing, dicomdirs = disc
    summary = describe(listing, {**dicomdirs, "DICOMDIR": dicomdirs["DICOMDIR"][:2000]})
    assert summary["problems"] == [
        f"The disc index (DICOMDIR) is damaged: {BROKEN_LINKS}, so images may be grouped "
        "under the wrong patient or study; all files will still be sent."
    ]
    # Records starting before byte 2000 (per dcmdump): the CR study with its 3 series and
    # images, and the start of the CT study, whose series lie beyond the cut.
    assert shape(summary) == [("Doe^Archibald", "77654033", 2, 3, 3), EXPECTED[2]]
    assert summary["referenced"] == 3 + 50


def test_dicomdir_bytes_not_handed_over(disc):
    listing, dicomdirs = disc
    summary = describe(listing, {"DICOMDIR": dicomdirs["DICOMDIR"]})
    assert summary["dicomdirs"] == ["DICOMDIR", "TINY_ALPHA/DICOMDIR"]
    assert summary["problems"] == [
        "The disc index (TINY_ALPHA/DICOMDIR) could not be opened; all files will still be sent."
    ]
    assert shape(summary) == EXPECTED[:2]


def _bogus_root(ds: pydicom.Dataset) -> None:
    ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = 12345


def _series_loops_to_itself(ds: pydicom.Dataset) -> None:
    series = ds.DirectoryRecordSequence[4]
    assert series.DirectoryRecordType == "SERIES"
    series.OffsetOfTheNextDirectoryRecord = series.seq_item_tell


def _child_points_to_its_patient(ds: pydicom.Dataset) -> None:
    study = ds.DirectoryRecordSequence[1]
    assert study.DirectoryRecordType == "STUDY"
    study.OffsetOfReferencedLowerLevelDirectoryEntity = ds.DirectoryRecordSequence[0].seq_item_tell


@pytest.mark.parametrize("corrupt", [_bogus_root, _series_loops_to_itself, _child_points_to_its_patient])
def test_broken_offsets_fall_back_to_record_order(disc, corrupt):
    listing, dicomdirs = disc
    summary = describe(listing, {**dicomdirs, "DICOMDIR": resave(dicomdirs["DICOMDIR"], corrupt)})
    assert shape(summary) == EXPECTED
    assert summary["referenced"] == REFERENCED
    assert len(summary["problems"]) == 1
    assert summary["problems"][0].startswith(f"The disc index (DICOMDIR) is damaged: {BROKEN_LINKS}")


def test_pydicom_nopatient_dicomdir(disc):
    """Real broken file: PATIENT types replaced by 'UNKNOWN' and the root offset pointing at an IMAGE."""
    listing, dicomdirs = disc
    summary = describe(listing, {**dicomdirs, "DICOMDIR": (DISC / "DICOMDIR-nopatient").read_bytes()})
    assert len(summary["problems"]) == 1 and BROKEN_LINKS in summary["problems"][0]
    assert summary["patients"][0]["name"] == summary["patients"][0]["id"] == ""
    assert summary["referenced"] == REFERENCED
    assert summary["missing"] == []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_any_damage_never_raises(disc, data):
    listing, dicomdirs = disc
    original = dicomdirs["DICOMDIR"]
    damaged = bytearray(original[: data.draw(st.integers(0, len(original)), label="length")])
    for _ in range(data.draw(st.integers(0, 8), label="flips")):
        if damaged:
            damaged[data.draw(st.integers(0, len(damaged) - 1))] = data.draw(st.integers(0, 255))
    summary = describe(listing, {**dicomdirs, "DICOMDIR": bytes(damaged)})
    assert summary["files"] == 91


def test_find_dicomdirs():
    listing = [
        DiscFile("sub/DICOMDIR;1", 1),
        DiscFile("DICOMDIR.bak", 1),
        DiscFile("dicomdir", 1),
        DiscFile("DICOMDIR/IM000001", 1),
        DiscFile("a/b/DICOMDIR", 1),
        DiscFile("DICOMDIRX", 1),
        DiscFile("DICOMDIR.", 1),
        DiscFile("sub/NOT_DICOMDIR", 1),
    ]
    assert [f.path for f in find_dicomdirs(listing)] == ["DICOMDIR.", "dicomdir", "sub/DICOMDIR;1", "a/b/DICOMDIR"]
    assert find_dicomdirs([]) == []
