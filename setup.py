"""Build script: compiles the Cython kernels in src/asynchat_core/.

Set ASYNCHAT_CORE_DEBUG_BUILD=1 for a sanitizer/trace build (-O1, ASan, UBSan,
CYTHON_TRACE) used by the hardening tests.
"""
import os
import sys

from setuptools import Extension, setup

KERNELS = ["_chat_c", "_loop_c"]


def _extensions():
    if sys.implementation.name != "cpython":
        return []  # pure-Python twin is selected automatically off CPython
    from Cython.Build import cythonize

    debug = os.environ.get("ASYNCHAT_CORE_DEBUG_BUILD", "") not in ("", "0")
    compile_args, link_args, macros = [], [], []
    directives = {"language_level": 3, "embedsignature": True}
    if debug:
        sanitize = "-fsanitize=address,undefined"
        compile_args = ["-O1", "-g", "-fno-omit-frame-pointer", sanitize]
        link_args = [sanitize]
        macros = [("CYTHON_TRACE_NOGIL", "1")]
        directives["linetrace"] = True
    exts = [
        Extension(
            "asynchat_core." + name,
            ["src/asynchat_core/%s.pyx" % name],
            extra_compile_args=compile_args,
            extra_link_args=link_args,
            define_macros=macros,
        )
        for name in KERNELS
    ]
    return cythonize(exts, include_path=["src"], compiler_directives=directives)


setup(ext_modules=_extensions())
