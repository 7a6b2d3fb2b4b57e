"""A one-window WebKitGTK browser that chooses folders as a patient does: WebKit's file chooser
request for <input webkitdirectory> is answered with a folder, exactly as GTK browsers do once
their dialog closes (webkit_file_chooser_request_select_files), and WebKit itself walks the
folder into the input's FileList (webkitRelativePath and all).

Why not WebDriver for this: in automation mode WebKit answers every file chooser itself, and
WebDriver's send-keys sets a folder's path as one empty file. Why not a drop: WebKitGTK 2.50
gives pages no files from any drop (DataTransfer::allowsFileAccess is false off Apple's
platforms since CVE-2025-13947's fix), which tests/test_webkit.py checks.

Run with Debian's python3 (python3-gi, python3-gi-cairo, gir1.2-webkit2-4.1) on an X display,
`webkitview.py FOLDER` (where the page's storage goes); reads one JSON
command a line on stdin, answers one JSON line on stdout:
    {"load": URL} · {"js": BODY} (BODY of an async function; its value)
    · {"choose": [PATH…]} (the next file chooser gets these: a folder, or files) · {"shot": PNG}
"""

import json
import sys

import gi

gi.require_version("Gtk", "3.0")
gi.require_version("WebKit2", "4.1")
from gi.repository import GLib, Gtk, WebKit2  # noqa: E402

WIDTH, HEIGHT = 1366, 768
window = Gtk.Window(title="pcir-webkitview")
window.set_default_size(WIDTH, HEIGHT)
window.move(0, 0)
# Everything the page stores lives in this run's own folder (argv[1]), never in the home.
home = sys.argv[1]
data = WebKit2.WebsiteDataManager(base_data_directory=f"{home}/data", base_cache_directory=f"{home}/cache")
view = WebKit2.WebView(web_context=WebKit2.WebContext(website_data_manager=data))
view.get_settings().set_enable_developer_extras(False)
window.add(view)
window.connect("destroy", Gtk.main_quit)
window.show_all()
folders: list[list[str]] = []
loads: list[int] = []


def answer(**value: object) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


def chooser(_view: WebKit2.WebView, request: WebKit2.FileChooserRequest) -> bool:
    if not folders:
        request.cancel()
    else:
        request.select_files(folders.pop(0))
    return True


def load_changed(_view: WebKit2.WebView, event: WebKit2.LoadEvent) -> None:
    if event == WebKit2.LoadEvent.FINISHED and loads:
        loads.pop()
        answer(value=None)


def dialog(_view: WebKit2.WebView, asked: WebKit2.ScriptDialog) -> bool:
    """"Leave this page?" while sending: yes, as a patient closing the page does."""
    if asked.get_dialog_type() == WebKit2.ScriptDialogType.BEFORE_UNLOAD_CONFIRM:
        asked.confirm_set_confirmed(True)
    return True


view.connect("run-file-chooser", chooser)
view.connect("script-dialog", dialog)
view.connect("load-changed", load_changed)


def ran(source: WebKit2.WebView, result: object) -> None:
    try:
        value = source.call_async_javascript_function_finish(result)
        answer(value=json.loads(value.to_json(0) or "null"))
    except GLib.Error as error:
        answer(error=error.message)


def shot(source: WebKit2.WebView, result: object, path: str) -> None:
    try:
        source.get_snapshot_finish(result).write_to_png(path)
        answer(value=path)
    except GLib.Error as error:
        answer(error=error.message)


def command(channel: GLib.IOChannel, condition: GLib.IOCondition) -> bool:
    line = sys.stdin.readline()
    if not line:
        Gtk.main_quit()
        return False
    asked = json.loads(line)
    if "load" in asked:
        loads.append(1)
        view.load_uri(asked["load"])
    elif "js" in asked:
        view.call_async_javascript_function(asked["js"], -1, None, None, None, None, ran)
    elif "choose" in asked:
        folders.append(asked["choose"])
        answer(value=None)
    elif "shot" in asked:
        view.get_snapshot(WebKit2.SnapshotRegion.FULL_DOCUMENT, WebKit2.SnapshotOptions.NONE, None,
                          shot, asked["shot"])
    return True


GLib.io_add_watch(GLib.IOChannel.unix_new(sys.stdin.fileno()), GLib.IO_IN | GLib.IO_HUP, command)
Gtk.main()
