# Sourced by scripts/test and scripts/demo (bash): sets $py to a Python that pip
# may install into, on a bare Debian machine too.
#
# The active one ("python", else "python3"; apt-get installs python3 when
# neither exists and we are root). Where pip may not install into it
# (Debian's system Python is "externally managed", PEP 668), a .venv in the
# repository is created and used instead. apt_install is shared as well.

apt_updated=0
apt_install() {
    # Installs Debian packages when running as root; otherwise says what to install.
    if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "scripts/test: installing $* with apt-get" >&2
        export DEBIAN_FRONTEND=noninteractive
        if ((!apt_updated)); then
            apt-get update -q
            apt_updated=1
        fi
        apt-get install -y -q "$@"
    else
        echo "scripts/test: the test suite needs these Debian packages: $*" >&2
        echo "  install them, e.g.: sudo apt-get install -y $*" >&2
        exit 1
    fi
}

if command -v python >/dev/null 2>&1; then
    py=python
elif command -v python3 >/dev/null 2>&1; then
    py=python3
else
    apt_install python3 python3-venv
    py=python3
fi

externally_managed() {
    "$py" - <<'PY'
import os, sys, sysconfig
marker = os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")
sys.exit(0 if sys.prefix == sys.base_prefix and os.path.exists(marker) else 1)
PY
}

if externally_managed; then
    if [[ ! -x .venv/bin/python ]]; then
        "$py" -c 'import ensurepip, venv' 2>/dev/null || apt_install python3-venv
        "$py" -m venv .venv
    fi
    py=.venv/bin/python
fi

