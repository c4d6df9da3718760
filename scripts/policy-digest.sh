#!/bin/sh
# policy-digest.sh PROFILES_DIR [OPERATOR_DIR]
#
# Computes the policy digest famguard reports (`famguard check --digest`,
# status, status.json) from the files alone, so an operator's server can
# predict the digest a router will show after a push, without famguard.
# The algorithm (agent/policy/policy.go, layer.go):
#   layer digest = first 12 hex digits of SHA-256 over one line per profile
#                  file (not hidden, *.yaml or *.yml, in byte order):
#                  NAME NUL SHA256-HEX-OF-CONTENT LF
#   policy digest = the parents' layer digest without an operator layer, else
#                  the first 12 hex digits of SHA-256 of
#                  "operator OPDIGEST\nparents PARENTSDIGEST\n"
# POSIX sh with sha256sum (coreutils or busybox).
set -eu
export LC_ALL=C

layer() (
	cd "$1"
	for f in *; do
		case "$f" in
		.*) continue ;;
		*.yaml | *.yml) ;;
		*) continue ;;
		esac
		[ -f "$f" ] || continue
		printf '%s\000%s\n' "$f" "$(sha256sum <"$f" | cut -d' ' -f1)"
	done | sha256sum | cut -c1-12
)

has_profiles() {
	[ -d "$1" ] || return 1
	for f in "$1"/*.yaml "$1"/*.yml; do
		[ -f "$f" ] && return 0
	done
	return 1
}

[ $# -ge 1 ] || {
	echo "usage: $0 PROFILES_DIR [OPERATOR_DIR]" >&2
	exit 2
}
parents=$(layer "$1")
if [ $# -ge 2 ] && has_profiles "$2"; then
	printf 'operator %s\nparents %s\n' "$(layer "$2")" "$parents" | sha256sum | cut -c1-12
else
	echo "$parents"
fi
