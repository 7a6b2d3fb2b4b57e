from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pydicom.data
import pytest

from pcir_upload.keys import PrivateKeys, PublicKeys, keygen, load_private_keys, load_public_keys


@dataclass(frozen=True)
class Keys:
    private: PrivateKeys
    public: PublicKeys
    folder: Path


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    """The repository's key pairs, fresh, as `pcir-upload keygen` writes them."""
    folder = tmp_path / "keys"
    private_path, public_path = keygen(folder)
    return Keys(load_private_keys(private_path), load_public_keys(public_path), folder)


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
