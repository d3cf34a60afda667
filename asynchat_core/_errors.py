"""The exception both builds raise, in a module of its own.

One class for both builds (code that catches the Python build's
``FrameTooLarge`` also catches the compiled one's), without the compiled
build importing the Python build's modules to get it: that doubled its
import time (issue 18).
"""

__all__ = ["FrameError", "FrameTooLarge"]


class FrameError(ValueError):
    """Malformed or oversized input under a framer (``asynchat_core.framing``).

    Raised while a framer parses a channel's input: a header that is not a
    number, a negative or absurd length, a missing delimiter, a frame cut
    by the peer's close, or (as ``FrameTooLarge``, a subclass) a frame over
    ``ac_max_frame_size`` or the framer's ``max_size``.  The channel's
    ``handle_error`` gets it, then the channel is closed.
    """


class FrameTooLarge(FrameError):
    """A frame exceeded ``async_chat.ac_max_frame_size``.

    Raised inside ``handle_read`` (so it reaches ``handle_error``, which by
    default logs it and closes the channel) when the bytes of one frame
    (collected so far plus buffered) pass the cap, or when an integer
    terminator larger than the cap is in force.
    """

    def __init__(self, size, limit):
        ValueError.__init__(
            self, "frame of at least %d bytes exceeds ac_max_frame_size=%d" % (size, limit)
        )
        self.size = size
        self.limit = limit
