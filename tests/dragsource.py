"""A drag source, as a file manager is one: a small GTK window at X, Y that offers one folder
as text/uri-list when dragged. Run with Debian's python3 (python3-gi, gir1.2-gtk-3.0) on the
test's Xvfb; tests/webkit.py drags from it with xdotool onto the page, so that WebKit receives
a real drop of a folder and builds its FileSystemEntry tree itself.

    /usr/bin/python3 tests/dragsource.py FOLDER X Y

Prints "ready" once the window is on screen, "sent" when a drop target took the folder.
"""

import sys
from pathlib import Path

import gi

gi.require_version("Gtk", "3.0")
gi.require_version("Gdk", "3.0")
from gi.repository import Gdk, GLib, Gtk  # noqa: E402

folder, x, y = Path(sys.argv[1]).resolve(), int(sys.argv[2]), int(sys.argv[3])
window = Gtk.Window(title="pcir-dragsource")
window.set_decorated(False)
window.set_default_size(120, 120)
window.move(x, y)
box = Gtk.EventBox()
box.add(Gtk.Label(label=folder.name))
box.drag_source_set(Gdk.ModifierType.BUTTON1_MASK, [Gtk.TargetEntry.new("text/uri-list", 0, 0)],
                    Gdk.DragAction.COPY)


def data_get(widget, context, selection, info, time):
    selection.set_uris([folder.as_uri()])
    print("sent", flush=True)


box.connect("drag-data-get", data_get)
window.add(box)
window.connect("destroy", Gtk.main_quit)
window.show_all()
GLib.timeout_add(300, lambda: print("ready", flush=True) and False)
Gtk.main()
