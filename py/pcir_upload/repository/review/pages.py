"""The review page's HTML: escaped f-strings, no script, one style sheet whose hash the CSP names.

Plain forms do every action, so the page works by keyboard and without JavaScript; each form
carries the session's CSRF token.
"""

from __future__ import annotations

import base64
import hashlib
from html import escape
from typing import Any
from urllib.parse import quote

STYLE = """
body{font:16px/1.45 system-ui,sans-serif;margin:0;color:#1a1a1a;background:#fff}
header{display:flex;gap:1rem;align-items:center;justify-content:space-between;padding:.5rem 1rem;background:#0b3d5c;color:#fff}
header a{color:#fff}header button{background:#fff;color:#0b3d5c;border-color:#fff}
main{padding:1rem;max-width:72rem}
.skip{position:absolute;left:-999px}.skip:focus{left:1rem;top:1rem;background:#fff;color:#000;padding:.5rem}
table{border-collapse:collapse;margin:.5rem 0}th,td{border:1px solid #888;padding:.25rem .5rem;text-align:left;vertical-align:top}
a{color:#0645ad}a:focus,button:focus,input:focus,summary:focus{outline:3px solid #c60;outline-offset:2px}
button{font:inherit;padding:.3rem .8rem;border:1px solid #333;border-radius:4px;background:#eee;color:#000;cursor:pointer}
button.danger{background:#8b0000;color:#fff}
input{font:inherit;padding:.2rem}label{display:inline-block;margin:.2rem .6rem .2rem 0}
input[type=number]{width:5.5rem}input.why{width:24rem;max-width:100%}
section.file{border-top:2px solid #0b3d5c;margin-top:1.5rem;padding-top:.5rem}
figure{margin:.5rem 0}svg.image{max-width:100%;height:auto;background:#000;display:block}
img.page{max-width:min(100%,40rem);border:1px solid #888;display:block;margin:.5rem 0}
img.strip{max-width:100%;display:block}
.state{font-weight:bold;overflow-wrap:anywhere}td{overflow-wrap:anywhere}.error{color:#8b0000;font-weight:bold;border:2px solid #8b0000;padding:.5rem}
form.inline{display:inline-block;margin-right:1rem}
nav.pages a,nav.pages span{margin-right:.6rem}
"""
STYLE_HASH = "sha256-" + base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
CSP = ("default-src 'none'; img-src 'self'; style-src '" + STYLE_HASH + "'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")


def e(value: object) -> str:
    return escape(str(value), quote=True)


def u(value: str) -> str:
    return quote(value, safe="")


def layout(title: str, body: str, operator: str | None = None, csrf: str = "") -> str:
    who = ""
    if operator:
        who = (f'<span>Operator: {e(operator)}</span><form method="post" action="/logout" class="inline">'
               f'{hidden(csrf)}<button type="submit">Log out</button></form>')
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{e(title)} · PCIR review</title><style>{STYLE}</style></head><body>'
            f'<a class="skip" href="#main">Skip to content</a>'
            f'<header><a href="/">PCIR review</a>{who}</header>'
            f'<main id="main" tabindex="-1">{body}</main></body></html>')


def hidden(csrf: str) -> str:
    return f'<input type="hidden" name="csrf" value="{e(csrf)}">'


def login(error: str = "") -> str:
    message = f'<p class="error" role="alert">{e(error)}</p>' if error else ""
    body = (f'<h1>Log in to review</h1>{message}'
            '<p>The token was printed when <code>pcir-upload review</code> started.</p>'
            '<form method="post" action="/login">'
            '<p><label for="operator">Your name (recorded with every decision)</label><br>'
            '<input id="operator" name="operator" autocomplete="name" required></p>'
            '<p><label for="token">Token or password</label><br>'
            '<input id="token" name="token" type="password" autocomplete="current-password" required></p>'
            '<p><button type="submit">Log in</button></p></form>')
    return layout("Log in", body)


def field(name: str, label: str, value: object = "", kind: str = "number", idp: str = "", required: bool = True) -> str:
    ident = f"{idp}-{name}"
    extra = ' min="0"' if kind == "number" else ""
    extra += ' class="why"' if name == "why" else ""
    return (f'<label for="{e(ident)}">{e(label)}</label>'
            f'<input id="{e(ident)}" name="{e(name)}" type="{kind}" value="{e(value)}"{extra}'
            f'{" required" if required else ""}> ')


def action_form(url: str, csrf: str, button: str, idp: str, why: str = "", danger: bool = False,
                why_label: str = "Why", required: bool = True) -> str:
    css = ' class="danger"' if danger else ""
    return (f'<form method="post" action="{e(url)}">{hidden(csrf)}'
            f'{field("why", why_label, why, "text", idp, required)}'
            f'<button type="submit"{css}>{e(button)}</button></form>')


def changes_table(changes: dict[str, Any]) -> str:
    rows = "".join(
        f'<tr><th scope="row">{e(what.replace("_", " "))}</th><td>'
        + e(", ".join(f"{k} {v}" if what == "added" else (k if v == 1 else f"{k} ×{v}") for k, v in counts.items()))
        + "</td></tr>"
        for what, counts in changes.items() if counts)
    return f"<table><caption>Header</caption>{rows}</table>" if rows else "<p>No header changes recorded.</p>"
