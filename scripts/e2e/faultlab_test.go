package e2e

// Fault injection in the lab ("Prove it holds"): each test breaks one thing
// the agent depends on — the agent process itself, the iptables-restore
// tool, the xtables lock, the state directory, the profile directory, the
// clock — while a prober on an offline device tries a new TCP connection
// every 20 ms over IPv4 and IPv6, and asserts that not one gets through and
// that `famguard status --json` tells what happened.
//
// Nothing here touches the host: the agent runs in the lab's router
// namespace; mounts are made in private mount namespaces (unshare -m); the
// xtables lock is a test file (XTABLES_LOCKFILE); the clock is the agent's
// simulated one.
//
// Each test is kept well under a minute for `make test`. The kill -9 test
// runs FAMGUARD_FAULT_KILLS kills (30 by default; `make reliability-faults`
// runs 150).

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/famguard/famguard/agent/control"
	"github.com/famguard/famguard/agent/daemon"
	"github.com/famguard/famguard/scripts/lab"
)

// newAgent prepares an agent without starting it (set env/prefix first).
func newAgent(t *testing.T, l *lab.Lab, profiles, state string, extra ...string) *agent {
	a := &agent{t: t, lab: l, Profiles: profiles, State: state, extra: extra}
	t.Cleanup(func() { a.stop() })
	return a
}

// patientStatus asks for status allowing the loop up to `wait` to answer (it
// may be inside a slow or hung iptables-restore).
func (a *agent) patientStatus(wait time.Duration) (daemon.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var st daemon.Status
	err := control.Call(ctx, a.State, "status", &st)
	return st, err
}

// waitStatus polls status until cond holds.
func (a *agent) waitStatus(t *testing.T, what string, max time.Duration, cond func(daemon.Status) bool) daemon.Status {
	t.Helper()
	deadline := time.Now().Add(max)
	var last daemon.Status
	var lastErr error
	for time.Now().Before(deadline) {
		st, err := a.patientStatus(15 * time.Second)
		if err == nil && cond(st) {
			return st
		}
		last, lastErr = st, err
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("status never showed %s within %v; last: %+v (err %v)\nagent log:\n%s", what, max, last.Dataplane, lastErr, tail(a.log.String(), 40))
	return last
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// prober is labhost probe running from a device until stopped.
type prober struct {
	name string
	cmd  *exec.Cmd
	out  *lab.SyncBuffer
	done chan struct{}
}

// startProbers probes the internet host from h every 20 ms over IPv4 and
// IPv6 until stopProbers (at most max).
func (f *familyLab) startProbers(t *testing.T, h *lab.Host, max time.Duration) []*prober {
	t.Helper()
	var ps []*prober
	for _, to := range []struct{ name, addr string }{{"IPv4", inet4 + ":8080"}, {"IPv6", "[" + inet6 + "]:8080"}} {
		p := &prober{name: to.name, out: &lab.SyncBuffer{}, done: make(chan struct{})}
		p.cmd = f.Cmd(context.Background(), h, binary(t, "labhost"), "probe", "--to", to.addr, "--every", "20ms", "--for", max.String())
		p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { _ = p.cmd.Wait(); close(p.done) }()
		t.Cleanup(func() {
			select {
			case <-p.done:
			default:
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		})
		ps = append(ps, p)
	}
	return ps
}

var summaryRE = regexp.MustCompile(`summary: (\d+) ok, (\d+) blocked`)

// stopProbers stops the probers and asserts that none got through; it
// returns the probes sent and succeeded over both families.
func stopProbers(t *testing.T, ps []*prober, what string) (sent, ok int) {
	t.Helper()
	for _, p := range ps {
		// labhost prints its summary on SIGTERM. `nsenter` execs the
		// prober, so the PID is the prober's.
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		out := p.out.String()
		m := summaryRE.FindStringSubmatch(out)
		if m == nil {
			t.Errorf("%s: %s prober printed no summary:\n%s", what, p.name, out)
			continue
		}
		o, _ := strconv.Atoi(m[1])
		b, _ := strconv.Atoi(m[2])
		sent += o + b
		ok += o
		if o > 0 || len(okLines(out)) > 0 {
			t.Errorf("%s: %s: %d probe(s) of the offline device got through:\n%s", what, p.name, o, out)
		}
		if o+b < 10 {
			t.Errorf("%s: %s: only %d probes sent", what, p.name, o+b)
		}
	}
	t.Logf("%s: %d probes sent every 20 ms over IPv4 and IPv6, %d got through", what, sent, ok)
	return sent, ok
}

// bobOfflineProfile adds an offline window to Bob that covers 21:30.
var bobOfflineProfile = strings.Replace(familyProfile,
	`      - {name: bedtime, days: [daily], from: "22:00", to: "07:00", action: offline}`,
	`      - {name: bedtime, days: [daily], from: "22:00", to: "07:00", action: offline}
      - {name: chores, days: [daily], from: "21:15", to: "21:50", action: offline}`, 1)

// ---------------------------------------------------------------------------
// kill -9 at random moments while applies run back to back

// crowdProfile is the family plus n devices of a "crowd" child, all offline
// all day; variant 0 and 1 use disjoint MAC ranges, so every apply that
// switches variant rewrites every per-device rule (filter and nat) and a
// half-written chain would show as a partial set.
func crowdProfile(variant, n int) string {
	var b strings.Builder
	// The crowd is one more child: before the file-level trusted list.
	b.WriteString(strings.TrimSuffix(familyProfile, parentTrusted))
	b.WriteString("  crowd:\n    devices:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "      - {mac: \"02:00:00:%02x:%02x:%02x\", name: \"crowd %d\"}\n", variant+1, i>>8, i&0xff, i)
	}
	b.WriteString("    schedules:\n      - {name: allday, days: [daily], from: \"00:00\", to: \"24:00\", action: offline}\n")
	b.WriteString(parentTrusted)
	return b.String()
}

// famguardState is what one family's iptables-save shows of famguard, per
// table: which crowd variant the table holds.
type tableCheck struct {
	filterVariant, natVariant int // 0 or 1; -1: none
}

// checkConsistent reads iptables-save output and fails unless famguard's
// part of every table is complete: the jumps first and single, the chains
// declared, Alice's block in place, the reject chain whole, and the crowd's
// rules all of one variant (n per variant in filter, 2n in nat).
func checkConsistent(save string, n, rejectRules int) (tableCheck, error) {
	tbl := ""
	jumps := map[string][]int{} // builtin → positions of famguard jumps
	pos := map[string]int{}
	declared := map[string]bool{}
	count := map[string]int{} // table:chain:class → rules
	sc := bufio.NewScanner(strings.NewReader(save))
	sc.Buffer(make([]byte, 1<<16), 1<<24)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "*"):
			tbl = l[1:]
		case strings.HasPrefix(l, ":FAMGUARD"):
			declared[tbl+":"+strings.Fields(l[1:])[0]] = true
		case strings.HasPrefix(l, "-A "):
			f := strings.Fields(l)
			chain := f[1]
			if !strings.HasPrefix(chain, "FAMGUARD") {
				pos[tbl+":"+chain]++
				if strings.Contains(l, "-j FAMGUARD") {
					jumps[tbl+":"+chain] = append(jumps[tbl+":"+chain], pos[tbl+":"+chain])
				}
				continue
			}
			class := "other"
			switch {
			case strings.Contains(l, "--mac-source 02:00:00:01:"):
				class = "crowd0"
			case strings.Contains(l, "--mac-source 02:00:00:02:"):
				class = "crowd1"
			case strings.Contains(l, "--mac-source "+aliceMAC):
				class = "alice"
			}
			count[tbl+":"+chain+":"+class]++
			count[tbl+":"+chain]++
		}
	}
	for _, j := range []string{"filter:FORWARD", "filter:INPUT", "nat:PREROUTING"} {
		if p := jumps[j]; len(p) != 1 || p[0] != 1 {
			return tableCheck{}, fmt.Errorf("%s: famguard's jump at positions %v, want exactly one, first", j, p)
		}
	}
	for _, c := range []string{"filter:FAMGUARD", "filter:FAMGUARD-REJECT", "filter:FAMGUARD-INPUT", "filter:FAMGUARD-BYPASS", "filter:FAMGUARD-DOH", "nat:FAMGUARD-DNS"} {
		if !declared[c] {
			return tableCheck{}, fmt.Errorf("chain %s missing", c)
		}
	}
	if got := count["filter:FAMGUARD-REJECT"]; got != rejectRules {
		return tableCheck{}, fmt.Errorf("FAMGUARD-REJECT has %d rules, want %d", got, rejectRules)
	}
	if count["filter:FAMGUARD:alice"] != 1 {
		return tableCheck{}, fmt.Errorf("Alice's MAC rule missing from FAMGUARD")
	}
	variant := func(chain string, per int) (int, error) {
		a, b := count[chain+":crowd0"], count[chain+":crowd1"]
		switch {
		case a == per && b == 0:
			return 0, nil
		case a == 0 && b == per:
			return 1, nil
		}
		return -1, fmt.Errorf("%s holds %d rules of crowd variant 0 and %d of variant 1; want %d of exactly one (a half-written chain)", chain, a, b, per)
	}
	var c tableCheck
	var err error
	if c.filterVariant, err = variant("filter:FAMGUARD", n); err != nil {
		return c, err
	}
	if c.natVariant, err = variant("nat:FAMGUARD-DNS53", 2*n); err != nil {
		return c, err
	}
	return c, nil
}

// restoreInFlight reports whether pid has an iptables-restore or
// ip6tables-restore child right now.
func restoreInFlight(pid int) bool {
	// Children are listed per thread, and Go forks from any of its threads.
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var kids []string
	for _, task := range tasks {
		if b, err := os.ReadFile(task); err == nil {
			kids = append(kids, strings.Fields(string(b))...)
		}
	}
	for _, c := range kids {
		comm, _ := os.ReadFile("/proc/" + c + "/comm")
		if strings.Contains(string(comm), "tables-rest") {
			return true
		}
	}
	return false
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestFaultKill9DuringApplies: the profile is rewritten every 30 ms,
// alternating two valid variants of 150 extra devices, so the agent applies
// large rulesets back to back; the agent is killed with SIGKILL at a random
// moment (0–500 ms after its start; every other time at the first sight
// of a running iptables-restore after that) and restarted,
// FAMGUARD_FAULT_KILLS times. After every kill iptables-save and ip6tables-save must show
// famguard's chains complete and of one variant per table, and Alice
// (offline throughout) must never get a connection through.
func TestFaultKill9DuringApplies(t *testing.T) {
	kills := envInt("FAMGUARD_FAULT_KILLS", 30)
	const n = 150
	f := newFamilyLab(t)
	path := filepath.Join(f.profiles, "family.yaml")
	writeFile(t, path, crowdProfile(0, n))
	clockAt := bedtime.Add(30 * time.Minute).Format(time.RFC3339)
	a := startAgent(t, f.Lab, f.profiles, f.state, clockAt)
	f.expectReach(t, f.alice, false, "at 21:30")

	// The reject chain's size, from a settled ruleset.
	rejectRules := 0
	for _, l := range famguardLines(t, f.Lab, "iptables-save") {
		if strings.HasPrefix(l, "-A FAMGUARD-REJECT ") {
			rejectRules++
		}
	}
	rejectRules6 := 0
	for _, l := range famguardLines(t, f.Lab, "ip6tables-save") {
		if strings.HasPrefix(l, "-A FAMGUARD-REJECT ") {
			rejectRules6++
		}
	}

	// The rewriter: a new variant every 30 ms (more than the 20 ms debounce,
	// so each write is a reload).
	stop := make(chan struct{})
	var writes atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		variants := []string{crowdProfile(0, n), crowdProfile(1, n)}
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(30 * time.Millisecond):
			}
			tmp := path + ".tmp"
			if os.WriteFile(tmp, []byte(variants[i%2]), 0o644) == nil && os.Rename(tmp, path) == nil {
				writes.Add(1)
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	probes := f.startProbers(t, f.alice, 10*time.Minute)
	start := time.Now()
	inFlight, mixed, checks := 0, 0, 0
	for i := 0; i < kills; i++ {
		if i > 0 {
			a.launch(clockAt)
		}
		time.Sleep(time.Duration(rand.IntN(500)) * time.Millisecond)
		// Every other kill waits (up to 300 ms) for an iptables-restore to
		// be running, so that many kills land inside an apply.
		for wait := time.Now().Add(300 * time.Millisecond); i%2 == 1 && time.Now().Before(wait) && !restoreInFlight(a.cmd.Process.Pid); {
			time.Sleep(time.Millisecond)
		}
		if restoreInFlight(a.cmd.Process.Pid) {
			inFlight++
		}
		a.kill9()
		for fam, save := range map[string]string{"IPv4": "iptables-save", "IPv6": "ip6tables-save"} {
			out, err := f.Run(context.Background(), f.Router, save)
			if err != nil {
				t.Fatal(err)
			}
			rr := rejectRules
			if fam == "IPv6" {
				rr = rejectRules6
			}
			c, err := checkConsistent(out, n, rr)
			checks++
			if err != nil {
				t.Fatalf("after kill %d: %s ruleset inconsistent: %v", i+1, fam, err)
			}
			if c.filterVariant != c.natVariant {
				mixed++
			}
		}
	}
	took := time.Since(start)
	// A last agent must come up and settle on the current file.
	a.start(clockAt)
	close(stop)
	wg.Wait()
	stop = make(chan struct{}) // for the deferred close
	sent, ok := stopProbers(t, probes, fmt.Sprintf("%d kills", kills))
	st := a.status()
	if st.Dataplane.LastError != "" {
		t.Errorf("the last agent reports %q", st.Dataplane.LastError)
	}
	f.expectReach(t, f.alice, false, "after the kills")
	f.expectReach(t, f.parent, true, "after the kills")
	t.Logf("RESULT kill9: %d kills in %v (%.0f ms each), %d with an iptables-restore running at the kill; %d profile rewrites; %d rulesets checked, all complete; %d family snapshots with filter and nat from different variants; probes %d sent, %d ok",
		kills, took.Round(time.Second), float64(took.Milliseconds())/float64(kills), inFlight, writes.Load(), checks, mixed, sent, ok)
}

// ---------------------------------------------------------------------------
// iptables-restore failing, then hanging

// standIn writes iptables-restore and ip6tables-restore stand-ins into a new
// directory: each reads the mode file ("fail", "hang", anything else: run
// the real tool) and records its PID.
func standIn(t *testing.T) (dir, modeFile, pidFile string) {
	t.Helper()
	dir = t.TempDir()
	modeFile, pidFile = filepath.Join(dir, "mode"), filepath.Join(dir, "pids")
	for _, tool := range []string{"iptables-restore", "ip6tables-restore"} {
		real, err := exec.LookPath(tool)
		if err != nil {
			t.Fatal(err)
		}
		script := fmt.Sprintf(`#!/bin/sh
# Stand-in for %[1]s in the fault tests.
echo $$ >> %[3]s
case "$(cat %[2]s 2>/dev/null)" in
fail) cat >/dev/null; echo "%[1]s: stand-in failure on purpose (line 1 failed)" >&2; exit 1 ;;
hang) exec sleep 3600 ;;
esac
exec %[4]s "$@"
`, tool, modeFile, pidFile, real)
		if err := os.WriteFile(filepath.Join(dir, tool), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir, modeFile, pidFile
}

// privateMounts is the command prefix for a mount namespace whose mounts
// (under the given directories) stay in it. `unshare -m` makes every mount
// private first, which fails where "/" is not a mount point (a chroot, many
// containers). There the mounts are often private already (make
// test-fresh's root is), and then `--propagation unchanged` is as good;
// where the mount holding one of the directories is shared it would leak
// the test's mounts out, so the test stops with the reason instead.
func privateMounts(t *testing.T, dirs ...string) []string {
	t.Helper()
	if exec.Command("unshare", "-m", "true").Run() == nil {
		return []string{"unshare", "-m"}
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if at, shared := sharedMountOf(string(mi), d); shared {
			t.Fatalf("cannot make a private mount namespace here: \"/\" is not a mount point and %s is on a shared mount (%s); run the lab where / is a mount point, or in a private mount namespace (unshare -m --propagation private, as make test-fresh does)", d, at)
		}
	}
	return []string{"unshare", "-m", "--propagation", "unchanged"}
}

// sharedMountOf finds the mount holding path in a mountinfo text (the
// longest mount point that is a prefix of it) and whether it is shared.
// Mounts outside a chroot are not listed: a path on the chroot's own root
// then has no entry, and only its namespace's propagation decides.
func sharedMountOf(mountinfo, path string) (string, bool) {
	best, shared := "", false
	for _, line := range strings.Split(mountinfo, "\n") {
		f := strings.Fields(line)
		if len(f) < 7 {
			continue
		}
		mp := f[4]
		if mp != "/" && path != mp && !strings.HasPrefix(path, mp+"/") {
			continue
		}
		if len(mp) < len(best) {
			continue
		}
		best, shared = mp, false
		for _, opt := range f[6:] {
			if opt == "-" {
				break
			}
			if strings.HasPrefix(opt, "shared:") {
				shared = true
			}
		}
	}
	return best, shared
}

func setMode(t *testing.T, file, mode string) {
	t.Helper()
	if err := os.WriteFile(file, []byte(mode+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestFaultRestoreFailsThenHangs: with a stand-in iptables-restore first on
// the agent's PATH, a profile change cannot be applied — first because the
// tool fails, then because it hangs. Both times the agent reports it
// (last_error, failures, consecutive_failures, retry_backoff), keeps the
// rules in force exactly as they were (Alice, offline, never gets through),
// retries with a growing backoff, kills each hung run after
// --restore-timeout, and applies the change as soon as the tool works.
func TestFaultRestoreFailsThenHangs(t *testing.T) {
	f := newFamilyLab(t)
	dir, modeFile, pidFile := standIn(t)
	path := filepath.Join(f.profiles, "family.yaml")
	writeFile(t, path, familyProfile)
	a := newAgent(t, f.Lab, f.profiles, f.state, "--restore-timeout", "2s")
	a.env = []string{"PATH=" + dir + ":" + os.Getenv("PATH")}
	a.start(bedtime.Add(30 * time.Minute).Format(time.RFC3339))
	f.expectReach(t, f.alice, false, "at 21:30")
	f.expectReach(t, f.bob, true, "at 21:30")
	probes := f.startProbers(t, f.alice, 2*time.Minute)
	// The traffic above puts the children's addresses in the neighbour
	// table, and the agent then adds rules for them: take the baseline only
	// once the rules have stayed the same for a second.
	good4, good6 := settledRules(t, f)

	// 1. The tool fails. Bob's new window cannot be applied.
	setMode(t, modeFile, "fail")
	failStart := time.Now()
	writeFile(t, path, bobOfflineProfile)
	backoffs := map[string]bool{}
	st := a.waitStatus(t, "three failed applies in a row", 20*time.Second, func(s daemon.Status) bool {
		if s.Dataplane.RetryBackoff != "" {
			backoffs[s.Dataplane.RetryBackoff] = true
		}
		return s.Dataplane.ConsecutiveFailures >= 3 && s.LastReload.OK
	})
	if !strings.Contains(st.Dataplane.LastError, "stand-in failure") || st.Dataplane.NextRetry == nil {
		t.Errorf("status while failing: %+v; want the tool's message and a next retry", st.Dataplane)
	}
	if !sameLines(famguardLines(t, f.Lab, "iptables-save"), good4) || !sameLines(famguardLines(t, f.Lab, "ip6tables-save"), good6) {
		t.Error("the rules in force changed while iptables-restore was failing")
	}
	f.expectReach(t, f.bob, true, "while the tool fails (the change is not applied)")
	t.Logf("failing: %d failures (%d in a row) in %v, backoffs seen %v; last_error %q",
		st.Dataplane.Failures, st.Dataplane.ConsecutiveFailures, time.Since(failStart).Round(time.Millisecond), keys(backoffs), st.Dataplane.LastError)
	failFigures := fmt.Sprintf("%d failed attempts (families) in %v, backoff %v", st.Dataplane.Failures, time.Since(failStart).Round(100*time.Millisecond), keys(backoffs))

	// 2. The tool works again: the change is applied at the next retry.
	setMode(t, modeFile, "ok")
	okAt := time.Now()
	f.waitReach(t, f.bob, inet4, false, 15*time.Second)
	f.waitReach(t, f.bob, inet6, false, 3*time.Second) // IPv6 is written just after IPv4
	recovered := time.Since(okAt)
	f.expectReach(t, f.bob, false, "after the tool recovered")
	st = a.waitStatus(t, "failures cleared", 5*time.Second, func(s daemon.Status) bool {
		return s.Dataplane.LastError == "" && s.Dataplane.ConsecutiveFailures == 0 && s.Dataplane.NextRetry == nil
	})
	t.Logf("recovered: Bob blocked %v after the tool worked again; applies %d", recovered.Round(time.Millisecond), st.Dataplane.Applies)
	good4, good6 = settledRules(t, f)

	// 3. The tool hangs. Lifting Bob's window cannot be applied; each run
	// is killed after 2 s.
	setMode(t, modeFile, "hang")
	hangStart := time.Now()
	writeFile(t, path, familyProfile)
	st = a.waitStatus(t, "two timed-out applies in a row", 40*time.Second, func(s daemon.Status) bool {
		return s.Dataplane.ConsecutiveFailures >= 2 && strings.Contains(s.Dataplane.LastError, "did not finish in time")
	})
	if !sameLines(famguardLines(t, f.Lab, "iptables-save"), good4) || !sameLines(famguardLines(t, f.Lab, "ip6tables-save"), good6) {
		t.Error("the rules in force changed while iptables-restore was hanging")
	}
	f.expectReach(t, f.bob, false, "while the tool hangs (the lift is not applied)")
	t.Logf("hanging: %d in a row after %v, last_error %q", st.Dataplane.ConsecutiveFailures, time.Since(hangStart).Round(time.Millisecond), st.Dataplane.LastError)
	hangFigures := fmt.Sprintf("%d timed-out applies in a row in %v (each killed after 2 s)", st.Dataplane.ConsecutiveFailures, time.Since(hangStart).Round(100*time.Millisecond))

	// 4. Working again.
	setMode(t, modeFile, "ok")
	okAt = time.Now()
	f.waitReach(t, f.bob, inet4, true, 20*time.Second)
	recovered2 := time.Since(okAt)
	a.waitStatus(t, "failures cleared after the hang", 10*time.Second, func(s daemon.Status) bool {
		return s.Dataplane.LastError == "" && s.Dataplane.ConsecutiveFailures == 0
	})
	sent, ok := stopProbers(t, probes, "restore failing and hanging")

	// No stand-in left running: every hung run was killed.
	b, _ := os.ReadFile(pidFile)
	hung := 0
	for _, p := range strings.Fields(string(b)) {
		pid, _ := strconv.Atoi(p)
		if pid > 0 && syscall.Kill(pid, 0) == nil {
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
			if strings.TrimSpace(string(comm)) == "sleep" {
				hung++
			}
		}
	}
	if hung > 0 {
		t.Errorf("%d hung stand-in runs still alive: the timeout did not kill them", hung)
	}
	t.Logf("RESULT restore: fail: %s, applied %v after the tool recovered; hang: %s, applied %v after recovery; %d stand-in runs, none left running; probes %d sent, %d ok",
		failFigures, recovered.Round(time.Millisecond), hangFigures, recovered2.Round(time.Millisecond), len(strings.Fields(string(b))), sent, ok)
}

func keys(m map[string]bool) []string {
	var out []string
	for _, d := range []string{"1s", "2s", "4s", "8s", "16s", "30s"} {
		if m[d] {
			out = append(out, d)
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// xtables lock held by another program for 10 s

// TestFaultXtablesLockHeld: the legacy iptables backend takes the xtables
// lock (iptables-nft ignores it). The agent runs with the legacy tools and a
// private lock file (XTABLES_LOCKFILE, so the host's /run/xtables.lock is
// never held); another program holds the lock for 10 s while a profile
// change arrives. The agent waits (--wait), the rules in force keep Alice
// out, and the change is applied once the lock is free.
func TestFaultXtablesLockHeld(t *testing.T) {
	f := newFamilyLab(t)
	legacy, err := exec.LookPath("xtables-legacy-multi")
	if err != nil {
		t.Fatal("xtables-legacy-multi not found (Debian's iptables package ships it): run scripts/install-deps.sh")
	}
	bin := t.TempDir()
	for _, tool := range []string{"iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save", "ip6tables-restore"} {
		if err := os.Symlink(legacy, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	lock := filepath.Join(t.TempDir(), "xtables.lock")
	path := filepath.Join(f.profiles, "family.yaml")
	writeFile(t, path, familyProfile)
	a := newAgent(t, f.Lab, f.profiles, f.state)
	a.env = []string{"PATH=" + bin + ":" + os.Getenv("PATH"), "XTABLES_LOCKFILE=" + lock}
	a.start(bedtime.Add(30 * time.Minute).Format(time.RFC3339))
	if b := a.status().Dataplane.Backend; !strings.Contains(b, "legacy") {
		t.Fatalf("backend %q, want iptables-legacy", b)
	}
	f.expectReach(t, f.alice, false, "at 21:30 (legacy backend)")
	f.expectReach(t, f.bob, true, "at 21:30 (legacy backend)")
	applies := a.status().Dataplane.Applies
	probes := f.startProbers(t, f.alice, 2*time.Minute)

	holder := exec.Command("flock", lock, "sleep", "10")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	held := time.Now()
	released := make(chan time.Time, 1)
	go func() { _ = holder.Wait(); released <- time.Now() }()
	t.Cleanup(func() { _ = holder.Process.Kill() })
	time.Sleep(300 * time.Millisecond)
	// Confirm the lock is really held: the legacy tool gives up after 1 s.
	if out, err := f.Run(context.Background(), f.Router, "env", "XTABLES_LOCKFILE="+lock, filepath.Join(bin, "iptables"), "-w", "1", "-L", "-n"); err == nil || !strings.Contains(out, "lock") {
		t.Fatalf("the lock does not seem held: %v %s", err, out)
	}
	writeFile(t, path, bobOfflineProfile)
	time.Sleep(3 * time.Second)
	f.expectReach(t, f.bob, true, "while the lock is held (the change waits)")
	at := <-released
	f.waitReach(t, f.bob, inet4, false, 15*time.Second)
	after := time.Since(at)
	f.expectReach(t, f.bob, false, "after the lock was released")
	sent, ok := stopProbers(t, probes, "xtables lock held 10 s")
	st := a.status()
	if st.Dataplane.Applies <= applies || st.Dataplane.LastError != "" {
		t.Errorf("status after the lock: %+v; want a new apply and no error left", st.Dataplane)
	}
	t.Logf("RESULT lock: held %v; change applied %v after release (applies %d→%d, failures %d); probes %d sent, %d ok",
		at.Sub(held).Round(100*time.Millisecond), after.Round(time.Millisecond), applies, st.Dataplane.Applies, st.Dataplane.Failures, sent, ok)
}

// ---------------------------------------------------------------------------
// state directory unwritable, saved-state file system full

// TestFaultStateDirUnwritableAndFull: in a private mount namespace the
// saved-state file lives on a 16 KiB tmpfs that is full, and the state
// directory (control socket) is read-only. The agent enforces anyway; once
// the state directory is writable its control socket appears and status
// reports saved_state.error; once space is freed the states are saved.
func TestFaultStateDirUnwritableAndFull(t *testing.T) {
	f := newFamilyLab(t)
	writeFile(t, filepath.Join(f.profiles, "family.yaml"), familyProfile)
	full := filepath.Join(t.TempDir(), "flash")
	if err := os.MkdirAll(full, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(f.state, 0o700); err != nil {
		t.Fatal(err)
	}
	saved := filepath.Join(full, "device-state.json")
	setup := fmt.Sprintf(`set -e
mount -t tmpfs -o size=16k,mode=0700 famguard-test %[1]s
dd if=/dev/zero of=%[1]s/fill bs=1k count=64 2>/dev/null || true
mount --bind %[2]s %[2]s
mount -o remount,bind,ro %[2]s
exec "$@"`, full, f.state)
	a := newAgent(t, f.Lab, f.profiles, f.state)
	a.prefix = append(privateMounts(t, full, f.state), "sh", "-c", setup, "sh")
	a.extra = []string{"--saved-state", saved} // after the default one: the last flag wins
	a.launch(bedtime.Add(30 * time.Minute).Format(time.RFC3339))
	pid := a.cmd.Process.Pid

	// Enforcing without a control socket (no rules existed before this
	// agent: the probers start once Alice is blocked).
	f.waitReach(t, f.alice, inet4, false, 10*time.Second)
	f.waitReach(t, f.alice, inet6, false, 10*time.Second)
	probes := f.startProbers(t, f.alice, 2*time.Minute)
	time.Sleep(time.Second)
	f.expectReach(t, f.alice, false, "state directory read-only, saved-state file system full")
	f.expectReach(t, f.bob, true, "state directory read-only")
	if _, err := a.patientStatus(time.Second); err == nil {
		t.Error("status answered although the state directory is read-only")
	}
	if !strings.Contains(a.log.String(), "control socket unavailable") {
		t.Errorf("the log does not say the control socket is unavailable:\n%s", tail(a.log.String(), 20))
	}
	// The state directory becomes writable (inside the agent's own mount
	// namespace: the `unshare -m` of its prefix; -r: its root too, which in a chroot is not the namespace's).
	if out, err := exec.Command("nsenter", "-t", strconv.Itoa(pid), "-m", "-r", "mount", "-o", "remount,bind,rw", f.state).CombinedOutput(); err != nil {
		t.Fatalf("remount rw: %v %s", err, out)
	}
	rw := time.Now()
	st := a.waitStatus(t, "the control socket and the save error", 20*time.Second, func(s daemon.Status) bool {
		return s.SavedState != nil && strings.Contains(s.SavedState.Error, "no space left")
	})
	socketAfter := time.Since(rw)
	saveErr := st.SavedState.Error
	f.expectReach(t, f.alice, false, "saved-state file system full")

	// Space freed: the states are saved at the next heal tick (1 s here).
	if out, err := exec.Command("nsenter", "-t", strconv.Itoa(pid), "-m", "-r", "rm", full+"/fill").CombinedOutput(); err != nil {
		t.Fatalf("freeing space: %v %s", err, out)
	}
	freed := time.Now()
	st = a.waitStatus(t, "the states saved", 10*time.Second, func(s daemon.Status) bool {
		return s.SavedState.Error == "" && s.SavedState.Writes == 1
	})
	savedAfter := time.Since(freed)
	content, err := exec.Command("nsenter", "-t", strconv.Itoa(pid), "-m", "-r", "cat", saved).CombinedOutput()
	if err != nil || !strings.Contains(string(content), aliceMAC) {
		t.Errorf("saved file: %v\n%s", err, content)
	}
	sent, ok := stopProbers(t, probes, "state directory read-only, file system full")
	t.Logf("RESULT statedir: enforced with a read-only state directory (no socket); socket up %v after it became writable; saved_state.error %q; saved %v after space was freed (writes %d); probes %d sent, %d ok",
		socketAfter.Round(time.Millisecond), saveErr, savedAfter.Round(time.Millisecond), st.SavedState.Writes, sent, ok)
}

// ---------------------------------------------------------------------------
// profile directory deleted and recreated

// TestFaultProfileDirDeletedAndRecreated: `rm -rf` of the profile directory
// keeps the last good policy in force (Alice never gets through) and status
// says why; recreating it empty is still rejected; writing a profile into it
// is applied.
func TestFaultProfileDirDeletedAndRecreated(t *testing.T) {
	f := newFamilyLab(t)
	writeFile(t, filepath.Join(f.profiles, "family.yaml"), familyProfile)
	a := startAgent(t, f.Lab, f.profiles, f.state, bedtime.Add(30*time.Minute).Format(time.RFC3339))
	f.expectReach(t, f.alice, false, "at 21:30")
	digest := a.status().Policy.Digest
	good := famguardLines(t, f.Lab, "iptables-save")
	probes := f.startProbers(t, f.alice, 2*time.Minute)

	if err := os.RemoveAll(f.profiles); err != nil {
		t.Fatal(err)
	}
	st := a.waitStatus(t, "the failed reload", 5*time.Second, func(s daemon.Status) bool {
		return !s.LastReload.OK && s.LastReload.At.After(time.Now().Add(-5*time.Second))
	})
	gone := st.LastReload.Message
	if st.Policy == nil || st.Policy.Digest != digest || !strings.Contains(gone, "still enforcing policy "+digest) {
		t.Errorf("after rm -rf: policy %+v, last reload %q; want %s still in force and said so", st.Policy, gone, digest)
	}
	time.Sleep(time.Second)
	if !sameLines(famguardLines(t, f.Lab, "iptables-save"), good) {
		t.Error("rules changed after the profile directory was deleted")
	}

	if err := os.MkdirAll(f.profiles, 0o755); err != nil {
		t.Fatal(err)
	}
	st = a.waitStatus(t, "the empty directory rejected", 5*time.Second, func(s daemon.Status) bool {
		return !s.LastReload.OK && s.LastReload.Message != gone
	})
	empty := st.LastReload.Message + " " + strings.Join(st.LastReload.Problems, "; ")
	f.expectReach(t, f.alice, false, "profile directory recreated empty")

	created := time.Now()
	writeFile(t, filepath.Join(f.profiles, "family.yaml"), bobOfflineProfile)
	f.waitReach(t, f.bob, inet4, false, 5*time.Second)
	applied := time.Since(created)
	st = a.waitStatus(t, "the new policy", 5*time.Second, func(s daemon.Status) bool { return s.LastReload.OK && s.Policy.Digest != digest })
	sent, ok := stopProbers(t, probes, "profile directory deleted and recreated")
	t.Logf("RESULT profiledir: deleted → %q; recreated empty → %q; new profile applied %v after it was written (policy %s); probes %d sent, %d ok",
		gone, empty, applied.Round(time.Millisecond), st.Policy.Digest, sent, ok)
}

// ---------------------------------------------------------------------------
// wall clock stepped forward and back by hours (the simulated clock)

// TestFaultClockSteppedByHours: the agent's simulated clock (--clock) is
// stepped by hours through the test-only control command clock-step (the
// host's clock is never touched), which takes the same path as a real step
// signalled by the timerfd: re-evaluation at once. Noon → +9h30 (21:30):
// Alice goes offline; −9h30: online again; +10h from 12:00 on to 22:00:
// both children offline; −1 day −10h: the Wednesday noon, both online.
func TestFaultClockSteppedByHours(t *testing.T) {
	f := newFamilyLab(t)
	writeFile(t, filepath.Join(f.profiles, "family.yaml"), familyProfile)
	a := startAgent(t, f.Lab, f.profiles, f.state, noon.Format(time.RFC3339))
	f.expectReach(t, f.alice, true, "at noon")
	step := func(by string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := control.Call(ctx, a.State, "clock-step "+by, nil); err != nil {
			t.Fatalf("clock-step %s: %v", by, err)
		}
	}
	var figures []string
	for _, s := range []struct {
		by           string
		alice, bob   bool
		wantHourMins string
	}{
		{"9h30m", false, true, "21:30"},
		{"-9h30m", true, true, "12:00"},
		{"10h", false, false, "22:00"},
		{"-34h", true, true, "12:00"},
	} {
		step(s.by)
		start := time.Now()
		f.waitReach(t, f.alice, inet4, s.alice, 3*time.Second)
		f.waitReach(t, f.alice, inet6, s.alice, 3*time.Second)
		took := time.Since(start)
		f.expectReach(t, f.bob, s.bob, "after clock-step "+s.by)
		st := a.status()
		if got := st.Clock.Now.Format("15:04"); got != s.wantHourMins && got != addMinute(s.wantHourMins) {
			t.Errorf("after clock-step %s the agent's clock shows %s, want %s", s.by, got, s.wantHourMins)
		}
		figures = append(figures, fmt.Sprintf("%s → %s: Alice %s within %v", s.by, st.Clock.Now.Format("Mon 15:04"), map[bool]string{true: "online", false: "offline"}[s.alice], took.Round(time.Millisecond)))
	}
	t.Logf("RESULT clock: %s", strings.Join(figures, "; "))
}

func addMinute(hm string) string {
	t, _ := time.Parse("15:04", hm)
	return t.Add(time.Minute).Format("15:04")
}

// settledRules waits until famguard's IPv4 and IPv6 rules have not changed
// for a second and returns them.
func settledRules(t *testing.T, f *familyLab) (v4, v6 []string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	v4, v6 = famguardLines(t, f.Lab, "iptables-save"), famguardLines(t, f.Lab, "ip6tables-save")
	since := time.Now()
	for time.Since(since) < time.Second {
		if time.Now().After(deadline) {
			t.Fatal("famguard's rules kept changing for 15 s")
		}
		time.Sleep(100 * time.Millisecond)
		n4, n6 := famguardLines(t, f.Lab, "iptables-save"), famguardLines(t, f.Lab, "ip6tables-save")
		if !sameLines(n4, v4) || !sameLines(n6, v6) {
			v4, v6, since = n4, n6, time.Now()
		}
	}
	return v4, v6
}

func TestSharedMountOf(t *testing.T) {
	const mi = `22 1 0:21 / / rw shared:1 - ext4 /dev/sda1 rw
30 22 0:25 / /tmp rw,nosuid - tmpfs tmpfs rw
31 22 0:26 / /run/netns rw shared:7 - tmpfs tmpfs rw
32 30 0:27 / /tmp/sub rw shared:9 - tmpfs tmpfs rw`
	for _, c := range []struct {
		path, at string
		shared   bool
	}{
		{"/tmp/TestX/001/flash", "/tmp", false},
		{"/tmp/sub/x", "/tmp/sub", true},
		{"/tmpfoo/x", "/", true},
		{"/var/lib/x", "/", true},
	} {
		at, shared := sharedMountOf(mi, c.path)
		if at != c.at || shared != c.shared {
			t.Errorf("%s: got %s shared=%v, want %s shared=%v", c.path, at, shared, c.at, c.shared)
		}
	}
	// In a chroot the root's own mount is not listed: only mounts inside.
	if at, shared := sharedMountOf("31 22 0:26 / /run/netns rw shared:7 - tmpfs tmpfs rw", "/tmp/x"); at != "" || shared {
		t.Errorf("chroot: got %q shared=%v, want no entry", at, shared)
	}
}
