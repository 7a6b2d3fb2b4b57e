"""Two discs and some documents in one contribution: each disc in its own folder, the viewer
left out unless asked for, and the manifest telling the truth about what was left out."""

from __future__ import annotations

from pcir_upload.page.disc.contents import ScannedDisc, assemble
from pcir_upload.page.disc.disc import DiscFile


def disc(*files: tuple[str, int, str]) -> ScannedDisc:
    return ScannedDisc([DiscFile(p, n) for p, n, _ in files], {"kind": "dicom", "roles": {p: r for p, _, r in files}})


FIRST = disc(("DICOMDIR", 10, "index"), ("DICOM/IM1", 100, "dicom"), ("VIEWER/view.exe", 5000, "viewer"))
SECOND = disc(("DICOMDIR", 20, "index"), ("DICOM/IM1", 200, "dicom"))
LETTER = DiscFile("letter.pdf", 300)


def test_discs_keep_their_own_folders_and_documents_theirs() -> None:
    contents = assemble([FIRST, SECOND], [LETTER], include_viewer=[False, False])
    assert [(f.path, f.size, f.role) for f in contents.listing] == [
        ("disc-1/DICOM/IM1", 100, "dicom"), ("disc-1/DICOMDIR", 10, "index"),
        ("disc-2/DICOM/IM1", 200, "dicom"), ("disc-2/DICOMDIR", 20, "index"),
        ("documents/letter.pdf", 300, "document"),
    ]
    assert contents.sources["disc-2/DICOM/IM1"] == (1, "DICOM/IM1")
    assert contents.sources["documents/letter.pdf"] == (None, "letter.pdf")


def test_the_viewer_is_left_out_and_said_so_unless_asked_for() -> None:
    left_out = assemble([FIRST], [], include_viewer=[False])
    assert "disc-1/VIEWER/view.exe" not in {f.path for f in left_out.listing}
    assert left_out.manifest["not_sent"] == [{
        "path": "disc-1/VIEWER/view.exe", "size": 5000, "role": "viewer",
        "reason": "the disc's viewer program; the patient did not ask to send it"}]
    assert left_out.manifest["discs"] == [{"label": "disc-1", "viewer_sent": False, "summary": {"kind": "dicom"}}]

    everything = assemble([FIRST], [], include_viewer=[True])
    assert "disc-1/VIEWER/view.exe" in {f.path for f in everything.listing}
    assert everything.manifest["not_sent"] == [] and everything.manifest["discs"][0]["viewer_sent"]
