# Augmenting .pxd: types asynchat_core/_chat_py.py, which setup.py compiles
# in Cython's pure-Python mode as asynchat_core._chat_c (PURE_MODE there).
# Declarations only: every line of logic is in _chat_py.py; the C helpers
# come from _cbits.pxd, and their Python stand-ins are in _chat_py.py under
# ``if not cython.compiled``.
#
# Memory safety: every pointer is derived from a bytes object the caller
# holds, inside the _cbits helpers, which clamp every offset to that
# object's length; values Python code can set (pos, frame, terminators,
# _ac_in/_ac_out) are type-checked or clamped in _chat_py.py.

import cython

from asynchat_core._cbits cimport (
    NOT_A_SIZE,
    PY_SSIZE_T_MAX,
    PyThread_type_lock,
    ac_nest,
    ac_unnest,
    ac_acache_fill_count,
    ac_acache_state,
    ac_call0,
    ac_call1,
    ac_call_o,
    ac_getattr,
    ac_method,
    ac_record_bits,
    ac_record_set,
    ac_sock_send,
    ac_type_lookup,
    ac_type_record,
    ac_truth_init,
    buffer_size,
    bytes_slice,
    exact_count,
    find_bytes,
    is_method_of,
    lock_try,
    lock_wait,
    out_size,
    prefix_at_end_bytes,
)
from asynchat_core._cbits cimport PyThread_allocate_lock as lock_new
from asynchat_core._cbits cimport PyThread_free_lock as lock_free
from asynchat_core._cbits cimport PyThread_get_thread_ident as thread_ident
from asynchat_core._cbits cimport PyThread_release_lock as lock_release
from asynchat_core._loop_c cimport set_read_kernel, sock_recv, sock_send

cdef object _UNSET
cdef object _object_getattribute, _type_getattribute
cdef object _REQUEUED
cdef object _NO_OUTPUT
cdef object _terminator_slot
cdef object _MAXSIZE
cdef int _TERM_CALL, _TERM_ATTR, _TERM_SLOT
cdef object _loop_hook
cdef object _dispatcher_class
cdef object dispatcher_recv, dispatcher_send
cdef object _BYTES_LIKE
cdef object _deque, _deque_append
# per-type records (_cbits.pxd): async_chat.terminator, dispatcher.send,
# async_chat.socket
cdef ac_type_record _term_record, _send_record, _sock_record, _fifo_record


cdef class TerminatorSlot:
    pass


cdef class InputState:
    cdef public object data
    cdef public Py_ssize_t pos
    cdef public Py_ssize_t frame
    cdef public object terminator

    cpdef object value(self)
    cpdef assign(self, value)
    cpdef discard(self)


cdef class OutputState:
    cdef public object sock
    cdef public list pending  # None while nothing is held
    cdef readonly Py_ssize_t held
    cdef public bint batching
    cdef public int batch_ok
    cdef public object fifo  # async_chat.producer_fifo (FifoSlot)
    # the output lock (rule 4), C fields of the state; its C lock is made
    # by the first thread that has to wait (_chat_py.py, OutputState)
    cdef bint _parked
    cdef int _waiting
    cdef PyThread_type_lock _sem
    cdef unsigned long _owner
    cdef Py_ssize_t _depth

    @cython.locals(me=cython.ulong)
    cdef int _acquire(self) except -1
    cdef void _release(self) noexcept


cdef class SocketSlot:
    pass


cdef class FifoSlot:
    pass


cdef object _EMPTY_FIFO, _object_setattr, _c_socket_send, _socket_type, DISCONNECTED
cdef object _EWOULDBLOCK
cdef int _MSG_NOSIGNAL
cdef object _fifo(chan, OutputState out)
cdef object _made_fifo(OutputState out)
cdef object _queue_first(OutputState out, item)
@cython.locals(sent=Py_ssize_t)
cdef bint _push_now(chan, OutputState out, bytes data) except -1
cdef bint _plain_send(chan) except -1


# input side
cdef inline InputState _input_check(chan, state)
cdef object _input_type_error(chan, state)
cdef inline InputState _input(chan)

@cython.locals(size=Py_ssize_t)
cdef inline Py_ssize_t _prefix_at_end(data, Py_ssize_t pos, needle) except? -1
@cython.locals(index=Py_ssize_t)
cdef inline Py_ssize_t _find(data, Py_ssize_t pos, term) except? -2
cdef inline object _slice(data, Py_ssize_t start, Py_ssize_t stop)
cdef inline object _rest(data, Py_ssize_t pos)
cdef inline int _advance(InputState inbuf, object data, Py_ssize_t pos,
                         Py_ssize_t offset, Py_ssize_t slice_start) except -1
@cython.locals(slot=int, unbound=int)
cpdef int terminator_mode(chan) except -1
cdef bint _is_field(cls, str name, slot) except -1
@cython.locals(bit=int)
cdef int _field_bit(ac_type_record *record, cls, str name, slot) except -2
cdef object _feed(chan, InputState inbuf, data, int mode, OutputState out)
cdef Py_ssize_t _frame_limit(value) except -2

@cython.locals(frame=Py_ssize_t)
cdef inline Py_ssize_t _held(InputState inbuf) noexcept

@cython.locals(held=Py_ssize_t)
cdef inline int _add_frame(InputState inbuf, Py_ssize_t size) except -1

@cython.locals(held=Py_ssize_t)
cdef inline int _check_frame(InputState inbuf, Py_ssize_t size, Py_ssize_t limit) except -1

cdef inline int _set_term(chan, InputState inbuf, int mode, value) except -1
cdef inline object _term_now(chan, InputState inbuf, int mode)
cdef inline int _found(chan, InputState inbuf, OutputState out) except -1

@cython.locals(limit=Py_ssize_t, pos=Py_ssize_t, size=Py_ssize_t, count=Py_ssize_t,
               term_len=Py_ssize_t, index=Py_ssize_t, partial=Py_ssize_t)
cdef object _deliver(chan, InputState inbuf, int mode, OutputState out)

cdef int _deliver_odd_count(chan, InputState inbuf, int mode, OutputState out, data,
                            Py_ssize_t pos, Py_ssize_t size, term, Py_ssize_t limit) except -1

# output side
cdef OutputState _output(chan)
cdef OutputState _output_of(chan, out)
cdef inline OutputState _output_check(chan, out)
cdef inline int _uncount(chan, sent) except -1

@cython.locals(was_empty=bint)
cdef int _requeue(chan, rest) except -1

@cython.locals(own=int, plain=int)
cdef inline object _raw_send(chan, OutputState out, data)
@cython.locals(plain=int)
cdef inline int _socket_is_field(cls) except -1
@cython.locals(unbound=int)
cdef inline object _recv(chan, OutputState out)
cpdef chat_handle_read(self)
cdef object _chat_read_kernel(chan)
cpdef chat_readable(self)
cpdef chat_writable(self)
cdef object _chat_readable_kernel(chan)
cdef object _chat_writable_kernel(chan)
cdef int _send_own_of(cls) except -2
@cython.locals(unbound=int)
cdef bint _own_send(chan) except -1
@cython.locals(unbound=int)
cdef bint _own_initiate_send(chan) except -1

@cython.locals(held=Py_ssize_t, pieces=list)
cdef object _flush(chan, OutputState out, object data)

cdef inline int _hold(OutputState out, data) except -1
cdef int _chat_flush(chan, OutputState out) except -1
@cython.locals(unbound=int, own=bint)
cdef inline object _send_item(chan, OutputState out, fifo, data)
@cython.locals(obs=Py_ssize_t, at=Py_ssize_t)
cdef int _drain(chan, fifo, OutputState out) except -1

# the TLS layer (its kernels are at the end of _chat_py.py): per-type
# records (super()'s handle_read_event; the TLS socket's flags in its dict)
cdef ac_type_record _tls_read_record, _tls_sock_record
cdef extern from "Python.h":
    dict PyObject_GenericGetDict(object obj, void *context)
cdef inline int _tls_sock_plain(sock) except -1
cdef int _tls_sock_plain_of(cls) except -1
cdef inline object _sock_flag(dict own, sock, str name)
