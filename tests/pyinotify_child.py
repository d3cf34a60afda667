"""Child of test_pyinotify.py: pyinotify's AsyncNotifier on one asyncore.

    python pyinotify_child.py TARGET USE_POLL REPORT

TARGET is ``reference`` (the interpreter's asyncore, or pyasyncore on
3.12+) or ``cython`` / ``python`` (asynchat_core's builds, installed before
pyinotify is imported, as a user on 3.12+ must).  In a fresh directory it
makes a fixed series of file-system changes, and after each one runs
``asyncore.loop(count=1)`` until pyinotify has delivered what the change
causes (or 5 seconds pass); the events seen, the module pyinotify really
used and how the notifier ended go to the JSON file REPORT.
"""
import json
import os
import shutil
import sys
import tempfile
import time
import warnings

TARGET, USE_POLL, REPORT = sys.argv[1], sys.argv[2] == "1", sys.argv[3]

if TARGET != "reference":
    import asynchat_core

    asynchat_core.install()

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import asyncore

    import pyinotify

MASK = (pyinotify.IN_CREATE | pyinotify.IN_CLOSE_WRITE | pyinotify.IN_DELETE
        | pyinotify.IN_MOVED_FROM | pyinotify.IN_MOVED_TO | pyinotify.IN_ATTRIB)


class Recorder(pyinotify.ProcessEvent):
    def my_init(self, seen):
        self.seen = seen

    def process_default(self, event):
        self.seen.append([event.maskname, os.path.relpath(event.pathname, ROOT)])


def pump(seen, want, channel_map):
    """Loop one pass at a time until ``want`` events are in ``seen``."""
    deadline = time.monotonic() + 5.0
    while len(seen) < want and time.monotonic() < deadline:
        asyncore.loop(timeout=0.5, use_poll=USE_POLL, map=channel_map, count=1)


ROOT = tempfile.mkdtemp(prefix="pyinotify-")
report = {"target": TARGET, "asyncore": pyinotify.asyncore.__name__,
          "implementation": asynchat_core.IMPLEMENTATION if TARGET != "reference" else None,
          "use_poll": USE_POLL, "steps": []}
try:
    channel_map = {}
    seen = []
    wm = pyinotify.WatchManager()
    # a callback run after each read: pyinotify's own hook, counted
    callbacks = []
    notifier = pyinotify.AsyncNotifier(wm, Recorder(seen=seen), channel_map=channel_map)
    notifier.handle_read = (lambda orig: lambda *a, **k: (callbacks.append(1), orig(*a, **k)))(
        notifier.handle_read)
    wm.add_watch(ROOT, MASK, rec=True, auto_add=True)

    def step(name, action, want):
        before = len(seen)
        action()
        pump(seen, before + want, channel_map)
        report["steps"].append({"step": name, "events": seen[before:],
                                "enough": len(seen) - before >= want})

    def write(path, data):
        with open(os.path.join(ROOT, path), "w") as fh:
            fh.write(data)

    step("create", lambda: write("a.txt", "hello"), 2)                  # CREATE, CLOSE_WRITE
    step("rename", lambda: os.rename(os.path.join(ROOT, "a.txt"),
                                     os.path.join(ROOT, "b.txt")), 2)  # MOVED_FROM, MOVED_TO
    step("chmod", lambda: os.chmod(os.path.join(ROOT, "b.txt"), 0o600), 1)  # ATTRIB
    step("mkdir", lambda: os.mkdir(os.path.join(ROOT, "sub")), 1)       # CREATE|ISDIR
    # auto_add put a watch on sub/: a file there is seen too
    step("nested", lambda: write(os.path.join("sub", "c.txt"), "x" * 100), 2)
    step("delete", lambda: os.unlink(os.path.join(ROOT, "b.txt")), 1)   # DELETE
    # nothing happens: one quiet pass delivers nothing and does not spin
    before = len(seen)
    t0 = time.monotonic()
    asyncore.loop(timeout=0.2, use_poll=USE_POLL, map=channel_map, count=1)
    report["quiet_pass"] = {"events": seen[before:], "waited": time.monotonic() - t0 >= 0.15}
    report["reads"] = len(callbacks) > 0
    # pyinotify's stop() closes its own descriptor; the channel holds a dup
    # (file_dispatcher) and stays in the map until closed
    notifier.stop()
    report["map_after_stop"] = len(channel_map)
    notifier.close()
    report["map_after_close"] = len(channel_map)
finally:
    shutil.rmtree(ROOT, ignore_errors=True)

with open(REPORT, "w") as fh:
    json.dump(report, fh, indent=1)
