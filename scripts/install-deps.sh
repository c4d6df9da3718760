#!/usr/bin/env bash
# Installs the system tools famguard's lab, tests and benchmarks use, from
# Debian's packages, only when something is missing. Needs root (the lab needs
# root anyway: it creates network namespaces).
set -euo pipefail

# tool -> Debian package
declare -A need=(
  [iptables]=iptables
  [ip6tables]=iptables
  [iptables-restore]=iptables
  [conntrack]=conntrack
  [ipset]=ipset
  [ip]=iproute2
  [dnsmasq]=dnsmasq-base
  [dig]=dnsutils
  [iperf3]=iperf3
  [curl]=curl
  [nft]=nftables
  [shellcheck]=shellcheck
  [busybox]=busybox
  [unshare]=util-linux
  [ping]=iputils-ping
  # The router builds (mips, mipsle, armv7, arm64) run under qemu-user in
  # make test (scripts/cross, and one lab scenario in scripts/e2e).
  [qemu-mips-static]=qemu-user-static
  [qemu-mipsel-static]=qemu-user-static
  [qemu-arm-static]=qemu-user-static
  [qemu-aarch64-static]=qemu-user-static
  # Signed bundles: the interop test signs with OpenBSD's signify.
  [signify-openbsd]=signify-openbsd
)
missing=()
for tool in "${!need[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null 2>&1 || missing+=("${need[$tool]}")
done
# The schema test validates with an independent implementation: Debian's
# python3-jsonschema (and python3-yaml to read the profiles).
/usr/bin/python3 -c 'import jsonschema, yaml' >/dev/null 2>&1 || missing+=(python3-jsonschema python3-yaml)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
mapfile -t pkgs < <(printf '%s\n' "${missing[@]}" | sort -u)
if [ "$(id -u)" != 0 ]; then
  echo "famguard needs these Debian packages: ${pkgs[*]} — run as root: apt-get install ${pkgs[*]}" >&2
  exit 1
fi
echo "installing: ${pkgs[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
