"""Words read from 8-bit images by Debian's tesseract, and which of them identify a patient.

Tesseract is used as a program rather than a library so that its model is the one Debian's
`tesseract-ocr-eng` installs (nothing is fetched at run time) and so that a crash of the engine
on a hostile image is an error of one call, not of the repository's process. All frames of one
image go to one run, through a list file: the engine loads its model once per run, which costs
about as much as reading a small frame.

What a word is (`classify`): the contribution's own identity (names, ids, dates from the
original headers, compared after folding case, diacritics, separators and the letters OCR
confuses with digits, within one edit for words of five or more), a date or time in any common
spelling, a name by its form or its label ("Name:", "Patient", "DOB", "ID:" and what follows on
the line), or other text OCR is confident of. Every classified word is blanked.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import subprocess
import tempfile
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

# Sparse text: burned-in annotations are scattered labels, not paragraphs; a page layout
# analysis would glue them into columns or drop the lone ones.
PAGE_SEGMENTATION = "11"
# Frames noisier than this (grey levels, see noise_level) are blurred by this radius first.
NOISY = 3.0
DENOISE_RADIUS = 0.7
# Per image, a bound on the engine's time: a pathological frame must not hold the whole run.
SECONDS_PER_IMAGE = 60


class OcrError(RuntimeError):
    """Tesseract is missing, failed or timed out: the image cannot be said to be free of text."""


@dataclass(frozen=True)
class Word:
    """One word as tesseract read it, in the coordinates of the image it was given."""

    page: int
    line: tuple[int, ...]  # (scale, block, paragraph, line): words tesseract set on one line
    left: int
    top: int
    width: int
    height: int
    confidence: float  # 0–100
    text: str


def tesseract() -> str:
    """The path of the tesseract program, or OcrError saying which Debian packages bring it."""
    path = shutil.which("tesseract")
    if path is None:
        raise OcrError("tesseract is not installed (Debian: tesseract-ocr tesseract-ocr-eng)")
    return path


def noise_level(image: np.ndarray) -> float:
    """The frame's noise, as a Gaussian σ in grey levels, from its flattest half.

    Immerkær's Laplacian-difference operator cancels flat areas and gradients; its median
    magnitude is carried by the frame's plain half (margins, plates) rather than by speckle
    or letters, and is about 0.674 · 6σ for Gaussian noise.
    """
    if image.shape[0] < 3 or image.shape[1] < 3:
        return 0.0
    a = image.astype(np.int32)
    response = (
        a[:-2, :-2] - 2 * a[:-2, 1:-1] + a[:-2, 2:]
        - 2 * a[1:-1, :-2] + 4 * a[1:-1, 1:-1] - 2 * a[1:-1, 2:]
        + a[2:, :-2] - 2 * a[2:, 1:-1] + a[2:, 2:]
    )
    return float(np.median(np.abs(response))) / (0.674 * 6)


def read_words(images: Sequence[np.ndarray], *, scales: Sequence[int] = (1,)) -> list[list[Word]]:
    """The words tesseract reads in each 2-D uint8 image, one list per image, in its order.

    Each image is read once per scale, enlarged by it: tesseract reads best at a cap height
    of about 20–40 pixels, and annotations run from 8 to 40, so a small scale alone misses
    small text and a large one alone misses large text. Boxes are given back in the
    coordinates of the image as passed; a line is one scale's line (Word.line starts with it).
    """
    if not images:
        return []
    program = tesseract()
    with tempfile.TemporaryDirectory(prefix="pcir-ocr-") as scratch:
        names, jobs = [], []
        for number, image in enumerate(images):
            picture = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), mode="L")
            if noise_level(image) > NOISY:
                # A video grabber's noise breaks faint strokes into specks once tesseract has
                # binarised them; a slight blur joins them again. Clean frames are left sharp:
                # the blur costs small crisp text more than it gives.
                picture = picture.filter(ImageFilter.GaussianBlur(DENOISE_RADIUS))
            for scale in scales:
                enlarged = picture
                if scale != 1:
                    enlarged = picture.resize(
                        (picture.width * scale, picture.height * scale), Image.Resampling.LANCZOS
                    )
                name = Path(scratch, f"{len(names):05d}.png")
                # Little compression: the file is read once, at once; zlib's time is wasted.
                enlarged.save(name, compress_level=1)
                names.append(str(name))
                jobs.append((number, scale))
        listing = Path(scratch, "images.txt")
        listing.write_text("\n".join(names) + "\n")
        environment = dict(os.environ, OMP_THREAD_LIMIT="1")  # one core each: runs are parallel
        try:
            done = subprocess.run(
                [program, str(listing), "stdout", "--psm", PAGE_SEGMENTATION, "-l", "eng", "tsv"],
                capture_output=True,
                timeout=SECONDS_PER_IMAGE * len(names),
                env=environment,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise OcrError(f"tesseract took longer than {error.timeout:.0f} s") from error
        if done.returncode != 0:
            detail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
            raise OcrError(f"tesseract failed ({done.returncode}): {detail[0]}")
    words: list[list[Word]] = [[] for _ in images]
    for page, found in enumerate(_parse(done.stdout.decode("utf-8", errors="replace"), len(names))):
        number, scale = jobs[page]
        words[number].extend(_unscaled(word, number, scale) for word in found)
    return words


def _unscaled(word: Word, page: int, scale: int) -> Word:
    """The word's box in the coordinates of the image before enlarging, covering it whole."""
    left, top = word.left // scale, word.top // scale
    right = -(-(word.left + word.width) // scale)
    bottom = -(-(word.top + word.height) // scale)
    return Word(page, (scale, *word.line), left, top, right - left, bottom - top, word.confidence, word.text)


def _parse(tsv: str, pages: int) -> list[list[Word]]:
    """Word rows (level 5) of tesseract's TSV, per page (its page_num counts from 1)."""
    words: list[list[Word]] = [[] for _ in range(pages)]
    rows = csv.DictReader(io.StringIO(tsv), delimiter="\t", quoting=csv.QUOTE_NONE)
    for row in rows:
        if row.get("level") != "5" or not (row.get("text") or "").strip():
            continue
        page = int(row["page_num"]) - 1
        if not 0 <= page < pages:
            continue
        words[page].append(
            Word(
                page=page,
                line=(int(row["block_num"]), int(row["par_num"]), int(row["line_num"])),
                left=int(row["left"]),
                top=int(row["top"]),
                width=max(1, int(row["width"])),
                height=max(1, int(row["height"])),
                confidence=float(row["conf"]),
                text=row["text"].strip(),
            )
        )
    return words


# Confidence (0–100) below which a word is not taken as read, per kind of evidence: a match to
# the patient's own identity or a date's form is evidence enough in itself; "other text" must
# be read with confidence, or the speckle of an ultrasound would be blanked as words.
CONFIDENCE_IDENTITY = 0.0
CONFIDENCE_PATTERN = 20.0
CONFIDENCE_TEXT = 60.0
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
MONTH_NAMES = (
    "JANUARY", "FEBRUARY", "MARCH", "APRIL", "MAY", "JUNE", "JULY", "AUGUST", "SEPTEMBER",
    "OCTOBER", "NOVEMBER", "DECEMBER",
)
_MONTH = r"(?:JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)[A-Z]*\.?"
_DATE_PATTERNS = re.compile(
    "|".join(
        (
            r"\b\d{1,2}\s?[./-]\s?\d{1,2}\s?[./-]\s?\d{2,4}\b",  # 29/08/1951, 8-29-51
            r"\b\d{4}\s?[./-]\s?\d{1,2}\s?[./-]\s?\d{1,2}\b",  # 1951-08-29
            rf"\b\d{{1,2}}\s?[-. ]?\s?{_MONTH}\s?[-. ,]?\s?\d{{2,4}}\b",  # 29-AUG-1951, 29 Aug 51
            rf"\b{_MONTH}\s?[-. ]?\s?\d{{1,2}}(?:ST|ND|RD|TH)?,?\s?[-. ]?\s?\d{{2,4}}\b",  # Aug 29, 1951
            r"\b(?:19|20)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\b",  # 19510829
            r"\b\d{1,2}:\d{2}(?::\d{2})?(?:\s?[AP]M)?\b",  # 11:24:20, 05:24:57PM
        )
    )
)
# Labels after which a name, an id or a birth date usually follows on the same line.
_LABELS = re.compile(
    r"^(?:NAME|PATIENT|PAT|PT|PATIENTNAME|PATNAME|DOB|BIRTH|BORN|BIRTHDATE|ID|PID|MRN|"
    r"PATID|PATIENTID|ACC|ACCESSION|SSN|NHS|HOSP|RECORD)\b"
)
_CAPS_COMMA = re.compile(r"\b[A-Z][A-Z'-]+\s?,\s?[A-Z][A-Z'-]+\b")  # DOE, JOHN
# What OCR reads for what: compared on both sides, so DOE read as D0E still matches.
_CONFUSABLE = str.maketrans({"o": "0", "i": "1", "l": "1", "s": "5", "b": "8", "z": "2", "g": "9"})


def fold(text: str) -> str:
    """Lower case, no diacritics, letters and digits only: the form words are compared in."""
    plain = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in plain if not unicodedata.combining(c))
    return re.sub(r"[^0-9a-z]", "", plain.casefold())


def identity_forms(identity: Iterable[str]) -> set[str]:
    """Folded forms of each identifying string: whole, by component, and dates respelled.

    A DICOM date (YYYYMMDD) is also given in the spellings devices draw: day and month in
    either order, two-digit years, month names, with or without leading zeros.
    """
    forms: set[str] = set()
    for value in identity:
        value = str(value or "")
        whole = fold(value)
        if len(whole) >= 2:
            forms.add(whole)
        for part in re.split(r"[\^\s,/.\-_:;=]+", value):
            folded = fold(part)
            if len(folded) >= 2:
                forms.add(folded)
            forms.update(_date_spellings(folded))
        forms.update(_date_spellings(whole))
    return forms


def _date_spellings(folded: str) -> set[str]:
    match = re.fullmatch(r"(\d{4})(\d{2})(\d{2})", folded)
    if not match:
        return set()
    year, month, day = match.groups()
    if not (1 <= int(month) <= 12 and 1 <= int(day) <= 31):
        return set()
    short = year[2:]
    m, d = str(int(month)), str(int(day))
    months = {MONTHS[int(month) - 1].lower(), MONTH_NAMES[int(month) - 1].lower()}
    spellings = {year + month + day}
    for y in (year, short):
        for mm, dd in ((month, day), (m, d)):
            spellings.update({dd + mm + y, mm + dd + y, y + mm + dd})
        for name in months:
            for dd in (day, d):
                spellings.update({dd + name + y, name + dd + y, y + name + dd})
    return spellings


def _close(word: str, form: str) -> bool:
    """Equal, or within OCR's usual slip: one edit from five letters on, two from nine."""
    if word == form:
        return True
    if word.translate(_CONFUSABLE) == form.translate(_CONFUSABLE):
        return True
    allowed = 2 if len(form) >= 9 else 1 if len(form) >= 5 else 0
    if allowed == 0 or abs(len(word) - len(form)) > allowed:
        return False
    return _edits(word.translate(_CONFUSABLE), form.translate(_CONFUSABLE), allowed) <= allowed


def _edits(a: str, b: str, bound: int) -> int:
    """Levenshtein distance, giving up (bound + 1) once it must exceed bound."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        if min(current) > bound:
            return bound + 1
        previous = current
    return previous[-1]


def _matches_identity(folded: str, forms: set[str]) -> bool:
    if len(folded) < 2:
        return False
    for form in forms:
        if _close(folded, form):
            return True
        # A label glued to the value (DOB:08/29/1951), or a value cut short by the display
        # (PATIENTFI..), or a value read in part (471902 of PID4471902): containment, from
        # lengths at which it is not chance.
        if len(form) >= 4 and form in folded:
            return True
        if len(folded) >= 5 and folded in form:
            return True
    return False


def classify(words: Sequence[Word], identity: Iterable[str]) -> list[tuple[Word, str]]:
    """The words to blank, each with its reason: "identity", "name", "date" or "text".

    Words are taken line by line, so that a value split into words ("24 MAY 2002", "JOHN DOE")
    is seen whole; on a line with an identity, name or date, every other word read is blanked
    as well, since a label or value next to it is rarely harmless and often misread.
    """
    forms = identity_forms(identity)
    lines: dict[tuple[int, ...], list[Word]] = {}
    for word in words:
        lines.setdefault(word.line, []).append(word)
    found: list[tuple[Word, str]] = []
    for line in lines.values():
        line.sort(key=lambda w: w.left)
        reasons: list[str | None] = [None] * len(line)
        _mark_identity(line, forms, reasons)
        _mark_patterns(line, reasons)
        sensitive = any(reason in ("identity", "name", "date") for reason in reasons)
        for position, word in enumerate(line):
            reason = reasons[position]
            if reason is None and _is_text(word, strict=not sensitive):
                reason = "text"
            if reason is not None:
                found.append((word, reason))
    return found


def _mark_identity(line: list[Word], forms: set[str], reasons: list[str | None]) -> None:
    """Words, or runs of up to four words, that spell one of the identity's forms."""
    if not forms:
        return
    for start in range(len(line)):
        joined = ""
        for end in range(start, min(start + 4, len(line))):
            joined += fold(line[end].text)
            # A run must be read with some confidence: joined fragments of speckle spell anything.
            if line[end].confidence < (CONFIDENCE_IDENTITY if end == start else CONFIDENCE_PATTERN):
                break
            hit = (
                _matches_identity(joined, forms)
                if end == start
                else any(_close(joined, form) for form in forms if len(form) >= 4)
            )
            if hit:
                for position in range(start, end + 1):
                    reasons[position] = "identity"


def _mark_patterns(line: list[Word], reasons: list[str | None]) -> None:
    """Dates and times, names by form, and everything after a label, on one line."""
    text, spans = "", []
    for word in line:
        if text:
            text += " "
        spans.append((len(text), len(text) + len(word.text)))
        text += word.text
    upper = text.upper()

    def mark(start: int, end: int, reason: str) -> None:
        for position, (left, right) in enumerate(spans):
            if left < end and right > start and reasons[position] is None:
                if line[position].confidence >= CONFIDENCE_PATTERN:
                    reasons[position] = reason

    for match in _DATE_PATTERNS.finditer(upper):
        mark(match.start(), match.end(), "date")
    for match in _CAPS_COMMA.finditer(text):
        mark(match.start(), match.end(), "name")
    for position, word in enumerate(line):
        if "^" in word.text and re.search(r"[A-Za-z]", word.text):
            mark(*spans[position], "name")
        if _LABELS.match(fold(word.text).upper()) and word.confidence >= CONFIDENCE_PATTERN:
            mark(spans[position][0], len(text), "name")


def _is_text(word: Word, *, strict: bool) -> bool:
    """Other text: three letters or digits read with confidence (any, beside a sensitive word)."""
    letters = re.findall(r"[0-9A-Za-z]", word.text)
    if strict:
        # One letter over and over (SSS, eee) is what tesseract reads in speckle, not text.
        repeated = len({letter.casefold() for letter in letters}) == 1
        return len(letters) >= 3 and not repeated and word.confidence >= CONFIDENCE_TEXT
    return len(letters) >= 1 and word.confidence >= CONFIDENCE_PATTERN
