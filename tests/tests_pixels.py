"""Until the pixels half (pcir_upload.repository.deidentify.pixels, burned-in text) is merged
into this branch, the de-identification tests run against a test double of its interface:
an image whose header clears it (CT or MR, ORIGINAL, Burned In Annotation NO, or no pixel
data at all) needs no examination; any other goes to review. With the real module present,
the real one is used and this does nothing."""

from __future__ import annotations

import importlib
import sys
import types
from dataclasses import dataclass

NAME = "pcir_upload.repository.deidentify.pixels"


@dataclass(frozen=True)
class PixelResult:
    boxes: tuple[object, ...]
    review: str | None


def _examine_reason(ds) -> str | None:
    if "PixelData" not in ds:
        return None
    image_type = [str(v).upper() for v in ds.get("ImageType", [])]
    if (str(ds.get("Modality", "")) in ("CT", "MR") and image_type[:1] == ["ORIGINAL"]
            and str(ds.get("BurnedInAnnotation", "")).upper() == "NO"):
        return None
    return "the header does not clear it (test double of pixels.py)"


def _clean_pixels(ds, identity) -> PixelResult:
    return PixelResult((), "no OCR in this test double of pixels.py: a person must look")


def ensure() -> None:
    try:
        importlib.import_module(NAME)
    except ModuleNotFoundError:
        module = types.ModuleType(NAME)
        module.examine_reason = _examine_reason
        module.clean_pixels = _clean_pixels
        module.PixelResult = PixelResult
        sys.modules[NAME] = module
