#!/usr/bin/env bash
# Installs what the README's two commands (`make demo`, `make test`) need on
# a minimal Debian 12 (or later) system, from Debian's packages, only when
# something is missing; then checks Go, which Debian's packages are too old
# for (bookworm's golang-go is 1.19; go.mod asks for more). Needs root when
# something must be installed (the lab needs root anyway: it creates network
# namespaces). `make test-fresh` runs this on a freshly debootstrapped root,
# so a package missing here fails CI.
set -euo pipefail
cd "$(dirname "$0")/.."

# tool -> Debian package
declare -A need=(
  # building and testing: make, git (the version stamp), a C compiler and
  # libc headers (`go test -race` needs cgo), CA certificates (the Go module
  # proxy is reached over HTTPS).
  [make]=make
  [git]=git
  [gcc]=gcc
  [/usr/include/stdio.h]=libc6-dev
  [/etc/ssl/certs/ca-certificates.crt]=ca-certificates
  # the lab
  [iptables]=iptables
  [ip6tables]=iptables
  [iptables-restore]=iptables
  [conntrack]=conntrack
  [ipset]=ipset
  [ip]=iproute2
  [ss]=iproute2
  [sysctl]=procps
  [dnsmasq]=dnsmasq-base
  [dig]=dnsutils
  [iperf3]=iperf3
  [curl]=curl
  # `famguard pull` is tested with each fetcher it can use: curl, GNU
  # wget and busybox wget (scripts/e2e/pull_test.go).
  [wget]=wget
  [nft]=nftables
  [shellcheck]=shellcheck
  [busybox]=busybox
  [unshare]=util-linux
  [nsenter]=util-linux
  [flock]=util-linux
  [taskset]=util-linux
  [mount]=mount
  [ping]=iputils-ping
  [gzip]=gzip
  [tar]=tar
  # The router builds (mips, mipsle, armv7, arm64) run under qemu-user in
  # make test (scripts/cross, and one lab scenario in scripts/e2e).
  [qemu-mips-static]=qemu-user-static
  [qemu-mipsel-static]=qemu-user-static
  [qemu-arm-static]=qemu-user-static
  [qemu-aarch64-static]=qemu-user-static
  # The parents' page runs in a real browser (scripts/e2e/page_test.go):
  # Debian's Chromium, driven by playwright-core from npm (scripts/pagetest).
  [/usr/bin/chromium]=chromium
  [node]=nodejs
  [npm]=npm
  # Signed bundles: the interop test signs with OpenBSD's signify.
  [signify-openbsd]=signify-openbsd
)
missing=()
for tool in "${!need[@]}"; do
  case $tool in
  /*) [ -e "$tool" ] || missing+=("${need[$tool]}") ;;
  *) command -v "$tool" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null 2>&1 || missing+=("${need[$tool]}") ;;
  esac
done
# The schema test validates with an independent implementation: Debian's
# python3-jsonschema (and python3-yaml to read the profiles).
/usr/bin/python3 -c 'import jsonschema, yaml' >/dev/null 2>&1 || missing+=(python3-jsonschema python3-yaml)
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t pkgs < <(printf '%s\n' "${missing[@]}" | sort -u)
  if [ "$(id -u)" != 0 ]; then
    echo "famguard needs these Debian packages: ${pkgs[*]} — run as root: apt-get install ${pkgs[*]}" >&2
    exit 1
  fi
  echo "installing: ${pkgs[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi

# Go: at least the version go.mod names. Not installed from Debian (too old);
# the official tarball is one command.
want=$(awk '$1 == "go" { print $2; exit }' go.mod)
GO=${GO:-go}
arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
how="install Go $want or later from https://go.dev/dl/ (as root:
  curl -fsSL https://go.dev/dl/go$want.linux-$arch.tar.gz | tar -C /usr/local -xz
  export PATH=/usr/local/go/bin:\$PATH
) — Debian 12's golang-go package (1.19) is too old. Then run this again."
if ! command -v "$GO" >/dev/null 2>&1; then
  if [ -x /usr/local/go/bin/go ]; then
    echo "Go is installed in /usr/local/go but not on PATH: export PATH=/usr/local/go/bin:\$PATH" >&2
  else
    echo "Go is not installed: $how" >&2
  fi
  exit 1
fi
# GOTOOLCHAIN=local: the version of this go binary, not one it would fetch.
have=$(GOTOOLCHAIN=local "$GO" env GOVERSION 2>/dev/null || "$GO" version | awk '{print $3}')
have=${have#go}
have=${have%%[!0-9.]*}
if [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -n1)" != "$want" ]; then
  echo "Go $have is older than the $want that go.mod needs: $how" >&2
  exit 1
fi
