# scripts/deps.sh: sourced by scripts/run, scripts/test and scripts/bench.
# ensure_packages PKG...: installs the Debian packages that are missing (one apt run).
ensure_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing: ${missing[*]}" >&2
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -q >/dev/null || return 1
    $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null || return 1
}

BUILD_PACKAGES=(meson ninja-build pkg-config gcc libc6-dev libev-dev libc-ares-dev libinih-dev libwolfssl-dev)
TEST_PACKAGES=(libcmocka-dev clang libclang-rt-14-dev python3 python3-pytest python3-dnspython
    nsd knot knot-dnsutils bind9 bind9-dnsutils unbound dnsdist dnsmasq-base nftables iptables iproute2 openssl procps
    python3-prometheus-client systemd groff-base man-db)
