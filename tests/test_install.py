"""install()/uninstall() and kernel selection, each in a fresh interpreter."""
import os
import subprocess
import sys
import textwrap

import pytest

import impls

ENV_VAR = "ASYNCHAT_CORE_NO_EXTENSIONS"


def run_python(code, env_overrides=None, warn_args=()):
    env = dict(os.environ)
    env.pop(ENV_VAR, None)
    env.update(env_overrides or {})
    proc = subprocess.run(
        [sys.executable, *warn_args, "-c", textwrap.dedent(code)],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_install_makes_legacy_imports_return_ours():
    out = run_python("""
        import sys, asynchat_core
        names = asynchat_core.install()
        import asyncore, asynchat
        from asynchat_core import asyncore as a1, asynchat as a2
        assert asyncore is a1 and asynchat is a2, (asyncore, asynchat)
        assert asynchat.async_chat.__mro__[1] is asyncore.dispatcher
        # code written against the stdlib works unchanged
        from asynchat import async_chat, simple_producer, find_prefix_at_end
        from asyncore import dispatcher, loop, socket_map
        print(sorted(names))
    """)
    assert out == "['asynchat', 'asyncore']"


def test_install_is_idempotent():
    out = run_python("""
        import asynchat_core
        first = asynchat_core.install()
        second = asynchat_core.install()
        asynchat_core.uninstall()
        import sys
        print(sorted(first), sorted(second), 'asyncore' in sys.modules
              and sys.modules['asyncore'] is asynchat_core.asyncore)
    """)
    assert out == "['asynchat', 'asyncore'] ['asynchat', 'asyncore'] False"


def test_no_deprecation_warning_at_import():
    out = run_python(
        """
        import asynchat_core
        from asynchat_core import asyncore, asynchat
        asynchat_core.install()
        import asyncore, asynchat
        print(asynchat_core.IMPLEMENTATION)
        """,
        warn_args=("-W", "error::DeprecationWarning"),
    )
    assert out in ("cython", "python")


@pytest.mark.skipif(not impls.HAVE_REFERENCE, reason=impls.REFERENCE)
def test_uninstall_restores_the_reference_modules():
    # the stdlib's up to 3.11, the pyasyncore/pyasynchat backports on 3.12+
    out = run_python("""
        import sys, warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import asyncore as std_core, asynchat as std_chat
        import asynchat_core
        asynchat_core.install()
        import asyncore, asynchat
        assert asyncore is asynchat_core.asyncore
        assert asynchat is asynchat_core.asynchat
        asynchat_core.uninstall()
        import asyncore, asynchat
        assert asyncore is std_core and asynchat is std_chat
        print("restored", "asynchat_core" not in asyncore.__file__)
    """)
    assert out == "restored True"


def test_uninstall_without_previous_modules_removes_the_names():
    out = run_python("""
        import sys, asynchat_core
        sys.modules.pop("asyncore", None); sys.modules.pop("asynchat", None)
        asynchat_core.install()
        asynchat_core.uninstall()
        print("asyncore" in sys.modules, "asynchat" in sys.modules)
    """)
    assert out == "False False"


@pytest.mark.skipif(sys.version_info < (3, 12), reason="checks the 3.12+ import error")
def test_after_uninstall_import_is_not_ours_on_312_plus():
    # without a backport (pyasyncore) installed the import fails again
    out = run_python("""
        import asynchat_core
        asynchat_core.install()
        import asyncore
        asynchat_core.uninstall()
        try:
            import asyncore
        except ModuleNotFoundError:
            print("gone")
        else:
            print("backport" if asyncore is not asynchat_core.asyncore else "ours")
    """)
    assert out in ("gone", "backport")


def test_install_force_false_keeps_existing_modules():
    out = run_python("""
        import sys, types, asynchat_core
        fake = types.ModuleType("asyncore")
        sys.modules["asyncore"] = fake
        sys.modules.pop("asynchat", None)
        names = asynchat_core.install(force=False)
        import asyncore, asynchat
        print(asyncore is fake, asynchat is asynchat_core.asynchat, names)
        asynchat_core.uninstall()
        print(sys.modules["asyncore"] is fake, "asynchat" in sys.modules)
    """)
    assert out.splitlines() == ["True True ['asynchat']", "True False"]


def test_install_force_true_replaces_existing_modules():
    out = run_python("""
        import sys, types, asynchat_core
        fake = types.ModuleType("asyncore")
        sys.modules["asyncore"] = fake
        asynchat_core.install()
        import asyncore
        print(asyncore is asynchat_core.asyncore)
        asynchat_core.uninstall()
        print(sys.modules["asyncore"] is fake)
    """)
    assert out.splitlines() == ["True", "True"]


@pytest.mark.parametrize(
    "value,expected",
    [(None, "cython"), ("", "cython"), ("0", "cython"), ("1", "python"), ("yes", "python")],
)
def test_no_extensions_env_var(value, expected):
    env = {} if value is None else {ENV_VAR: value}
    out = run_python("""
        import asynchat_core
        from asynchat_core import asynchat, _impl
        kernels = _impl.chat_impl.__name__.rsplit(".", 1)[1]
        print(asynchat_core.IMPLEMENTATION, kernels)
    """, env)
    assert out == "%s %s" % (expected, "_chat_c" if expected == "cython" else "_chat_py")
