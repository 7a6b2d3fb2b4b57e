from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom.data
import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

from browsing import CHROMIUM, CHROMIUM_ARGS, DIST
from objectstore import bucket, redis_server, swift  # noqa: F401  (fixtures: a real Swift and Redis)
from pcir_upload.repository.keys import PrivateKeys, PublicKeys, keygen, load_private_keys, load_public_keys


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


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Playwright, to drive Debian's Chromium (it cannot download browsers here).

    Per module: while it runs, its event loop is the thread's, and tests that use
    asyncio.run() of their own must not come after it in the same scope.
    """
    if not (DIST / "index.html").exists():
        pytest.fail("dist/ is not built: run `python build.py` (./dev test does)")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (./dev test does)")
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()
