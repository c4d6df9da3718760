package e2e

import (
	"bufio"
	"context"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/famguard/famguard/agent/egress"
	"github.com/famguard/famguard/scripts/lab"
)

// probeOffline runs labhost's prober from h towards the internet host for
// `for` and returns its output; the caller checks that nothing got through.
func (f *familyLab) startProbe(t *testing.T, h *lab.Host, to string, dur time.Duration) func() string {
	t.Helper()
	cmd := f.Cmd(context.Background(), h, binary(t, "labhost"), "probe", "--to", to, "--every", "20ms", "--for", dur.String())
	buf := &lab.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = buf, buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return func() string {
		_ = cmd.Wait()
		return buf.String()
	}
}

// okLines are the prober's lines that report a successful connection.
func okLines(out string) []string {
	var ok []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		// State lines are "<time> ok" or "<time> blocked: why".
		if strings.HasSuffix(sc.Text(), " ok") {
			ok = append(ok, sc.Text())
		}
	}
	return ok
}

// TestKill9LeavesBlockInForce: kill -9 of the agent leaves the block in the
// kernel, and a restart re-applies it without a gap (probed every 20 ms over
// IPv4 and IPv6 through the kill and the restart).
func TestKill9LeavesBlockInForce(t *testing.T) {
	f := newFamilyLab(t)
	writeFile(t, filepath.Join(f.profiles, "family.yaml"), familyProfile)
	clockAt := bedtime.Add(30 * time.Minute).Format(time.RFC3339)
	a := startAgent(t, f.Lab, f.profiles, f.state, clockAt)
	f.expectReach(t, f.alice, false, "at 21:30")

	wait4 := f.startProbe(t, f.alice, inet4+":8080", 4*time.Second)
	wait6 := f.startProbe(t, f.alice, "["+inet6+"]:8080", 4*time.Second)
	time.Sleep(time.Second)
	a.kill9()
	time.Sleep(time.Second)
	a.start(clockAt)
	for name, wait := range map[string]func() string{"IPv4": wait4, "IPv6": wait6} {
		out := wait()
		if ok := okLines(out); len(ok) > 0 {
			t.Errorf("%s: Alice got through while the agent was killed and restarted: %q", name, ok)
		}
		if !strings.Contains(out, "blocked") {
			t.Errorf("%s: prober output shows no probes at all:\n%s", name, out)
		}
	}
	f.expectReach(t, f.alice, false, "after the restart")
	f.expectReach(t, f.parent, true, "after the restart")
}

// TestHealsExternalFlush: whoever removes famguard's jump or chains (a
// firewall restart, a manual flush, `nft flush ruleset`), the agent restores
// them within 5 s.
func TestHealsExternalFlush(t *testing.T) {
	f := newFamilyLab(t)
	writeFile(t, filepath.Join(f.profiles, "family.yaml"), familyProfile)
	a := startAgent(t, f.Lab, f.profiles, f.state, bedtime.Add(30*time.Minute).Format(time.RFC3339))
	f.expectReach(t, f.alice, false, "at 21:30")
	want4, want6 := settledRules(t, f) // once the neighbour table has added the devices' addresses

	for _, flush := range [][]string{
		{"iptables", "-F", "FORWARD"},
		{"ip6tables", "-F", "FORWARD"},
		{"iptables", "-F", "FAMGUARD"},
		{"ip6tables", "-F", "FAMGUARD"},
		{"nft", "flush", "ruleset"},
	} {
		name := strings.Join(flush, " ")
		if _, err := f.Run(context.Background(), f.Router, flush...); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		start := time.Now()
		for {
			got4 := famguardLines(t, f.Lab, "iptables-save")
			got6 := famguardLines(t, f.Lab, "ip6tables-save")
			if sameLines(got4, want4) && sameLines(got6, want6) {
				t.Logf("%s: healed after %v", name, time.Since(start).Round(time.Millisecond))
				break
			}
			if time.Since(start) > 5*time.Second {
				t.Fatalf("%s: not healed within 5s\nIPv4 now:\n%s\nwant:\n%s", name, strings.Join(got4, "\n"), strings.Join(want4, "\n"))
			}
			time.Sleep(100 * time.Millisecond)
		}
		f.expectReach(t, f.alice, false, "after "+name+" was healed")
	}
	if h := a.status().Dataplane.Heals; h < 5 {
		t.Errorf("status reports %d heals, want at least 5", h)
	}
}

func sameLines(a, b []string) bool {
	return strings.Join(a, "\n") == strings.Join(b, "\n")
}

// normalisedSave is iptables-save without comments and counters, sorted
// within each chain header block, for comparing "as before".
func normalisedSave(t *testing.T, l *lab.Lab, save string) string {
	t.Helper()
	out, err := l.Run(context.Background(), l.Router, save)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		lines = append(lines, regexp.MustCompile(`\[\d+:\d+\]`).ReplaceAllString(line, "[0:0]"))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// cleanupSetsProfile has a strict child (her sets fg-alice4/6) and a child
// offline at the clock the test starts the agent with (the inbound guard's
// sets fgin-…, which an offline device makes matter): strictFamily with a
// bedtime for Bob, its last child.
const cleanupSetsProfile = strictFamily + `    schedules:
      - {name: bedtime, days: [daily], from: "21:00", to: "07:00", action: offline}
`

// routerSets lists the ipsets of the router's namespace: famguard's
// (egress.Ours) and the others.
func routerSets(t *testing.T, l *lab.Lab) (ours, others []string) {
	t.Helper()
	out, err := l.Run(context.Background(), l.Router, "ipset", "list", "-n")
	if err != nil {
		t.Fatalf("ipset list -n: %v\n%s", err, out)
	}
	for _, name := range strings.Fields(out) {
		if egress.Ours(name) {
			ours = append(ours, name)
		} else {
			others = append(others, name)
		}
	}
	sort.Strings(ours)
	return ours, others
}

// TestCleanupRemovesSets: `cleanup` leaves nothing of famguard's in the
// kernel: no FAMGUARD chain (IPv4, IPv6) and none of the ipsets the agent
// made over netlink (strict and inbound guard), while a set of the
// router's own stays.
func TestCleanupRemovesSets(t *testing.T) {
	f := newFamilyLab(t)
	ctx := context.Background()
	if out, err := f.Run(ctx, f.Router, "ipset", "create", "other", "hash:ip"); err != nil {
		t.Fatalf("ipset create other: %v\n%s", err, out)
	}
	writeFile(t, filepath.Join(f.profiles, "family.yaml"), cleanupSetsProfile)
	a := startAgent(t, f.Lab, f.profiles, f.state, bedtime.Add(30*time.Minute).Format(time.RFC3339))
	want := []string{"fg-alice4", "fg-alice6", "fgin-a4", "fgin-a6"}
	var ours []string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if ours, _ = routerSets(t, f.Lab); strings.Join(ours, " ") == strings.Join(want, " ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("famguard's ipsets with the agent running: %q, want %q\n%s", ours, want, a.log.String())
		}
	}
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		if len(famguardLines(t, f.Lab, save)) == 0 {
			t.Fatalf("%s: the agent wrote no rules", save)
		}
	}

	out, err := cli(t, f.Lab, "cleanup", "--state", f.state)
	if err != nil {
		t.Fatalf("cleanup: %v\n%s", err, out)
	}
	if !strings.Contains(out, "and 4 famguard ipsets") {
		t.Errorf("cleanup does not say it removed the 4 sets:\n%s", out)
	}
	select {
	case <-a.done:
		a.cmd = nil
	case <-time.After(15 * time.Second):
		t.Fatal("cleanup did not stop the running agent")
	}
	ours, others := routerSets(t, f.Lab)
	if len(ours) != 0 {
		t.Errorf("famguard's ipsets after cleanup: %q", ours)
	}
	if strings.Join(others, " ") != "other" {
		t.Errorf("the router's own sets after cleanup: %q, want [other]", others)
	}
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		out, err := f.Run(ctx, f.Router, save)
		if err != nil || strings.Contains(out, "FAMGUARD") {
			t.Errorf("%s after cleanup (%v):\n%s", save, err, out)
		}
	}
	// Idempotent: nothing left to remove is no error.
	if out, err := cli(t, f.Lab, "cleanup", "--state", f.state); err != nil || !strings.Contains(out, "and 0 famguard ipsets") {
		t.Errorf("second cleanup: %v\n%s", err, out)
	}
}

// TestCleanupRestoresPreviousRules: `cleanup` stops the agent and leaves the
// rules exactly as they were before it started, IPv4 and IPv6.
func TestCleanupRestoresPreviousRules(t *testing.T) {
	f := newFamilyLab(t)
	// Some pre-existing firewall of the router's own, which must survive.
	for _, c := range [][]string{
		{"iptables", "-A", "FORWARD", "-p", "tcp", "--dport", "25", "-j", "DROP"},
		{"ip6tables", "-A", "FORWARD", "-p", "tcp", "--dport", "25", "-j", "DROP"},
		{"iptables", "-N", "ROUTER_OWN"},
	} {
		if _, err := f.Run(context.Background(), f.Router, c...); err != nil {
			t.Fatal(err)
		}
	}
	before4 := normalisedSave(t, f.Lab, "iptables-save")
	before6 := normalisedSave(t, f.Lab, "ip6tables-save")

	writeFile(t, filepath.Join(f.profiles, "family.yaml"), familyProfile)
	a := startAgent(t, f.Lab, f.profiles, f.state, bedtime.Add(30*time.Minute).Format(time.RFC3339))
	f.expectReach(t, f.alice, false, "with the agent")
	if len(famguardLines(t, f.Lab, "iptables-save")) == 0 {
		t.Fatal("agent wrote no rules")
	}

	out, err := cli(t, f.Lab, "cleanup", "--state", f.state)
	if err != nil {
		t.Fatalf("cleanup: %v\n%s", err, out)
	}
	select {
	case <-a.done:
		a.cmd = nil
	case <-time.After(5 * time.Second):
		t.Fatal("cleanup did not stop the running agent")
	}
	if got := normalisedSave(t, f.Lab, "iptables-save"); got != before4 {
		t.Errorf("IPv4 rules after cleanup differ from before:\n%s\nbefore:\n%s", got, before4)
	}
	if got := normalisedSave(t, f.Lab, "ip6tables-save"); got != before6 {
		t.Errorf("IPv6 rules after cleanup differ from before:\n%s\nbefore:\n%s", got, before6)
	}
	f.expectReach(t, f.alice, true, "after cleanup")
	// Idempotent: a second cleanup with nothing there succeeds.
	if out, err := cli(t, f.Lab, "cleanup", "--state", f.state); err != nil {
		t.Errorf("second cleanup: %v\n%s", err, out)
	}
}
