"""README deviation 3: ``ac_in_buffer`` and ``terminator`` are descriptors.

They behave like the plain instance attributes CPython uses (compared with
the reference: the stdlib up to 3.11, the backports on 3.12+), but are not
in ``vars(channel)``.
"""

import pytest

from asynchat_core import asynchat as ac_asynchat

# the reference (impls.py): CPython's modules up to 3.11, the pyasynchat
# backport (3.11's code) on 3.12+, None if neither is installed
from impls import REF_ASYNCHAT as std_asynchat


def _modules():
    return [ac_asynchat] + ([std_asynchat] if std_asynchat is not None else [])


def _terminator_life(module):
    chan = module.async_chat()
    log = [hasattr(chan, "terminator")]
    chan.terminator = b"x"
    log.append((chan.terminator, chan.get_terminator()))
    chan.set_terminator(5)
    log.append(chan.terminator)
    del chan.terminator
    log.append(hasattr(chan, "terminator"))
    with pytest.raises(AttributeError):
        del chan.terminator
    return log


def test_terminator_behaves_like_an_attribute(our_impl):
    for module in _modules():
        assert _terminator_life(module) == [False, (b"x", b"x"), 5, False]


def test_terminator_set_before_init_is_kept(our_impl):
    for module in _modules():
        class Early(module.async_chat):
            def __init__(self):
                self.terminator = b"early"
                module.async_chat.__init__(self)

        assert Early().get_terminator() == b"early"


def test_class_level_terminator(our_impl):
    for module in _modules():
        class Fixed(module.async_chat):
            terminator = b"\r\n"

            def collect_incoming_data(self, data):
                self.parts.append(data)

            def found_terminator(self):
                self.frames.append(b"".join(self.parts))
                self.parts = []

        chan = Fixed()
        chan.parts, chan.frames = [], []
        assert chan.get_terminator() == b"\r\n"
        # the kernel must read the class attribute, not its own slot
        received = [b"ab\r\ncd\r\ne\r"]
        chan.recv = lambda size: received.pop()
        chan.handle_read()
        assert chan.frames == [b"ab", b"cd"]
        assert chan.parts == [b"e"]
        assert chan.ac_in_buffer == b"\r"  # a possible terminator start


def test_ac_in_buffer_assignment_and_vars(our_impl):
    chan = ac_asynchat.async_chat()
    chan.ac_in_buffer = b"left over"
    assert chan.ac_in_buffer == b"left over"
    chan.discard_buffers()
    assert chan.ac_in_buffer == b""
    # the deviation itself: neither lives in the instance dict
    assert "ac_in_buffer" not in vars(chan)
    chan.set_terminator(b"\n")
    assert "terminator" not in vars(chan)
    if std_asynchat is not None:
        std = std_asynchat.async_chat()
        std.set_terminator(b"\n")
        assert {"ac_in_buffer", "terminator"} <= set(vars(std))
