"""Clean Pixel Data: which images are examined, and burned-in text found and blanked for real.

Every test here runs Debian's tesseract on pixels that pydicom decoded: identifying text is
drawn with real fonts into ultrasound-like frames (tests/burnedin.py) or comes with the
ultrasounds of pydicom-data and deid-data. A planted string passes when the blanked regions
cover its ink, OCR of the cleaned image no longer reads it, and no pixel outside the blanked
regions changed. Images are small and few: tesseract takes about a second for each.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    CTImageStorage,
    ComputedRadiographyImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    SecondaryCaptureImageStorage,
)

import burnedin
from pcir_upload.repository.deidentify import ocr, pixels
from pcir_upload.repository.deidentify.pixels import ALL_FRAMES, TextBox, blank, clean_pixels, examine_reason

pytestmark = pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract-ocr is not installed")

IDENTITY = ["MUELLER^ANNA^MARIA", "PID4471902", "19630214", "20240917", "Müller"]
DEID_DATA = Path(__import__("deid_data").__file__).parent / "data" / "ultrasounds"


def frame_with(strings, *, rows=240, columns=320, font="DejaVu Sans", size=16, contrast="white on black", seed=0):
    """An ultrasound-like frame with each string drawn at its own (x, y), and where each went."""
    frame = burnedin.canvas(rows, columns, seed=seed, contrast=contrast)
    planted = [
        burnedin.plant(frame, text, at=at, font=font, size=size, contrast=contrast) for text, at in strings
    ]
    return burnedin.finish(frame, contrast), planted


def blanked_mask(boxes, rows, columns):
    mask = np.zeros((rows, columns), dtype=bool)
    for box in boxes:
        top, bottom, left, right = pixels.blanked_region(box, rows, columns)
        mask[top:bottom, left:right] = True
    return mask


def decoded(ds: Dataset) -> np.ndarray:
    """All frames as (frames, rows, columns, samples), as clean_pixels sees them."""
    return pixels._decode(ds).pixels.copy()


def read_after(ds: Dataset) -> list[str]:
    """What OCR reads in the cleaned image's frames, folded."""
    image = pixels._decode(ds)
    greys = [pixels._grey8(ds, image, index) for index in range(image.pixels.shape[0])]
    words = ocr.read_words(greys, scales=pixels._scales(*image.pixels.shape[1:3]))
    return [ocr.fold(word.text) for page in words for word in page]


def assert_cleaned(before: np.ndarray, ds: Dataset, result, planted) -> None:
    """Each planted string covered and no longer read; every pixel outside the boxes kept."""
    after = decoded(ds)
    rows, columns = after.shape[1:3]
    mask = blanked_mask(result.boxes, rows, columns)
    for mark in planted:
        ink = mask[mark.top : mark.bottom, mark.left : mark.right]
        assert ink.mean() >= 0.9, f"{mark.text!r} not blanked: {result.boxes}"
    assert np.array_equal(before[:, ~mask], after[:, ~mask]), "pixels outside the boxes changed"
    read = read_after(ds)
    for mark in planted:
        for part in ocr.identity_forms([mark.text]):
            if len(part) >= 4:
                assert not any(ocr._close(word, part) for word in read), f"{part!r} still read in {read}"
    assert result.review and result.review.startswith("text found in the pixels")


# Which images are examined ------------------------------------------------------------------


def header(sop_class, modality, image_type=None, **elements) -> Dataset:
    ds = burnedin.dataset(np.zeros((8, 8), dtype=np.uint8), sop_class=sop_class, modality=modality)
    if image_type:
        ds.ImageType = image_type
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return ds


def test_examine_reason_follows_the_header():
    ct = header(CTImageStorage, "CT", ["ORIGINAL", "PRIMARY", "AXIAL"])
    assert examine_reason(ct) is None
    assert examine_reason(header(CTImageStorage, "CT", ["ORIGINAL", "PRIMARY", "AXIAL"], BurnedInAnnotation="YES"))
    assert "SCREEN" in examine_reason(header(CTImageStorage, "CT", ["DERIVED", "SECONDARY", "SCREEN SAVE"]))
    assert examine_reason(header(CTImageStorage, "CT", ["DERIVED", "SECONDARY", "OTHER"]))
    assert examine_reason(header(CTImageStorage, "CT", ["DERIVED", "SECONDARY"], BurnedInAnnotation="NO")) is None
    assert "dose" in examine_reason(header(CTImageStorage, "CT", ["ORIGINAL", "PRIMARY"], SeriesDescription="Dose Report"))
    ordinary = header(CTImageStorage, "CT", ["ORIGINAL", "PRIMARY", "AXIAL"], ProtocolName="Head Protocol")
    ordinary.SeriesDescription = "Screening chest"
    assert examine_reason(ordinary) is None
    # Ultrasound and secondary capture are examined whatever their flag says.
    assert "ultrasound" in examine_reason(header(None, "US", ["ORIGINAL", "PRIMARY"], BurnedInAnnotation="NO"))
    assert "secondary capture" in examine_reason(header(SecondaryCaptureImageStorage, "OT", BurnedInAnnotation="NO"))
    # Projection images are cleared only by their flag.
    assert "does not clear" in examine_reason(header(ComputedRadiographyImageStorage, "CR", ["ORIGINAL", "PRIMARY"]))
    assert examine_reason(header(ComputedRadiographyImageStorage, "CR", ["ORIGINAL"], BurnedInAnnotation="NO")) is None
    no_pixels = header(CTImageStorage, "CT")
    del no_pixels.PixelData
    assert examine_reason(no_pixels) is None


# Planted text in fonts, sizes, contrasts, positions and noise --------------------------------


@pytest.mark.parametrize(
    "font, size, contrast, noise",
    [
        ("DejaVu Sans", 10, "white on black", 0),
        ("DejaVu Sans Mono", 16, "grey on dark grey", 0),
        ("DejaVu Serif", 22, "inverted", 6),
        ("Liberation Sans", 13, "white on black", 8),
        ("Liberation Mono", 32, "white on black", 0),
    ],
)
def test_planted_text_is_found_and_blanked(font, size, contrast, noise):
    rows, columns = (240, 320) if size <= 16 else (360, 480)
    date_x = columns - 8 - burnedin.width("14.02.1963", font=font, size=size)
    id_x = columns - 8 - burnedin.width("PID4471902", font=font, size=size)
    frame, planted = frame_with(
        [("MUELLER^ANNA", (6, 6)), ("14.02.1963", (date_x, 12 + size)), ("PID4471902", (id_x, rows - size - 14))],
        rows=rows,
        columns=columns,
        font=font,
        size=size,
        contrast=contrast,
    )
    if noise:
        frame = burnedin.noisy(frame, noise)
    ds = burnedin.dataset(frame)
    before = decoded(ds)
    result = clean_pixels(ds, IDENTITY)
    assert_cleaned(before, ds, result, planted)
    reasons = {box.reason for box in result.boxes}
    assert reasons & {"identity", "name", "date"}, result.boxes


def test_identity_matches_through_case_diacritics_separators_and_a_misread():
    words = [
        ocr.Word(0, (1, 1, 1, 1), 0, 0, 10, 10, 90.0, text)
        for text in ("mueler", "anna-maria", "14/02/1963", "PlD4471902", "Muller", "harmless")
    ]
    found = dict((word.text, reason) for word, reason in ocr.classify(words, IDENTITY))
    assert found["mueler"] == "identity"  # one letter dropped
    assert found["anna-maria"] == "identity"
    assert found["14/02/1963"] == "identity"  # the DICOM date respelled
    assert found["PlD4471902"] == "identity"  # l read for I
    assert found["Muller"] == "identity"  # ü folded
    assert found["harmless"] == "text"
    labelled = [ocr.Word(0, (1, 1, 1, 1), x, 0, 10, 10, 80.0, t) for x, t in ((0, "Name:"), (20, "Okafor"), (40, "Ngozi"))]
    assert [reason for _, reason in ocr.classify(labelled, [])] == ["name", "name", "name"]
    dated = [ocr.Word(0, (1, 1, 1, 1), x, 0, 10, 10, 80.0, t) for x, t in ((0, "24"), (10, "MAY"), (20, "2002"))]
    assert [reason for _, reason in ocr.classify(dated, [])] == ["date", "date", "date"]


def test_noise_is_measured_on_the_plain_part_of_a_frame():
    frame = burnedin.canvas(240, 320)
    assert ocr.noise_level(frame) < 1  # speckle and letters are not noise
    assert 6 < ocr.noise_level(burnedin.noisy(frame, 8)) < 10


# Photometric interpretations and bit depths --------------------------------------------------


def test_monochrome1_16_bit_with_a_window():
    frame, planted = frame_with([("MUELLER^ANNA", (6, 6)), ("PID4471902", (150, 210))])
    stored = ((255 - frame.astype(np.uint16)) * 16).astype(np.uint16)  # 12 bits, white shown low
    ds = burnedin.dataset(stored, photometric="MONOCHROME1", bits_stored=12)
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    before = decoded(ds)
    result = clean_pixels(ds, IDENTITY)
    assert_cleaned(before, ds, result, planted)
    after = decoded(ds)
    box = result.boxes[0]
    assert after[0, box.top + box.height // 2, box.left + 2, 0] == before.max()  # black in MONOCHROME1


def test_16_bit_through_a_voi_lut():
    frame, planted = frame_with([("PID4471902", (6, 6))], rows=120, columns=200, size=14)
    # The frame in 2850–3050 of 12 bits, with a dead and a hot pixel: only the LUT shows it.
    stored = (2850 + frame.astype(np.float64) * 200 / 255).astype(np.uint16)
    stored[-1, 0], stored[-1, -1] = 0, 4095
    ds = burnedin.dataset(stored, bits_stored=12)
    lut = Dataset()
    lut.LUTDescriptor = [4096, 0, 16]
    lut.LUTData = [int(np.clip((value - 2850) * 65535 / 200, 0, 65535)) for value in range(4096)]
    lut["LUTData"].VR = "US"
    ds.VOILUTSequence = [lut]
    before = decoded(ds)
    result = clean_pixels(ds, IDENTITY)
    assert_cleaned(before, ds, result, planted)


def test_colour_text_in_rgb_and_ybr():
    frame, planted = frame_with([("MUELLER^ANNA", (6, 6)), ("03-JAN-2025", (150, 212))], size=14)
    rgb = np.repeat(frame[..., None], 3, axis=2)
    rgb[..., 0] = np.where(frame > 200, 40, rgb[..., 0])  # text in green-cyan, as scanners draw it
    ybr = pydicom.pixels.convert_color_space(rgb, "RGB", "YBR_FULL")
    ds = burnedin.dataset(ybr, photometric="YBR_FULL")
    before = decoded(ds)
    result = clean_pixels(ds, IDENTITY)
    assert ds.PhotometricInterpretation == "RGB"
    assert_cleaned(before, ds, result, planted)
    assert {"identity", "date"} <= {box.reason for box in result.boxes}
    top, bottom, left, right = pixels.blanked_region(result.boxes[0], 240, 320)
    assert not decoded(ds)[0, top:bottom, left:right].any()  # every sample black


def test_palette_colour_ultrasound_of_pydicom_data():
    ds = pydicom.dcmread(get_testdata_file("gdcm-US-ALOKA-16.dcm"))
    before = decoded(ds)
    result = clean_pixels(ds, ["20020524", "PELVIS"])
    texts = " ".join(box.text for box in result.boxes)
    assert "11:24:20" in texts and "9123" in texts
    assert any(box.reason == "date" for box in result.boxes)
    assert ds.PhotometricInterpretation == "PALETTE COLOR"
    after = decoded(ds)
    mask = blanked_mask(result.boxes, ds.Rows, ds.Columns)
    assert np.array_equal(before[:, ~mask], after[:, ~mask])
    reread = burnedin.reread(ds)
    assert reread.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert reread.pixel_array.shape == (480, 640)


@pytest.mark.parametrize(
    "name, identity, expected",
    [
        # Their headers were de-identified before publication; the identity they were made
        # with is the one drawn in their pixels.
        (
            "GREYSCALE_IMAGE.dcm",
            ["ZZZ TEST^PATIENTFIRST", "00079241539", "19510829", "20170302"],
            [("identity", "00079241539"), ("identity", "08/29/1951"), ("date", "05:24:57PM")],
        ),
        (
            "RGB_IMAGE.dcm",
            ["ZZZDOWNTIME^MARY", "00047431395", "20200414"],
            [("identity", "ZZZDOWNTIME"), ("identity", "00047431395"), ("identity", "4/14/2020")],
        ),
    ],
)
def test_deid_data_ultrasound_identity_is_found(name, identity, expected):
    ds = pydicom.dcmread(DEID_DATA / name)
    assert examine_reason(ds)
    before = decoded(ds)
    result = clean_pixels(ds, identity)
    found = [(box.reason, box.text) for box in result.boxes]
    for reason, text in expected:
        assert any(r == reason and text in t for r, t in found), found
    mask = blanked_mask(result.boxes, ds.Rows, ds.Columns)
    assert np.array_equal(before[:, ~mask], decoded(ds)[:, ~mask])


# Multi-frame --------------------------------------------------------------------------------


def test_multi_frame_boxes_are_blanked_on_every_frame():
    frames, planted = [], None
    for seed in range(3):
        frame, planted = frame_with([("MUELLER^ANNA", (6, 6)), ("PID4471902", (150, 210))], size=14, seed=seed)
        frames.append(frame)
    frames[2][:40] = burnedin.canvas(40, 320, seed=9)  # the name is missing on the last frame
    ds = burnedin.dataset(np.stack(frames))
    before = decoded(ds)
    result = clean_pixels(ds, IDENTITY)
    assert result.boxes and all(box.frame == ALL_FRAMES for box in result.boxes)
    after = decoded(ds)
    mask = blanked_mask(result.boxes, 240, 320)
    assert np.array_equal(before[:, ~mask], after[:, ~mask])
    for mark in planted:
        assert mask[mark.top : mark.bottom, mark.left : mark.right].mean() >= 0.9
        assert (after[:, mark.top : mark.bottom, mark.left : mark.right] == before.min()).all()
    assert ds.NumberOfFrames == 3


def test_a_long_cine_is_sampled_and_goes_to_review():
    frame, _ = frame_with([("PID4471902", (10, 10))], rows=120, columns=200)
    ds = burnedin.dataset(np.stack([frame] * (pixels.FRAMES_READ + 5)))
    result = clean_pixels(ds, IDENTITY)
    assert "cine of 15 frames: 10 were read" in result.review
    assert decoded(ds)[:, 12:24, 12:40].max() == decoded(ds).min()  # blanked on unread frames too


def test_deid_data_cine_is_blanked_on_all_its_frames(monkeypatch):
    with zipfile.ZipFile(DEID_DATA / "GREYSCALE_CINE.zip") as archive:
        ds = pydicom.dcmread(io.BytesIO(archive.read("GREYSCALE_CINE.dcm")))
    monkeypatch.setattr(pixels, "FRAMES_READ", 2)  # 27 frames of 800x600: two keep the test short
    before = decoded(ds)
    result = clean_pixels(ds, ["ZZZ TEST^PATIENTFIRST", "00079241539", "19510829"])
    assert "a cine of 27 frames: 2 were read" in result.review
    identity = [box for box in result.boxes if "00079241539" in box.text]
    assert identity and identity[0].frame == ALL_FRAMES
    after = decoded(ds)
    top, bottom, left, right = pixels.blanked_region(identity[0], ds.Rows, ds.Columns)
    assert (after[:, top:bottom, left:right] == before.min()).all()
    mask = blanked_mask(result.boxes, ds.Rows, ds.Columns)
    assert np.array_equal(before[:, ~mask], after[:, ~mask]) and ds.NumberOfFrames == 27


# Transfer syntaxes, and files DCMTK reads back --------------------------------------------------------------------------


def test_jpeg_baseline_is_decoded_blanked_and_written_native_and_lossy():
    frame, planted = frame_with([("MUELLER^ANNA", (6, 6)), ("14.02.1963", (150, 210))], size=16)
    ds = burnedin.reread(burnedin.jpeg_baseline(np.repeat(frame[..., None], 3, axis=2)))
    before = decoded(ds)
    result = clean_pixels(ds, IDENTITY)
    assert_cleaned(before, ds, result, planted)
    again = burnedin.reread(ds)
    assert again.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert again.PhotometricInterpretation == "RGB" and again.PlanarConfiguration == 0
    assert again.LossyImageCompression == "01" and again.LossyImageCompressionMethod == "ISO_10918_1"


@pytest.mark.parametrize(
    "syntax", [RLELossless, JPEG2000Lossless, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian]
)
def test_lossless_and_native_syntaxes_are_cleaned(syntax):
    frame, planted = frame_with([("MUELLER^ANNA", (6, 6))], rows=120, columns=200, size=14)
    ds = burnedin.dataset(frame)
    if syntax.is_compressed:
        ds.compress(syntax, generate_instance_uid=False)
    else:
        ds.file_meta.TransferSyntaxUID = syntax
    ds = burnedin.reread(ds)
    assert ds.file_meta.TransferSyntaxUID == syntax
    before = decoded(ds)
    result = clean_pixels(ds, IDENTITY)
    assert_cleaned(before, ds, result, planted)
    assert "LossyImageCompression" not in ds


@pytest.mark.skipif(shutil.which("dcmcjpeg") is None, reason="DCMTK is not installed")
@pytest.mark.parametrize(
    "command, syntax",
    [
        (["dcmcjpeg", "+e1"], JPEGLosslessSV1),
        (["dcmcjpeg", "+eb"], JPEGBaseline8Bit),
        (["dcmcjpls", "+el"], JPEGLSLossless),
    ],
)
def test_compressed_by_dcmtk_is_cleaned_into_valid_dicom(tmp_path, command, syntax):
    frame, planted = frame_with([("PID4471902", (6, 6))], rows=120, columns=200, size=14)
    burnedin.dataset(frame).save_as(tmp_path / "native.dcm", enforce_file_format=True)
    subprocess.run([*command, str(tmp_path / "native.dcm"), str(tmp_path / "compressed.dcm")], check=True)
    ds = pydicom.dcmread(tmp_path / "compressed.dcm")
    assert ds.file_meta.TransferSyntaxUID == syntax
    before = decoded(ds)
    result = clean_pixels(ds, IDENTITY)
    assert_cleaned(before, ds, result, planted)
    ds.save_as(tmp_path / "cleaned.dcm", enforce_file_format=True)
    dump = subprocess.run(["dcmdump", "+E", str(tmp_path / "cleaned.dcm")], capture_output=True, text=True)
    assert dump.returncode == 0 and "Little Endian Explicit" in dump.stdout, dump.stderr
    assert (ds.get("LossyImageCompression") == "01") == (syntax == JPEGBaseline8Bit)


def test_an_undecodable_syntax_or_broken_data_goes_to_review_untouched():
    video = burnedin.dataset(np.zeros((16, 16), dtype=np.uint8))
    video.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.102"  # MPEG-4 AVC/H.264
    video.PixelData = encapsulate([b"\x00\x00\x00\x01" + bytes(64)])
    video["PixelData"].VR = "OB"
    kept = video.PixelData
    result = clean_pixels(video, IDENTITY)
    assert result.boxes == () and "no decoder" in result.review and video.PixelData == kept
    broken = burnedin.reread(burnedin.jpeg_baseline(np.zeros((16, 16, 3), dtype=np.uint8)))
    broken.PixelData = encapsulate([b"\xff\xd8\xff\xdb" + bytes(40)])
    result = clean_pixels(broken, IDENTITY)
    assert result.boxes == () and "cannot be examined" in result.review
    with pytest.raises(pixels.Undecodable):
        blank(video, [TextBox(0, 0, 0, 4, 4, "", "text")])
    palette = burnedin.dataset(np.zeros((16, 16), dtype=np.uint8), photometric="PALETTE COLOR")
    result = clean_pixels(palette, IDENTITY)  # no palette tables: the header contradicts itself
    assert result.boxes == () and "cannot be examined" in result.review


# Nothing found, and the operator's box -------------------------------------------------------


def test_an_image_without_text_is_released_byte_identical():
    ds = burnedin.dataset(burnedin.canvas(120, 200, seed=3))
    before = io.BytesIO()
    ds.save_as(before, enforce_file_format=True)
    result = clean_pixels(ds, IDENTITY)
    assert result == pixels.PixelResult((), None)
    after = io.BytesIO()
    ds.save_as(after, enforce_file_format=True)
    assert before.getvalue() == after.getvalue()


def test_blank_fills_an_operators_box_on_its_frame_only():
    cine = np.stack([burnedin.canvas(60, 80, seed=seed) for seed in range(2)])
    ds = burnedin.dataset(cine)
    before = decoded(ds)
    box = TextBox(1, 30, 20, 10, 8, "", "text")
    blank(ds, [box])
    after = decoded(ds)
    top, bottom, left, right = pixels.blanked_region(box, 60, 80)
    assert (after[1, top:bottom, left:right] == before.min()).all()
    mask = np.zeros((60, 80), dtype=bool)
    mask[top:bottom, left:right] = True
    assert np.array_equal(after[0], before[0]) and np.array_equal(after[1][~mask], before[1][~mask])
