"""What each file on a disc is for: images, index, the disc's viewer program, its text, or other.

Only the viewer is left out by default (the repository needs the images, not a Windows
program), so a file is called "viewer" only on evidence: an executable by its magic bytes
(not its name), the folder an AUTORUN.INF launches from, and the folders that hold such
programs and their libraries. A folder holding any DICOM file, index or disc root is never
taken whole, so a misjudged guess can hide a program but never an image.
"""

from __future__ import annotations

import posixpath
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from pcir_upload.page.disc.disc import DiscFile

__all__ = ["ROLES", "Look", "assign_roles", "classify_document", "is_executable", "is_text", "name_key"]

ROLES = ("dicom", "index", "viewer", "disc-text", "other")

_VERSION_SUFFIX = re.compile(r";\d*$")
_MACH_O = {b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe"}
_FAT_OR_JAVA = b"\xca\xfe\xba\xbe"  # a universal Mach-O binary, or a Java class: a program either way
_WINDOWS_PROGRAMS = {"exe", "dll", "com", "ocx", "sys", "drv", "cpl", "scr"}
_TEXT_EXTENSIONS = {"txt", "htm", "html", "inf", "css", "js", "xml", "xsl", "nfo", "ini", "md"}
_TEXT_NAMES = {"readme", "read_me", "readme.1st", "liesmich", "lisezmoi"}
_LAUNCHERS = {"exe", "com", "bat", "cmd", "pif", "scr"}  # what AUTORUN.INF can start by itself
_MAX_DISC_TEXT = 1024 * 1024  # a README or index page; anything bigger is content in its own right
_LINK = re.compile(r"""(?:href|src)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>"']+))""", re.IGNORECASE)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_AUTORUN_KEY = re.compile(r"^\s*(open|shellexecute|icon|shell\\[^=]*\\command)\s*=\s*(.*?)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Look:
    """What a file's head shows about it (all False for a file that could not be read)."""

    dicom: bool = False
    index: bool = False
    executable: bool = False
    text: bool = False
    document: str | None = None


def name_key(component: str) -> str:
    """A path component as ISO 9660 means it: any case, no ';1' version, no trailing '.'."""
    return _VERSION_SUFFIX.sub("", component.strip()).rstrip(".").casefold()


def _extension(path: str) -> str:
    name = name_key(path.rsplit("/", 1)[-1])
    return name.rsplit(".", 1)[-1] if "." in name else ""


def classify_document(name: str, head: bytes) -> str | None:
    """'pdf', 'jpeg' or 'png' for a scanned paper document, by its magic bytes; None otherwise.

    A name can lie (REPORT.PDF holding a DICOM file), so the name only widens where a PDF
    header is looked for: PDF readers accept junk before '%PDF-' within the first KiB.
    """
    if head[128:132] == b"DICM":  # a DICOM file whose preamble mimics another format
        return None
    if head.startswith(b"%PDF-") or (_extension(name) == "pdf" and b"%PDF-" in head[:1024]):
        return "pdf"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    return None


def is_executable(name: str, head: bytes) -> bool:
    """A program or library by its magic bytes: Windows (MZ/PE), Linux (ELF), macOS (Mach-O), scripts."""
    if head.startswith(b"MZ"):
        # 'MZ' could open a text; a PE header where e_lfanew points, or a program's name, settles it.
        if len(head) >= 0x40:
            pe = struct.unpack_from("<I", head, 0x3C)[0]
            if head[pe : pe + 4] == b"PE\0\0":
                return True
        return _extension(name) in _WINDOWS_PROGRAMS
    return (
        head.startswith(b"\x7fELF")
        or head[:4] in _MACH_O
        or head.startswith(_FAT_OR_JAVA)
        or (head.startswith(b"#!/") and b"\0" not in head[:256])
    )


def is_text(head: bytes) -> bool:
    """Plain text or HTML: no NUL bytes (UTF-8, Latin-1, ...) or a UTF-16 byte order mark."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    return bool(head) and b"\0" not in head


def decode_text(data: bytes) -> str:
    """A small text file's content, whatever encoding Windows wrote it in."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", "replace")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def _folder(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


def _ancestors(folder: str) -> list[str]:
    """'a/b/c' -> ['a', 'a/b', 'a/b/c'] (the root '' not included)."""
    parts = folder.split("/") if folder else []
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def _inside(path: str, folder: str) -> bool:
    return not folder or path.startswith(folder + "/")


class _Names:
    """Finds listed files by a path as a disc's own files spell it: any case, '\\' or '/', ';1'."""

    def __init__(self, listing: Sequence[DiscFile]):
        self._paths: dict[tuple[str, ...], str] = {}
        for f in listing:
            self._paths.setdefault(tuple(name_key(p) for p in f.path.split("/")), f.path)

    def find(self, folder: str, relative: str) -> str | None:
        relative = relative.replace("\\", "/").strip()
        if not relative or relative.startswith("/") or _SCHEME.match(relative):
            return None
        joined = posixpath.normpath(posixpath.join(folder, relative)) if folder else posixpath.normpath(relative)
        if joined.startswith("..") or joined in ("", "."):
            return None
        return self._paths.get(tuple(name_key(p) for p in joined.split("/")))


def autorun_targets(text: str) -> tuple[list[str], list[str]]:
    """The programs an AUTORUN.INF starts (open=, shellexecute=, shell\\...\\command=) and its icons."""
    programs: list[str] = []
    icons: list[str] = []
    in_autorun = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            in_autorun = stripped.lower().startswith("[autorun")
            continue
        match = _AUTORUN_KEY.match(line) if in_autorun else None
        if match:
            key, value = match.group(1).lower(), match.group(2)
            if key == "icon":
                icons.append(re.sub(r",\s*-?\d+$", "", value).strip('"'))
            else:
                programs.append(value)
    return programs, icons


def _command_target(names: _Names, folder: str, command: str) -> str | None:
    """The listed file a command line starts: a quoted path, or the longest prefix naming a file."""
    command = command.strip()
    if command.startswith('"'):
        return names.find(folder, command[1:].split('"', 1)[0])
    words = command.split()
    for end in range(len(words), 0, -1):
        found = names.find(folder, " ".join(words[:end]))
        if found:
            return found
    return None


def html_links(text: str) -> list[str]:
    """Relative links (href/src) of a page, without query or fragment."""
    links = []
    for match in _LINK.finditer(text):
        link = next(g for g in match.groups() if g is not None)
        link = unquote(link.split("#", 1)[0].split("?", 1)[0])
        if link and not _SCHEME.match(link) and not link.startswith("//"):
            links.append(link)
    return links


def assign_roles(
    listing: Sequence[DiscFile],
    dicomdirs: Iterable[str],
    dicom: Iterable[str],
    looks: Mapping[str, Look],
    texts: Mapping[str, str],
) -> dict[str, str]:
    """The role of every listed file.

    `dicomdirs`: files named DICOMDIR; `dicom`: files a DICOMDIR references or whose content
    is DICOM; `looks`: what the heads showed (files not read are absent); `texts`: the decoded
    content of the AUTORUN.INF and INDEX.HTM files.
    """
    names = _Names(listing)
    index = set(dicomdirs) | {p for p, look in looks.items() if look.index}
    images = set(dicom) - index
    autoruns = [f.path for f in listing if name_key(f.path.rsplit("/", 1)[-1]) == "autorun.inf"]

    # Folders that are never taken whole: those holding images or an index, and disc roots.
    roots = {_folder(p) for p in index | set(autoruns)} | {_common_folder(listing)}
    guarded = {a for p in index | images for a in _ancestors(_folder(p))}
    guarded |= {a for r in roots for a in _ancestors(r)}

    programs = {p for p, look in looks.items() if look.executable}
    viewer: set[str] = set()
    for inf in autoruns:
        launched, icons = autorun_targets(texts.get(inf, ""))
        for command in launched:
            # shellexecute= may open a page or the patient's letter: only programs count.
            target = _command_target(names, _folder(inf), command)
            if target and (_extension(target) in _LAUNCHERS or target in programs):
                programs.add(target)
        viewer.update(t for t in (names.find(_folder(inf), i) for i in icons) if t)
    viewer |= programs

    folders = {_viewer_folder(p, roots, guarded) for p in programs} - {None}
    companions = {(_folder(p), name_key(p.rsplit("/", 1)[-1]).split(".", 1)[0]) for p in programs}

    text_links: set[str] = set()
    for page, text in texts.items():
        if name_key(page.rsplit("/", 1)[-1]) in ("index.htm", "index.html"):
            text_links.update(t for t in (names.find(_folder(page), link) for link in html_links(text)) if t)

    roles: dict[str, str] = {}
    for f in listing:
        path, name = f.path, name_key(f.path.rsplit("/", 1)[-1])
        look = looks.get(path, Look())
        if path in index:
            roles[path] = "index"
        elif path in images:
            roles[path] = "dicom"
        elif name == "autorun.inf":
            roles[path] = "disc-text"
        elif (
            path in viewer
            or any(_inside(path, folder) for folder in folders)  # type: ignore[arg-type]
            or (_folder(path), name.split(".", 1)[0]) in companions
        ):
            roles[path] = "viewer"
        elif _is_disc_text(f, name, look, text_links):
            roles[path] = "disc-text"
        else:
            roles[path] = "other"
    return roles


def _is_disc_text(f: DiscFile, name: str, look: Look, links: set[str]) -> bool:
    """README/INDEX pages, IHE PDI's folder, what the index page links to (bar documents)."""
    if any(name_key(part) == "ihe_pdi" for part in f.path.split("/")[:-1]):
        return True
    if f.path in links and look.document is None:
        return True
    small_text = look.text and f.size <= _MAX_DISC_TEXT
    return small_text and (_extension(f.path) in _TEXT_EXTENSIONS or name in _TEXT_NAMES)


def _common_folder(listing: Sequence[DiscFile]) -> str:
    """The deepest folder holding every file: the disc's root when a parent folder was chosen."""
    folders = [_folder(f.path).split("/") if "/" in f.path else [] for f in listing]
    if not folders:
        return ""
    common: list[str] = []
    for parts in zip(*folders):
        if len(set(parts)) != 1:
            break
        common.append(parts[0])
    return "/".join(common)


def _viewer_folder(program: str, roots: set[str], guarded: set[str]) -> str | None:
    """The outermost folder around a program that holds nothing but the viewer, if any.

    Its candidates lie below the program's disc root (the nearest folder with a DICOMDIR or
    AUTORUN.INF, or the folder all files share) and above no image, index or disc root.
    """
    chain = _ancestors(_folder(program))
    root = max((r for r in roots if r in chain or r == ""), key=len, default="")
    candidates = chain[len(_ancestors(root)) :]
    for folder in candidates:  # outermost first
        if folder not in guarded:
            return folder
    return None
