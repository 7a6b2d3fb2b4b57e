"""The two views an operator works in: the list of contributions waiting, and one contribution."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from pcir_upload.repository.deidentify.pixels import TextBox, blanked_region
from pcir_upload.repository.review import render
from pcir_upload.repository.review.cleaning import current_path, operator_box
from pcir_upload.repository.review.decisions import ACCEPT, REJECT, ContributionState
from pcir_upload.repository.review.identity import UNKNOWN, Verdict
from pcir_upload.repository.review.index import DOCUMENT, IMAGE, Summary, kind
from pcir_upload.repository.review.pages import action_form, changes_table, e, field, hidden, layout, u

PAGE_SIZE = 50
SORTS = {
    "waiting": lambda s, st: (-s.waiting(st), s.cid),
    "id": lambda s, st: (s.cid,),
    "subject": lambda s, st: (s.subject, s.cid),
}


def contributions(summaries: list[Summary], states: dict[str, ContributionState], page: int, sort: str,
                  operator: str, csrf: str) -> str:
    key = SORTS.get(sort, SORTS["waiting"])
    empty = ContributionState()
    ordered = sorted(summaries, key=lambda s: key(s, states.get(s.cid, empty)))
    pages = max(1, -(-len(ordered) // PAGE_SIZE))
    page = min(max(1, page), pages)
    rows = []
    for s in ordered[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]:
        state = states.get(s.cid, empty)
        status = "rejected" if state.rejected else (f"{s.waiting(state)} waiting" if s.waiting(state) else "decided")
        rows.append(f'<tr><td><a href="/c/{u(s.cid)}">{e(s.cid)}</a></td><td>{e(s.subject)}</td>'
                    f'<td>{e(status)}</td><td>{s.to_release(state)}</td><td>{s.released}</td>'
                    f'<td>{e((s.identity_problem or s.first_reason)[:160])}</td></tr>')
    sort_links = " ".join(
        f'<a href="/?sort={name}"{" aria-current=true" if name == sort else ""}>{name}</a>' for name in SORTS)
    nav = " ".join(f'<span aria-current="page">{n}</span>' if n == page else f'<a href="/?sort={e(sort)}&amp;page={n}">{n}</a>'
                   for n in range(max(1, page - 5), min(pages, page + 5) + 1))
    waiting = sum(1 for s in summaries if s.waiting(states.get(s.cid, empty)))
    body = (f'<h1>Contributions in review</h1><p>{waiting} of {len(summaries)} contribution(s) have files waiting '
            f'for a decision.</p><p>Sort by: {sort_links}</p>'
            f'<table><caption>Page {page} of {pages}</caption><thead><tr><th scope="col">Contribution</th>'
            f'<th scope="col">Subject</th><th scope="col">Status</th><th scope="col">Accepted, not released</th>'
            f'<th scope="col">Released by deidentify</th><th scope="col">Why in review</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>'
            f'<nav class="pages" aria-label="Pages">Pages: {nav}</nav>')
    return layout("Contributions", body, operator, csrf)


def _series(cid: str, report: dict[str, Any]) -> str:
    """Studies and series as the cleaned files' paths name them (new UIDs only)."""
    grouped: dict[tuple[str, str], list[str]] = defaultdict(list)
    for entry in report["files"]:
        parts = Path(entry["to"]).parts
        if entry["to"].startswith("released/") and len(parts) == 5:
            grouped[(parts[2], parts[3])].append("released")
        elif entry["to"].startswith(f"review/{cid}/dicom/") and len(parts) == 6:
            grouped[(parts[3], parts[4])].append("in review")
    if not grouped:
        return "<p>No cleaned DICOM object: nothing here has a study or series yet.</p>"
    rows = "".join(f"<tr><td>{e(study)}</td><td>{e(series)}</td><td>{places.count('released')}</td>"
                   f"<td>{places.count('in review')}</td></tr>" for (study, series), places in sorted(grouped.items()))
    return ('<table><caption>Studies and series (new UIDs)</caption><thead><tr><th scope="col">Study</th>'
            '<th scope="col">Series</th><th scope="col">Released</th><th scope="col">In review</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>")


def _image(out: Path, cid: str, n: int, entry: dict[str, Any], boxes: list[dict[str, int]], csrf: str,
           editable: bool) -> str:
    path = current_path(out, cid, entry, boxes)
    try:
        columns, rows = render.size(path)
        frames = render.frame_count(path)
    except Exception as exc:  # noqa: BLE001 - a file that cannot be shown is said so, and can be rejected
        return f'<p class="error">The image cannot be shown: {e(type(exc).__name__)}: {e(exc)}</p>'
    found = [TextBox(**box) for box in entry.get("pixels", {}).get("boxes", [])]
    shapes = []
    for box in found:
        top, bottom, left, right = blanked_region(box, rows, columns)
        shapes.append(f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" fill="none" '
                      f'stroke="#ff4040" stroke-width="{max(2, columns // 300)}"><title>found: {e(box.reason)} '
                      f'{e(box.text)}</title></rect>')
    for box in boxes:
        top, bottom, left, right = blanked_region(operator_box(box), rows, columns)
        shapes.append(f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" fill="none" '
                      f'stroke="#40a0ff" stroke-dasharray="6 3" stroke-width="{max(2, columns // 300)}">'
                      f'<title>drawn by the operator</title></rect>')
    picture = (f'<figure><svg class="image" role="img" aria-labelledby="cap-{n}" viewBox="0 0 {columns} {rows}" '
               f'width="{min(2 * columns, 800)}" xmlns="http://www.w3.org/2000/svg">'
               f'<image href="/c/{u(cid)}/image/{n}.png" x="0" y="0" width="{columns}" height="{rows}"/>'
               f'{"".join(shapes)}</svg><figcaption id="cap-{n}">Frame 1 of {frames}, {columns} × {rows} pixels; '
               f'red: text found and blanked ({len(found)}), blue dashed: blanked by the operator ({len(boxes)}).'
               f'</figcaption></figure>')
    if frames > 1:
        picture += (f'<img class="strip" src="/c/{u(cid)}/strip/{n}.png" alt="{min(frames, render.STRIP_FRAMES)} '
                    f'frames of {frames}, first to last">')
    listed = "".join(
        f'<tr><td>{e(b.reason)}</td><td>{e(b.text)}</td><td>{b.left}, {b.top}</td><td>{b.width} × {b.height}</td></tr>'
        for b in found)
    table = (f'<table><caption>Text found in the pixels</caption><thead><tr><th scope="col">Kind</th><th scope="col">Read</th>'
             f'<th scope="col">x, y</th><th scope="col">w × h</th></tr></thead><tbody>{listed}</tbody></table>') if found else \
        "<p>No text was found in the pixels.</p>"
    # Adjusting starts from the largest box found, or an empty one; the boxes drawn so far stay.
    seed = max(found, key=lambda b: b.width * b.height, default=None)
    x, y, w, h = (seed.left, seed.top, seed.width, seed.height) if seed else ("", "", "", "")
    boxes_form = _box_form(f"/c/{u(cid)}/file/{n}/boxes", csrf, f"box-{n}", "Blank a box (pixels of the image; "
                           "the margin is added) and clean the image again", "Blank and clean again", (x, y, w, h))
    return picture + table + (boxes_form if editable else "")


def _box_form(url: str, csrf: str, idp: str, legend: str, button: str, box: tuple[object, ...], page: str = "") -> str:
    """One more box for a file, in its pixels: an image's blanking or a document's redaction."""
    x, y, w, h = box
    return (f'<form method="post" action="{url}"><fieldset><legend>{legend}</legend>{hidden(csrf)}{page}'
            f'{field("x", "x", x, idp=idp)}{field("y", "y", y, idp=idp)}{field("w", "width", w, idp=idp)}'
            f'{field("h", "height", h, idp=idp)}{field("why", "Why", "", "text", idp)}'
            f'<button type="submit">{e(button)}</button></fieldset></form>')


def _document(cid: str, n: int, entry: dict[str, Any], out: Path, boxes: list[dict[str, int]], csrf: str,
              editable: bool) -> str:
    """The pages as they would be released (redactions black), and the form that adds one."""
    try:
        count = render.page_count(out / entry["to"])
        sizes = [render.page_size(out / entry["to"], p) for p in range(count)]
    except Exception as exc:  # noqa: BLE001 - shown, so that it can be rejected
        return f'<p class="error">The document cannot be shown: {e(type(exc).__name__)}: {e(exc)}</p>'
    pages = "".join(
        f'<figure><img class="page" src="/c/{u(cid)}/page/{n}/{p}.png" alt="Page {p + 1} of {count} of {e(entry["path"])}">'
        f'<figcaption>Page {p + 1} of {count}, {width} × {height} pixels; blacked out by the operator: '
        f'{sum(1 for b in boxes if b["page"] == p + 1)}.</figcaption></figure>' for p, (width, height) in enumerate(sizes))
    idp = f"redact-{n}"
    form = _box_form(f"/c/{u(cid)}/file/{n}/boxes", csrf, idp, "Redact a box on a page (pixels of the page as shown; "
                     "exactly the box is blacked out, in what is shown and released)", "Black out",
                     ("", "", "", ""), field("page", "page", 1, idp=idp))
    return pages + (form if editable else "")


def _identities(documents: list[dict[str, Any]], verdicts: dict[str, Verdict] | None) -> str:
    if not documents:
        return "<p>There is no document in this contribution.</p>"
    if verdicts is None:
        return ("<p><strong>Could not tell</strong> for every document: the page was started without the "
                "originals (<code>--in UNPACKED</code>), so it knows no patient to compare the pages with.</p>")
    rows = "".join(
        f'<tr><td>{e(entry["path"])}</td><td><strong>{e(verdicts[entry["path"]].verdict if entry["path"] in verdicts else UNKNOWN)}'
        f'</strong></td><td>{e(verdicts[entry["path"]].evidence if entry["path"] in verdicts else "not read")}</td></tr>'
        for entry in documents)
    return ('<table><caption>What the documents show, read by OCR, against the patient of the original images'
            '</caption><thead><tr><th scope="col">Document</th><th scope="col">Patient</th><th scope="col">Why</th>'
            f'</tr></thead><tbody>{rows}</tbody></table>')


def contribution(out: Path, summary: Summary, report: dict[str, Any], state: ContributionState,
                 log: list[dict[str, Any]], operator: str, csrf: str, verdicts: dict[str, Verdict] | None,
                 error: str = "") -> str:
    cid = summary.cid
    problem = report.get("identity_problem")
    parts = [f'<h1>Contribution {e(cid)}</h1>']
    if error:
        parts.append(f'<p class="error" role="alert">{e(error)}</p>')
    parts.append(f'<p>Subject {e(report["subject"])}. {e(report["profile"])}. {report["released"]} file(s) released '
                 f'by deidentify, {report["review"]} in review.</p>')
    if problem:
        parts.append(f'<p class="error">The files disagree about the patient: {e(problem)}. Nothing can be '
                     f'accepted; reject, or fix the discs and run deidentify again.</p>')
    if state.rejected:
        parts.append(f'<p class="state">The whole contribution was rejected: {e(state.rejected)}</p>')
    documents = [f for f in report["files"] if f["outcome"] == "review" and kind(cid, f) == DOCUMENT]
    parts.append('<h2>Documents against images</h2>' + _identities(documents, verdicts))
    parts.append('<h2>Studies and series</h2>' + _series(cid, report))
    to_release = summary.to_release(state)
    parts.append('<h2>Release and reject</h2>')
    parts.append(f'<p>{to_release} accepted file(s) wait to be released; {summary.waiting(state)} file(s) have no decision '
                 'and stay in review.</p>')
    if to_release and not state.rejected:
        parts.append(action_form(f"/c/{u(cid)}/release", csrf, "Release the accepted files", "release",
                                 "accepted after review", why_label="Note for the log"))
    if not state.rejected:
        parts.append(action_form(f"/c/{u(cid)}/reject", csrf, "Reject the whole contribution", "reject-all", danger=True,
                                 why_label="Why the whole contribution is rejected"))
    for n, entry in enumerate(report["files"]):
        if entry["outcome"] != "review":
            continue
        what = kind(cid, entry)
        file_state = state.files.get(entry["path"])
        decided = file_state.decision if file_state else None
        released = file_state.released_to if file_state else []
        label = {ACCEPT: "accepted", REJECT: "rejected", None: "waiting for a decision"}[decided]
        if released:
            label = f"released to {', '.join(released[:3])}{' …' if len(released) > 3 else ''}"
        section = [f'<section class="file" aria-labelledby="file-{n}"><h3 id="file-{n}">{e(entry["path"])}</h3>',
                   f'<p>Role {e(entry["role"] or "none")}. In review because: {e(entry["reason"])}</p>',
                   f'<p class="state">{e(label)}</p>']
        if entry.get("changes"):
            section.append(changes_table(entry["changes"]))
        if released:
            pass  # it has left review/: nothing more to decide
        elif what == IMAGE:
            boxes = file_state.boxes if file_state else []
            section.append(_image(out, cid, n, entry, boxes, csrf, decided != REJECT and not state.rejected))
            if decided is None and not problem and not state.rejected:
                section.append(action_form(f"/c/{u(cid)}/file/{n}/accept", csrf, "Accept as cleaned", f"accept-{n}",
                                           "looked at every frame shown: no identifying text left",
                                           why_label="Why it may be released"))
        elif what == DOCUMENT:
            section.append(_document(cid, n, entry, out, file_state.boxes if file_state else [], csrf,
                                     decided != REJECT and not state.rejected))
            if decided is None and not problem and not state.rejected:
                section.append('<p>Accepting releases the rendered pages only, as shown here (no text layer, no '
                               'metadata, every redaction black); a redaction after accepting needs accepting again.</p>')
                section.append(action_form(f"/c/{u(cid)}/file/{n}/accept", csrf, "Accept the pages", f"accept-{n}",
                                           "nothing on the pages identifies the patient",
                                           why_label="Why it may be released"))
        else:
            section.append('<p>This is an original as it came from the disc: it can only be rejected.</p>')
        if not released and decided != REJECT and not state.rejected:
            section.append(action_form(f"/c/{u(cid)}/file/{n}/reject", csrf, "Reject this file", f"reject-{n}", danger=True,
                                       why_label="Why it is rejected"))
        section.append("</section>")
        parts.append("".join(section))
    automatic = [entry for entry in report["files"] if entry["outcome"] == "released"]
    if automatic:
        parts.append(f'<h2>Released by deidentify ({len(automatic)})</h2>')
        parts.append("".join(f'<details><summary>{e(entry["path"])}</summary><p>{e(entry["to"])}</p>'
                             f'{changes_table(entry["changes"])}</details>' for entry in automatic))
    rows = "".join(f'<tr><td>{e(x["at"])}</td><td>{e(x["operator"])}</td><td>{e(x["action"])}</td>'
                   f'<td>{e(x.get("file", ""))}</td><td>{e(x["why"])}</td></tr>' for x in log)
    parts.append('<h2>Decisions</h2>' + (
        '<table><thead><tr><th scope="col">When</th><th scope="col">Who</th><th scope="col">Action</th>'
        f'<th scope="col">File</th><th scope="col">Why</th></tr></thead><tbody>{rows}</tbody></table>'
        if rows else '<p>None yet.</p>'))
    return layout(f"Contribution {cid}", "".join(parts), operator, csrf)
