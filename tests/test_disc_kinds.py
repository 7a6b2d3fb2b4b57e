"""scan_disc on every kind of disc patients bring, each built in tmp_path by the tools that write
real ones (see discs.py) and read through FolderDisc as the browser reads the chosen folder."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import time
from collections import Counter
from pathlib import Path

import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file

import discs
from discs import GP_SOURCES, facts, gp_file_id, write
from pcir_upload.page.disc.dicomhead import read_head
from pcir_upload.page.disc.disc import DiscReadError
from pcir_upload.page.disc.discovery import HEAD_LENGTHS, MAX_BATCH_FILES, classify_document, scan_disc
from support import FolderDisc

pytestmark = pytest.mark.skipif(not discs.have_dcmtk(), reason="DCMTK is not installed (apt install dcmtk)")

HEAD = HEAD_LENGTHS[0]
NOT_DICOM = (
    "This disc does not hold images in the DICOM format. It will be sent as it is; "
    "the repository will do its best with it."
)


def scan(disc: FolderDisc, progress: list | None = None) -> dict:
    """The summary as the page gets it, with the invariants every summary keeps."""
    report = None if progress is None else lambda done, total: progress.append((done, total))
    summary = asyncio.run(scan_disc(disc.listing, disc, report))
    result = summary.to_json()
    assert json.loads(json.dumps(result)) == result
    assert set(result["roles"]) == {f.path for f in disc.listing}
    assert result["excluded_by_default"] == [p for p, r in result["roles"].items() if r == "viewer"]
    assert result["referenced"] + result["unreferenced"] == result["files"] == len(disc.listing)
    assert sum(t["files"] for t in result["by_role"].values()) == result["files"]
    assert sum(t["bytes"] for t in result["by_role"].values()) == result["bytes"]
    assert all(n <= MAX_BATCH_FILES for n in disc.batches)
    return result


def patients(summary: dict) -> dict[tuple[str, str], list[tuple[str, list[str], int, int]]]:
    """{(name, id): [(study uid, modalities, series, images)]}."""
    return {
        (p["name"], p["id"]): sorted(
            (s["uid"], s["modalities"], len(s["series"]), s["images"]) for s in p["studies"]
        )
        for p in summary["patients"]
    }


def expected_patients(files: list[Path]) -> dict[tuple[str, str], list[tuple[str, list[str], int, int]]]:
    """The same shape, computed by pydicom reading every file in full."""
    studies: dict[tuple[str, str], dict[str, tuple[set[str], set[str], set[str]]]] = {}
    for path in files:
        f = facts(path)
        modalities, series, images = studies.setdefault((f.patient, f.patient_id), {}).setdefault(
            f.study_uid, (set(), set(), set())
        )
        modalities.add(f.modality)
        series.add(f.series_uid)
        images.add(f.instance_uid)
    return {
        key: sorted((uid, sorted(m), len(s), len(i)) for uid, (m, s, i) in by_study.items())
        for key, by_study in studies.items()
    }


def roles_count(summary: dict) -> Counter[str]:
    return Counter(summary["roles"].values())


# --- General purpose CD (STD-GEN-CD) -------------------------------------------------------


def test_general_purpose_cd_reads_only_its_dicomdir(tmp_path):
    root = discs.general_purpose_cd(tmp_path / "cd")
    disc = FolderDisc(root)
    summary = scan(disc)

    assert summary["kind"] == "dicom"
    assert summary["dicomdirs"] == ["DICOMDIR"]
    assert summary["roles"] == {"DICOMDIR": "index"} | {gp_file_id(n): "dicom" for n in range(1, 9)}
    assert summary["referenced"] == 8 and summary["missing"] == [] and summary["problems"] == []
    assert summary["notes"] == [] and summary["excluded_by_default"] == [] and summary["unreadable"] == []
    # Every image is in the index, so no image is opened at all: the DICOMDIR alone is read.
    assert disc.reads == [("DICOMDIR", 0, (root / "DICOMDIR").stat().st_size)]

    # Per patient as the files themselves say, except where dcmmkdir invented an ID or date.
    found = patients(summary)
    files = [root / gp_file_id(n) for n in range(1, 9)]
    expected = expected_patients(files)
    deflated = facts(files[5])
    assert deflated.patient_id == "" and ("^^^^", "DCMTKPAT000000") in found
    expected[("^^^^", "DCMTKPAT000000")] = expected.pop(("^^^^", ""))
    assert found == expected
    mr = found[("CompressedSamples^MR1", "4MR1")]
    assert mr == [("1.3.6.1.4.1.5962.1.2.4.20040826185059.5457", ["MR"], 2, 2)]  # implicit + RLE series
    assert sorted(m for p in summary["patients"] for s in p["studies"] for m in s["modalities"]) == [
        "CT", "MR", "NM", "OT", "OT", "SEG", "US"]
    # The transfer syntaxes really are those the disc is meant to exercise.
    assert [pydicom.dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID for f in files] == [
        ts for _, _, ts in GP_SOURCES
    ]


def test_the_same_disc_found_by_content_gives_the_same_patients(tmp_path):
    """Delete the DICOMDIR: the headers alone give the same patients, studies, series and images."""
    root = discs.general_purpose_cd(tmp_path / "cd")
    with_index = patients(scan(FolderDisc(root)))
    (root / "DICOMDIR").unlink()
    disc = FolderDisc(root)
    summary = scan(disc)

    assert summary["kind"] == "dicom-without-index"
    assert summary["notes"] == ["This disc has no index (DICOMDIR), so the images were found by reading the files themselves."]
    assert roles_count(summary) == {"dicom": 8}
    found = patients(summary)
    assert found.pop(("^^^^", "")) == with_index.pop(("^^^^", "DCMTKPAT000000"))  # dcmmkdir's invented ID
    assert found == with_index
    # Heads only: one read of the first 8 KiB per file.
    assert sorted(disc.reads) == sorted((gp_file_id(n), 0, HEAD) for n in range(1, 9))
    study = next(s for p in summary["patients"] if p["name"] == "CompressedSamples^CT1" for s in p["studies"])
    assert (study["date"], study["modalities"], study["images"]) == ("20040119", ["CT"], 1)
    assert study["series"][0]["number"] == "1"
    nm = next(s for p in summary["patients"] if p["name"] == "CompressedSamples^NM1" for s in p["studies"])
    assert (nm["date"], nm["description"], nm["modalities"]) == ("20040826", "Whole Body Bone", ["NM"])  # JPEG 2000
    seg = next(p for p in summary["patients"] if p["name"] == "JANCT000")["studies"][0]["series"][0]
    assert (seg["modality"], seg["description"], seg["images"]) == ("SEG", "Liver Segmentation", 1)  # big endian


def test_an_index_that_leads_nowhere_is_not_used(tmp_path):
    """A DICOMDIR copied without its images, beside images it does not list."""
    source = discs.general_purpose_cd(tmp_path / "source")
    root = tmp_path / "copy"
    (root / "IMAGES").mkdir(parents=True)
    shutil.copyfile(source / "DICOMDIR", root / "DICOMDIR")
    shutil.copyfile(get_testdata_file("rtplan.dcm"), root / "IMAGES/PLAN")
    summary = scan(FolderDisc(root))
    assert summary["kind"] == "dicom-without-index"
    assert len(summary["missing"]) == 8 and summary["referenced"] == 0
    assert summary["roles"] == {"DICOMDIR": "index", "IMAGES/PLAN": "dicom"}
    assert summary["notes"] == [
        "The disc index (DICOMDIR) could not be used, so the images were found by reading the files themselves."]
    # The index's patients are still shown (from its records), beside the one found by content.
    assert ("Last^First^mid^pre", "id00001") in patients(summary) and len(summary["patients"]) == 8


def test_pydicom_test_disc_through_scan_disc(dicomdirtests):
    disc = FolderDisc(dicomdirtests)
    summary = scan(disc)
    assert summary["kind"] == "dicom"
    assert [(p["name"], p["id"], sum(s["images"] for s in p["studies"])) for p in summary["patients"]] == [
        ("Doe^Archibald", "77654033", 7), ("Doe^Peter", "98890234", 24), ("Citizen^Jan", "12345678", 50)]
    # The DICOMDIR variants beside the real one are indexes by their content.
    assert roles_count(summary) == {"dicom": 81, "index": 8, "disc-text": 2}
    assert summary["roles"]["DICOMDIR-reordered"] == "index"
    assert summary["roles"]["TINY_ALPHA/README"] == summary["roles"]["README.txt"] == "disc-text"
    assert {path for path, _, _ in disc.reads} == {
        f.path for f in disc.listing if summary["roles"][f.path] != "dicom"}
    assert summary["notes"] == [] and summary["problems"] == []


# --- IHE PDI: viewer, web pages, README, AUTORUN.INF -------------------------------------


def test_ihe_pdi_disc_roles_and_what_is_left_out(tmp_path):
    root = tmp_path / "cd"
    intended = discs.ihe_pdi_cd(root)
    summary = scan(FolderDisc(root))

    assert summary["kind"] == "dicom"
    assert summary["roles"] == intended
    viewer = sorted(p for p, r in intended.items() if r == "viewer")
    assert summary["excluded_by_default"] == viewer
    assert len(viewer) == 14
    viewer_bytes = sum((root / p).stat().st_size for p in viewer)
    assert summary["by_role"]["viewer"] == {"files": 14, "bytes": viewer_bytes}
    assert summary["by_role"]["disc-text"]["files"] == 7
    assert summary["notes"] == [
        f"The disc's viewer program (14 files, {round(viewer_bytes / 1000)} kB) will not be sent unless "
        "you choose to send everything; the repository does not need it."
    ]
    assert len(summary["patients"]) == 7


def test_autorun_names_the_viewer_folder_even_without_a_recognisable_program(tmp_path):
    """A launcher that is a batch file: the folder AUTORUN.INF starts it from is the viewer's."""
    root = discs.general_purpose_cd(tmp_path / "cd")
    write(root / "AUTORUN.INF", '[AutoRun]\r\nOPEN="Program Files\\Start Viewer.bat" -open\r\nICON=disc.ico\r\n')
    write(root / "Program Files/Start Viewer.bat", "@echo off\nstart jre\\bin\\javaw -jar viewer.jar\n")
    write(root / "Program Files/viewer.jar", b"PK\x03\x04" + bytes(60))
    write(root / "Program Files/lang/de.properties", "open=Öffnen\n")
    write(root / "disc.ico", b"\x00\x00\x01\x00\x01\x00\x10\x10")
    write(root / "Start.exe", discs.windows_program())  # a launcher at the root: itself,
    write(root / "Start.ini", "[start]\n")  # and its settings beside it
    write(root / "Patient letter.pdf", discs.one_page_pdf())  # the patient's own, at the root
    write(root / "LETTERS/AUTORUN.INF", "[autorun]\nshellexecute=Befund.docx\n")  # opens a document
    write(root / "LETTERS/Befund.docx", b"PK\x03\x04" + bytes(100))
    summary = scan(FolderDisc(root))

    assert summary["excluded_by_default"] == [
        "Program Files/Start Viewer.bat", "Program Files/lang/de.properties", "Program Files/viewer.jar",
        "Start.exe", "Start.ini", "disc.ico"]
    assert summary["roles"]["AUTORUN.INF"] == "disc-text"
    assert summary["roles"]["Patient letter.pdf"] == summary["roles"]["LETTERS/Befund.docx"] == "other"
    assert summary["kind"] == "dicom"


def test_a_program_among_images_takes_only_itself(tmp_path):
    """A folder holding DICOM files is never taken whole as a viewer, whatever else is in it."""
    root = discs.general_purpose_cd(tmp_path / "cd")
    folder = root / "DICOM/ST000001/SE000001"
    write(folder / "tool.exe", discs.windows_program())
    write(folder / "NOTES.DAT", b"\x01\x02proprietary")
    write(root / "DICOM/ST000001/export/run", discs.linux_program())
    write(root / "DICOM/ST000001/export/data.bin", b"\x00" * 100)
    summary = scan(FolderDisc(root))
    roles = summary["roles"]
    assert roles["DICOM/ST000001/SE000001/tool.exe"] == "viewer"
    assert roles["DICOM/ST000001/SE000001/NOTES.DAT"] == "other"
    assert roles[gp_file_id(1)] == "dicom"
    # A program's own folder with no images is the viewer's, but not its parent that has some.
    assert roles["DICOM/ST000001/export/run"] == roles["DICOM/ST000001/export/data.bin"] == "viewer"


def test_not_a_program_by_name_alone(tmp_path):
    root = discs.general_purpose_cd(tmp_path / "cd")
    write(root / "VIEWER/viewer.exe", "This is not a program, whatever its name says.\n")
    write(root / "VIEWER/MZ notes.txt", "MZ was here\n")
    summary = scan(FolderDisc(root))
    assert summary["excluded_by_default"] == []
    assert summary["roles"]["VIEWER/viewer.exe"] == "other"
    assert summary["roles"]["VIEWER/MZ notes.txt"] == "disc-text"


# --- How discs get mounted and copied -------------------------------------------------------


def test_lowercase_names_and_version_suffixes(tmp_path):
    """Mounted lowercase with ISO 9660 ';1' versions, while the DICOMDIR says DICOM\\ST000001\\..."""
    source = discs.general_purpose_cd(tmp_path / "source")
    root = tmp_path / "mounted"
    for path in source.rglob("*"):
        if path.is_file():
            target = root / (path.relative_to(source).as_posix().lower() + ";1")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    disc = FolderDisc(root)
    summary = scan(disc)
    assert summary["dicomdirs"] == ["dicomdir;1"]
    assert summary["kind"] == "dicom"
    assert summary["referenced"] == 8 and summary["missing"] == []
    assert roles_count(summary) == {"dicom": 8, "index": 1}
    assert patients(summary) == patients(scan(FolderDisc(source)))
    assert [path for path, _, _ in disc.reads] == ["dicomdir;1"]


def test_several_dicomdirs_in_subfolders(tmp_path):
    """Two discs copied into one folder: each DICOMDIR's files are found relative to it."""
    discs.general_purpose_cd(tmp_path / "copy/CD 1")
    second = tmp_path / "copy/CD 2"
    (second / "DICOM/ST000001/SE000001").mkdir(parents=True)
    shutil.copyfile(get_testdata_file("rtplan.dcm"), second / "DICOM/ST000001/SE000001/IM000001")
    discs.make_dicomdir(second)
    disc = FolderDisc(tmp_path / "copy")
    summary = scan(disc)
    assert summary["dicomdirs"] == ["CD 1/DICOMDIR", "CD 2/DICOMDIR"]
    assert summary["kind"] == "dicom"
    assert summary["referenced"] == 9 and summary["unreferenced"] == 2
    assert ("Last^First^mid^pre", "id00001") in patients(summary)
    assert len(summary["patients"]) == 8
    assert [path for path, _, _ in disc.reads] == ["CD 1/DICOMDIR", "CD 2/DICOMDIR"]


def test_unreferenced_and_missing_files(tmp_path):
    root = discs.general_purpose_cd(tmp_path / "cd")
    (root / gp_file_id(2)).unlink()  # listed in the DICOMDIR, gone from the disc
    extra = root / "DICOM/ST000009/SE000001/IM000001"  # on the disc, not in the DICOMDIR
    extra.parent.mkdir(parents=True)
    shutil.copyfile(get_testdata_file("rtplan.dcm"), extra)
    write(root / "DICOM/ST000009/NOTE.TXT", "Sent on request.\n")
    summary = scan(FolderDisc(root))

    assert summary["missing"] == [gp_file_id(2)]
    assert summary["problems"] == [
        "1 file(s) listed in the disc index are not on the disc, so they cannot be sent; "
        "the disc may be incomplete or damaged."
    ]
    assert summary["referenced"] == 7 and summary["unreferenced"] == 3
    assert summary["roles"][extra.relative_to(root).as_posix()] == "dicom"
    assert summary["roles"]["DICOM/ST000009/NOTE.TXT"] == "disc-text"
    assert summary["kind"] == "dicom"
    assert summary["notes"] == ["1 DICOM file(s) that the disc index does not list were found by reading the files themselves."]
    # The unlisted file is in the summary; the missing one is still counted as the index says.
    plan = patients(summary)[("Last^First^mid^pre", "id00001")]
    assert plan == [(facts(extra).study_uid, ["RTPLAN"], 1, 1)]
    assert patients(summary)[("CompressedSamples^MR1", "4MR1")][0][3] == 2


# --- No DICOMDIR: found by content ---------------------------------------------------------


def test_no_dicomdir_with_files_without_preamble(tmp_path):
    """Implicit and explicit VR datasets without preamble or meta, as dcmconv -F writes them."""
    root = tmp_path / "export"
    ct = Path(get_testdata_file("CT_small.dcm"))
    series = []
    for n in range(3):  # one series of three images: new instance UIDs, same series
        target = root / "Patient Images" / f"CT {n + 1}.dcm"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ct, target)
        discs.run("dcmodify", "-nb", "-gin", target)
        series.append(target)
    implicit = discs.without_preamble(Path(get_testdata_file("MR_small.dcm")), root / "MR/IMG0001", explicit=False)
    explicit = discs.without_preamble(Path(get_testdata_file("rtplan.dcm")), root / "RT/PLAN", explicit=True)
    assert implicit.read_bytes()[:2] == b"\x08\x00" and implicit.read_bytes()[128:132] != b"DICM"
    write(root / "notes.txt", "Images for Dr. Müller\n")
    write(root / "binary.dat", b"\x08\x00\x05\x00" + random.Random(1).randbytes(3000))  # starts like DICOM
    shutil.copyfile(get_testdata_file("no_meta.dcm"), root / "broken.dcm")  # a stray byte: not parseable
    disc = FolderDisc(root)
    summary = scan(disc)

    assert summary["kind"] == "dicom-without-index"
    assert summary["dicomdirs"] == [] and summary["referenced"] == 0
    assert {p: r for p, r in summary["roles"].items() if r != "dicom"} == {
        "notes.txt": "disc-text", "binary.dat": "other", "broken.dcm": "other"}
    assert patients(summary) == expected_patients(series + [implicit, explicit])
    ct_study = patients(summary)[("CompressedSamples^CT1", "1CT1")]
    assert ct_study == [(facts(series[0]).study_uid, ["CT"], 1, 3)]
    assert {length for _, _, length in disc.reads} == {HEAD}


def test_long_headers_are_read_again_longer_only_for_those_files(tmp_path):
    """examples_ybr_color.dcm's header runs past 8 KiB: only it is read again, with a longer head."""
    root = tmp_path / "cd"
    for name in ("examples_ybr_color.dcm", "CT_small.dcm", "MR_small.dcm"):
        write(root / "IMAGES" / name.upper().replace(".DCM", ""), Path(get_testdata_file(name)).read_bytes())
    disc = FolderDisc(root)
    summary = scan(disc)
    assert sorted(disc.reads) == [
        ("IMAGES/CT_SMALL", 0, HEAD), ("IMAGES/EXAMPLES_YBR_COLOR", 0, HEAD),
        ("IMAGES/EXAMPLES_YBR_COLOR", 0, HEAD_LENGTHS[1]), ("IMAGES/MR_SMALL", 0, HEAD)]
    ybr = facts(Path(get_testdata_file("examples_ybr_color.dcm")))
    assert patients(summary)[(ybr.patient, ybr.patient_id)] == [(ybr.study_uid, ["US"], 1, 1)]
    found = next(p for p in summary["patients"] if p["name"] == ybr.patient)
    assert found["studies"][0]["series"][0]["uid"] == ybr.series_uid
    assert ybr.series_uid  # the field that lies beyond the first 8 KiB


def test_a_header_longer_than_every_head_is_described_as_far_as_it_goes(tmp_path):
    """5 MiB of private data before the patient's name: three heads, never the whole file."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    block = ds.private_block(0x0009, "PCIR TEST", create=True)
    block.add_new(0x01, "OB", bytes(5 * 1024 * 1024))
    root = tmp_path / "cd"
    (root / "IMAGES").mkdir(parents=True)
    ds.save_as(root / "IMAGES/IM1", enforce_file_format=True)
    disc = FolderDisc(root)
    summary = scan(disc)
    assert disc.reads == [("IMAGES/IM1", 0, length) for length in HEAD_LENGTHS]
    assert summary["roles"] == {"IMAGES/IM1": "dicom"}
    assert summary["kind"] == "dicom-without-index"
    # Group 0008 came before the private block; the patient's group 0010 and the UIDs after it did not.
    assert [(p["name"], p["studies"][0]["date"], p["studies"][0]["modalities"], p["studies"][0]["images"])
            for p in summary["patients"]] == [("", "20040119", ["CT"], 1)]


def test_a_long_index_page_is_read_whole(tmp_path):
    root = discs.general_purpose_cd(tmp_path / "cd")
    page = "<html><!-- " + "x" * 20_000 + ' --><img src="images/logo.gif"></html>'
    write(root / "INDEX.HTM", page)
    write(root / "images/logo.gif", b"GIF89a" + bytes(30))
    write(root / "images/unlinked.gif", b"GIF89a" + bytes(30))
    disc = FolderDisc(root)
    summary = scan(disc)
    assert summary["roles"]["images/logo.gif"] == "disc-text"
    assert summary["roles"]["images/unlinked.gif"] == "other"
    assert [length for path, _, length in disc.reads if path == "INDEX.HTM"] == [HEAD, HEAD_LENGTHS[1]]


def test_many_small_files(tmp_path):
    """20,000 small DICOM files without DICOMDIR: batched heads, progress, and the time it takes."""
    count = 20_000
    root = discs.many_small_dicom_files(tmp_path / "disc", count)
    disc = FolderDisc(root)
    progress: list[tuple[int, int]] = []
    started = time.perf_counter()
    summary = scan(disc, progress)
    seconds = time.perf_counter() - started
    print(f"\nscan_disc of {count} small DICOM files: {seconds:.1f} s")
    assert seconds < 60  # on CPython; a real CD's seeks dominate in the browser

    assert summary["kind"] == "dicom-without-index"
    assert [(p["name"], len(p["studies"]), len(p["studies"][0]["series"]), p["studies"][0]["images"])
            for p in summary["patients"]] == [("CompressedSamples^CT1", 1, 200, count)]
    assert len(disc.batches) == count // MAX_BATCH_FILES + 1 and max(disc.batches) == MAX_BATCH_FILES
    assert progress[0] == (0, count) and progress[-1] == (count, count)
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)
    assert len(progress) >= len(disc.batches)


# --- Not DICOM at all, empty, broken -------------------------------------------------------


def test_a_disc_without_dicom(tmp_path):
    root = tmp_path / "cd"
    ct = Path(get_testdata_file("CT_small.dcm"))
    discs.picture(ct, root / "Bilder/Aufnahme 1.jpg", "jpeg")
    discs.picture(ct, root / "Bilder/Aufnahme 2.png", "png")
    write(root / "Video/US_LOOP.AVI", b"RIFF\x00\x10\x00\x00AVI LIST" + bytes(4000))
    write(root / "DATA/STUDY.VXP", random.Random(2).randbytes(20_000))  # a vendor's own format
    write(root / "Befund.pdf", discs.one_page_pdf())
    write(root / "LIESMICH.TXT", "Bitte den Befund beachten.\n")
    summary = scan(FolderDisc(root))

    assert summary["kind"] == "not-dicom"
    assert summary["notes"] == [NOT_DICOM]
    assert summary["patients"] == [] and summary["excluded_by_default"] == []
    assert summary["roles"] == {
        "Befund.pdf": "other", "Bilder/Aufnahme 1.jpg": "other", "Bilder/Aufnahme 2.png": "other",
        "DATA/STUDY.VXP": "other", "LIESMICH.TXT": "disc-text", "Video/US_LOOP.AVI": "other"}


def test_empty_folder_and_empty_files(tmp_path):
    (tmp_path / "empty").mkdir()
    summary = scan(FolderDisc(tmp_path / "empty"))
    assert summary["kind"] == "empty" and summary["files"] == 0
    assert summary["notes"] == [
        "This folder holds no files. Please check that you chose the disc itself, or the folder its files were copied to."]
    write(tmp_path / "zeros/DICOMDIR", b"")
    write(tmp_path / "zeros/IMAGES/IM1", b"")
    disc = FolderDisc(tmp_path / "zeros")
    summary = scan(disc)
    assert summary["kind"] == "empty" and summary["files"] == 2
    assert summary["roles"] == {"DICOMDIR": "index", "IMAGES/IM1": "other"}
    assert summary["problems"] == ["The disc index (DICOMDIR) is damaged: the file is empty; all files will still be sent."]
    assert [path for path, _, _ in disc.reads] == ["DICOMDIR"]


def test_truncated_dicomdir_falls_back_to_the_files(tmp_path):
    root = discs.general_purpose_cd(tmp_path / "cd")
    whole = patients(scan(FolderDisc(root)))
    dicomdir = root / "DICOMDIR"
    dicomdir.write_bytes(dicomdir.read_bytes()[:200])
    summary = scan(FolderDisc(root))
    assert summary["kind"] == "dicom-without-index"
    assert summary["problems"] == [
        "The disc index (DICOMDIR) is damaged: it is cut short or is not a DICOM disc index; all files will still be sent."]
    assert summary["notes"] == [
        "The disc index (DICOMDIR) could not be used, so the images were found by reading the files themselves."]
    whole[("^^^^", "")] = whole.pop(("^^^^", "DCMTKPAT000000"))
    assert patients(summary) == whole
    assert summary["roles"]["DICOMDIR"] == "index"


def test_unreadable_files_are_listed_and_the_rest_goes_on(tmp_path):
    """A scratched disc: the DICOMDIR and one unlisted image cannot be read."""
    root = discs.general_purpose_cd(tmp_path / "cd")
    write(root / "README.TXT", "Hello\n")
    disc = FolderDisc(root, unreadable={"DICOMDIR", gp_file_id(3)})
    summary = scan(disc)
    reason = "The computer could not read this file."
    assert summary["unreadable"] == [{"path": gp_file_id(3), "error": reason}, {"path": "DICOMDIR", "error": reason}]
    assert summary["problems"] == ["The disc index (DICOMDIR) could not be opened; all files will still be sent."]
    assert summary["kind"] == "dicom-without-index"
    assert roles_count(summary) == {"dicom": 7, "index": 1, "other": 1, "disc-text": 1}
    assert summary["roles"][gp_file_id(3)] == "other"
    assert len(summary["patients"]) == 6  # the unreadable file was the NM study's only image
    assert summary["notes"][-1] == (
        "2 file(s) could not be read just now; the disc may be scratched or dirty. They will be "
        "tried again when sending, and any that still fail will be recorded.")


def test_odd_names_deep_paths_and_zero_byte_files(tmp_path):
    root = tmp_path / "Röntgen – Ärztin Dr. Øster"
    deep = "/".join(f"Ebene {n} ünd" for n in range(30))
    images = [root / deep / "Bild 1 (Kopie).dcm", root / "名前/画像 2.dcm"]
    for target, name in zip(images, ("CT_small.dcm", "MR_small.dcm")):
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(get_testdata_file(name), target)
    write(root / "leer.txt", b"")
    write(root / deep / "leer.dcm", b"")
    disc = FolderDisc(tmp_path)
    summary = scan(disc)
    assert summary["kind"] == "dicom-without-index"
    prefix = root.name
    assert summary["roles"] == {
        f"{prefix}/{deep}/Bild 1 (Kopie).dcm": "dicom", f"{prefix}/{deep}/leer.dcm": "other",
        f"{prefix}/leer.txt": "other", f"{prefix}/名前/画像 2.dcm": "dicom"}
    assert len(f"{prefix}/{deep}/leer.dcm".encode()) > 300
    assert sorted(p["name"] for p in summary["patients"]) == ["CompressedSamples^CT1", "CompressedSamples^MR1"]
    assert all(not path.endswith(("leer.txt", "leer.dcm")) for path, _, _ in disc.reads)  # empty: not read


# --- The reader protocol ---------------------------------------------------------------------


class ReadOnly:
    """A reader with `read` alone, as the browser's was before read_heads."""

    def __init__(self, disc: FolderDisc):
        self._disc = disc

    async def read(self, path: str, offset: int, length: int) -> bytes:
        return await self._disc.read(path, offset, length)


def test_a_reader_without_read_heads_gives_the_same_summary(tmp_path):
    root = tmp_path / "cd"
    discs.ihe_pdi_cd(root)
    (root / "DICOMDIR").unlink()
    batched = scan(FolderDisc(root))
    single = FolderDisc(root)
    assert asyncio.run(scan_disc(single.listing, ReadOnly(single))).to_json() == batched
    assert single.batches == [] and len(single.reads) == len(single.listing) - 1  # an empty file is not read


def test_progress_every_batch(tmp_path):
    root = discs.many_small_dicom_files(tmp_path / "disc", 600)
    progress: list[tuple[int, int]] = []
    disc = FolderDisc(root)
    scan(disc, progress)
    assert disc.batches == [256, 256, 88]
    assert progress == [(0, 600), (0, 600), (256, 600), (512, 600), (600, 600), (600, 600)]


# --- Documents and heads ---------------------------------------------------------------------


def test_classify_document_by_content(tmp_path):
    ct = Path(get_testdata_file("CT_small.dcm"))
    jpeg = discs.picture(ct, tmp_path / "scan.jpg", "jpeg").read_bytes()
    png = discs.picture(ct, tmp_path / "scan.png", "png").read_bytes()
    pdf = discs.one_page_pdf()
    assert classify_document("Befund.pdf", pdf[:HEAD]) == "pdf"
    assert classify_document("scan.jpg", jpeg[:HEAD]) == "jpeg"
    assert classify_document("letter.txt", jpeg[:HEAD]) == "jpeg"  # by its bytes, not its name
    assert classify_document("scan", png[:HEAD]) == "png"
    assert classify_document("odd.pdf", b"\r\n" + pdf) == "pdf"  # junk before the header, as readers allow
    assert classify_document("odd.txt", b"\r\n" + pdf) is None
    assert classify_document("report.pdf", ct.read_bytes()[:HEAD]) is None  # DICOM, whatever its name
    assert classify_document("tiff-dicom", Path(get_testdata_file("MR_truncated.dcm")).read_bytes()[:HEAD]) is None
    assert classify_document("empty.pdf", b"") is None
    assert classify_document("notes.txt", b"Hello") is None


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_read_head_never_raises(data):
    source = data.draw(st.sampled_from(["CT_small.dcm", "image_dfl.dcm", "MR_small_implicit.dcm",
                                        "ExplVR_BigEndNoMeta.dcm", "rtplan.dcm"]))
    original = Path(get_testdata_file(source)).read_bytes()
    damaged = bytearray(original[: data.draw(st.integers(0, min(len(original), 4096)))])
    for _ in range(data.draw(st.integers(0, 8))):
        if damaged:
            damaged[data.draw(st.integers(0, len(damaged) - 1))] = data.draw(st.integers(0, 255))
    head = read_head(bytes(damaged), data.draw(st.sampled_from([len(damaged), len(original)])))
    assert head.complete or len(damaged) < len(original)


def test_random_bytes_are_not_dicom():
    rng = random.Random(3)
    for n in range(2000):
        head = rng.randbytes(rng.randint(0, 9000))
        if n % 2:
            head = b"\x08\x00" + head  # the start of a group 0008 element
        assert not read_head(head, len(head)).dicom


class FailingBatches(FolderDisc):
    """A reader whose batched call fails whole (say, the drive spun down) while single reads work."""

    async def read_heads(self, paths, length):  # type: ignore[no-untyped-def]
        self.batches.append(len(paths))
        raise DiscReadError("The drive did not answer.")


def test_a_batch_that_fails_whole_is_read_file_by_file(tmp_path):
    root = discs.general_purpose_cd(tmp_path / "cd")
    (root / "DICOMDIR").unlink()
    disc = FailingBatches(root, unreadable={gp_file_id(1)})
    summary = scan(disc)
    assert disc.batches == [8]
    assert summary["unreadable"] == [{"path": gp_file_id(1), "error": "The computer could not read this file."}]
    assert roles_count(summary) == {"dicom": 7, "other": 1}


@settings(max_examples=200, deadline=None)
@given(autorun=st.text(max_size=300), page=st.text(max_size=300))
def test_any_autorun_or_index_page_text_is_survived(autorun, page):
    from pcir_upload.page.disc.disc import DiscFile
    from pcir_upload.page.disc.discroles import Look, assign_roles

    listing = [DiscFile("AUTORUN.INF", 10), DiscFile("INDEX.HTM", 10), DiscFile("A/B.EXE", 10), DiscFile("C", 1)]
    texts = {"AUTORUN.INF": "[autorun]\nopen=" + autorun + "\nicon=" + autorun, "INDEX.HTM": page + f"<a href='{autorun}'>"}
    roles = assign_roles(listing, [], [], {"A/B.EXE": Look(executable=True)}, texts)
    assert set(roles) == {f.path for f in listing} and roles["A/B.EXE"] == "viewer"


def test_a_dicom_file_whose_header_says_nothing_is_carried_and_counted(tmp_path):
    root = discs.general_purpose_cd(tmp_path / "cd")
    data = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    write(root / "EXTRA/BROKEN", data[:132] + random.Random(4).randbytes(5000))  # 'DICM', then noise
    summary = scan(FolderDisc(root))
    assert summary["roles"]["EXTRA/BROKEN"] == "dicom"
    assert len(summary["patients"]) == 7
    assert summary["notes"] == [
        "1 DICOM file(s) that the disc index does not list were found by reading the files themselves.",
        "1 DICOM file(s) have headers too damaged to say whose images they are; they will be sent as they are.",
    ]
