# famguard — see README.md. The two commands a new machine needs:
#   make demo   watch the agent protect simulated devices in a network-namespace lab
#   make test   unit tests and the lab end-to-end tests
# make test-fresh runs both on a fresh Debian root (what CI runs).

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
BUILD    := CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)"
# Packages with goroutines: always tested under the race detector.
RACE_PKGS := ./agent/... ./rules/...
FUZZTIME ?= 20s
# Shell scripts the OpenWrt package ships (its maintainer scripts live in
# openwrt/famguard/Makefile; lint extracts them).
OPENWRT_SCRIPTS := $(addprefix openwrt/famguard/files/,famguard.init famguard.uci-defaults firewall.include ntp.hotplug famguard-parent-login rpcd-plugin)

.PHONY: redteam all build deps demo test unit e2e bench bench-smoke bench-peers bench-table lint fuzz clean lab-clean cross cross-build size-check cross-test ipk reliability reliability-faults reliability-load test-fresh readme-sizes

all: build

build:
	$(BUILD) -o bin/famguard ./agent/cmd/famguard
	$(BUILD) -o bin/famguard-bundle ./agent/cmd/famguard-bundle
	$(BUILD) -o bin/labhost ./scripts/labhost
	$(BUILD) -o bin/famguard-demo ./scripts/demo
	$(BUILD) -o bin/ubusemu ./scripts/ubusemu
	$(BUILD) -o bin/dns-bench ./scripts/dns-bench

deps:
	@bash scripts/install-deps.sh

demo: deps build
	bin/famguard-demo --agent bin/famguard --labhost bin/labhost

test: deps build lint unit e2e cross-test size-check

unit:
	$(GO) test -race -count=1 $(RACE_PKGS)
	$(GO) test -count=1 ./openwrt/...

# End-to-end tests on the real kernel, in network namespaces they create.
# scripts/cross and the qemu lab scenario are cross-test's (run after, not
# beside, the latency-sensitive lab tests: qemu is CPU-bound).
e2e: build cross-build
	FAMGUARD_VERSION=$(VERSION) $(GO) test -count=1 -timeout 15m -skip 'Qemu' $$($(GO) list ./scripts/... | grep -v '/scripts/cross$$')

# The router builds under qemu-user (qemu-user-static): check, plan and
# version give the host build's output byte for byte, and the mipsle build
# runs as the agent in one lab scenario. Builds come from the go build cache
# that cross-build has just filled; the size budget is not checked here.
cross-test: build cross-build
	FAMGUARD_VERSION=$(VERSION) $(GO) test -count=1 -timeout 10m ./scripts/cross
	FAMGUARD_VERSION=$(VERSION) $(GO) test -count=1 -timeout 5m -run 'Qemu' ./scripts/e2e

# The README's first hour on a fresh minimal Debian 12 root (debootstrap,
# cached in .cache/test-fresh/): install-deps without Go, then make demo and
# make test offline in private mount, network and PID namespaces
# (scripts/test-fresh.sh). What .ci/run runs. Tests HEAD (a clean clone):
# commit first.
test-fresh:
	bash scripts/test-fresh.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@if command -v shellcheck >/dev/null; then \
		shellcheck scripts/*.sh scripts/reliability/*.sh scripts/bench-peers/*.sh .ci/run $(OPENWRT_SCRIPTS) && \
		tmp=$$(mktemp -d) && bash scripts/ipk.sh maintainer-scripts $$tmp/famguard && bash scripts/ipk.sh maintainer-scripts $$tmp/www famguard-www && shellcheck $$tmp/*/*; rc=$$?; rm -rf "$$tmp"; exit $$rc; \
	else echo "shellcheck not installed; skipped"; fi

# Fault injection in the lab (also part of `make test`, with 30 kills):
# kill -9 during applies, iptables-restore failing and hanging, the xtables
# lock held 10 s, a read-only state directory and a full state file system,
# the profile directory deleted and recreated, the clock stepped by hours.
# Results: scripts/reliability/faults-results.md.
FAULT_KILLS ?= 150
reliability-faults: build
	FAMGUARD_FAULT_KILLS=$(FAULT_KILLS) $(GO) test -count=1 -timeout 20m -v -run '^TestFault' ./scripts/e2e/
	$(GO) test -race -count=1 -v -run 'Resubscribes|BacksOff|FailedSave|HungRestore|ClockStep|WallClockStep' ./agent/netwatch/ ./agent/daemon/ ./rules/

# The full load and soak (make test runs short versions): a DNS flood of
# 30,000 queries/s for 10 s per phase beside three ordinary devices, and
# 10,000 profile reloads with RSS, goroutines and open files sampled (about
# 20 minutes). Results: scripts/reliability/load-results.md.
reliability-load: build
	FAMGUARD_LOAD_FULL=1 $(GO) test -count=1 -timeout 60m -v -run 'TestDNSFloodFairness|TestReloadSoak' ./scripts/e2e/

# Benchmarks (scripts/bench.sh; what each measures: scripts/dns-bench/README.md).
# bench: the figures of scripts/bench.md, about 15 minutes. bench-smoke: every benchmark
# for a few seconds, failing on absurd figures (zero throughput, under 1000
# queries/s, over 1 % errors, a server or peer that did not start) — sanity
# bounds, not performance assertions; CI runs it. bench-peers: famguard,
# dnsmasq, blocky and AdGuard Home (built at pinned versions into bin/peers
# by scripts/bench-peers/build.sh) at 100 k, 500 k and 1.42 M domains.
bench: deps build
	bash scripts/bench.sh full

bench-smoke: deps build
	bash scripts/bench.sh smoke

bench-peers: deps build
	bash scripts/bench.sh peers

# The performance tables of scripts/bench.md (the README links it), from the last outputs of
# make bench and make bench-peers (dist/bench-full.txt, dist/bench-peers.txt).
bench-table:
	$(GO) run ./scripts/bench-table

# Every fuzz target of the module, as package:Function (scripts/fuzzseed's
# test fails if one is missing). `make fuzz` runs each for FUZZTIME, one
# after the other; FUZZTIME=10m make fuzz is the long run. Seeds:
# testdata/fuzz/<Function>/. scripts/fuzz.sh: why a bare "context deadline
# exceeded" at the deadline is only a warning with Go 1.26.
FUZZ_TARGETS := \
	./agent/policy:FuzzParseFile \
	./agent/policy:FuzzLoadDir \
	./agent/inventory:FuzzParseLeases \
	./agent/netwatch:FuzzParseUCINetwork \
	./agent/schedule:FuzzParseDaysAndClock \
	./agent/categories:FuzzParseLine \
	./agent/bundle:FuzzImport \
	./agent/bundle:FuzzSignedManifest \
	./agent/tr181:FuzzTR181Import \
	./agent/dnsfilter:FuzzAnswer \
	./agent/dnsfilter:FuzzWalkAnswers \
	./agent/dnsfilter:FuzzForwardedAnswer \
	./agent/control:FuzzControlRequest \
	./agent/overrides:FuzzParseUntil \
	./agent/cmd/famguard:FuzzParseAt \
	./rules:FuzzTokenize \
	./rules:FuzzRender \
	./rules:FuzzSnapshot \
	./rules:FuzzFakeRestore
FUZZPARALLEL ?= 1

fuzz:
	@GO=$(GO) bash scripts/fuzz.sh $(FUZZTIME) $(FUZZPARALLEL) $(FUZZ_TARGETS)

# The README's Reliability table, measured anew: the whole suite verbosely
# (faults, bad pushes, load, attack surface), then every fuzz target for
# FUZZTIME (FUZZTIME=10m for the published figures). Output: dist/reliability.md.
reliability: deps build
	FUZZTIME=$(FUZZTIME) bash scripts/reliability/run.sh

# Static router builds (CGO off, trimmed, stripped, version stamped) and a
# size report. The router budget is 6 MiB per build (goal 5 MiB): `make
# cross` fails when a router build exceeds SIZE_BUDGET bytes (`make cross
# SIZE_BUDGET=` reports without checking). cross-build and size-check also
# run on their own. Keep CROSS in step with scripts/cross (Routers).
# Packages off the packet and DNS paths (profile parsing, bundles, TR-181,
# overrides, the command line, JSON, tables) are built without inlining in
# the router builds: 131 KB less on mips (6,357,185 → 6,226,113 bytes when
# measured), where the budget binds; the hot packages (dnsfilter,
# categories, rules, daemon, net, netlink, the runtime) keep it. Bundle
# verification (gzip, ed25519) runs once per import: cold too (mips
# 6,291,649 → 6,226,113 bytes after the merge that added strict egress).
# The mips file grows in 64 KiB steps (its segments are 64 KiB aligned):
# after the inbound guard, batched DNS I/O and group-committed strict adds
# it was 6,357,185 bytes; logging, flags, exec, the control socket, zones,
# saved state, schedules, the iptables wrapper, netlink (neighbours and
# conntrack, read a few times a second at most), digests and accounting
# went cold too: 6,226,113 again (rodata 4.9 KB below its next step, text
# 21 KB). `readelf -lW dist/famguard-linux-mips` shows the margins.
COLD_PKGS := gopkg.in/yaml.v3 encoding/json regexp regexp/syntax archive/tar text/tabwriter \
	compress/flate compress/gzip log/syslog crypto/ed25519 crypto/internal/fips140/ed25519 \
	crypto/internal/fips140/edwards25519 crypto/internal/fips140/edwards25519/field \
	log/slog log/slog/internal/buffer flag os/exec math/big encoding/hex \
	crypto/sha256 crypto/internal/fips140/sha256 \
	github.com/coreos/go-iptables/iptables github.com/vishvananda/netlink \
	github.com/vishvananda/netlink/nl github.com/vishvananda/netns \
	$(addprefix github.com/famguard/famguard/agent/,policy bundle tr181 cmd/famguard overrides opstatus inventory fetch \
		control tz tz/internal/tzif savedstate schedule cliflags overrides/ctacct netwatch clock)
ROUTER_GCFLAGS := $(foreach p,$(COLD_PKGS),-gcflags=$(p)=-l)
CROSS := mips:GOMIPS=softfloat mipsle:GOMIPS=softfloat arm:GOARM=7 arm64: amd64:
ROUTER_ARCHES := mips mipsle arm arm64
SIZE_BUDGET ?= 6291456

cross: cross-build size-check

cross-build:
	@mkdir -p dist
	@for t in $(CROSS); do \
		arch=$${t%%:*}; extra=$${t#*:}; \
		env CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $$extra $(GO) build -trimpath -ldflags "$(LDFLAGS)" $(ROUTER_GCFLAGS) -o dist/famguard-linux-$$arch ./agent/cmd/famguard || exit 1; \
	done

size-check:
	@echo "size (bytes)  MiB   build"; for f in dist/famguard-linux-*; do [ -f "$$f" ] || continue; \
		awk -v s=$$(stat -c %s $$f) -v f=$$f 'BEGIN { printf "%12d  %4.1f  %s\n", s, s/1048576, f }'; done
	@if [ -z "$(SIZE_BUDGET)" ]; then echo "SIZE_BUDGET is empty: router build sizes not checked"; exit 0; fi; \
	fail=0; for a in $(ROUTER_ARCHES); do f=dist/famguard-linux-$$a; \
		if [ ! -f $$f ]; then echo "size-check: $$f is missing (run make cross-build)" >&2; fail=1; continue; fi; \
		s=$$(stat -c %s $$f); if [ $$s -gt $(SIZE_BUDGET) ]; then fail=1; \
			awk -v s=$$s -v b=$(SIZE_BUDGET) -v a=$$a -v f=$$f 'BEGIN { printf "size-check: FAIL: the %s router build (%s) is %d bytes (%.2f MiB), %d bytes over the budget of %d bytes (%.2f MiB)\n", a, f, s, s/1048576, s-b, b, b/1048576 }' >&2; fi; \
	done; \
	if [ $$fail = 0 ]; then echo "size-check: every router build ($(ROUTER_ARCHES)) is within $(SIZE_BUDGET) bytes"; fi; exit $$fail

# The router build sizes the README quotes, written into it between markers
# (scripts/readme-sizes.sh) from a fresh make cross.
readme-sizes: cross
	bash scripts/readme-sizes.sh

# OpenWrt packages (.ipk) of the router builds, one per OpenWrt architecture
# name, and famguard-www_<version>_all.ipk (the parents' page), without the
# SDK (scripts/ipk.sh; the feed package is openwrt/famguard).
ipk: cross
	bash scripts/ipk.sh

clean:
	rm -rf bin dist

# Removes lab namespaces left behind by a test or demo that was killed with
# SIGKILL (a normal exit, Ctrl-C or a failure cleans up by itself).
# The red-team lab on its own, rewriting its table in the README and in
# scripts/redteam/results.md (make test runs it without rewriting).
redteam: build
	FAMGUARD_REDTEAM_UPDATE=1 $(GO) test -count=1 -v -run 'TestRedTeam' ./scripts/e2e/

lab-clean:
	@ip netns list | awk '{print $$1}' | grep -E '^fg(e|l|f|b|m|p|s|demo|perf)[0-9]+' | xargs -r -n1 ip netns del
