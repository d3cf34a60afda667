# Type stubs for asynchat_core.framing (docs/framing.md).
from typing import Any, Iterable, Literal, Tuple, Union

_Bytes = Union[bytes, bytearray, memoryview]

__all__ = [
    "FrameError", "FrameTooLarge", "Framer", "LengthPrefix", "Netstring", "RespRequests",
    "Lines", "DEFAULT_MAX_SIZE", "encode_resp", "RespSimple", "RespError",
]

DEFAULT_MAX_SIZE: int
KIND_LENGTH: int
KIND_NETSTRING: int
KIND_RESP: int
KIND_LINES: int

class FrameError(ValueError): ...

class FrameTooLarge(FrameError):
    size: int
    limit: int
    def __init__(self, size: int, limit: int) -> None: ...

class Framer:
    _kind: int
    _size: int
    _big: bool
    _includes: bool
    _offset: int
    _max: int
    _delim: bytes
    _spec: Tuple[int, int, int, int, bool, bool, bytes]
    def __init__(self, kind: int, max_size: int) -> None: ...
    def _seal(self) -> None: ...
    @property
    def max_size(self) -> int: ...
    def encode(self, payload: _Bytes) -> bytes: ...
    def encode_parts(self, payload: _Bytes) -> Tuple[bytes, _Bytes, bytes]: ...
    def encode_many(self, payloads: Iterable[_Bytes]) -> bytes: ...

class LengthPrefix(Framer):
    def __init__(self, header: Literal[1, 2, 4, 8] = 4,
                 byteorder: Literal["big", "little"] = "big", includes_header: bool = False,
                 offset: int = 0, max_size: int = ...) -> None: ...

class Netstring(Framer):
    def __init__(self, max_size: int = ...) -> None: ...

class RespRequests(Framer):
    def __init__(self, max_size: int = ..., max_items: int = ...) -> None: ...
    def encode(self, payload: Iterable[_Bytes]) -> bytes: ...  # type: ignore[override]

class Lines(Framer):
    def __init__(self, delimiter: bytes = b"\n", max_size: int = ...) -> None: ...

class RespSimple(str): ...
class RespError(str): ...

def encode_resp(value: Any) -> bytes: ...
