"""The base class of the framers, apart from ``asynchat_core.framing``.

The chat code asks of every terminator that is not bytes whether it is a
framer (``isinstance(term, Framer)``).  Taking the class from here, a module
that imports nothing new, lets ``asynchat_core.asynchat`` leave ``framing``
(its ``struct``) and the framer kernel unimported until an application
uses them (import time, issue 18).  ``asynchat_core.framing.Framer`` is
this class, the public name: its ``__module__`` says so.
"""

import sys

__all__ = ["Framer"]


class Framer:
    """Base of the framers.  The kernels read ``_spec``, the fields as one
    tuple set by ``_seal`` at the end of each constructor: one attribute
    lookup per read instead of one per field (a framer does not change)."""

    __module__ = "asynchat_core.framing"  # where applications take it from
    __slots__ = ("_kind", "_size", "_big", "_includes", "_offset", "_max", "_delim", "_spec")

    def __init__(self, kind, max_size):
        max_size = min(int(max_size), sys.maxsize)
        if max_size < 0:
            raise ValueError("max_size must be >= 0")
        self._kind = kind
        self._size = 0
        self._big = True
        self._includes = False
        self._offset = 0
        self._max = max_size
        self._delim = b""
        self._seal()

    def _seal(self):
        # the order _frame_py.py reads (SPEC_* there)
        self._spec = (self._kind, self._max, self._size, self._offset, self._big,
                      self._includes, self._delim)

    @property
    def max_size(self):
        """The largest payload (message) accepted, in bytes."""
        return self._max

    def encode(self, payload):
        """The bytes that carry ``payload`` as one frame of this kind."""
        raise TypeError("%s has no frame encoder" % type(self).__name__)

    def encode_parts(self, payload):
        """``(header, payload, trailer)``: ``encode`` without joining."""
        raise TypeError("%s has no frame encoder" % type(self).__name__)

    def encode_many(self, payloads):
        """The frames of ``payloads``, joined."""
        encode = self.encode
        return b"".join([encode(p) for p in payloads])
