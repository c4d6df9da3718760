// Command bench-table writes the performance tables of scripts/bench.md
// (which the README links) from the output of `make bench`
// (dist/bench-full.txt) and `make bench-peers` (dist/bench-peers.txt),
// between the markers
//
//	<!-- bench-table:start --> ... <!-- bench-table:end -->
//
// so that every figure in them comes from a run, with its date, commit and
// machine (the header bench.sh prints). `make bench-table` runs it; a
// missing file leaves its rows out, a missing part of one fails it. With
// -check it only checks a file (make bench-smoke runs it on its output).
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

var (
	full   = flag.String("bench", "dist/bench-full.txt", "output of make bench")
	peers  = flag.String("peers", "dist/bench-peers.txt", "output of make bench-peers")
	readme = flag.String("out", "scripts/bench.md", "the file whose marked section is rewritten")
	check  = flag.Bool("check", false, "only check that -bench holds every part of the table (make bench-smoke's output); write nothing")
)

const (
	startMark = "<!-- bench-table:start -->"
	endMark   = "<!-- bench-table:end -->"
)

func main() {
	flag.Parse()
	var b strings.Builder
	if *check {
		lines, err := readLines(*full)
		if err != nil {
			fail("%v", err)
		}
		benchTable(&b, lines) // fails on a missing part
		fmt.Printf("bench-table: %s has every part of the table\n", *full)
		return
	}
	if lines, err := readLines(*full); err == nil {
		benchTable(&b, lines)
	} else {
		fmt.Fprintf(os.Stderr, "bench-table: %v (run `make bench` first); its rows are left out\n", err)
	}
	if lines, err := readLines(*peers); err == nil {
		peersTable(&b, lines)
	} else {
		fmt.Fprintf(os.Stderr, "bench-table: %v (run `make bench-peers` first); the peers' table is left out\n", err)
	}
	if b.Len() == 0 {
		fail("nothing to write")
	}
	text, err := os.ReadFile(*readme)
	if err != nil {
		fail("%v", err)
	}
	s := string(text)
	i, j := strings.Index(s, startMark), strings.Index(s, endMark)
	if i < 0 || j < i {
		fail("%s has no %s ... %s section", *readme, startMark, endMark)
	}
	out := s[:i+len(startMark)] + "\n" + b.String() + s[j:]
	if err := os.WriteFile(*readme, []byte(out), 0o644); err != nil {
		fail("%v", err)
	}
	fmt.Printf("bench-table: %s rewritten from %s and %s\n", *readme, *full, *peers)
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench-table: "+format+"\n", args...)
	os.Exit(1)
}

func readLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out, sc.Err()
}

// header is bench.sh's first lines: "bench: <date> commit <c> machine <m>".
func header(lines []string) string {
	for _, l := range lines {
		if rest, ok := strings.CutPrefix(l, "bench: "); ok {
			return rest
		}
	}
	return "(no header: an old bench.sh)"
}

// goBench is one `go test -bench` result line: name, and value per unit.
type goBench struct {
	name string
	m    map[string]float64
}

var procSuffix = regexp.MustCompile(`-\d+$`)

func goBenches(lines []string) map[string]goBench {
	out := map[string]goBench{}
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		g := goBench{name: procSuffix.ReplaceAllString(f[0], ""), m: map[string]float64{}}
		for i := 2; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				g.m[f[i+1]] = v
			}
		}
		out[g.name] = g
	}
	return out
}

// results are dns-bench's "result: key=value ..." lines.
func results(lines []string) []map[string]string {
	var out []map[string]string
	for _, l := range lines {
		rest, ok := strings.CutPrefix(l, "result: ")
		if !ok {
			continue
		}
		m := map[string]string{}
		for _, kv := range strings.Fields(rest) {
			k, v, _ := strings.Cut(kv, "=")
			m[k] = v
		}
		out = append(out, m)
	}
	return out
}

func num(m map[string]string, k string) float64 {
	v, _ := strconv.ParseFloat(m[k], 64)
	return v
}

func ms(ns float64) string { return fmt.Sprintf("%.0f ms", ns/1e6) }

func benchTable(b *strings.Builder, lines []string) {
	g := goBenches(lines)
	fmt.Fprintf(b, "`make bench`, %s:\n\n| what | result |\n|---|---|\n", header(lines))
	var apply []string
	for _, d := range []string{"1", "10", "100", "250"} {
		r, p, s := g["BenchmarkApply/restore/devices="+d], g["BenchmarkApply/per-rule/devices="+d], g["BenchmarkApply/spawn/devices="+d]
		if r.m == nil || p.m == nil {
			continue
		}
		apply = append(apply, fmt.Sprintf("%s devices %s vs %s (%.0fx; %.0f processes, of which starting them %s)",
			d, ms(r.m["ns/op"]), ms(p.m["ns/op"]), p.m["ns/op"]/r.m["ns/op"], p.m["calls/op"], ms(s.m["ns/op"])))
	}
	if len(apply) > 0 {
		fmt.Fprintf(b, "| apply, one `iptables-restore` transaction vs one go-iptables call per rule (IPv4) | %s |\n", strings.Join(apply, "; "))
	}
	var reload []string
	for _, d := range []string{"10", "250", "1000"} {
		if r := g["BenchmarkReloadLatency/devices="+d]; r.m != nil {
			reload = append(reload, fmt.Sprintf("%s devices p50 %.0f ms, p95 %.0f ms", d, r.m["p50-ms"], r.m["p95-ms"]))
		}
	}
	if len(reload) > 0 {
		fmt.Fprintf(b, "| reload, profile file written → rules in the kernel (both families, DNS filtering on) | %s |\n", strings.Join(reload, "; "))
	}
	if l := g["BenchmarkLoadAll"]; l.m != nil {
		fmt.Fprintf(b, "| category lists, load all %.0f domains | %.0f ms, %.1f bytes a domain, peak/settled %.2f |\n",
			l.m["domains"], l.m["load-ms"], l.m["bytes/domain"], l.m["peak/settled"])
	}
	if m := g["BenchmarkMatch"]; m.m != nil {
		spread := ""
		if sp := g["BenchmarkMatchSpread"]; sp.m != nil {
			spread = fmt.Sprintf("; names spread over all the lists, half of them listed (BenchmarkMatchSpread): %.0f ns", sp.m["ns/op"])
		}
		fmt.Fprintf(b, "| category lookup (BenchmarkMatch) | %.0f ns, %.0f allocations%s |\n", m.m["ns/op"], m.m["allocs/op"], spread)
	}
	var mem []string
	for _, s := range []string{"lists=none", "domains=100k", "domains=all"} {
		if m := g["BenchmarkAgentMemory/"+s]; m.m != nil {
			mem = append(mem, fmt.Sprintf("%s RSS %.1f MiB (peak %.1f)", s, m.m["RSS-MiB"], m.m["peak-MiB"]))
		}
	}
	if len(mem) > 0 {
		fmt.Fprintf(b, "| the whole agent's memory | %s |\n", strings.Join(mem, "; "))
	}
	dnsRows(b, results(lines), []string{"famguard", "forwarder", "dnsmasq"})
	var strict []string
	for _, l := range lines {
		if strings.HasPrefix(l, "strict egress at ") {
			strict = append(strict, strings.TrimPrefix(l, "strict egress at "))
		}
	}
	if len(strict) > 0 {
		fmt.Fprintf(b, "| strict egress, DNS with strict on vs off in the same run | %s |\n", strings.Join(strict, "; "))
	}
	b.WriteString(iperfRows(lines))
	var acct []string
	for _, l := range lines {
		if strings.HasPrefix(l, "accounting pass, ") || strings.HasPrefix(l, "an hour of use") || strings.HasPrefix(strings.TrimSpace(l), "acct: ") {
			acct = append(acct, strings.TrimPrefix(strings.TrimSpace(l), "acct: "))
		}
	}
	if len(acct) > 0 {
		fmt.Fprintf(b, "| daily-budget accounting | %s |\n", strings.Join(acct, "; "))
	}
	b.WriteString("\n")
	// Every part of `make bench` must be in the table: a part whose output
	// changed shape would otherwise drop out of it silently (the iperf rows
	// did, once).
	for _, want := range []string{"apply,", "reload,", "category lists,", "category lookup", "the whole agent's memory", "DNS, ", "strict egress,", "forwarded TCP", "daily-budget accounting"} {
		if !strings.Contains(b.String(), "| "+want) {
			fail("no %q row: the output of `make bench` (%s) no longer has what this script reads; fix scripts/bench-table", want, *full)
		}
	}
}

// iperfRows reads scripts/iperf-bench's summary table: after the header
// line with "ratio of medians", one line per configuration (name, median
// Gbit/s, the runs' range, ratio of medians, median of per-round ratios
// with their range), up to the first line in parentheses.
func iperfRows(lines []string) string {
	var b strings.Builder
	in := false
	for _, l := range lines {
		t := strings.TrimSpace(l)
		switch {
		case strings.Contains(l, "ratio of medians") && strings.Contains(l, "median of ratios"):
			in = true
		case in && (t == "" || strings.HasPrefix(t, "(")):
			in = false
		case in:
			f := strings.Fields(t)
			if len(f) < 5 {
				continue
			}
			fmt.Fprintf(&b, "| forwarded TCP (iperf3), 250 devices configured: %s | median %s Gbit/s (runs %s), ratio of medians vs none %s, median of per-round ratios %s |\n",
				f[0], f[1], f[2], f[3], strings.Join(f[4:], " "))
		}
	}
	return b.String()
}

// dnsRows: per list size, each server's q/s, CPU per query against the
// echo's, load time and memory.
func dnsRows(b *strings.Builder, rs []map[string]string, servers []string) {
	echo := map[string]float64{}
	bySize := map[string]map[string]map[string]string{}
	var sizes []int
	for _, r := range rs {
		if r["server"] == "echo" {
			echo[r["domains"]] = num(r, "cpu_us")
		}
		if bySize[r["domains"]] == nil {
			bySize[r["domains"]] = map[string]map[string]string{}
			n, _ := strconv.Atoi(r["domains"])
			sizes = append(sizes, n)
		}
		bySize[r["domains"]][r["server"]] = r
	}
	sort.Ints(sizes)
	for _, n := range sizes {
		if n == 0 {
			continue
		}
		d := strconv.Itoa(n)
		e := echo[d]
		var cells []string
		for _, s := range servers {
			r := bySize[d][s]
			if r == nil {
				continue
			}
			ratio := ""
			if x := xEcho(r); x > 0 {
				ratio = fmt.Sprintf(" (%.2fx the echo's)", x)
			}
			base := bySize["0"][s]
			perDomain := ""
			if base != nil {
				perDomain = fmt.Sprintf(", %.1f B/domain", (num(r, "ready_kib")-num(base, "ready_kib"))*1024/float64(n))
			}
			name := "**" + s + "**"
			if s == "forwarder" {
				name = "**forwarder** (bare Go relay, no filtering: the floor for this mix)"
			}
			cells = append(cells, fmt.Sprintf("%s %.1fk q/s, CPU %.1f µs/query%s, load %.2f s, RSS ready %.1f / query peak %.1f / after %.1f MiB%s",
				name, num(r, "qps")/1000, num(r, "cpu_us"), ratio, num(r, "load_s"), num(r, "ready_kib")/1024, num(r, "query_peak_kib")/1024, num(r, "after_kib")/1024, perDomain))
		}
		if len(cells) > 0 {
			fmt.Fprintf(b, "| DNS, %d domains, 50/50 mix, each server on one core (bare Go UDP echo: %.1f µs/query) | %s |\n", n, e, strings.Join(cells, "; "))
		}
	}
}

func peersTable(b *strings.Builder, lines []string) {
	rs := results(lines)
	if len(rs) == 0 {
		return
	}
	fmt.Fprintf(b, "`make bench-peers` (same lists, upstream and 50/50 mix; each server pinned to one core), %s:\n\n", header(lines))
	b.WriteString("| server | domains | q/s | CPU µs/query | × echo | load s | RSS ready MiB | peak while loading MiB | peak during queries MiB | RSS after MiB |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rs {
		if r["domains"] == "0" && r["server"] != "echo" {
			continue
		}
		ratio := "-"
		if x := xEcho(r); x > 0 {
			ratio = fmt.Sprintf("%.2f", x)
		}
		fmt.Fprintf(b, "| %s | %s | %.0f | %.1f | %s | %.2f | %.1f | %.1f | %.1f | %.1f |\n", r["server"], r["domains"], num(r, "qps"), num(r, "cpu_us"), ratio,
			num(r, "load_s"), num(r, "ready_kib")/1024, num(r, "load_peak_kib")/1024, num(r, "query_peak_kib")/1024, num(r, "after_kib")/1024)
	}
	b.WriteString("\n")
}

// xEcho is a result's CPU per query over the echo's in the same round
// (dns-bench's x_echo: side by side, the median of the rounds' with
// -repeat); 0 when the run had no echo or is older than that field.
func xEcho(r map[string]string) float64 {
	if r["server"] == "echo" {
		return 0
	}
	return num(r, "x_echo")
}
