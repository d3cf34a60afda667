# Augmenting .pxd: types asynchat_core/_frame_py.py, which setup.py compiles
# in Cython's pure-Python mode as asynchat_core._frame_c (PURE_MODE there).
# Declarations only; the C helpers come from _framebits.pxd and _cbits.pxd
# (both clamp every offset to the bytes object they read).

import cython

from asynchat_core._cbits cimport (
    ac_call0,
    ac_call1,
    ac_callm1,
    ac_getattr,
    ac_getattr_or,
    ac_method_or,
    buffer_size,
    bytes_slice,
    find_bytes,
)
from asynchat_core._chat_c cimport InputState, OutputState
from asynchat_core._framebits cimport byte_at, digits_at, digits_crlf, join_length, uint_at

cdef object _Framer, _FrameError, _FrameTooLarge, _LengthPrefix
cdef Py_ssize_t _MAXSIZE
cdef object _chat_send, _chat_initiate
cdef Py_ssize_t _MAX_DIGITS, _SKIP
cdef int KIND_LENGTH, KIND_NETSTRING, KIND_RESP, KIND_LINES

cdef object _too_large(size, limit)
cdef object _bad(what)

@cython.locals(frame=Py_ssize_t)
cdef inline Py_ssize_t _hint(InputState inbuf, int kind) noexcept
cdef inline int _set_hint(InputState inbuf, int kind, Py_ssize_t hint) except -1

@cython.locals(head=Py_ssize_t, avail=Py_ssize_t, n=cython.ulonglong, body=Py_ssize_t)
cdef Py_ssize_t _parse_length(Py_ssize_t size, Py_ssize_t offset, bint big, bint includes, data,
                              Py_ssize_t pos, Py_ssize_t end, Py_ssize_t limit,
                              list sink) except? -1

@cython.locals(avail=Py_ssize_t, scan=Py_ssize_t, colon=Py_ssize_t, count=Py_ssize_t,
               total=Py_ssize_t)
cdef Py_ssize_t _parse_netstring(data, Py_ssize_t pos, Py_ssize_t end, Py_ssize_t limit,
                                 list sink) except? -1

@cython.locals(dlen=Py_ssize_t, start=Py_ssize_t, index=Py_ssize_t, scanned=Py_ssize_t)
cdef Py_ssize_t _parse_lines(delim, InputState inbuf, data, Py_ssize_t pos, Py_ssize_t end,
                             Py_ssize_t limit, list sink) except? -1

@cython.locals(count=Py_ssize_t)
cdef inline Py_ssize_t _resp_count(data, Py_ssize_t start, Py_ssize_t stop, what) except? -1

cdef Py_ssize_t _RESUME_ITEMS, _PARK_MIN

cdef int _park(chan, InputState inbuf, data, Py_ssize_t pos, Py_ssize_t end) except -1
@cython.locals(size=Py_ssize_t, parts=list)
cdef int _unpark(chan, InputState inbuf, bint force) except -1
cdef int _eof(chan, InputState inbuf) except -1

cdef Py_ssize_t _resp_wait(chan, InputState inbuf, Py_ssize_t pos, Py_ssize_t end,
                           Py_ssize_t head, Py_ssize_t total, Py_ssize_t at, Py_ssize_t count,
                           list items, Py_ssize_t need) except -2

@cython.locals(avail=Py_ssize_t, nl=Py_ssize_t, crlf=Py_ssize_t, count=Py_ssize_t,
               at=Py_ssize_t, size=Py_ssize_t, stop=Py_ssize_t, items=list, head=Py_ssize_t,
               total=Py_ssize_t, one_scan=bint)
cdef Py_ssize_t _parse_resp(Py_ssize_t max_items, chan, InputState inbuf, data, Py_ssize_t pos,
                            Py_ssize_t end, Py_ssize_t limit, list sink) except? -1

@cython.locals(need=Py_ssize_t, nxt=Py_ssize_t)
cdef Py_ssize_t _parse(int kind, Py_ssize_t size, Py_ssize_t offset, bint big, bint includes,
                       delim, chan, InputState inbuf, data, Py_ssize_t pos, Py_ssize_t end,
                       Py_ssize_t limit, list sink) except? -1

cdef object _current(chan, InputState inbuf, bint slot)
cdef Py_ssize_t _limit(chan, Py_ssize_t limit) except -1
cdef int _fail(chan, InputState inbuf) except -1
cdef bint _batch_ok(chan, OutputState out) except -1

@cython.locals(kind=int, limit=Py_ssize_t, pos=Py_ssize_t, end=Py_ssize_t, nxt=Py_ssize_t,
               alive=bint, batching=bint, batch=list, messages=list, size=Py_ssize_t,
               offset=Py_ssize_t, big=bint, includes=bint, switched=bint,
               done=Py_ssize_t, spec=tuple, many_unbound=int, one_unbound=int)
cpdef int frame_deliver(chan, InputState inbuf, OutputState out, bint slot, bint eof) except -1

cpdef object join_length_frames(payloads, Py_ssize_t size, bint big, Py_ssize_t limit)

cpdef object push_frames(chan, payloads, framer)
