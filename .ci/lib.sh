# Shared by .ci/run and .ci/wheels.sh (sourced, not run): how this project
# compiles for an interpreter and makes a venv of it, said once.

# Added to every compile, as CPPFLAGS (setuptools appends them to the
# interpreter's own flags; CFLAGS would replace its -O2/-O3 and -DNDEBUG):
# a deprecated C API, or one removed (an implicit declaration), is an error.
AC_CPPFLAGS="-Werror=deprecated-declarations -Werror=implicit-function-declaration"

# ac_debian_version PY: the X.Y of an interpreter that .ci/debian-python.sh
# unpacked (its tree's usr/bin/python3.X); false for any other interpreter.
ac_debian_version() {
    case "$1" in
        */debian-python3.*/usr/bin/python3.*) printf '%s\n' "${1##*/python}" ;;
        *) return 1 ;;
    esac
}

# ac_cppflags PY: the flags to compile for PY.  A Debian interpreter's
# pyconfig.h is in the multiarch folder of its tree
# (<tree>/usr/include/x86_64-linux-gnu/python3.X/), which Python.h reaches
# through <tree>/usr/include.
ac_cppflags() {
    if ac_debian_version "$1" > /dev/null; then
        printf '%s\n' "-I${1%/bin/*}/include $AC_CPPFLAGS"
    else
        printf '%s\n' "$AC_CPPFLAGS"
    fi
}

# ac_make_venv PY DIR: a fresh venv of PY.  Debian's ensurepip wants
# /usr/share/python-wheels, so .ci/debian-python.sh makes those venvs (pip
# from sid's own wheel).
ac_make_venv() {
    local ver
    if ver=$(ac_debian_version "$1"); then
        "$(dirname "${BASH_SOURCE[0]}")/debian-python.sh" "$ver" --venv "$2" > /dev/null
    else
        "$1" -m venv --clear "$2"
    fi
}

# ac_kernels DIR: the compiled modules of a source tree, one per augmenting
# .pxd (src/asynchat_core/_chat_c.pxd types _chat_py.py as _chat_c).
ac_kernels() {
    local pxd
    for pxd in "$1"/src/asynchat_core/_*_c.pxd; do
        [ -e "$pxd" ] && basename "$pxd" .pxd
    done
}
