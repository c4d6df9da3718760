package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/famguard/famguard/agent/control"
	"github.com/famguard/famguard/agent/daemon"
	"github.com/famguard/famguard/scripts/lab"
)

// Load and soak. `make test` runs short versions; `make reliability-load`
// runs the full ones (FAMGUARD_LOAD_FULL=1): 10 s per DNS phase and 10,000
// reloads. The figures are in scripts/reliability/load-results.md.

func loadFull() bool { return os.Getenv("FAMGUARD_LOAD_FULL") == "1" }

const (
	flooderMAC = "02:00:00:00:01:01"
	floodRate  = 30000 // queries/s the flooder aims at
	normalRate = 20    // queries/s of each ordinary device: a busy one
)

var normalMACs = []string{"02:00:00:00:01:11", "02:00:00:00:01:12", "02:00:00:00:01:13"}

// loadProfile protects the flooder and the three ordinary devices (each its
// own child), so all their DNS is redirected to the filter and attributed
// to their MACs.
func loadProfile() string {
	var b strings.Builder
	b.WriteString("version: 1\ntimezone: Europe/Berlin\nchildren:\n")
	fmt.Fprintf(&b, "  mallory:\n    devices: [{mac: %q, name: flooder}]\n    block: [gambling]\n", flooderMAC)
	for i, mac := range normalMACs {
		fmt.Fprintf(&b, "  kid%d:\n    devices: [{mac: %q, name: \"device %d\"}]\n    block: [gambling]\n", i+1, mac, i+1)
	}
	return b.String()
}

type dnsLoad struct {
	Sent     int64   `json:"sent"`
	Answered int64   `json:"answered"`
	Lost     int64   `json:"lost"`
	Seconds  float64 `json:"seconds"`
	P50us    int64   `json:"p50_us"`
	P99us    int64   `json:"p99_us"`
	MaxUs    int64   `json:"max_us"`
}

func us(v int64) string {
	if v < 0 {
		return "lost"
	}
	return fmt.Sprintf("%.2f ms", float64(v)/1000)
}

// runLoad runs `labhost dnsload` in h against the router's port 53 (which
// the REDIRECT sends to the filter) and returns its result.
// It may run on any goroutine: failures are reported with Errorf.
func runLoad(t *testing.T, l *lab.Lab, h *lab.Host, dur time.Duration, args ...string) dnsLoad {
	ctx, cancel := context.WithTimeout(context.Background(), dur+20*time.Second)
	defer cancel()
	argv := append([]string{binary(t, "labhost"), "dnsload", "--server", lab.RouterLAN4.String() + ":53", "--for", dur.String()}, args...)
	out, err := l.Run(ctx, h, argv...)
	var r dnsLoad
	if err != nil || json.Unmarshal([]byte(strings.TrimSpace(out)), &r) != nil {
		t.Errorf("dnsload in %s: %v\n%s", h.Name, err, out)
		return dnsLoad{P50us: -1, P99us: -1, MaxUs: -1}
	}
	return r
}

type phaseResult struct {
	name      string
	rcvbufErr int64 // UDP datagrams the router's kernel dropped for a full socket buffer
	normal    []dnsLoad
	flood     *dnsLoad
	limited   map[string]uint64
	agentCPU  time.Duration
}

// TestDNSFloodFairness: one protected device floods the DNS filter (30,000
// queries/s through the router's REDIRECT, for a bounded time) while three
// ordinary devices make 20 queries/s each, one after the other. Three
// phases in one lab, side by side: no flood; the flood with the default
// per-device limits; the flood with the limits off (agent restarted with
// --dns-client-rate 0 --dns-client-inflight 0). With the limits the
// ordinary devices lose nothing and the flooder is held to its rate; the
// third phase shows what the limits are for.
func TestDNSFloodFairness(t *testing.T) {
	dur := 3 * time.Second
	if loadFull() {
		dur = 10 * time.Second
	}
	lab.RequireRoot(t)
	specs := []lab.DeviceSpec{{Name: "flood", MAC: flooderMAC}}
	for i, mac := range normalMACs {
		specs = append(specs, lab.DeviceSpec{Name: fmt.Sprintf("dev%d", i+1), MAC: mac})
	}
	l, err := lab.New(context.Background(), fmt.Sprintf("fgl%d%d", os.Getpid()%1000, labSeq.Add(1)), specs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("removing the lab: %v", err)
		}
	})
	f := &familyLab{Lab: l}
	// The router's resolver: dnsmasq, answering every name itself.
	startDnsmasq(t, f, l.Router, "127.0.0.1,192.0.2.1", "198.51.100.10", "2001:db8:2::10")
	dir := t.TempDir()
	profiles, state := filepath.Join(dir, "profiles.d"), filepath.Join(dir, "state")
	if err := os.MkdirAll(filepath.Join(dir, "categories"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "categories", "gambling.txt"), "casino.example\n")
	if err := os.MkdirAll(profiles, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(profiles, "family.yaml"), loadProfile())

	phase := func(a *agent, name string, withFlood bool) phaseResult {
		// Every device must be in the agent's neighbour table before the
		// phase: a query from an unknown address is not attributed to its
		// MAC (one warm-up query each, through the redirect).
		for _, h := range l.Order {
			runLoad(t, l, h, 300*time.Millisecond, "--rate", "10", "--name", "warmup")
		}
		before := a.status().DNS.RateLimitedBy
		cpu0 := procCPU(t, a.cmd.Process.Pid)
		drops0 := udpRcvbufErrors(t, l)
		res := phaseResult{name: name, normal: make([]dnsLoad, len(normalMACs))}
		var wg sync.WaitGroup
		if withFlood {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := runLoad(t, l, l.Devices["flood"], dur, "--mode", "flood", "--rate", strconv.Itoa(floodRate), "--sockets", "4", "--name", "flood")
				res.flood = &r
			}()
			time.Sleep(200 * time.Millisecond) // the flood is on before the first ordinary query
		}
		for i := range normalMACs {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				res.normal[i] = runLoad(t, l, l.Devices[fmt.Sprintf("dev%d", i+1)], dur, "--rate", strconv.Itoa(normalRate), "--name", fmt.Sprintf("dev%d", i+1))
			}(i)
		}
		wg.Wait()
		res.agentCPU = procCPU(t, a.cmd.Process.Pid) - cpu0
		res.rcvbufErr = udpRcvbufErrors(t, l) - drops0
		res.limited = map[string]uint64{}
		for k, v := range a.status().DNS.RateLimitedBy {
			if d := v - before[k]; d > 0 {
				res.limited[k] = d
			}
		}
		return res
	}

	a := startAgent(t, l, profiles, state, "")
	var results []phaseResult
	results = append(results, phase(a, "no flood", false))
	results = append(results, phase(a, "flood, default limits", true))
	lim := a.status().DNS.Limits
	a.stop()
	b := startAgent(t, l, profiles, state, "", "--dns-client-rate", "0", "--dns-client-inflight", "0")
	results = append(results, phase(b, "flood, limits off", true))

	t.Logf("DNS flood, %v per phase; limits %d/s, burst %d, %d in flight; ordinary devices %d q/s each, flooder aiming at %d q/s",
		dur, lim.Rate, lim.Burst, lim.InFlight, normalRate, floodRate)
	t.Logf("| phase | device | sent | answered | lost | p50 | p99 | max | refused by the limits | agent CPU | router UDP buffer drops |")
	t.Logf("|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range results {
		for i, n := range r.normal {
			t.Logf("| %s | device %d (%d q/s) | %d | %d | %d | %s | %s | %s | %d | |", r.name, i+1, normalRate, n.Sent, n.Answered, n.Lost,
				us(n.P50us), us(n.P99us), us(n.MaxUs), r.limited[normalMACs[i]])
		}
		if fl := r.flood; fl != nil {
			t.Logf("| %s | flooder | %d (%.0f/s) | %d (%.0f/s) | %d | | | | %d | %.2f s of %v | %d |", r.name, fl.Sent, float64(fl.Sent)/dur.Seconds(),
				fl.Answered, float64(fl.Answered)/dur.Seconds(), fl.Lost, r.limited[flooderMAC], r.agentCPU.Round(10*time.Millisecond).Seconds(), dur, r.rcvbufErr)
		} else {
			t.Logf("| %s | | | | | | | | | %.2f s of %v | %d |", r.name, r.agentCPU.Round(10*time.Millisecond).Seconds(), dur, r.rcvbufErr)
		}
	}

	for _, r := range results {
		worst := ""
		for _, n := range r.normal {
			worst += fmt.Sprintf(" %d/%d p99 %s;", n.Answered, n.Sent, us(n.P99us))
		}
		flood := "no flooder"
		if fl := r.flood; fl != nil {
			flood = fmt.Sprintf("flooder sent %.0f/s, answered %d, %d refused by the limits", float64(fl.Sent)/dur.Seconds(), fl.Answered, r.limited[flooderMAC])
		}
		reliability(t, "load", "DNS, one device flooding beside 3 ordinary ones ("+r.name+")", "ordinary devices answered/sent:%s %s; socket drops %d", worst, flood, r.rcvbufErr)
	}

	// What must hold with the limits on.
	withLimits := results[1]
	for i, n := range withLimits.normal {
		if n.Lost > n.Sent/100 {
			t.Errorf("with the limits, device %d lost %d of %d queries during the flood", i+1, n.Lost, n.Sent)
		}
		// The lab shares its cores with the flooder and whatever else the
		// machine runs: the bound is 100 ms, or three times the device's
		// p99 without the flood when the machine is that busy.
		bound := max(int64(100_000), 3*results[0].normal[i].P99us)
		if n.P99us < 0 || n.P99us > bound {
			t.Errorf("with the limits, device %d's p99 during the flood is %s (want ≤ %s)", i+1, us(n.P99us), us(bound))
		}
		if withLimits.limited[normalMACs[i]] != 0 {
			t.Errorf("device %d was refused %d queries", i+1, withLimits.limited[normalMACs[i]])
		}
	}
	if fl := withLimits.flood; fl == nil || withLimits.limited[flooderMAC] == 0 {
		t.Errorf("the flooder was not limited: %+v, refused %v", fl, withLimits.limited)
	} else if allowed := float64(lim.Burst) + float64(lim.Rate)*fl.Seconds; float64(fl.Answered) > 1.05*allowed {
		t.Errorf("the flooder got %d answers in %.1f s; its limits allow %.0f", fl.Answered, fl.Seconds, allowed)
	}
}

// udpRcvbufErrors reads the router namespace's count of UDP datagrams
// dropped because the receiving socket's buffer was full.
func udpRcvbufErrors(t *testing.T, l *lab.Lab) int64 {
	out, err := l.Run(context.Background(), l.Router, "cat", "/proc/net/snmp")
	if err != nil {
		t.Fatal(err)
	}
	var head []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if head == nil {
			head = f
			continue
		}
		for i, name := range head {
			if name == "RcvbufErrors" && i < len(f) {
				n, _ := strconv.ParseInt(f[i], 10, 64)
				return n
			}
		}
	}
	t.Fatal("no Udp RcvbufErrors in the router's /proc/net/snmp")
	return 0
}

// procCPU is the user+system CPU time a process has used.
func procCPU(t testing.TB, pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // fields from 3 on
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// procSample is the agent's footprint seen from outside (/proc) and from
// its own status.
type procSample struct {
	reloads    int
	rssKiB     int
	fds        int
	goroutines int
	heapKiB    uint64
}

func sampleAgent(t testing.TB, a *agent, reloads int) procSample {
	t.Helper()
	pid := a.cmd.Process.Pid
	s := procSample{reloads: reloads}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			s.rssKiB, _ = strconv.Atoi(f[1])
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	s.fds = len(fds)
	rt := soakStatus(t, a).Runtime
	s.goroutines, s.heapKiB = rt.Goroutines, rt.HeapBytes>>10
	return s
}

// soakStatus asks for status with a generous deadline: status is answered
// by the agent's loop, which waits for iptables-restore, and on a machine
// shared with other labs one apply in thousands took 2.4 s (the agent's
// 2-second default in the other tests then fails a soak that has nothing
// wrong with it). The time to apply is measured and reported separately.
func soakStatus(t testing.TB, a *agent) daemon.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var st daemon.Status
	if err := control.Call(ctx, a.State, "status", &st); err != nil {
		t.Fatalf("status: %v", err)
	}
	return st
}

// TestReloadSoak: reloads in a loop against the real agent in a lab router,
// each a real change of the profile file (atomic rename, as a push does;
// picked up by the agent's directory watch), alternating two valid
// variants of a 10-device household — in one, a device is offline at the
// agent's noon, so every other reload also cuts its connections — with DNS
// filtering on. Each reload is waited for (its rules in the kernel) before
// the next. RSS, goroutines and open files, sampled at the start, every
// 1,000 reloads and at the end, stay flat after the first 1,000: RSS within
// 2 MiB, goroutines ±5, open files ±3.
//
// `make test` runs 1,000 reloads (the flatness then compares the end with
// the sample after the first 100); `make reliability-load` runs 10,000.
func TestReloadSoak(t *testing.T) {
	total, warm := 1000, 100
	if loadFull() {
		total, warm = 10000, 1000
	}
	if n, err := strconv.Atoi(os.Getenv("FAMGUARD_SOAK_RELOADS")); err == nil && n >= 20 {
		total, warm = n, max(n/10, 10)
	}
	lab.RequireRoot(t)
	l, err := lab.New(context.Background(), fmt.Sprintf("fgl%d%d", os.Getpid()%1000, labSeq.Add(1)), []lab.DeviceSpec{{Name: "kid", MAC: "02:00:00:00:00:00"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("removing the lab: %v", err)
		}
	})
	dir := t.TempDir()
	profiles := filepath.Join(dir, "profiles.d")
	if err := os.MkdirAll(profiles, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "categories"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "categories", "gambling.txt"), "casino.example\n")
	path := filepath.Join(profiles, "family.yaml")
	writeFile(t, path, householdProfile(10, false))
	// --log-level info: the debug log of 10,000 reloads would only fill the
	// test's memory.
	a := startAgent(t, l, profiles, filepath.Join(dir, "state"), noon.Format(time.RFC3339), "--log-level", "info")

	samples := []procSample{sampleAgent(t, a, 0)}
	digests := map[string]bool{}
	var lat []time.Duration // file written → rules in the kernel (the agent's own timestamp)
	start := time.Now()
	for i := 1; i <= total; i++ {
		prev := soakStatus(t, a)
		t0 := time.Now()
		writeFile(t, path, householdProfile(10, i%2 == 1))
		for {
			st := soakStatus(t, a)
			if st.Dataplane.Applies > prev.Dataplane.Applies && st.LastReload.At.After(t0) && st.LastReload.Policy != prev.LastReload.Policy {
				if !st.LastReload.OK {
					t.Fatalf("reload %d failed: %+v", i, st.LastReload)
				}
				digests[st.LastReload.Policy] = true
				lat = append(lat, st.Dataplane.LastApply.Sub(t0))
				break
			}
			if time.Since(t0) > 15*time.Second {
				t.Fatalf("reload %d not applied within 15 s; last reload %+v", i, st.LastReload)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if i == warm || i%1000 == 0 || i == total {
			time.Sleep(300 * time.Millisecond) // let the last reload's goroutines and the watcher settle
			samples = append(samples, sampleAgent(t, a, i))
		}
	}
	took := time.Since(start)

	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("%d reloads in %v (%.1f ms each, each waited for through status), %d distinct policies; file written → rules in the kernel p50 %v, p99 %v",
		total, took.Round(time.Second), float64(took.Milliseconds())/float64(total), len(digests),
		lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)*99/100].Round(time.Millisecond))
	t.Logf("slowest reload: %v", lat[len(lat)-1].Round(time.Millisecond))
	t.Logf("| reloads | RSS MiB | goroutines | open fds | live heap KiB |")
	t.Logf("|---|---|---|---|---|")
	var base procSample
	for _, s := range samples {
		t.Logf("| %d | %.1f | %d | %d | %d |", s.reloads, float64(s.rssKiB)/1024, s.goroutines, s.fds, s.heapKiB)
		if s.reloads == warm {
			base = s
		}
	}
	end := samples[len(samples)-1]
	reliability(t, "load", fmt.Sprintf("%d reloads in a loop (real file changes)", total), "from reload %d to %d: RSS %.1f → %.1f MiB, goroutines %d → %d, open fds %d → %d; p99 reload %v; %v in all",
		warm, total, float64(base.rssKiB)/1024, float64(end.rssKiB)/1024, base.goroutines, end.goroutines, base.fds, end.fds, lat[len(lat)*99/100].Round(time.Millisecond), took.Round(time.Second))
	if len(digests) != 2 {
		t.Errorf("the reloads applied %d distinct policies, want the 2 variants", len(digests))
	}
	if d := end.rssKiB - base.rssKiB; d > 2048 {
		t.Errorf("RSS grew by %d KiB between reload %d and %d (tolerance 2 MiB)", d, warm, total)
	}
	if d := end.goroutines - base.goroutines; d > 5 || d < -5 {
		t.Errorf("goroutines went from %d to %d between reload %d and %d (tolerance ±5)", base.goroutines, end.goroutines, warm, total)
	}
	if d := end.fds - base.fds; d > 3 || d < -3 {
		t.Errorf("open files went from %d to %d between reload %d and %d (tolerance ±3)", base.fds, end.fds, warm, total)
	}
}
