"""Keyed, deterministic UIDs: the same original UID always becomes the same new one under the
repository's secret, so references between objects survive and a later contribution of the
same study lands in the same study. Unkeyed hashes (CTP's MD5) can be reversed by anyone who
can guess the original UID; fresh random UIDs (dicognito, Orthanc) split a study in two.

    new = "2.25." + decimal(int.from_bytes(HMAC-SHA256(secret, original.encode("ascii"))[:16], "big"))

where `original` is the UID with its padding (trailing NUL or space) stripped.
"""

from __future__ import annotations

import hashlib
import hmac

from pydicom.uid import UID_dictionary


def is_well_known(uid: str) -> bool:
    """SOP classes, transfer syntaxes, coding schemes, frames of reference of the standard's
    registry (pydicom's UID dictionary): they identify nothing and must stay as they are."""
    return uid in UID_dictionary


def new_uid(secret: bytes, original: str) -> str:
    """The replacement of `original` (a well-known UID is returned as it is)."""
    original = original.strip("\x00 ")
    if not original or is_well_known(original):
        return original
    digest = hmac.new(secret, original.encode("ascii", "replace"), hashlib.sha256).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"
