# famguard — see README.md. The two commands a new machine needs:
#   make demo   watch the agent protect simulated devices in a network-namespace lab
#   make test   unit tests and the lab end-to-end tests (what CI runs)

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
BUILD    := CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)"
# Packages with goroutines: always tested under the race detector.
RACE_PKGS := ./agent/... ./rules/...
FUZZTIME ?= 20s

.PHONY: all build deps demo test unit e2e bench lint fuzz clean lab-clean cross

all: build

build:
	$(BUILD) -o bin/famguard ./agent/cmd/famguard
	$(BUILD) -o bin/labhost ./scripts/labhost
	$(BUILD) -o bin/famguard-demo ./scripts/demo

deps:
	@bash scripts/install-deps.sh

demo: deps build
	bin/famguard-demo --agent bin/famguard --labhost bin/labhost

test: deps build lint unit e2e

unit:
	$(GO) test -race -count=1 $(RACE_PKGS)

# End-to-end tests on the real kernel, in network namespaces they create.
e2e: build
	$(GO) test -count=1 -timeout 15m ./scripts/...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@if command -v shellcheck >/dev/null; then shellcheck scripts/*.sh .ci/run; else echo "shellcheck not installed; skipped"; fi

bench: deps build
	bash scripts/bench.sh

# Every fuzz target of the module, as package:Function (internal/fuzzseed's
# test fails if one is missing). `make fuzz` runs each for FUZZTIME, one
# after the other; FUZZTIME=10m make fuzz is the long run. Seeds:
# testdata/fuzz/<Function>/. scripts/fuzz.sh: why a bare "context deadline
# exceeded" at the deadline is only a warning with Go 1.26.
FUZZ_TARGETS := \
	./agent/policy:FuzzParseFile \
	./agent/policy:FuzzLoadDir \
	./agent/schedule:FuzzParseDaysAndClock \
	./agent/categories:FuzzParseLine \
	./agent/dnsfilter:FuzzAnswer \
	./rules:FuzzTokenize \
	./rules:FuzzRender \
	./rules:FuzzSnapshot \
	./rules:FuzzFakeRestore
FUZZPARALLEL ?= 1

fuzz:
	@GO=$(GO) bash scripts/fuzz.sh $(FUZZTIME) $(FUZZPARALLEL) $(FUZZ_TARGETS)

# Static router builds (CGO off, trimmed, stripped, version stamped) and a
# size report. The router budget is 6 MiB per build (goal 5 MiB).
CROSS := mips:GOMIPS=softfloat mipsle:GOMIPS=softfloat arm:GOARM=7 arm64: amd64:
cross:
	@mkdir -p dist
	@for t in $(CROSS); do \
		arch=$${t%%:*}; extra=$${t#*:}; \
		env CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $$extra $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o dist/famguard-linux-$$arch ./agent/cmd/famguard || exit 1; \
	done
	@echo "size (bytes)  MiB   build"; for f in dist/famguard-linux-*; do \
		awk -v s=$$(stat -c %s $$f) -v f=$$f 'BEGIN { printf "%12d  %4.1f  %s\n", s, s/1048576, f }'; done

clean:
	rm -rf bin dist

# Removes lab namespaces left behind by a test or demo that was killed with
# SIGKILL (a normal exit, Ctrl-C or a failure cleans up by itself).
lab-clean:
	@ip netns list | awk '{print $$1}' | grep -E '^fg(e|l|f|b|demo|perf)[0-9]+' | xargs -r -n1 ip netns del
