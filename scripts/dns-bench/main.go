// Command dns-bench compares famguard's DNS filter with other DNS filters,
// side by side in one run, on the same lists, the same upstream and the same
// query mix: blocked names from ../shared/data/categories interleaved one for
// one with popular allowed names from ../shared/data/queries. What it
// measures and why each choice was made: README.md beside this file.
//
// Servers: echo (a bare Go UDP echo, the ceiling), famguard, famguard-strict
// (famguard with issue 9's strict egress on: every answered address goes
// into a real kernel set before the answer leaves), dnsmasq, and the peers
// blocky and adguardhome (built by scripts/bench-peers/build.sh). With
// famguard and famguard-strict in one run it prints strict on/off per size
// and the strict sets' kernel memory; -unique makes every allowed answer a
// new address (the worst case for strict egress).
// Each server runs pinned to one core (taskset, GOMAXPROCS=1); the load
// generator and the upstream are pinned to the other. For each list size it
// reports, per server: the load time (start until a listed domain is
// answered as blocked), queries per second at `inflight` queries in flight,
// CPU time per answered query (the fair figure when the generator is the
// limit), the latency at one query in flight (blocked, and forwarded minus
// the upstream's own), the RSS when ready, the peak while loading the lists,
// the peak during the query load, and the RSS after it.
//
// Every run checks sanity bounds and exits 1 when a figure is absurd (a
// server that did not become ready, fewer than -min-qps queries a second
// from famguard, echo or forwarder, or -min-qps-peers from a peer, more than 1 % lost
// or wrong answers, a served mix off 50/50): the bench
// then measures something other than the filter, as it once measured the
// per-client limiter. `make bench-smoke` runs it for a second per phase.
//
// Everything runs in a private network namespace on its loopback (the
// program re-executes itself under `unshare -n`), so nothing touches the
// host's network. Needs root, taskset, and dnsmasq when it is compared.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/famguard/famguard/agent/egress"
	"github.com/famguard/famguard/scripts/lab"
)

var (
	data        = flag.String("data", "../shared/data", "the shared data directory")
	sizes       = flag.String("sizes", "100000,all", "list sizes to compare (a number of domains, or all); a run with no lists is always first (the baseline for bytes per domain)")
	names       = flag.String("servers", "echo,famguard,dnsmasq", "servers to compare, in order: echo, forwarder, famguard, famguard-strict, dnsmasq, blocky, adguardhome")
	unique      = flag.Bool("unique", false, "allowed names are synthesized (uN.bench.example), each answered with an address no earlier name had: the worst case for famguard-strict, one kernel set add per allowed answer")
	peers       = flag.String("peers", "bin/peers", "where scripts/bench-peers/build.sh put blocky and adguardhome")
	duration    = flag.Duration("duration", 4*time.Second, "throughput phase per measurement")
	latency     = flag.Duration("latency", 2*time.Second, "latency phase (one query in flight) per measurement")
	inflight    = flag.Int("inflight", 64, "queries in flight in the throughput phase")
	ready       = flag.Duration("ready", 180*time.Second, "how long a server may take to load the lists and answer")
	minQPS      = flag.Float64("min-qps", 1000, "sanity bound: famguard, echo or forwarder answering fewer queries a second fails the run")
	minQPSPeers = flag.Float64("min-qps-peers", 100, "sanity bound for dnsmasq, blocky and AdGuard Home with the 50/50 mix (their rate is bound by the scheduler on a loaded machine)")
	maxErr      = flag.Float64("max-errors", 0.01, "sanity bound: a larger share of lost or wrong answers fails the run")
	warm        = flag.Bool("warm", false, "before measuring a server, ask every name of the mix once (unmeasured): famguard-strict then measures its steady state, every address the mix answers already open, instead of opening thousands of new ones a second")
	repeat      = flag.Int("repeat", 1, "measure the servers this many times per size, taking turns, and report each one's median (on a shared machine other sessions' load moves single runs by a factor of 2 or more)")
	cpus        = flag.String("cpus", "0,1", "the generator's and upstream's core, and the server's core")
)

const (
	upstreamAddr = "127.0.0.1:5300"
	filterAddr   = "127.0.0.1:5301"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "serve":
			serveFamguard(os.Args[2:])
			return
		case "serve-echo":
			serveEcho(os.Args[2:])
			return
		case "serve-forwarder":
			serveForwarder(os.Args[2:])
			return
		case "serve-upstream":
			serveUpstream(os.Args[2:])
			return
		}
	}
	flag.Parse()
	if *warm && *unique {
		fail("-warm with -unique: the unique names never repeat, there is no steady state to warm up to")
	}
	if *repeat < 1 {
		fail("-repeat %d: want 1 or more", *repeat)
	}
	genCPU, srvCPU, ok := strings.Cut(*cpus, ",")
	if !ok {
		fail("-cpus %q: want GENERATOR,SERVER, e.g. 0,1", *cpus)
	}
	if os.Getenv("DNSBENCH_NETNS") == "" {
		if os.Geteuid() != 0 {
			fail("needs root (it runs in a private network namespace)")
		}
		// The generator (this process, all its threads) and the upstream
		// it starts are pinned to genCPU from the start.
		cmd := exec.Command("taskset", append([]string{"-c", genCPU, "unshare", "-n", os.Args[0]}, os.Args[1:]...)...)
		cmd.Env = append(os.Environ(), "DNSBENCH_NETNS=1")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			os.Exit(1)
		}
		return
	}
	if err := exec.Command("ip", "link", "set", "lo", "up").Run(); err != nil {
		fail("lo up: %v", err)
	}
	if err := run(srvCPU); err != nil {
		fail("%v", err)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "dns-bench: "+format+"\n", args...)
	os.Exit(1)
}

// result is one server at one list size.
type result struct {
	name      string
	domains   int
	load      time.Duration
	lat       loadResult // one query in flight
	thr       loadResult // inflight queries in flight
	cpuPerQ   time.Duration
	readyKiB  int // RSS when ready
	loadPeak  int // VmHWM when ready: the list load's peak
	queryPeak int // VmHWM over the query load (reset when ready)
	afterKiB  int // RSS after the query load
	// famguard-strict: what its kernel sets hold after the query load
	// (addresses and kernel memory, from the kernel's own set header).
	open4, setBytes int
	adds, writes    int // its kernel adds and the writes (batches) they took
	// xEcho is cpuPerQ over the echo's in the same round at the same size
	// (0: no echo in the run); with -repeat, the median of the rounds'.
	xEcho float64
}

func run(srvCPU string) error {
	all, err := readLists(filepath.Join(*data, "categories"))
	if err != nil {
		return err
	}
	allowed, err := readLines(filepath.Join(*data, "queries", "popular-allowed.txt"))
	if err != nil {
		return err
	}
	self, _ := os.Executable()
	list, err := servers(strings.Split(*names, ","), self, *peers)
	if err != nil {
		return err
	}
	// The echo goes first in every round, wherever -servers names it:
	// each other server's "× echo" is taken against the echo just before.
	sort.SliceStable(list, func(i, j int) bool { return list[i].name == "echo" && list[j].name != "echo" })
	dir, err := os.MkdirTemp("", "dns-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	up := exec.Command(self, "serve-upstream", upstreamAddr)
	up.Stderr = os.Stderr
	if err := up.Start(); err != nil {
		return err
	}
	defer stop(up)
	if err := waitReady(upstreamAddr, "", 10*time.Second); err != nil {
		return fmt.Errorf("upstream: %w", err)
	}
	upMix := newMix(nil, allowed, 2000, false)
	upLat := runLoad(upstreamAddr, upMix, 0, 0, 1, *latency, checkFilter)
	fmt.Printf("upstream alone, one query in flight: p50 %v p99 %v\n", upLat.p50, upLat.p99)

	var results []result
	var failures []string
	for _, sz := range strings.Split("0,"+*sizes, ",") {
		n := len(all)
		if sz == "0" {
			n = 0
		} else if sz != "all" {
			if n, err = strconv.Atoi(sz); err != nil || n > len(all) || n <= 0 {
				return fmt.Errorf("bad size %q (1 to %d, or all)", sz, len(all))
			}
		}
		domains := all[:n]
		sdir := filepath.Join(dir, fmt.Sprint(n))
		if err := writeLists(sdir, domains); err != nil {
			return err
		}
		size := 20000
		if *unique {
			size = 400000 // more allowed names than a run asks: none repeats
		}
		m := newMix(domains, allowed, size, *unique)
		probe := ""
		if n > 0 {
			probe = domains[0]
		}
		var runs []result
		for rep := 0; rep < *repeat; rep++ {
			// The echo does not depend on the lists, but it is measured at
			// every size, in every round, just before the others: its CPU
			// per query moved by a third between minutes of one run on this
			// machine (10.2 and 13.6 µs), so "× echo" is taken within the
			// round, side by side, never against an echo of another minute.
			var echo time.Duration
			for _, s := range list {
				r, err := measure(s, srvCPU, sdir, n, probe, m)
				if err != nil {
					return err
				}
				if s.name == "echo" {
					echo = r.cpuPerQ
				} else if echo > 0 {
					r.xEcho = float64(r.cpuPerQ) / float64(echo)
				}
				runs = append(runs, r)
				printResult(r, upLat)
				failures = append(failures, sanity(r)...)
			}
		}
		results = append(results, medians(runs, list)...)
	}
	report(results, upLat)
	if len(failures) > 0 {
		for _, f := range failures {
			fmt.Fprintln(os.Stderr, "dns-bench: FAIL:", f)
		}
		return fmt.Errorf("%d sanity bound(s) failed: the figures above do not measure the filters", len(failures))
	}
	fmt.Printf("\nsanity bounds: every server became ready; famguard, echo and forwarder answered at least %.0f q/s, the peers %.0f; at most %.0f %% lost or wrong; a 50/50 mix served\n", *minQPS, *minQPSPeers, *maxErr*100)
	return nil
}

// measure starts one server, waits until it blocks a listed domain, and
// runs the latency and the throughput phase.
func measure(s server, srvCPU, dir string, n int, probe string, m *mix) (result, error) {
	r := result{name: s.name, domains: n}
	if s.check == checkEcho {
		probe = "" // echo and forwarder block nothing: any answer means ready
	}
	start := time.Now()
	cmd, err := s.start([]string{"taskset", "-c", srvCPU}, dir)
	if err != nil {
		return r, fmt.Errorf("%s: %w", s.name, err)
	}
	var once sync.Once
	stopServer := func() { once.Do(func() { stop(cmd) }) }
	defer stopServer()
	exited := make(chan struct{})
	go func() { _, _ = cmd.Process.Wait(); close(exited) }()
	if err := waitReadyOrExit(filterAddr, probe, *ready, exited); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, s.name+".log"))
		return r, fmt.Errorf("%s with %d domains did not start: %w\n%s", s.name, n, err, tail(string(log), 20))
	}
	r.load = time.Since(start)
	pid := cmd.Process.Pid
	r.readyKiB, r.loadPeak = lab.ProcMemory(pid)
	resetPeak(pid)
	runtime.GC() // the generator's own garbage, not during the phases
	var from int64
	if *warm {
		// Every name of the mix once, unmeasured: the steady state in
		// which a strict server has opened each address the mix answers
		// already, as a router's strict sets hold the addresses a
		// household keeps asking for.
		w := runLoad(filterAddr, m, 0, int64(len(m.names)), *inflight, *ready, s.check)
		if w.answered < w.sent*99/100 {
			return r, fmt.Errorf("%s: the warm-up lost %d of %d queries", s.name, w.sent-w.answered, w.sent)
		}
		from = w.sent
	}
	r.lat = runLoad(filterAddr, m, from, 0, 1, *latency, s.check)
	c0 := cpuTime(pid)
	r.thr = runLoad(filterAddr, m, from+r.lat.sent, 0, *inflight, *duration, s.check)
	if r.thr.answered > 0 {
		r.cpuPerQ = (cpuTime(pid) - c0) / time.Duration(r.thr.answered)
	}
	r.afterKiB, r.queryPeak = lab.ProcMemory(pid)
	if s.strictSet != "" {
		st, err := strictStats(s.strictSet)
		if err != nil {
			return r, fmt.Errorf("%s: reading its sets: %w", s.name, err)
		}
		r.open4, r.setBytes = st.Open4, st.MemBytes
		// It prints its adds and writes when it stops.
		stopServer()
		log, _ := os.ReadFile(filepath.Join(dir, s.name+".log"))
		r.adds, r.writes = strictWrites(string(log))
	}
	return r, nil
}

// strictWrites reads famguard-strict's last "strict: N kernel adds in M
// writes" line (0, 0 when there is none).
func strictWrites(log string) (adds, writes int) {
	for _, line := range strings.Split(log, "\n") {
		_, _ = fmt.Sscanf(line, "strict: %d kernel adds in %d writes", &adds, &writes)
	}
	return adds, writes
}

// strictStats reads famguard-strict's sets from the kernel (the bench runs
// in the server's network namespace).
func strictStats(base string) (egress.Stats, error) {
	k, err := egress.NewNetlink()
	if err != nil {
		return egress.Stats{}, err
	}
	defer k.Close()
	return egress.New(k).Stats(base)
}

// medians picks, per server in list order, its run with the median q/s,
// with the median CPU per query of its runs (its own median, not that
// run's: the two move apart under other load).
func medians(runs []result, list []server) []result {
	var out []result
	for _, s := range list {
		var rs []result
		for _, r := range runs {
			if r.name == s.name {
				rs = append(rs, r)
			}
		}
		if len(rs) == 0 {
			continue
		}
		sort.Slice(rs, func(i, j int) bool { return rs[i].cpuPerQ < rs[j].cpuPerQ })
		cpu := rs[len(rs)/2].cpuPerQ
		sort.Slice(rs, func(i, j int) bool { return rs[i].xEcho < rs[j].xEcho })
		x := rs[len(rs)/2].xEcho
		sort.Slice(rs, func(i, j int) bool { return rs[i].thr.qps < rs[j].thr.qps })
		m := rs[len(rs)/2]
		m.cpuPerQ, m.xEcho = cpu, x
		out = append(out, m)
	}
	return out
}

// sanity returns what is absurd about r: the bounds of `make bench-smoke`.
// They are not performance targets; a run that fails them measured
// something else (a limiter, a boot policy, a server that never loaded).
func sanity(r result) []string {
	var out []string
	what := fmt.Sprintf("%s at %d domains", r.name, r.domains)
	// famguard, echo and forwarder must answer -min-qps; the peers -min-qps-peers,
	// and only with the 50/50 mix. On this 2-core machine shared by eight
	// sessions (load average 27) dnsmasq answered 742-983 q/s, AdGuard Home
	// 447-940 and blocky 485 (500 k domains): real figures of servers that
	// wait on the scheduler, not absurd ones. A misconfigured peer lands far
	// lower (AdGuard Home's default rate limit is 20 q/s a client). The
	// baseline with no lists forwards every query, and blocky dials a TCP
	// and a UDP socket for each: a few hundred a second is its real cost.
	bound := *minQPS
	if r.name != "echo" && r.name != "forwarder" && r.name != "famguard" && r.name != "famguard-strict" {
		bound = *minQPSPeers
		if r.domains == 0 {
			bound = 0
		}
	}
	if r.thr.qps < bound {
		out = append(out, fmt.Sprintf("%s: %.0f q/s, under the bound of %.0f", what, r.thr.qps, bound))
	}
	for _, p := range []struct {
		phase string
		lr    loadResult
	}{{"latency phase", r.lat}, {"throughput phase", r.thr}} {
		if p.lr.errorRate() > *maxErr {
			out = append(out, fmt.Sprintf("%s, %s: %d of %d queries lost, %d answered wrongly (over %.1f %%)",
				what, p.phase, p.lr.timeouts, p.lr.sent, p.lr.wrongs, *maxErr*100))
		}
	}
	// Strict egress that opened nothing measured a filter without it.
	if r.name == "famguard-strict" && r.open4 == 0 {
		out = append(out, fmt.Sprintf("%s: its strict sets hold no address after %d answers", what, r.thr.answered))
	}
	if b := r.thr.blockedShare(); r.domains > 0 && (b < 0.45 || b > 0.55) {
		out = append(out, fmt.Sprintf("%s: served mix %.1f %% blocked, not 50/50", what, b*100))
	}
	return out
}

func printResult(r result, up loadResult) {
	fmt.Printf("%-15s %8d domains: load %6.2fs  %7.0f q/s  CPU %5.1f µs/q  blocked %4.1f%%  lost %d wrong %d  p50 blocked %v forwarded +%v  RSS ready %.1f / load peak %.1f / query peak %.1f / after %.1f MiB\n",
		r.name, r.domains, r.load.Seconds(), r.thr.qps, us(r.cpuPerQ), r.thr.blockedShare()*100, r.thr.timeouts+r.lat.timeouts, r.thr.wrongs+r.lat.wrongs,
		r.lat.p50Blocked.Round(time.Microsecond), (r.lat.p50Allowed - up.p50).Round(time.Microsecond),
		mib(r.readyKiB), mib(r.loadPeak), mib(r.queryPeak), mib(r.afterKiB))
}

// report prints the table, and one "result:" line per measurement for
// scripts/bench-table.sh (which writes the README's table from them).
func report(results []result, up loadResult) {
	base := map[string]int{}
	for _, r := range results {
		if r.domains == 0 {
			base[r.name] = r.readyKiB
		}
	}
	fmt.Printf("\n%-15s %8s %7s %8s %9s %6s %8s %9s %10s %9s %9s %9s %9s %9s\n", "server", "domains", "load s", "q/s", "CPU µs/q", "×echo",
		"blocked", "p50 blk", "p50 fwd+", "ready MiB", "load pk", "query pk", "after", "B/domain")
	for _, r := range results {
		ratio := "-"
		if r.xEcho > 0 {
			ratio = fmt.Sprintf("%.2f", r.xEcho)
		}
		perDomain := "-"
		if b, ok := base[r.name]; ok && r.domains > 0 {
			perDomain = fmt.Sprintf("%.1f", float64(r.readyKiB-b)*1024/float64(r.domains))
		}
		fmt.Printf("%-15s %8d %7.2f %8.0f %9.1f %6s %7.1f%% %9v %10v %9.1f %9.1f %9.1f %9.1f %9s\n", r.name, r.domains, r.load.Seconds(), r.thr.qps,
			us(r.cpuPerQ), ratio, r.thr.blockedShare()*100, r.lat.p50Blocked.Round(time.Microsecond), (r.lat.p50Allowed - up.p50).Round(time.Microsecond),
			mib(r.readyKiB), mib(r.loadPeak), mib(r.queryPeak), mib(r.afterKiB), perDomain)
	}
	fmt.Println("\n(CPU µs/q: the server's CPU time during the throughput phase per answered query; ×echo: that over the bare Go UDP echo's;")
	fmt.Println(" p50 blk: a blocked name's answer at one query in flight; p50 fwd+: a forwarded name's minus the upstream's own;")
	fmt.Println(" load pk: VmHWM when ready (the list load's peak); query pk: VmHWM over the query load; B/domain: RSS when ready above the same server's with no lists)")
	if *repeat > 1 {
		fmt.Printf("(each row: the run with the median q/s of %d taking turns, with the median CPU µs/q of the %d and the median of the rounds' × echo)\n", *repeat, *repeat)
	}
	strictReport(results)
	for _, r := range results {
		fmt.Printf("result: server=%s domains=%d load_s=%.3f qps=%.0f cpu_us=%.2f blocked=%.3f errors=%.4f p50_blocked_us=%d p50_fwd_added_us=%d ready_kib=%d load_peak_kib=%d query_peak_kib=%d after_kib=%d x_echo=%.3f%s\n",
			r.name, r.domains, r.load.Seconds(), r.thr.qps, us(r.cpuPerQ), r.thr.blockedShare(), r.thr.errorRate(),
			r.lat.p50Blocked.Microseconds(), (r.lat.p50Allowed - up.p50).Microseconds(), r.readyKiB, r.loadPeak, r.queryPeak, r.afterKiB, r.xEcho, setFields(r))
	}
}

func setFields(r result) string {
	if r.name != "famguard-strict" {
		return ""
	}
	return fmt.Sprintf(" set_ipv4=%d set_bytes=%d kernel_adds=%d kernel_writes=%d", r.open4, r.setBytes, r.adds, r.writes)
}

// strictReport prints, per list size measured with both famguard and
// famguard-strict, strict on over off (issue 9: q/s with strict on at
// least 0.9× of off, same bench, same run) and what the sets took.
func strictReport(results []result) {
	off := map[int]result{}
	for _, r := range results {
		if r.name == "famguard" {
			off[r.domains] = r
		}
	}
	mixName := "popular names, each its own address, repeating"
	if *warm {
		mixName += "; warmed up: every address open before measuring"
	}
	if *unique {
		mixName = "-unique: every allowed answer a new address"
	}
	for _, st := range results {
		f, ok := off[st.domains]
		if st.name != "famguard-strict" || !ok || f.thr.qps == 0 {
			continue
		}
		fmt.Printf("strict egress at %d domains (%s): on/off %.2f× q/s (%.0f vs %.0f), CPU %.1f vs %.1f µs/query; sets hold %d IPv4 addresses in %.1f KiB of kernel memory (bounded: 65,536 entries a set); %d kernel adds in %d writes (%.1f a write); RSS after %.1f vs %.1f MiB\n",
			st.domains, mixName, st.thr.qps/f.thr.qps, st.thr.qps, f.thr.qps, us(st.cpuPerQ), us(f.cpuPerQ), st.open4, float64(st.setBytes)/1024,
			st.adds, st.writes, float64(st.adds)/float64(max(st.writes, 1)), mib(st.afterKiB), mib(f.afterKiB))
	}
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }
func mib(kib int) float64        { return float64(kib) / 1024 }

// cpuTime is the user plus system time of a process, all threads
// (/proc/PID/stat utime and stime, in clock ticks of 10 ms).
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * 10 * time.Millisecond
}

// resetPeak restarts VmHWM at the current RSS (clear_refs 5), so the peak
// read after the query load is the query load's own.
func resetPeak(pid int) {
	_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

func startDnsmasq(prefix []string, addr string, extra ...string) (*exec.Cmd, error) {
	host, port, _ := strings.Cut(addr, ":")
	args := append(append([]string{}, prefix...), "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--bind-interfaces",
		"--listen-address="+host, "--port="+port, "--pid-file=", "--user=root")
	args = append(args, extra...)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stderr = os.Stderr
	return cmd, cmd.Start()
}

func stop(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

func waitReady(addr, probe string, max time.Duration) error {
	return waitReadyOrExit(addr, probe, max, nil)
}

// waitReadyOrExit polls addr until it answers probe as blocked (0.0.0.0),
// or, with no probe, answers at all.
func waitReadyOrExit(addr, probe string, max time.Duration, exited <-chan struct{}) error {
	name := probe
	if name == "" {
		name = "probe.example"
	}
	q := packQuery(name)
	buf := make([]byte, 4096)
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("it exited")
		default:
		}
		if conn, err := net.Dial("udp", addr); err == nil {
			_ = conn.SetDeadline(time.Now().Add(200 * time.Millisecond))
			_, err = conn.Write(q) // ID 0
			got, ok := readAnswer(conn, buf, 0)
			conn.Close()
			if err == nil && ok && (probe == "" || got == [4]byte{}) {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if probe != "" {
		return fmt.Errorf("%s did not answer %s as blocked within %v", addr, probe, max)
	}
	return fmt.Errorf("%s did not answer within %v", addr, max)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func readLists(dir string) ([]string, error) {
	files, _ := filepath.Glob(filepath.Join(dir, "*.txt"))
	if len(files) == 0 {
		return nil, fmt.Errorf("no lists in %s (-data names the shared data directory)", dir)
	}
	seen := map[string]bool{}
	var out []string
	for _, f := range files {
		lines, err := readLines(f)
		if err != nil {
			return nil, err
		}
		for _, l := range lines {
			if !seen[l] {
				seen[l] = true
				out = append(out, l)
			}
		}
	}
	rand.New(rand.NewSource(7)).Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out, nil
}

func readLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out, sc.Err()
}
