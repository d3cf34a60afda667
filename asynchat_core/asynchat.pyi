# Type stubs for asynchat_core.asynchat: CPython 3.11's asynchat API.
from collections import deque
from socket import socket as _Socket
from typing import Any, Iterable, List, Optional, Protocol, Union
from typing_extensions import TypeAlias

from . import asyncore
from .framing import FrameError, Framer

__all__ = ["async_chat", "simple_producer", "find_prefix_at_end", "FrameTooLarge"]

# What set_terminator() accepts: a delimiter, a byte count, or None for
# "deliver everything", or a framer (asynchat_core.framing).  str is accepted
# (encoded) when use_encoding is set.
_Terminator: TypeAlias = Union[bytes, int, str, None, Framer]

class _Producer(Protocol):
    def more(self) -> bytes: ...

# Queue items: bytes-like data, producers, and None (close_when_done).
_FifoItem: TypeAlias = Union[bytes, bytearray, memoryview, _Producer, None]

class FrameTooLarge(FrameError):
    """One input frame passed ``async_chat.ac_max_frame_size``."""
    size: int
    limit: int
    def __init__(self, size: int, limit: int) -> None: ...

def find_prefix_at_end(haystack: Any, needle: Any) -> int: ...

class async_chat(asyncore.dispatcher):
    ac_in_buffer_size: int
    ac_out_buffer_size: int
    use_encoding: int
    encoding: str
    # cap in bytes on one input frame; None means unlimited (CPython's behaviour)
    ac_max_frame_size: Optional[int]
    # output back-pressure: reading pauses above high water until the queue
    # drains to low water (default: half of high); None disables it
    ac_out_high_water: Optional[int]
    ac_out_low_water: Optional[int]
    # one send() for the replies pushed while handling one read
    ac_coalesce_pushes: bool
    # Any, not _Terminator: legacy code compares it to ints and bytes freely,
    # and set_terminator() is the checked way to change it
    terminator: Any
    incoming: List[bytes]
    producer_fifo: deque[Any]
    @property
    def ac_in_buffer(self) -> bytes: ...
    @ac_in_buffer.setter
    def ac_in_buffer(self, value: bytes) -> None: ...
    def __init__(self, sock: Optional[_Socket] = None, map: Optional[asyncore._MapType] = None) -> None: ...
    def collect_incoming_data(self, data: bytes) -> None: ...
    def _collect_incoming_data(self, data: bytes) -> None: ...
    def _get_data(self) -> bytes: ...
    def found_terminator(self) -> None: ...
    def set_terminator(self, term: _Terminator) -> None: ...
    def get_terminator(self) -> Any: ...
    def push(self, data: Union[bytes, bytearray, memoryview]) -> None: ...
    def push_with_producer(self, producer: _Producer) -> None: ...
    def close_when_done(self) -> None: ...
    def initiate_send(self) -> None: ...
    def discard_buffers(self) -> None: ...
    # framers (docs/framing.md)
    ac_frame_join_limit: int
    def push_frame(self, payload: Union[bytes, bytearray, memoryview],
                   framer: Optional[Framer] = None) -> None: ...
    def push_frames(self, payloads: Iterable[Union[bytes, bytearray, memoryview]],
                    framer: Optional[Framer] = None) -> None: ...
    def push_resp(self, value: Any) -> None: ...

class simple_producer:
    data: bytes
    buffer_size: int
    def __init__(self, data: bytes, buffer_size: int = 512) -> None: ...
    def more(self) -> bytes: ...
