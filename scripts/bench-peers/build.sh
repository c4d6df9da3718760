#!/usr/bin/env bash
# Builds the DNS servers famguard is compared with in `make bench-peers`
# (scripts/bench-peers/README.md), at pinned versions, from the Go module
# proxy, into bin/peers/ (gitignored):
#   blocky          github.com/0xERR0R/blocky             v0.26.2
#   AdGuard Home    github.com/AdguardTeam/AdGuardHome    v0.107.63
# Each is built from a copy of its released module (from `go mod download`)
# under bin/peers/src, as its own main module, so the repository's go.mod
# never gains them. AdGuard Home's web client is
# not built: its module ships build/ with only a placeholder file, which is
# what `//go:embed build` needs (plain `go build` with an empty build/); the
# DNS server does not use the client. dnsmasq comes from Debian
# (scripts/install-deps.sh). A binary already built is kept.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(pwd)/bin/peers
mkdir -p "$out"

build() { # name module version
	local name=$1 mod=$2 ver=$3 dir src
	if [ -x "$out/$name-$ver" ]; then
		echo "bench-peers: $name $ver already built ($out/$name-$ver)"
		return
	fi
	echo "bench-peers: building $name $ver from $mod"
	# The checksum database has no entry for blocky v0.26.2 (its lookup
	# answers 404), so that module is not checked against it; the module
	# proxy's copy is what gets built (its own go.sum checks its
	# dependencies).
	dir=$(cd /tmp && env GOFLAGS= GONOSUMDB=github.com/0xERR0R go mod download -json "$mod@$ver" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	if [ -z "$dir" ]; then
		echo "bench-peers: the module proxy did not serve $mod@$ver" >&2
		return 1
	fi
	# A writable copy: the module's own go.mod and go.sum are the main
	# module there, exactly as released.
	src="$out/src/$name-$ver"
	rm -rf "$src"
	mkdir -p "$out/src"
	cp -r "$dir" "$src"
	chmod -R u+w "$src"
	mkdir -p "$src/build"
	(cd "$src" && env GOFLAGS=-mod=mod GONOSUMDB=github.com/0xERR0R CGO_ENABLED=0 \
		go build -trimpath -ldflags '-s -w' -o "$out/$name-$ver" .)
}

build blocky github.com/0xERR0R/blocky v0.26.2
build adguardhome github.com/AdguardTeam/AdGuardHome v0.107.63
ls -l "$out"
