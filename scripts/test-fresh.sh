#!/usr/bin/env bash
# make test-fresh: the README's first hour on a machine that has nothing.
#
# Builds a minimal Debian 12 root with debootstrap (cached as a tarball in
# .cache/test-fresh/ between runs; `rm -rf .cache` for a cold run), clones
# this repository's HEAD into it, and then, chrooted into it in a private
# mount namespace:
#
#  1. runs scripts/install-deps.sh with no Go installed (as `make demo` and
#     `make test` do first): it must install the Debian packages and then
#     stop with the "Go is not installed" message;
#  2. "installs Go" as that message says (here: /usr/local/go of this
#     machine, bind-mounted read-only) and fetches the modules with
#     `go mod download` from the module proxy — or, when the proxy cannot be
#     used from the root (no route, or HTTPS intercepted with a certificate
#     authority Debian does not ship), from this machine's module cache,
#     bind-mounted read-only and used as a file:// proxy (printed);
#  3. runs the README's two commands, `make demo` and `make test`, with
#     CI=true (lab tests fail instead of skipping) in private mount, network
#     and PID namespaces, offline (a module that step 2 did not fetch fails
#     the run).
#
# Any failing step fails the run. FRESH_STOP_AFTER=2 stops after step 2
# (to check the installation steps alone). The root's "/" is not a mount point, as in
# many chroots and containers (the lab must work there). Nothing outside the
# namespaces is changed; the work directory is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
suite=bookworm
cache=${FRESH_CACHE:-$repo/.cache/test-fresh}
tarball=$cache/debian-$suite-minbase.tar
work=$(mktemp -d /var/tmp/famguard-fresh.XXXXXX)
root=$work/root
t0=$(date +%s)
step() { printf '\n=== test-fresh [%4ds] %s\n' $(($(date +%s) - t0)) "$*"; }
cleanup() {
	# The mounts live in the private mount namespaces of the steps and went
	# with them; only files are left.
	rm -rf --one-file-system "$work"
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || { echo "test-fresh needs root (debootstrap, chroot, namespaces)" >&2; exit 1; }
[ -x /usr/local/go/bin/go ] || { echo "test-fresh bind-mounts this machine's Go from /usr/local/go, which is missing" >&2; exit 1; }

# --- the minimal root --------------------------------------------------------
mkdir -p "$cache" "$root"
if [ ! -s "$tarball" ]; then
	step "debootstrap --variant=minbase $suite (no cached root in $cache)"
	command -v debootstrap >/dev/null || {
		DEBIAN_FRONTEND=noninteractive apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends debootstrap >/dev/null
	}
	# The mirror apt is configured with (deb822 sources or sources.list).
	mirror=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
		awk '/^URIs:/ && !/security/ { print $2; exit } /^deb / && !/security/ { print $2; exit }' || true)
	mirror=${mirror:-http://deb.debian.org/debian}
	boot=$work/boot
	echo "mirror: $mirror"
	debootstrap --variant=minbase "$suite" "$boot" "$mirror" >"$work/debootstrap.log" 2>&1 || {
		tail -n 30 "$work/debootstrap.log" >&2
		exit 1
	}
	rm -rf "$boot"/var/cache/apt/archives/*.deb
	tar -C "$boot" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
	rm -rf --one-file-system "$boot"
fi
step "unpacking the root ($(du -h "$tarball" | cut -f1) tarball)"
tar -C "$root" -xf "$tarball"
cp /etc/resolv.conf "$root/etc/resolv.conf"
git clone -q --no-hardlinks "$repo" "$root/root/famguard"
echo "HEAD: $(git -C "$root/root/famguard" log --oneline -1)"

# in_root [unshare flags...] -- SCRIPT: SCRIPT as root@fresh in a private
# mount namespace (plus the given namespaces) with /proc, /sys and /dev.
in_root() {
	local flags=() privnet=0
	while [ "$1" != -- ]; do
		flags+=("$1")
		[ "$1" = --net ] && privnet=1
		shift
	done
	shift
	# shellcheck disable=SC2016 # the inner script expands its own arguments
	unshare --mount --propagation private "${flags[@]}" --fork bash -euo pipefail -c '
		root=$1 script=$2 modcache=$3 privnet=$4
		# A new network namespace starts with lo down; a machine or a
		# container has it up (the unit tests talk to 127.0.0.1). Only in
		# the private one: the host'"'"'s own network is never touched.
		if [ "$privnet" = 1 ]; then ip link set lo up; fi
		mount -t proc proc "$root/proc"
		mount -t sysfs sysfs "$root/sys"
		mount --rbind /dev "$root/dev"
		mount -t tmpfs tmpfs "$root/run"
		if [ -d "$root/usr/local/go" ]; then mount --bind -o ro /usr/local/go "$root/usr/local/go"; fi
		if [ -n "$modcache" ]; then mkdir -p "$root/var/cache/modcache"; mount --bind -o ro "$modcache" "$root/var/cache/modcache"; fi
		exec chroot "$root" env -i HOME=/root TERM=dumb LANG=C.UTF-8 CI=true \
			PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
			GOFLAGS="$GOFLAGS_FRESH" GOPROXY="$GOPROXY_FRESH" \
			bash -euo pipefail -c "cd /root/famguard; $script"' \
		sh "$root" "$1" "${MODCACHE:-}" "$privnet"
}
export GOFLAGS_FRESH="" GOPROXY_FRESH=""

# --- 1. install-deps without Go ------------------------------------------------
step "1. scripts/install-deps.sh on the fresh root, no Go yet (network: this machine's, for apt)"
set +e
in_root -- 'bash scripts/install-deps.sh' >"$work/deps.log" 2>&1
rc=$?
set -e
cat "$work/deps.log"
if [ $rc = 0 ] || ! grep -q 'Go is not installed' "$work/deps.log"; then
	echo "test-fresh: FAIL: install-deps.sh without Go should stop with \"Go is not installed\" (exit $rc)" >&2
	exit 1
fi

# --- 2. Go and the modules ---------------------------------------------------------
step "2. Go $(/usr/local/go/bin/go env GOVERSION) (this machine's /usr/local/go, read-only) and the modules"
mkdir -p "$root/usr/local/go"
in_root -- 'bash scripts/install-deps.sh && go version'
if in_root -- 'timeout 300 go mod download' >"$work/mod.log" 2>&1; then
	echo "modules: fetched from the module proxy ($(go env GOPROXY)) inside the fresh root"
	export GOPROXY_FRESH=off
else
	echo "modules: the module proxy cannot be used from the fresh root:"
	head -n 1 "$work/mod.log"
	echo "modules: using a READ-ONLY copy of this machine's module cache ($(go env GOMODCACHE)) as a file:// proxy"
	export MODCACHE
	MODCACHE=$(go env GOMODCACHE)
	# Go copies from it into the root's own module cache; only what this
	# machine's cache holds can be built.
	export GOPROXY_FRESH=file:///var/cache/modcache/cache/download
	in_root -- 'go mod download && go list -deps -test ./... >/dev/null'
fi
# The parents' page test drives Chromium with playwright-core from npm
# (scripts/pagetest): fetched here, like the modules, while there is a
# network; from this machine's npm cache (a copy) when the registry cannot
# be used from the root.
if [ -f "$root/root/famguard/scripts/pagetest/package-lock.json" ]; then
	if in_root -- 'cd scripts/pagetest && timeout 300 npm ci --no-audit --no-fund' >"$work/npm.log" 2>&1; then
		echo "npm: scripts/pagetest's packages fetched from the registry inside the fresh root"
	else
		echo "npm: the registry cannot be used from the fresh root:"
		grep -m1 -i 'err' "$work/npm.log" || tail -n 1 "$work/npm.log"
		[ -d "$HOME/.npm/_cacache" ] || { echo "test-fresh: and this machine has no npm cache ($HOME/.npm/_cacache) to copy" >&2; exit 1; }
		echo "npm: using a copy of this machine's npm cache ($HOME/.npm/_cacache), offline"
		mkdir -p "$root/root/.npm"
		cp -a "$HOME/.npm/_cacache" "$root/root/.npm/_cacache"
		in_root -- 'cd scripts/pagetest && npm ci --offline --no-audit --no-fund'
	fi
fi
if [ "${FRESH_STOP_AFTER:-}" = 2 ]; then
	step "FRESH_STOP_AFTER=2: stopping before the two commands"
	exit 0
fi

# --- 3. the README's two commands, offline -------------------------------------
step "3a. make demo (private mount, network and PID namespaces; offline)"
in_root --net --pid -- 'timeout 1800 make demo </dev/null'
step "3b. make test (private mount, network and PID namespaces; offline)"
in_root --net --pid -- 'make test </dev/null'
step "test-fresh: PASS — install-deps, make demo and make test on a fresh Debian $suite root"
