#!/usr/bin/env bash
# make bench: every benchmark side by side in one run, with the ratios the
# issue asks for. Root is needed (each part builds its own network
# namespaces; nothing touches the host's network).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp)
trap 'rm -f "$out"' EXIT

echo "== Apply latency: one iptables-restore transaction vs one go-iptables call per rule (IPv4)"
go test -run '^$' -bench 'BenchmarkApply' -benchtime 10x ./rules/ | tee "$out"
awk '
  /^BenchmarkApply\/restore\/devices=/  { split($1, a, "="); sub(/-[0-9]+$/, "", a[2]); r[a[2]] = $3 }
  /^BenchmarkApply\/per-rule\/devices=/ { split($1, a, "="); sub(/-[0-9]+$/, "", a[2]); p[a[2]] = $3 }
  END {
    printf "\n%-8s %14s %14s %8s\n", "devices", "restore", "per-rule", "ratio"
    n = split("1 10 100 250", ds, " ")
    for (i = 1; i <= n; i++) { d = ds[i]; if (d in r && d in p)
      printf "%-8s %11.1f ms %11.1f ms %7.0fx\n", d, r[d] / 1e6, p[d] / 1e6, p[d] / r[d] }
  }' "$out"

echo
echo "== Reload latency: profile file written → rules in the kernel (agent in a lab router)"
go test -run '^$' -bench 'BenchmarkReloadLatency' -benchtime 40x ./scripts/e2e/ | grep -E 'Benchmark|p50' || true

echo
echo "== Category lists: load all of ../shared/data/categories (about 1.4 M domains), memory, lookups"
go test -run '^$' -bench 'BenchmarkLoadAll' -benchtime 3x ./agent/categories/ | grep -E '^Benchmark|categories'
go test -run '^$' -bench 'BenchmarkMatch' -benchmem ./agent/categories/ | grep -E '^Benchmark'

echo
echo "== The whole agent's memory (famguard run in a lab router, default memory limit): no lists, 100k domains, all lists"
go test -run '^$' -bench 'BenchmarkAgentMemory' -benchtime 1x ./scripts/e2e/ | grep -E '^Benchmark'

echo
echo "== DNS filter vs dnsmasq: same lists, same query mix (half blocked, half popular allowed)"
go run ./scripts/dns-bench --data ../shared/data

echo
echo "== Packet path: forwarded TCP throughput with 250 protected devices"
go run ./scripts/iperf-bench --agent bin/famguard

echo
echo "== Daily-budget accounting: CPU of one pass (conntrack dump, 250 devices × 4/20/40 connections) and flash writes per hour"
go test -count=1 -run 'TestKernelCost' -v ./agent/overrides/ctacct/ | grep -E 'accounting pass' | sed 's/.*kernel_test.go:[0-9]*: //' || true
go test -count=1 -run 'TestFlashWritesPerHour' -v ./agent/overrides/ | grep -E 'flash writes' | sed 's/.*overrides_test.go:[0-9]*: //' || true
