from __future__ import annotations

import shutil
from pathlib import Path

import pydicom.data
import pytest

from pcir_upload.keys import keygen, load_private_key, load_public_key_raw


@pytest.fixture
def keys(tmp_path: Path):
    """A fresh repository key pair: (private key, raw public key, folder)."""
    folder = tmp_path / "keys"
    private_path, public_path = keygen(folder)
    return load_private_key(private_path), load_public_key_raw(public_path), folder


@pytest.fixture(scope="session")
def dicomdirtests() -> Path:
    """pydicom's shipped DICOMDIR test disc."""
    return Path(pydicom.data.get_testdata_file("DICOMDIR")).parent


@pytest.fixture
def disc(tmp_path: Path, dicomdirtests: Path) -> Path:
    """A copy of pydicom's test disc that a test may change."""
    target = tmp_path / "disc"
    shutil.copytree(dicomdirtests, target)
    return target
