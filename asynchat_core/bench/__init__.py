"""Benchmarks of asynchat_core against the stdlib, asyncio, uvloop and C servers.

Run ``python -m asynchat_core.bench`` (``--help`` for options).  Every server
is written once against a pair of modules ``(asyncore, asynchat)`` and run,
each in its own process, on asynchat_core's compiled build, on its Python
build and on the stdlib modules (CPython 3.11, or the ``pyasyncore``/``pyasynchat``
copies on 3.12+).
"""
