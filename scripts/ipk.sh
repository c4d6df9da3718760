#!/usr/bin/env bash
# Builds installable OpenWrt .ipk packages of famguard from the router builds
# that `make cross` leaves in dist/, without the OpenWrt SDK: bash, tar, gzip.
#
#   scripts/ipk.sh [--dist DIR] [--out DIR]
#   scripts/ipk.sh maintainer-scripts DIR [PACKAGE]  # write its postinst/prerm/postrm to DIR (lint)
#
# Two packages: famguard (the agent, one .ipk per OpenWrt architecture) and
# famguard-www (the parents' page, rpcd plugin and ACL, LuCI menu entry:
# one famguard-www_<version>_all.ipk).
#
# One source of truth with the feed packages: each package's metadata
# (version, Depends, description, conffiles, maintainer scripts) is read from
# openwrt/famguard/Makefile and its files from openwrt/famguard/files.list
# (famguard) and files-www.list (famguard-www).
#
# The format is OpenWrt's (what its ipkg-build writes): a gzip'd tar holding
# ./debian-binary ("2.0"), ./data.tar.gz and ./control.tar.gz, every entry
# owned by root:root, dated SOURCE_DATE_EPOCH (reproducible).
#
# opkg installs a package only when its Architecture is in the device's list
# (`opkg print-architecture`), so each Go build is packaged once per OpenWrt
# architecture name it runs on. Override a build's names with
# IPK_ARCHS_<goarch>, e.g. IPK_ARCHS_arm64="aarch64_cortex-a53", or an empty
# value to skip that build.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
pkgdir=$root/openwrt/famguard
mk=$pkgdir/Makefile
manifest=$pkgdir/files.list
manifest_www=$pkgdir/files-www.list

# Go build → OpenWrt architecture names (the common targets).
#  mips, mipsle: GOMIPS=softfloat, MIPS32 release 1: runs on every MIPS32 core.
#  arm: GOARM=7 needs VFPv3; Go refuses to start on a core without it.
declare -A default_archs=(
	[mips]="mips_24kc mips_4kec mips_mips32"
	[mipsle]="mipsel_24kc mipsel_74kc mipsel_mips32"
	[arm]="arm_cortex-a7_neon-vfpv4 arm_cortex-a9 arm_cortex-a9_vfpv3-d16 arm_cortex-a9_neon arm_cortex-a15_neon-vfpv4"
	[arm64]="aarch64_cortex-a53 aarch64_cortex-a72 aarch64_cortex-a76 aarch64_generic"
	[amd64]="x86_64"
)

# mkvar NAME: a NAME:=value line of the Makefile.
mkvar() { sed -n "s/^$1:=//p" "$mk" | head -n1; }
# block NAME: the lines between "define NAME" and "endef".
block() { awk -v start="define $1" '$0 == start { on = 1; next } on && $0 == "endef" { exit } on { print }' "$mk"; }
# A maintainer script of package $1 as make hands it to OpenWrt's packager ($$ → $).
script_block() { block "Package/$1/$2" | sed 's/\$\$/$/g'; }
# Depends of package $1: the +packages of DEPENDS ($(GO_ARCH_DEPENDS) and
# @conditions are build-time only), comma-separated as opkg wants them.
depends() {
	block "Package/$1" | sed -n 's/^[[:space:]]*DEPENDS:=//p' | tr -s ' \t' '\n' |
		sed -n 's/^+\([^:]*:\)\{0,1\}//p' | paste -sd, - | sed 's/,/, /g'
}
# pkgfield PACKAGE FIELD: a FIELD:=value line of Package/PACKAGE.
pkgfield() { block "Package/$1" | sed -n "s/^[[:space:]]*$2:=//p"; }

# write_scripts DIR PACKAGE: its maintainer scripts. famguard has all three;
# famguard-www only those it defines.
write_scripts() {
	local dir=$1 pkg=$2 s
	for s in postinst prerm postrm; do
		script_block "$pkg" "$s" >"$dir/$s"
		if [ ! -s "$dir/$s" ]; then
			rm -f "$dir/$s"
			[ "$pkg" != famguard ] && continue
			echo "ipk.sh: no Package/$pkg/$s block in $mk" >&2
			exit 1
		fi
		chmod 0755 "$dir/$s"
	done
}

if [ "${1:-}" = maintainer-scripts ]; then
	[ $# -eq 2 ] || [ $# -eq 3 ] || { echo "usage: $0 maintainer-scripts DIR [PACKAGE]" >&2; exit 2; }
	mkdir -p "$2"
	write_scripts "$2" "${3:-famguard}"
	exit 0
fi

dist=$root/dist
out=
while [ $# -gt 0 ]; do
	case $1 in
	--dist) dist=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	*) echo "usage: $0 [--dist DIR] [--out DIR] | maintainer-scripts DIR" >&2; exit 2 ;;
	esac
done
out=${out:-$dist}
mkdir -p "$out"

name=$(mkvar PKG_NAME)
version="$(mkvar PKG_VERSION)-$(mkvar PKG_RELEASE)"
maintainer=$(mkvar PKG_MAINTAINER)
deps=$(depends famguard)
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)}
if [ -z "$name" ] || [ -z "$deps" ] || [ -z "$maintainer" ]; then
	echo "ipk.sh: cannot read the package metadata from $mk" >&2
	exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# reproducible_tar DIR OUT.tar.gz [ENTRY...]: entries (default: all of DIR) as root:root.
reproducible_tar() {
	local dir=$1 dest=$2
	shift 2
	[ $# -gt 0 ] || set -- .
	tar -C "$dir" --format=gnu --sort=name --owner=0 --group=0 --numeric-owner \
		--mtime="@$epoch" -cf - "$@" | gzip -9n >"$dest"
}

# stage_files LIST DIR: install the files of a list under DIR.
stage_files() {
	local mode src dst
	mkdir -p "$2"
	while read -r mode src dst; do
		case $mode in '' | '#'*) continue ;; esac
		if [ "$src" = - ]; then
			install -d -m "$mode" "$2$dst"
		else
			install -d -m 0755 "$2$(dirname "$dst")"
			install -m "$mode" "$root/$src" "$2$dst"
		fi
	done <"$1"
}

# pack PACKAGE ARCH WORK LABEL: WORK/data (the files) → $out/PACKAGE_VERSION_ARCH.ipk.
pack() {
	local pkg=$1 arch=$2 work=$3 size ipk
	mkdir -p "$work/control"
	find "$work/data" -type d -exec chmod 0755 {} +
	size=$(find "$work/data" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
	{
		echo "Package: $pkg"
		echo "Version: $version"
		echo "Depends: $(depends "$pkg")"
		echo "Section: $(pkgfield "$pkg" SECTION)"
		echo "Architecture: $arch"
		echo "Installed-Size: $size"
		echo "Maintainer: $maintainer"
		echo "Description: $(pkgfield "$pkg" TITLE)"
		block "Package/$pkg/description"
	} >"$work/control/control"
	chmod 0644 "$work/control/control"
	block "Package/$pkg/conffiles" >"$work/control/conffiles"
	if [ -s "$work/control/conffiles" ]; then
		chmod 0644 "$work/control/conffiles"
	else
		rm -f "$work/control/conffiles"
	fi
	write_scripts "$work/control" "$pkg"
	printf '2.0\n' >"$work/debian-binary"
	reproducible_tar "$work/data" "$work/data.tar.gz"
	reproducible_tar "$work/control" "$work/control.tar.gz"
	ipk=$out/${pkg}_${version}_${arch}.ipk
	reproducible_tar "$work" "$ipk" ./debian-binary ./data.tar.gz ./control.tar.gz
	printf '%10d  %s  (%s)\n' "$(stat -c %s "$ipk")" "$ipk" "$4"
}

# The data tree, without the binary: the same for every architecture.
stage=$tmp/stage
stage_files "$manifest" "$stage"

built=0
for bin in "$dist"/famguard-linux-*; do
	[ -f "$bin" ] || continue
	goarch=${bin##*/famguard-linux-}
	var=IPK_ARCHS_$goarch
	if [ -n "${!var+set}" ]; then archs=${!var}; else archs=${default_archs[$goarch]:-}; fi
	if [ -z "$archs" ]; then
		echo "ipk.sh: $bin: no OpenWrt architecture for $goarch (set $var); skipped" >&2
		continue
	fi
	for arch in $archs; do
		work=$tmp/$arch
		rm -rf "$work"
		mkdir -p "$work"
		cp -a "$stage" "$work/data"
		install -d -m 0755 "$work/data/usr/sbin"
		install -m 0755 "$bin" "$work/data/usr/sbin/famguard"
		pack "$name" "$arch" "$work" "$goarch"
		built=$((built + 1))
	done
done
if [ "$built" -eq 0 ]; then
	echo "ipk.sh: no router builds in $dist (run make cross)" >&2
	exit 1
fi

# famguard-www: no binary, one package for every architecture.
stage_files "$manifest_www" "$tmp/www/data"
pack famguard-www "$(pkgfield famguard-www PKGARCH)" "$tmp/www" web
