// Command dns-bench compares famguard's DNS filter with dnsmasq, side by
// side in one run, on the same lists and the same query mix: half blocked
// names from ../shared/data/categories, half popular allowed names from
// ../shared/data/queries. For each list size it reports queries per second
// (each server pinned to one core, the load generator on the other), the
// latency added over the upstream, the load time, and peak and settled
// memory (VmHWM and VmRSS of the server process).
//
// Everything runs in a private network namespace on its loopback (the
// program re-executes itself under `unshare -n`), so nothing touches the
// host's network. Needs root, dnsmasq and taskset.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"math/rand"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/famguard/famguard/agent/categories"
	"github.com/famguard/famguard/agent/dnsfilter"
	"github.com/famguard/famguard/agent/egress"
	"github.com/famguard/famguard/scripts/lab"
)

var (
	data     = flag.String("data", "../shared/data", "the shared data directory")
	sizes    = flag.String("sizes", "100000,all", "list sizes to compare (a number of domains, or all)")
	duration = flag.Duration("duration", 4*time.Second, "load per measurement")
	inflight = flag.Int("inflight", 64, "queries in flight")
	strict   = flag.Bool("strict", false, "also run famguard with strict egress on (every allowed answer's addresses go into a real ipset, in the private namespace), to compare with it off in the same run")
	unique   = flag.Bool("unique", false, "allowed queries ask synthesized names that each answer a new address (h-10-x-y-z.bench.example): the worst case for strict egress, where no address was opened before")
	repeat   = flag.Int("repeat", 1, "run the servers this many times, taking turns, and report each one's median run (on a shared machine the load of others moves single runs by tens of percent)")
	baseline = flag.String("baseline", "", "also run the `serve` of another dns-bench binary (built from an older commit) as famguard-before, to compare two versions of the filter in the same run")
)

const (
	upstreamAddr = "127.0.0.1:5300"
	filterAddr   = "127.0.0.1:5301"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		serve(os.Args[2:])
		return
	}
	flag.Parse()
	if os.Getenv("DNSBENCH_NETNS") == "" {
		if os.Geteuid() != 0 {
			fail("needs root (it runs in a private network namespace)")
		}
		cmd := exec.Command("unshare", append([]string{"-n", os.Args[0]}, os.Args[1:]...)...)
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
	if err := run(); err != nil {
		fail("%v", err)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "dns-bench: "+format+"\n", args...)
	os.Exit(1)
}

type result struct {
	name              string
	domains           int
	load              time.Duration
	qps               float64
	p50, p99          time.Duration
	peakKiB, rssKiB   int
	blockedOK, wrongs int
	// cpuPerQ is the server's CPU time (user and system, the kernel's
	// work for its sockets and netlink included) per answered query: on a
	// shared machine it moves far less with other load than q/s does.
	cpuPerQ time.Duration
}

func run() error {
	listsDir := filepath.Join(*data, "categories")
	all, err := readLists(listsDir)
	if err != nil {
		return err
	}
	allowed, err := readLines(filepath.Join(*data, "queries", "popular-allowed.txt"))
	if err != nil {
		return err
	}
	// Synthesized names answer the address they spell (dnsmasq's
	// synth-domain), for -unique; every other name answers 192.0.2.1.
	up, err := startDnsmasq(nil, upstreamAddr, "--address=/#/192.0.2.1", "--synth-domain=bench.example,10.0.0.0/8,h-")
	if err != nil {
		return err
	}
	defer stop(up)
	if err := waitAnswer(upstreamAddr, 10*time.Second); err != nil {
		return err
	}
	self, _ := os.Executable()

	var results []result
	for _, sz := range strings.Split("0,"+*sizes, ",") {
		n := len(all)
		if sz == "0" {
			n = 0
		} else if sz != "all" {
			if n, err = strconv.Atoi(sz); err != nil || n > len(all) {
				return fmt.Errorf("bad size %q", sz)
			}
		}
		domains := all[:n]
		dir, err := os.MkdirTemp("", "dns-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if err := writeLines(filepath.Join(dir, "blocked.txt"), domains); n > 0 && err != nil {
			return err
		}
		// dnsmasq: one address= line per domain (blocks it and its subdomains).
		conf := filepath.Join(dir, "dnsmasq.conf")
		var b strings.Builder
		for _, d := range domains {
			b.WriteString("address=/" + d + "/0.0.0.0\n")
		}
		if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
			return err
		}
		rng := rand.New(rand.NewSource(1))
		mix := make([]string, 20000)
		if *unique {
			// More than a run asks, so no allowed name repeats.
			mix = make([]string, 400000)
		}
		for i := range mix {
			switch {
			case i%2 == 0 && n > 0:
				mix[i] = domains[rng.Intn(len(domains))]
			case *unique:
				mix[i] = fmt.Sprintf("h-10-%d-%d-%d.bench.example", i>>16&255, i>>8&255, i&255)
			default:
				mix[i] = allowed[rng.Intn(len(allowed))]
			}
		}
		blocked := map[string]bool{}
		for i := 0; i < len(mix) && n > 0; i += 2 {
			blocked[mix[i]] = true
		}

		var round []result
		for rep := 0; rep < *repeat; rep++ {
			for _, server := range servers() {
				start := time.Now()
				var cmd *exec.Cmd
				switch server {
				case "dnsmasq":
					cmd, err = startDnsmasq([]string{"taskset", "-c", "1"}, filterAddr, "--conf-file="+conf, "--server="+strings.Replace(upstreamAddr, ":", "#", 1), "--cache-size=0")
				default:
					bin, flags := self, []string{"--fresh-sets"}
					switch server {
					case "famguard-before":
						bin, flags = *baseline, nil
					case "famguard-strict":
						flags = append(flags, "--strict", benchSet)
					}
					cmd = exec.Command("taskset", append([]string{"-c", "1", bin, "serve"}, append(flags, dir, filterAddr, upstreamAddr)...)...)
					cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
					cmd.Stderr = os.Stderr
					err = cmd.Start()
				}
				if err != nil {
					return fmt.Errorf("%s: %w", server, err)
				}
				if err := waitAnswer(filterAddr, 120*time.Second); err != nil {
					stop(cmd)
					return fmt.Errorf("%s: %w", server, err)
				}
				r := result{name: server, domains: n, load: time.Since(start)}
				runtime.GC()
				cpu0 := procCPU(cmd.Process.Pid)
				r.qps, r.p50, r.p99, r.blockedOK, r.wrongs = load(filterAddr, mix, blocked)
				if q := r.qps * duration.Seconds(); q > 0 {
					r.cpuPerQ = (procCPU(cmd.Process.Pid) - cpu0) / time.Duration(q)
				}
				r.rssKiB, r.peakKiB = lab.ProcMemory(cmd.Process.Pid)
				stop(cmd)
				round = append(round, r)
				fmt.Printf("%-9s %8d domains: load %6.2fs  %7.0f q/s  CPU %v/query  p50 %v p99 %v  peak %6.1f MiB  settled %6.1f MiB  wrong answers %d\n",
					r.name, r.domains, r.load.Seconds(), r.qps, r.cpuPerQ, r.p50, r.p99, float64(r.peakKiB)/1024, float64(r.rssKiB)/1024, r.wrongs)
			}
		}
		results = append(results, medians(round)...)
	}
	// Latency of the upstream alone, for "added latency".
	_, up50, up99, _, _ := load(upstreamAddr, allowed[:2000], map[string]bool{})
	fmt.Printf("\nupstream alone: p50 %v p99 %v (latency added = filter's p50 minus this)\n", up50, up99)
	// The first round ran with no domains: each server's fixed baseline.
	names := servers()
	base := map[string]result{}
	for _, r := range results[:len(names)] {
		base[r.name] = r
	}
	results = results[len(names):]
	fmt.Printf("\nbaseline with no domains:")
	for _, nm := range names {
		fmt.Printf(" %s %.1f MiB", nm, float64(base[nm].rssKiB)/1024)
	}
	fmt.Printf(" (subtracted for the per-domain cost)\n")
	fmt.Printf("\n%-15s %9s %9s %10s %10s %10s %12s %14s %10s\n", "server", "domains", "load s", "q/s", "p50 added", "peak MiB", "settled MiB", "B/domain added", "peak/set")
	for _, r := range results {
		grown := r.rssKiB - base[r.name].rssKiB
		perDomain, peakRatio := "below noise", "-"
		// Below 1 MiB of growth RSS is within the runtime's own noise.
		if grown >= 1024 {
			perDomain = fmt.Sprintf("%.1f", float64(grown)*1024/float64(r.domains))
			peakRatio = fmt.Sprintf("%.2f", float64(r.peakKiB-base[r.name].rssKiB)/float64(grown))
		}
		fmt.Printf("%-15s %9d %9.2f %10.0f %10v %10.1f %12.1f %14s %10s\n", r.name, r.domains, r.load.Seconds(), r.qps, (r.p50 - up50).Round(time.Microsecond),
			float64(r.peakKiB)/1024, float64(r.rssKiB)/1024, perDomain, peakRatio)
	}
	rounds := append(func() []result {
		out := []result{}
		for _, nm := range names {
			out = append(out, base[nm])
		}
		return out
	}(), results...)
	for i := 0; i+len(names) <= len(rounds); i += len(names) {
		by := map[string]result{}
		for _, r := range rounds[i : i+len(names)] {
			by[r.name] = r
		}
		d, f := by["dnsmasq"], by["famguard"]
		fmt.Printf("at %d domains: famguard/dnsmasq throughput %.2fx, memory %.2fx, load time %.2fx", f.domains, f.qps/d.qps, float64(f.rssKiB)/float64(d.rssKiB), f.load.Seconds()/d.load.Seconds())
		if b, ok := by["famguard-before"]; ok {
			fmt.Printf("; famguard/famguard-before throughput %.2fx, CPU per query %v vs %v", f.qps/b.qps, f.cpuPerQ, b.cpuPerQ)
		}
		if st, ok := by["famguard-strict"]; ok {
			fmt.Printf("; strict on/off throughput %.2fx, CPU per query %v vs %v", st.qps/f.qps, st.cpuPerQ, f.cpuPerQ)
		}
		fmt.Println()
	}
	return nil
}

// serve is the famguard side: the real list store and DNS filter, with the
// load generator's address treated as a protected device with every
// category blocked. It reports its own load time on stderr.
func serve(args []string) {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	client := fs.String("client", "127.0.0.1", "the protected device's address (the load generator's)")
	strictSet := fs.String("strict", "", "strict egress on, with this base set name (the sets are created in the current network namespace)")
	fresh := fs.Bool("fresh-sets", false, "destroy the strict sets first (each benchmark round starts empty)")
	_ = fs.Parse(args)
	if fs.NArg() != 3 {
		fail("usage: dns-bench serve [--client ADDR] [--strict SET [--fresh-sets]] LISTS-DIR LISTEN UPSTREAM")
	}
	dir, listen, upstream := fs.Arg(0), fs.Arg(1), fs.Arg(2)
	start := time.Now()
	store, st, err := categories.Load(dir)
	if err != nil {
		fail("%v", err)
	}
	// Return the load's scratch memory to the OS, as the agent should after
	// a list load on a router.
	debug.FreeOSMemory()
	s := dnsfilter.NewServer(dnsfilter.UpstreamExchange(upstream), dnsfilter.NullIP)
	// The whole load comes from one client address: the per-client limits
	// (DefaultLimits, for real devices) would measure the limiter instead.
	s.SetLimits(dnsfilter.Limits{})
	mac := "02:00:00:00:00:01"
	rules := dnsfilter.Rules{Child: "bench", Categories: store.Categories()}
	var sets *egress.Sets
	if *strictSet != "" {
		k, err := egress.NewNetlink()
		if err != nil {
			fail("%v", err)
		}
		sets = egress.New(k)
		if *fresh {
			_ = sets.Destroy(*strictSet)
		}
		if err := sets.EnsureSets(*strictSet); err != nil {
			fail("%v", err)
		}
		s.SetOpener(sets)
		rules.Strict, rules.StrictSet = true, *strictSet
	}
	_, portText, err := net.SplitHostPort(listen)
	port, perr := strconv.Atoi(portText)
	if err != nil || perr != nil {
		fail("-listen %q: need host:port with a fixed port (the port says whose rules answer)", listen)
	}
	s.Publish(dnsfilter.NewSnapshot(map[string]dnsfilter.Rules{mac: rules},
		map[string][]netip.Addr{mac: {netip.MustParseAddr(*client)}}, store).WithPorts(map[int]dnsfilter.Rules{port: rules}, 0))
	fmt.Fprintf(os.Stderr, "famguard: %d domains loaded in %v\n", st.Domains, time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		c := make(chan os.Signal, 1)
		signalNotify(c)
		<-c
		cancel()
	}()
	if err := s.ListenAndServe(ctx, listen); err != nil {
		fail("%v", err)
	}
	if sets != nil {
		ss, err := sets.Stats(*strictSet)
		fmt.Fprintf(os.Stderr, "famguard-strict: sets hold %d IPv4 and %d IPv6 addresses in %.1f KiB of kernel memory (%v); strict-failed answers %d\n",
			ss.Open4, ss.Open6, float64(ss.MemBytes)/1024, err, strictFailed(s))
	}
}

// procCPU is a process's CPU time so far (utime + stime of
// /proc/PID/stat, in clock ticks of 10 ms); 0 when it cannot be read.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces: count from after it.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.Atoi(f[11])
	st, _ := strconv.Atoi(f[12])
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// medians picks, per server in servers() order, its run with the median
// throughput, with the median CPU per query of its runs.
func medians(round []result) []result {
	var out []result
	for _, name := range servers() {
		var runs []result
		for _, r := range round {
			if r.name == name {
				runs = append(runs, r)
			}
		}
		sort.Slice(runs, func(i, j int) bool { return runs[i].cpuPerQ < runs[j].cpuPerQ })
		cpu := runs[len(runs)/2].cpuPerQ
		sort.Slice(runs, func(i, j int) bool { return runs[i].qps < runs[j].qps })
		m := runs[len(runs)/2]
		m.cpuPerQ = cpu // the median of its own, not the median-q/s run's
		out = append(out, m)
	}
	return out
}

// strictFailed sums the strict-failed counters of every device.
func strictFailed(s *dnsfilter.Server) uint64 {
	var n uint64
	for _, c := range s.Stats().Counters {
		n += c["strict-failed"]
	}
	return n
}

// benchSet is the strict set base name of famguard-strict.
const benchSet = "fg-bench"

// servers are the servers each round compares, in order.
func servers() []string {
	out := []string{"dnsmasq", "famguard"}
	if *baseline != "" {
		out = append(out, "famguard-before")
	}
	if *strict {
		out = append(out, "famguard-strict")
	}
	return out
}

func startDnsmasq(prefix []string, addr string, extra ...string) (*exec.Cmd, error) {
	host, port, _ := net.SplitHostPort(addr)
	args := append(append([]string{}, prefix...), "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--bind-interfaces",
		"--listen-address="+host, "--port="+port, "--pid-file=", "--user=root")
	if !strings.HasPrefix(strings.Join(extra, " "), "--conf-file") {
		args = append(args, "--conf-file=/dev/null")
	}
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
	case <-time.After(3 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

func waitAnswer(addr string, max time.Duration) error {
	c := &dns.Client{Timeout: 200 * time.Millisecond}
	m := new(dns.Msg)
	m.SetQuestion("probe.example.", dns.TypeA)
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		if _, _, err := c.Exchange(m, addr); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer within %v", addr, max)
}

// load sends the mix with `inflight` workers for the duration and checks
// every answer: blocked names must get 0.0.0.0, others the upstream's.
func load(addr string, mix []string, blocked map[string]bool) (qps float64, p50, p99 time.Duration, blockedOK, wrong int) {
	var count atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	var bok, bad atomic.Int64
	end := time.Now().Add(*duration)
	var wg sync.WaitGroup
	for w := 0; w < *inflight; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			conn, err := net.Dial("udp", addr)
			if err != nil {
				return
			}
			defer conn.Close()
			c := &dns.Conn{Conn: conn}
			var local []time.Duration
			for i := w; time.Now().Before(end); i += *inflight {
				name := mix[i%len(mix)]
				m := new(dns.Msg)
				m.SetQuestion(dns.Fqdn(name), dns.TypeA)
				t0 := time.Now()
				_ = c.SetDeadline(t0.Add(2 * time.Second))
				if err := c.WriteMsg(m); err != nil {
					continue
				}
				r, err := c.ReadMsg()
				if err != nil {
					bad.Add(1)
					continue
				}
				local = append(local, time.Since(t0))
				count.Add(1)
				got := ""
				if len(r.Answer) > 0 {
					if a, ok := r.Answer[0].(*dns.A); ok {
						got = a.A.String()
					}
				}
				switch {
				case r.Rcode == dns.RcodeServerFailure:
					bad.Add(1) // strict egress fails closed when an address cannot be opened
				case blocked[name] && got == "0.0.0.0":
					bok.Add(1)
				case !blocked[name] && got == "0.0.0.0":
					// an allowed-list name that is also in a block list: fine
				case blocked[name]:
					bad.Add(1)
				}
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}(w)
	}
	wg.Wait()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) == 0 {
		return 0, 0, 0, 0, int(bad.Load())
	}
	return float64(count.Load()) / duration.Seconds(), lat[len(lat)/2], lat[len(lat)*99/100], int(bok.Load()), int(bad.Load())
}

func readLists(dir string) ([]string, error) {
	files, _ := filepath.Glob(filepath.Join(dir, "*.txt"))
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

func writeLines(path string, lines []string) error {
	return os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
}
