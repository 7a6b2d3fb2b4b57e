# The page's Python worker. Loads the wheels served beside the page (no package index is
# contacted), then offers the page what pcir_upload.page.browser.worker exports.
import js
import pyodide_js
from polyscript import xworker
from pyodide.ffi import create_proxy

WHEELS = []  # written by build.py: the pydicom and pcir_upload wheels under /wheels/

# A worker's base URL is a blob:, so wheel URLs are made absolute on the page's own origin.
wheels = [str(js.location.origin) + "/wheels/" + name for name in WHEELS]
await pyodide_js.loadPackage(wheels)

from pcir_upload.page.browser.worker import (  # noqa: E402
    add_documents, agree, cancel, configure, contribute_disc, forget, from_page, listen,
    memory_report, pause, remove_disc, remove_document, resume, scan, session,
)

configure(wheels)
xworker.onmessage = create_proxy(from_page)  # PyScript hands us what the page posts to us

__export__ = [
    "session", "listen", "agree", "scan", "remove_disc", "add_documents", "remove_document",
    "contribute_disc", "pause", "resume", "cancel", "forget", "memory_report",
]
