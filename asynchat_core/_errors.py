"""The exception both builds raise, in a module of its own.

One class for both builds (code that catches the Python build's
``FrameTooLarge`` also catches the compiled one's), without the compiled
build importing the Python build's modules to get it: that doubled its
import time (issue 18).
"""

__all__ = ["FrameTooLarge"]


class FrameTooLarge(ValueError):
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
