# C helpers of the framer kernel (_frame_py.py compiled as _frame_c): the
# Python stand-ins are in _frame_py.py under ``if not cython.compiled``.
# Inline only: no extension module is built from this file.  Each one
# checks that it got an exact bytes object and clamps its range to the
# object's length, so no value can make it read outside the object (the
# callers' ranges are exact; a clamped range gives a wrong answer, never a
# wild read).

from cpython.bytes cimport (
    PyBytes_AS_STRING,
    PyBytes_CheckExact,
    PyBytes_FromStringAndSize,
    PyBytes_GET_SIZE,
)
from cpython.list cimport PyList_CheckExact
from cpython.object cimport PyObject
from cpython.sequence cimport PySequence_Fast_GET_SIZE, PySequence_Fast_ITEMS
from cpython.tuple cimport PyTuple_CheckExact
from libc.string cimport memcpy

cdef extern from "Python.h":
    const Py_ssize_t PY_SSIZE_T_MAX


cdef inline bint _in_bytes(object data, Py_ssize_t start, Py_ssize_t stop) noexcept:
    return (PyBytes_CheckExact(data) and 0 <= start <= stop
            and stop <= PyBytes_GET_SIZE(data))


cdef inline unsigned long long uint_at(object data, Py_ssize_t pos, Py_ssize_t size,
                                       bint big) noexcept:
    """The unsigned integer of ``data[pos:pos + size]`` (0 out of range)."""
    cdef const unsigned char *p
    cdef unsigned long long value = 0
    cdef Py_ssize_t i
    if not _in_bytes(data, pos, pos + size) or size > 8:
        return 0
    p = <const unsigned char *>PyBytes_AS_STRING(data) + pos
    if big:
        for i in range(size):
            value = (value << 8) | p[i]
    else:
        for i in range(size - 1, -1, -1):
            value = (value << 8) | p[i]
    return value


cdef inline Py_ssize_t digits_at(object data, Py_ssize_t start, Py_ssize_t stop) noexcept:
    """``data[start:stop]`` as a decimal count: -1 unless 1..18 ASCII digits."""
    cdef const unsigned char *p
    cdef Py_ssize_t value = 0
    cdef Py_ssize_t i
    if not _in_bytes(data, start, stop) or not 0 < stop - start <= 18:
        return -1
    p = <const unsigned char *>PyBytes_AS_STRING(data)
    for i in range(start, stop):
        if not 48 <= p[i] <= 57:
            return -1
        value = value * 10 + (p[i] - 48)
    return value


cdef inline int byte_at(object data, Py_ssize_t pos) noexcept:
    """``data[pos]``; -1 out of range."""
    if not _in_bytes(data, pos, pos + 1):
        return -1
    return (<const unsigned char *>PyBytes_AS_STRING(data))[pos]


cdef inline Py_ssize_t digits_crlf(object data, Py_ssize_t start, Py_ssize_t end) noexcept:
    """Where the CRLF after ``data[start:]``'s 1..18 ASCII digits is, when
    both lie before ``end`` (the well-formed RESP count); -1 otherwise."""
    cdef const unsigned char *p
    cdef Py_ssize_t i, stop
    if not _in_bytes(data, start, end):
        return -1
    p = <const unsigned char *>PyBytes_AS_STRING(data)
    stop = end if end - start <= 18 else start + 18
    i = start
    while i < stop and 48 <= p[i] <= 57:
        i += 1
    if i == start or i + 1 >= end or p[i] != 13 or p[i + 1] != 10:
        return -1
    return i


cdef inline Py_ssize_t _frame_bytes(PyObject *item, Py_ssize_t size, Py_ssize_t limit) noexcept:
    """The bytes ``item`` takes as one frame with a ``size``-byte length
    header; -1 unless it is an exact bytes of at most ``limit`` bytes whose
    length the header can hold."""
    cdef Py_ssize_t n
    if not PyBytes_CheckExact(<object>item):
        return -1
    n = PyBytes_GET_SIZE(<object>item)
    if n > limit or (size < 8 and <unsigned long long>n >> (8 * size)):
        return -1
    return n + size


cdef inline object join_length(object payloads, Py_ssize_t size, bint big, Py_ssize_t limit):
    """``payloads`` (a non-empty exact list or tuple) as frames of a ``size``-byte
    length header and the payload, joined; None when one payload is not
    an exact bytes that fits (see _frame_bytes) or the input is anything
    else.  No Python code runs between the two passes (exact types only,
    and a bytes allocation runs none), so the items measured are the items
    copied; the second pass checks them again all the same."""
    cdef PyObject **items
    cdef Py_ssize_t count, i, n, j, total = 0
    cdef unsigned long long length
    cdef unsigned char *out
    cdef unsigned char *end
    if not (PyList_CheckExact(payloads) or PyTuple_CheckExact(payloads)) or not 1 <= size <= 8:
        return None
    count = PySequence_Fast_GET_SIZE(payloads)
    if count == 0:
        return None
    items = PySequence_Fast_ITEMS(payloads)
    for i in range(count):
        n = _frame_bytes(items[i], size, limit)
        if n < 0 or n > PY_SSIZE_T_MAX - total:
            return None
        total += n
    joined = PyBytes_FromStringAndSize(NULL, total)
    out = <unsigned char *>PyBytes_AS_STRING(joined)
    end = out + total
    if PySequence_Fast_GET_SIZE(payloads) != count:
        return None
    items = PySequence_Fast_ITEMS(payloads)
    for i in range(count):
        n = _frame_bytes(items[i], size, limit)
        if n < 0 or n > end - out:
            return None
        length = <unsigned long long>(n - size)
        for j in range(size):
            if big:
                out[size - 1 - j] = <unsigned char>(length & 0xFF)
            else:
                out[j] = <unsigned char>(length & 0xFF)
            length >>= 8
        memcpy(out + size, PyBytes_AS_STRING(<object>items[i]), n - size)
        out += n
    if out != end:
        return None
    return joined
