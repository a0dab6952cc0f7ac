# Sourced by scripts: makes .venv (Python venv with the newest `openai` and pytest from PyPI) and sets $PYTHON.
# The venv is rebuilt when tests/e2e/requirements.txt changes; `pip install --upgrade` keeps openai the newest.

venv_dir="${KEYSMITH_VENV:-$PWD/.venv}"
stamp="$venv_dir/.requirements.sha256"
wanted=$(sha256sum tests/e2e/requirements.txt | cut -d' ' -f1)
if [ ! -x "$venv_dir/bin/python" ]; then
    echo "==> creating Python venv in $venv_dir"
    if ! python3 -m venv --help >/dev/null 2>&1; then
        # Debian's own python3 keeps venv in a separate package.
        source scripts/lib/debian.sh
        ensure_debian_package python3-venv
    fi
    python3 -m venv "$venv_dir"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ] || [ -z "${KEYSMITH_SKIP_PIP_UPGRADE:-}" ]; then
    echo "==> installing the newest openai SDK and pytest from PyPI"
    "$venv_dir/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade -r tests/e2e/requirements.txt
    echo "$wanted" > "$stamp"
fi
PYTHON="$venv_dir/bin/python"
echo "==> $("$PYTHON" -c 'import openai, sys; print("openai", openai.__version__, "on Python", sys.version.split()[0])')"
