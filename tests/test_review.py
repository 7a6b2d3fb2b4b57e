"""The review page without a browser: nothing without a session, forms need their CSRF token,
release writes only cleaned items, with a DICOMDIR and a manifest, and the log says who and why."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.fileset import FileSet
from starlette.testclient import TestClient

from pcir_upload.repository.review.app import app
from reviewing import CID, MARK, reviewed_contribution

SECRET = "correct horse battery staple"
NAME_ON_LETTER = (80, 270, 1000, 70)  # x, y, w, h on the letter's rendered page: "Patient: John Doe, born …"
ROUTES = [  # every route, with a real contribution and real file numbers
    ("GET", "/"), ("GET", "/?page=2&sort=id"), ("GET", f"/c/{CID}"), ("GET", f"/c/{CID}/image/0.png"),
    ("GET", f"/c/{CID}/strip/0.png"), ("GET", f"/c/{CID}/page/2/0.png"), ("GET", f"/c/{CID}/page/3/0.png"),
    ("POST", f"/c/{CID}/file/0/boxes"), ("POST", f"/c/{CID}/file/2/boxes"), ("POST", f"/c/{CID}/file/0/accept"), ("POST", f"/c/{CID}/file/3/reject"),
    ("POST", f"/c/{CID}/reject"), ("POST", f"/c/{CID}/release"), ("POST", "/logout"),
    ("GET", "/no/such/page"), ("GET", "/c/unknown"), ("DELETE", "/"),
]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return reviewed_contribution(tmp_path_factory.mktemp("review"))


@pytest.fixture
def out(made: Path, tmp_path: Path) -> Path:
    """A fresh copy of the deidentified folder, for a test that decides and releases."""
    copy = tmp_path / "deidentified"
    shutil.copytree(made, copy)
    return copy


def logged_in(out: Path, operator: str = "Ada Lovelace") -> tuple[TestClient, str]:
    client = TestClient(app(out, SECRET), follow_redirects=False)
    assert client.post("/login", data={"token": SECRET, "operator": operator}).status_code == 303
    page = client.get(f"/c/{CID}")
    return client, re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_without_a_session_nothing_is_served(out: Path, method: str, path: str) -> None:
    client = TestClient(app(out, SECRET), follow_redirects=False)
    for cookies in ({}, {"pcir_review": "forged-session-id"}):
        client.cookies.clear()
        client.cookies.update(cookies)
        response = client.request(method, path, data={"csrf": "x", "why": "x", "page": "1", "x": "1", "y": "1", "w": "1",
                                                      "h": "1"})
        assert response.status_code in (303, 401, 403), (method, path, response.status_code)
        assert response.content == b"", (method, path)
        if response.status_code == 303:
            assert response.headers["location"] == "/login"
    assert not (out / "decisions.jsonl").exists()


def test_login_sets_a_strict_httponly_cookie_and_wants_a_name(out: Path) -> None:
    client = TestClient(app(out, SECRET), follow_redirects=False)
    assert client.post("/login", data={"token": "wrong" * 4, "operator": "Ada"}).status_code == 403
    assert client.post("/login", data={"token": SECRET, "operator": "  "}).status_code == 403
    response = client.post("/login", data={"token": SECRET, "operator": "Ada"})
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "max-age=28800" in cookie
    page = client.get("/")
    assert page.status_code == 200 and CID in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src" not in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp


def test_sessions_lapse_when_idle_and_at_logout(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pcir_upload.repository.review import auth

    sessions = auth.Sessions(SECRET)
    sid = sessions.login(SECRET, "Ada")
    assert sessions.get(sid) is not None
    now = auth.time.monotonic()
    monkeypatch.setattr(auth.time, "monotonic", lambda: now + auth.IDLE + 1)
    assert sessions.get(sid) is None
    monkeypatch.undo()
    client, csrf = logged_in(out)
    assert client.post("/logout", data={"csrf": csrf}).status_code == 303
    assert client.get("/").status_code == 303


def test_the_log_is_replayed_when_the_page_starts_again(out: Path) -> None:
    client, csrf = logged_in(out)
    client.post(f"/c/{CID}/file/3/reject", data={"csrf": csrf, "why": "a photo of a face"})
    assert client.post(f"/c/{CID}/file/3/accept", data={"csrf": csrf, "why": "changed my mind"}).status_code == 409
    again, _ = logged_in(out, "Someone Else")
    assert "rejected" in again.get(f"/c/{CID}").text.split("photo.jpg</h3>")[1].split("</section>")[0]


def test_forms_without_the_csrf_token_are_refused(out: Path) -> None:
    client, _ = logged_in(out)
    for token in ("", "not-the-token"):
        response = client.post(f"/c/{CID}/file/3/reject", data={"csrf": token, "why": "face"})
        assert response.status_code == 403
        redaction = {"csrf": token, "why": "the name", **dict(zip(("page", "x", "y", "w", "h"), (1, *NAME_ON_LETTER)))}
        assert client.post(f"/c/{CID}/file/2/boxes", data=redaction).status_code == 403
    assert not (out / "decisions.jsonl").exists()


def test_release_moves_only_what_was_accepted_cleaned(out: Path) -> None:
    client, csrf = logged_in(out)
    x, y, w, h = MARK
    steps = [(f"/c/{CID}/file/0/boxes", {"x": x, "y": y, "w": w, "h": h, "why": "a bright marker OCR cannot read"}),
             (f"/c/{CID}/file/0/accept", {"why": "no text left"}),
             (f"/c/{CID}/file/2/accept", {"why": "letter pages, reviewed"}),
             (f"/c/{CID}/file/3/reject", {"why": "a photo of the patient's face"}),
             (f"/c/{CID}/release", {"why": "reviewed"})]
    for url, data in steps:
        assert client.post(url, data={"csrf": csrf, **data}).status_code == 303, url
    released = out / "released"
    check_released(released)
    # The photo was rejected and stays in review/, original and all; nothing of it was released.
    assert (out / "review" / CID / "files" / "photo.jpg").exists()
    manifest = json.loads((released / "manifest.json").read_text())["items"]
    assert len([i for i in manifest if i["kind"] == "document page"]) == 1
    entries = [json.loads(line) for line in (out / "decisions.jsonl").read_text().splitlines()]
    assert [e["action"] for e in entries] == ["boxes", "accept", "accept", "reject", "release"]
    assert all(e["operator"] == "Ada Lovelace" and e["why"] and e["at"] for e in entries)


def check_released(released: Path) -> None:
    """The released set: every instance cleaned and in the DICOMDIR, the marker blanked, the
    manifest in CSV and JSON naming the same files."""
    instances = sorted(released.glob("*/*/*/*.dcm"))
    assert len(instances) == 2  # the CT deidentify released, and the ultrasound after review
    for path in instances:
        ds = pydicom.dcmread(path)
        assert ds.PatientIdentityRemoved == "YES" and "DOE" not in str(ds.PatientName)
        assert path.relative_to(released).parts[:3] == (str(ds.PatientID), str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID))
        if ds.Modality == "US":
            x, y, w, h = MARK
            pixels = ds.pixel_array
            assert (pixels[y:y + h, x:x + w] == pixels.min()).all()  # the operator's box is blanked
            assert (pixels[6:24, 8:100] == pixels.min()).mean() > 0.95  # and the name OCR found
    file_set = FileSet(pydicom.dcmread(released / "DICOM" / "DICOMDIR"))
    assert sorted(str(i.SOPInstanceUID) for i in file_set) == sorted(p.stem for p in instances)
    for instance in file_set:
        assert pydicom.dcmread(instance.path).SOPInstanceUID == instance.SOPInstanceUID
    dump = subprocess.run(["dcmdump", str(released / "DICOM" / "DICOMDIR")], capture_output=True, text=True, check=True)
    assert dump.stdout.count("DirectoryRecordType") >= 5 and "DOE" not in dump.stdout
    items = json.loads((released / "manifest.json").read_text())["items"]
    with (released / "manifest.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["path"] for r in rows] == [i["path"] for i in items]
    assert {i["path"] for i in items if i["kind"] == "dicom"} == {p.relative_to(released).as_posix() for p in instances}
    for item in items:
        assert (released / item["path"]).stat().st_size == item["bytes"]


def test_originals_cannot_be_accepted_and_a_rejected_contribution_releases_nothing(out: Path) -> None:
    client, csrf = logged_in(out)
    report = json.loads((out / "review" / CID / "report.json").read_text())
    assert [f["path"] for f in report["files"]] == ["DISC/US0001", "DISC/CT0001", "letter.pdf", "photo.jpg"]
    assert client.post(f"/c/{CID}/file/1/accept", data={"csrf": csrf, "why": "x"}).status_code == 404  # released already
    assert client.post(f"/c/{CID}/file/0/accept", data={"csrf": csrf, "why": ""}).status_code == 400  # no reason
    assert client.post(f"/c/{CID}/file/0/accept", data={"csrf": csrf, "why": "clean"}).status_code == 303
    assert client.post(f"/c/{CID}/reject", data={"csrf": csrf, "why": "the disc is someone else's"}).status_code == 303
    assert client.post(f"/c/{CID}/release", data={"csrf": csrf, "why": "x"}).status_code == 409
    assert not list((out / "released").glob("*/*/*/*.dcm"))[1:]  # only deidentify's CT
    listing = client.get("/")
    assert "rejected" in listing.text


def test_documents_are_read_against_the_patient_of_the_originals(made: Path, out: Path) -> None:
    client = TestClient(app(out, SECRET, made.parent / "unpacked"), follow_redirects=False)
    client.post("/login", data={"token": SECRET, "operator": "Ada"})
    text = client.get(f"/c/{CID}").text
    rows = re.findall(r"<tr><td>([^<]+)</td><td><strong>([^<]+)</strong>", text)
    assert rows == [("letter.pdf", "same patient"), ("photo.jpg", "could not tell")]
    assert "29.08.1951" in text  # the evidence: what OCR read that is the patient's


def test_a_page_that_names_someone_else_is_different() -> None:
    from io import BytesIO

    from PIL import Image, ImageDraw, ImageFont

    from burnedin import FONTS
    from pcir_upload.repository.review.identity import DIFFERENT, compare
    page = Image.new("L", (900, 200), 255)
    ImageDraw.Draw(page).text((30, 60), "Patient: Roe, Jane  DOB 01.02.1960", fill=0,
                              font=ImageFont.truetype(str(FONTS["DejaVu Sans"]), 28))
    buffer = BytesIO()
    page.save(buffer, format="PNG")
    assert compare([buffer.getvalue()], {"DOE", "JOHN", "29.08.1951"}).verdict == DIFFERENT


def test_the_list_is_paged_and_sorted(tmp_path: Path) -> None:
    for n in range(120):
        cid = f"c{n:03d}"
        folder = tmp_path / "review" / cid
        folder.mkdir(parents=True)
        files = [{"path": f"f{i}", "role": "document", "outcome": "review", "to": f"review/{cid}/files/f{i}.pdf",
                  "reason": "a document", "changes": {}, "pixels": {}} for i in range(n % 4)]
        (folder / "report.json").write_text(json.dumps({"contribution_id": cid, "subject": f"s{119 - n:03d}",
                                                        "identity_problem": None, "profile": "p", "released": 0,
                                                        "review": n % 4, "files": files}))
    client = TestClient(app(tmp_path, SECRET), follow_redirects=False)
    client.post("/login", data={"token": SECRET, "operator": "Ada"})
    ids = lambda text: re.findall(r'<a href="/c/(c\d+)">', text)  # noqa: E731
    assert ids(client.get("/?sort=id&page=3").text) == [f"c{n:03d}" for n in range(100, 120)]
    assert ids(client.get("/?sort=subject").text)[0] == "c119"
    waiting = ids(client.get("/").text)
    assert waiting[:3] == ["c003", "c007", "c011"] and len(waiting) == 50  # most waiting first
    assert "Page 1 of 3" in client.get("/?page=-4").text


def test_a_box_outside_the_image_is_refused(out: Path) -> None:
    client, csrf = logged_in(out)
    response = client.post(f"/c/{CID}/file/0/boxes", data={"csrf": csrf, "x": 300, "y": 0, "w": 100, "h": 10, "why": "x"})
    assert response.status_code == 400 and "not inside the image" in response.text
    assert not (out / "decisions.jsonl").exists()


def test_the_thumbnail_is_windowed_and_the_boxes_are_drawn(out: Path) -> None:
    client, _ = logged_in(out)
    page = client.get(f"/c/{CID}")
    assert page.text.count('stroke="#ff4040"') == 2  # the name and the id OCR found
    assert "Could not tell" in page.text
    picture = client.get(f"/c/{CID}/image/0.png")
    assert picture.headers["content-type"] == "image/png"
    from io import BytesIO

    from PIL import Image
    grey = np.asarray(Image.open(BytesIO(picture.content)).convert("L"))
    assert grey.shape == (240, 320) and grey.max() > 200 and grey.min() < 30
    letter = Image.open(BytesIO(client.get(f"/c/{CID}/page/2/0.png").content))
    assert letter.size == (1240, 1754)  # A-ish page at 72 dpi x 2, rendered by PDFium


def png_pixels(data: bytes) -> np.ndarray:
    from io import BytesIO

    from PIL import Image
    return np.asarray(Image.open(BytesIO(data)).convert("RGB"))


def test_a_redaction_is_logged_shown_and_released_black(out: Path) -> None:
    client, csrf = logged_in(out)
    before = png_pixels(client.get(f"/c/{CID}/page/2/0.png").content)
    x, y, w, h = NAME_ON_LETTER
    assert (before[y:y + h, x:x + w] < 100).any()  # the patient's name is there to redact
    redaction = {"csrf": csrf, "page": 1, "x": x, "y": y, "w": w, "h": h, "why": "the patient's name and birth date"}
    assert client.post(f"/c/{CID}/file/2/boxes", data=redaction).status_code == 303
    entry = json.loads((out / "decisions.jsonl").read_text())
    assert (entry["action"], entry["file"], entry["operator"], entry["why"]) == (
        "redact", "letter.pdf", "Ada Lovelace", "the patient's name and birth date")
    assert entry["boxes"] == [{"page": 1, "x": x, "y": y, "w": w, "h": h}] and entry["at"]
    shown = png_pixels(client.get(f"/c/{CID}/page/2/0.png").content)
    assert (shown[y:y + h, x:x + w] == 0).all()
    assert "blacked out by the operator: 1." in client.get(f"/c/{CID}").text
    for url, why in ((f"/c/{CID}/file/2/accept", "the name is blacked out"), (f"/c/{CID}/release", "reviewed")):
        assert client.post(url, data={"csrf": csrf, "why": why}).status_code == 303
    pages = sorted((out / "released").glob("*/documents/*/page-*.png"))
    assert len(pages) == 1
    released = png_pixels(pages[0].read_bytes())
    assert (released[y:y + h, x:x + w] == 0).all()  # the pixels under the box are gone
    outside = np.ones(before.shape[:2], dtype=bool)
    outside[y:y + h, x:x + w] = False
    assert released.shape == before.shape and (released[outside] == before[outside]).all()


def test_a_redaction_after_accepting_needs_accepting_again(out: Path) -> None:
    client, csrf = logged_in(out)
    assert client.post(f"/c/{CID}/file/2/accept", data={"csrf": csrf, "why": "looked fine"}).status_code == 303
    x, y, w, h = NAME_ON_LETTER
    redaction = {"csrf": csrf, "page": 1, "x": x, "y": y, "w": w, "h": h, "why": "missed the name"}
    assert client.post(f"/c/{CID}/file/2/boxes", data=redaction).status_code == 303
    assert client.post(f"/c/{CID}/release", data={"csrf": csrf, "why": "x"}).status_code == 409
    assert 'action="/c/' + CID + '/file/2/accept"' in client.get(f"/c/{CID}").text
    assert client.post(f"/c/{CID}/file/2/accept", data={"csrf": csrf, "why": "redacted now"}).status_code == 303
    assert client.post(f"/c/{CID}/release", data={"csrf": csrf, "why": "reviewed"}).status_code == 303
    entries = [json.loads(line) for line in (out / "decisions.jsonl").read_text().splitlines()]
    assert [e["action"] for e in entries] == ["accept", "redact", "accept", "release"]


def test_a_redaction_off_the_page_is_refused(out: Path) -> None:
    client, csrf = logged_in(out)
    for page, x in ((2, 0), (0, 0), (1, 1200)):
        data = {"csrf": csrf, "page": page, "x": x, "y": 0, "w": 100, "h": 10, "why": "x"}
        response = client.post(f"/c/{CID}/file/2/boxes", data=data)
        assert response.status_code == 400 and ("not inside the page" in response.text or "not in the document" in response.text)
    assert client.post(f"/c/{CID}/file/2/boxes", data={"csrf": csrf, "x": 0, "y": 0, "w": 1, "h": 1, "why": "x"}).status_code == 400
    assert not (out / "decisions.jsonl").exists()
