# Sourced by scripts: `ensure_debian_package PACKAGE [COMMAND]` installs PACKAGE from Debian's packages unless
# COMMAND is already available (on the PATH or in /usr/sbin), or, without COMMAND, unless PACKAGE is installed.
# Package scripts are kept from starting services, so installing nginx starts no nginx on port 80.

ensure_debian_package() {
    local package=$1 command=${2:-}
    if [ -n "$command" ]; then
        if command -v "$command" >/dev/null 2>&1 || [ -x "/usr/sbin/$command" ]; then return 0; fi
    elif dpkg -s "$package" >/dev/null 2>&1; then
        return 0
    fi
    echo "==> installing $package from Debian's packages"
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    local policy=/usr/sbin/policy-rc.d created_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
        $sudo chmod +x "$policy"
        created_policy=1
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$package"
    [ -z "$created_policy" ] || $sudo rm -f "$policy"
}
