package rules

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/famguard/famguard/agent/egress"
	"github.com/famguard/famguard/scripts/lab"
)

func TestMain(m *testing.M) { lab.MainInPrivateNetns(m) }

// kernel returns a real Dataplane inside the private namespace, or skips.
func kernel(t testing.TB) *Kernel {
	t.Helper()
	lab.RequirePrivateNetns(t)
	k, err := NewKernel()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func save(t testing.TB, bin string) string {
	t.Helper()
	out, err := exec.Command(bin, "-t", "filter").Output()
	if err != nil {
		t.Fatalf("%s: %v", bin, err)
	}
	var keep []string
	for _, l := range strings.Split(string(out), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

func household(n int, offline bool) Desired {
	var d Desired
	for i := 0; i < n; i++ {
		d.Devices = append(d.Devices, Device{ID: uint16(i + 1),
			MAC: fmt.Sprintf("02:00:00:00:%02x:%02x", i>>8, i&0xff), Child: fmt.Sprintf("kid%d", i/4),
			Name: fmt.Sprintf("device %d", i), Offline: offline, Reason: "bedtime (daily 21:00–07:00)",
			Addrs: []netip.Addr{netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), netip.MustParseAddr(fmt.Sprintf("2001:db8:1::%x", i+1))},
		})
	}
	return d
}

func TestKernelApplySnapshotCleanup(t *testing.T) {
	k := kernel(t)
	for _, fam := range []Family{IPv4, IPv6} {
		saveBin := map[Family]string{IPv4: "iptables-save", IPv6: "ip6tables-save"}[fam]
		iptBin := map[Family]string{IPv4: "iptables", IPv6: "ip6tables"}[fam]
		// The router's own firewall, which must survive everything.
		if out, err := exec.Command(iptBin, "-A", "FORWARD", "-p", "tcp", "--dport", "25", "-j", "DROP").CombinedOutput(); err != nil {
			t.Fatalf("%s: %v %s", iptBin, err, out)
		}
		before := save(t, saveBin)

		text, err := Render(household(3, true), fam)
		if err != nil {
			t.Fatal(err)
		}
		if err := k.Apply(fam, text); err != nil {
			t.Fatalf("%s apply: %v", fam, err)
		}
		got := save(t, saveBin)
		if !strings.Contains(got, "-A FORWARD -m comment --comment \""+JumpComment+"\" -j FAMGUARD\n-A FORWARD -p tcp -m tcp --dport 25 -j DROP") {
			t.Errorf("%s: jump not first in FORWARD:\n%s", fam, got)
		}
		if n := strings.Count(got, "--mac-source"); n != 3 {
			t.Errorf("%s: %d MAC rules, want 3", fam, n)
		}
		snap, err := k.Snapshot(fam)
		if err != nil {
			t.Fatal(err)
		}

		// Re-apply a different state: replaced, not appended; jump still once.
		text2, _ := Render(household(1, true), fam)
		if err := k.Apply(fam, text2); err != nil {
			t.Fatal(err)
		}
		got = save(t, saveBin)
		if n := strings.Count(got, "--mac-source"); n != 1 {
			t.Errorf("%s: %d MAC rules after re-apply, want 1", fam, n)
		}
		if n := strings.Count(got, "-j FAMGUARD\n"); n != 1 {
			t.Errorf("%s: %d jumps after re-apply, want 1", fam, n)
		}
		if err := k.Apply(fam, text); err != nil {
			t.Fatal(err)
		}
		if again, _ := k.Snapshot(fam); again != snap {
			t.Errorf("%s: snapshot not stable across identical applies:\n%s\nvs\n%s", fam, again, snap)
		}

		// Another program's changes are visible in the snapshot.
		for _, change := range [][]string{
			{"-F", "FAMGUARD"},
			append([]string{"-D", "FORWARD"}, hooks[0].spec...),
			{"-I", "FORWARD", "1", "-j", "ACCEPT"},
		} {
			if out, err := exec.Command(iptBin, change...).CombinedOutput(); err != nil {
				t.Fatalf("%v: %v %s", change, err, out)
			}
			if changed, _ := k.Snapshot(fam); changed == snap {
				t.Errorf("%s: snapshot did not notice %v", fam, change)
			}
			if err := k.Apply(fam, text); err != nil {
				t.Fatal(err)
			}
		}
		// After the ACCEPT was inserted first, Apply put our jump back first.
		got = save(t, saveBin)
		if !strings.Contains(got, "-j FAMGUARD\n-A FORWARD -j ACCEPT") {
			t.Errorf("%s: jump not moved back to first:\n%s", fam, got)
		}
		if out, err := exec.Command(iptBin, "-D", "FORWARD", "-j", "ACCEPT").CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, out)
		}

		// A bad input names the line and changes nothing.
		bad := strings.Replace(text, "-j FAMGUARD-REJECT", "-j NO-SUCH-CHAIN", 1)
		err = k.Apply(fam, bad)
		// iptables-nft reports the failing rule's line for IPv4 and, for
		// some errors, the COMMIT line for IPv6; either way it is quoted.
		if err == nil || !strings.Contains(err.Error(), "(input line ") {
			t.Errorf("%s: bad restore error = %v; want it to quote the input line", fam, err)
		} else {
			t.Logf("%s: %v", fam, err)
		}
		if now, _ := k.Snapshot(fam); now != snap {
			t.Errorf("%s: a failed restore changed the rules:\n%s\nwas\n%s", fam, now, snap)
		}

		// DNS interception on, then off again: famguard's nat part comes
		// and goes with it.
		dnsText, _ := Render(Desired{DNSPort: 5354, Devices: household(2, false).Devices}, fam)
		if err := k.Apply(fam, dnsText); err != nil {
			t.Fatalf("%s: apply with DNS: %v", fam, err)
		}
		nat, _ := exec.Command(saveBin, "-t", "nat").Output()
		if n := strings.Count(string(nat), "-j REDIRECT --to-ports 5354"); n != 4 || !strings.Contains(string(nat), "-j FAMGUARD-DNS") {
			t.Errorf("%s: nat after enabling DNS:\n%s", fam, nat)
		}
		if err := k.Apply(fam, text); err != nil {
			t.Fatal(err)
		}
		nat, _ = exec.Command(saveBin, "-t", "nat").Output()
		if strings.Contains(string(nat), "FAMGUARD") {
			t.Errorf("%s: famguard's nat part left after disabling DNS:\n%s", fam, nat)
		}

		if err := k.Cleanup(fam); err != nil {
			t.Fatal(err)
		}
		if after := save(t, saveBin); after != before {
			t.Errorf("%s: cleanup left\n%s\nwant\n%s", fam, after, before)
		}
		if err := k.Cleanup(fam); err != nil {
			t.Errorf("%s: second cleanup: %v", fam, err)
		}
	}
}

// TestKernelForeignRuleReadingLikeOurJump: other programs' rules whose
// comment or log prefix reads "-j FAMGUARD" (as iptables-save prints them:
// quoted) are neither taken for famguard's jump nor deleted as duplicates of
// it, and a missing jump is noticed and put back. (FuzzSnapshot's seeds
// showed it; the newline case was checked on iptables 1.8.9 by hand.)
func TestKernelForeignRuleReadingLikeOurJump(t *testing.T) {
	k := kernel(t)
	before := save(t, "iptables-save")
	text, err := Render(household(1, true), IPv4)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Apply(IPv4, text); err != nil {
		t.Fatal(err)
	}
	foreign := [][]string{
		{"-m", "comment", "--comment", "a -j FAMGUARD b", "-j", "ACCEPT"},
		{"-j", "LOG", "--log-prefix", "fw: -j FAMGUARD "},
		// iptables prints a comment's newlines raw: the middle line of
		// this rule reads exactly like famguard's jump.
		{"-m", "comment", "--comment", "x\n-A FORWARD -j FAMGUARD\n", "-j", "ACCEPT"},
	}
	for _, r := range foreign {
		if out, err := exec.Command("iptables", append([]string{"-A", "FORWARD"}, r...)...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", r, err, out)
		}
	}
	if snap, _ := k.Snapshot(IPv4); !Holds(text, snap) {
		t.Errorf("foreign rules behind the jump: snapshot does not hold:\n%s", snap)
	}
	if err := k.Apply(IPv4, text); err != nil {
		t.Fatal(err)
	}
	if got := save(t, "iptables-save"); !strings.Contains(got, `"a -j FAMGUARD b"`) || !strings.Contains(got, `"fw: -j FAMGUARD "`) || !strings.Contains(got, "\"x\n-A FORWARD -j FAMGUARD\n\"") {
		t.Errorf("Apply removed another program's rule:\n%s", got)
	}
	// Our jump deleted, a foreign rule first: not intact, and Apply heals.
	if out, err := exec.Command("iptables", append([]string{"-D", "FORWARD"}, hooks[0].spec...)...).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if out, err := exec.Command("iptables", "-D", "FORWARD", "-j", "LOG", "--log-prefix", "fw: -j FAMGUARD ").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if snap, _ := k.Snapshot(IPv4); Holds(text, snap) {
		t.Errorf("jump deleted, but the snapshot holds:\n%s", snap)
	}
	if err := k.Apply(IPv4, text); err != nil {
		t.Fatal(err)
	}
	got := save(t, "iptables-save")
	var fwd []string
	for _, l := range strings.Split(got, "\n") {
		if strings.HasPrefix(l, "-A FORWARD ") {
			fwd = append(fwd, l)
		}
	}
	if len(fwd) == 0 || !strings.HasSuffix(fwd[0], " -j FAMGUARD") || strings.Count(got, "\n-A FORWARD -j FAMGUARD\n") != 1 || strings.Count(got, " -j FAMGUARD\n") != 2 {
		t.Errorf("Apply did not put the jump back first, once:\n%s", got)
	}
	for _, r := range [][]string{foreign[0], foreign[2]} {
		if out, err := exec.Command("iptables", append([]string{"-D", "FORWARD"}, r...)...).CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, out)
		}
	}
	if err := k.Cleanup(IPv4); err != nil {
		t.Fatal(err)
	}
	if err := k.Cleanup(IPv6); err != nil {
		t.Fatal(err)
	}
	if after := save(t, "iptables-save"); after != before {
		t.Errorf("cleanup left\n%s\nwant\n%s", after, before)
	}
}

// BenchmarkApply compares, side by side in one run, writing a household's
// rules as one iptables-restore transaction with one go-iptables call per
// rule. Each op changes every device's state, so the kernel really changes.
//
// Most of a per-rule call's time is starting the iptables process (exec,
// dynamic loading, parsing the extensions); the rest is iptables' own work
// on the rule: it reads the whole table from the kernel, changes it and
// writes it back, so that part grows with the table. spawn/calls=N starts
// `iptables -V` N times (no kernel access) — the same number of processes
// as per-rule/devices=D runs (its calls/op metric) — so that
// scripts/bench.sh can split per-rule time into process start and rule work.
func BenchmarkApply(b *testing.B) {
	k := kernel(b)
	r := k.Runner(IPv4)
	calls := map[int]int{}
	for _, n := range []int{1, 10, 100, 250} {
		states := [2]Desired{household(n, true), household(n, true)}
		for i := range states[1].Devices {
			states[1].Devices[i].Reason = "homework"
		}
		b.Run(fmt.Sprintf("restore/devices=%d", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				text, err := Render(states[i%2], IPv4)
				if err != nil {
					b.Fatal(err)
				}
				if err := k.Apply(IPv4, text); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("per-rule/devices=%d", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				c, err := r.ApplyOneByOne(states[i%2])
				if err != nil {
					b.Fatal(err)
				}
				calls[n] = c
			}
			b.ReportMetric(float64(calls[n]), "calls/op")
		})
		b.Run(fmt.Sprintf("spawn/devices=%d", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				for j := 0; j < calls[n]; j++ {
					if out, err := exec.Command("iptables", "-V").CombinedOutput(); err != nil {
						b.Fatalf("iptables -V: %v %s", err, out)
					}
				}
			}
			b.ReportMetric(float64(calls[n]), "calls/op")
		})
	}
	_ = k.Cleanup(IPv4)
}

// TestHungRestoreIsKilled: an iptables-restore that never returns (here a
// stand-in script whose own child sleeps, as a wrapper would) is killed
// after the runner's timeout, with its whole process group, and reported as
// ErrToolTimeout; it must not hold the caller (the daemon's only dataplane
// goroutine) for ever.
func TestHungRestoreIsKilled(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "sleeper.pid")
	script := filepath.Join(dir, "iptables-restore")
	// The child sleeps in the background holding stdin; the script waits.
	body := "#!/bin/sh\nsleep 3600 &\necho $! > " + pidFile + "\nwait\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	r := &Runner{restore: script, timeout: 300 * time.Millisecond}
	start := time.Now()
	// A large input, more than a pipe holds, that nobody reads.
	err := r.Apply(strings.Repeat("-A FAMGUARD -j RETURN\n", 10000))
	took := time.Since(start)
	if !errors.Is(err, ErrToolTimeout) {
		t.Fatalf("Apply of a hung tool = %v, want ErrToolTimeout", err)
	}
	if took > 3*time.Second {
		t.Errorf("Apply returned after %v; want about the 300ms timeout", took)
	}
	b, rerr := os.ReadFile(pidFile)
	if rerr != nil {
		t.Fatal(rerr)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	deadline := time.Now().Add(2 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("the stand-in's child %d still runs after the timeout", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("hung restore reported after %v: %v", took.Round(time.Millisecond), err)

	// The same bound applies to iptables-save.
	r.save = script
	if _, err := r.Snapshot(); !errors.Is(err, ErrToolTimeout) {
		t.Errorf("Snapshot of a hung tool = %v, want ErrToolTimeout", err)
	}
}

// TestKernelReplacesAnOlderJump: before issue 9 the FORWARD jump skipped
// established traffic itself. After an upgrade that jump must not stay (the
// offline-by-mark rule behind it would never see established packets):
// Apply replaces it with today's, and a second Apply changes nothing.
func TestKernelReplacesAnOlderJump(t *testing.T) {
	k := kernel(t)
	for _, cmd := range [][]string{
		{"-N", Chain},
		{"-I", "FORWARD", "1", "-m", "conntrack", "!", "--ctstate", "RELATED,ESTABLISHED", "-m", "comment", "--comment", JumpComment, "-j", Chain},
	} {
		if out, err := exec.Command("iptables", cmd...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", cmd, err, out)
		}
	}
	text, err := Render(household(2, true), IPv4)
	if err != nil {
		t.Fatal(err)
	}
	forward := func() []string {
		var fwd []string
		for _, l := range strings.Split(save(t, "iptables-save"), "\n") {
			if strings.HasPrefix(l, "-A FORWARD ") && strings.Contains(l, Chain) {
				fwd = append(fwd, l) // the namespace may hold other tests' rules
			}
		}
		return fwd
	}
	want := []string{`-A FORWARD -m comment --comment "` + JumpComment + `" -j FAMGUARD`}
	for i := 0; i < 2; i++ {
		if err := k.Apply(IPv4, text); err != nil {
			t.Fatal(err)
		}
		if got := forward(); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("apply %d: FORWARD = %q, want %q", i+1, got, want)
		}
		k.jumpOK[IPv4] = false // make the second Apply check the jump again
	}
	if err := k.Cleanup(IPv4); err != nil {
		t.Fatal(err)
	}
}

// TestKernelStrictSets: the identity rules — mangle attribution, per-class
// redirects, trusted, unknown devices, strict egress with ipsets — are
// accepted by the real kernel, and the strict sets are created over netlink
// first (hash:ip, inet and inet6, with a timeout), once per family, by
// agent/egress's netlink sets as the agent wires them.
func TestKernelStrictSets(t *testing.T) {
	k := kernelWithSets(t)
	for _, fam := range []Family{IPv4, IPv6} {
		// With the inbound guard: its set is named twice (the kernel's
		// -j SET in mangle, the guard's match in filter).
		text, err := Render(inboundDesired(), fam)
		if err != nil {
			t.Fatal(err)
		}
		if err := k.Apply(fam, text); err != nil {
			t.Fatalf("%s: %v", fam, err)
		}
		if err := k.Apply(fam, text); err != nil {
			t.Fatalf("%s, again (the sets exist now): %v", fam, err)
		}
		snap, err := k.Snapshot(fam)
		if err != nil || !Holds(text, snap) {
			t.Errorf("%s: the applied identity rules do not hold (%v):\n%s", fam, err, snap)
		}
	}
	for _, set := range []struct{ name, family string }{{"fg-bob4", "inet"}, {"fg-bob6", "inet6"}, {"fgin-a4", "inet"}, {"fgin-a6", "inet6"}} {
		out, err := exec.Command("ipset", "list", "-t", set.name).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Type: hash:ip") || !strings.Contains(string(out), "family "+set.family) || !strings.Contains(string(out), "timeout") {
			t.Errorf("ipset %s: %v\n%s", set.name, err, out)
		}
	}
	for _, fam := range []Family{IPv4, IPv6} {
		if err := k.Cleanup(fam); err != nil {
			t.Fatal(err)
		}
	}
	// Cleanup leaves nothing of famguard's in any table (mangle included).
	for _, bin := range []string{"iptables-save", "ip6tables-save"} {
		out, err := exec.Command(bin).CombinedOutput()
		if err != nil || strings.Contains(string(out), "FAMGUARD") {
			t.Errorf("%s after cleanup (%v):\n%s", bin, err, out)
		}
	}
}

// kernelWithSets is a Kernel that creates the sets a restore names over
// agent/egress's netlink socket, as the agent wires it.
func kernelWithSets(t *testing.T) *Kernel {
	t.Helper()
	k := kernel(t)
	n, err := egress.NewNetlink()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	k.SetSets(egressSets{n})
	return k
}

// egressSets is the agent's rules.Sets (agent/cmd/famguard: kernelSets).
type egressSets struct{ n *egress.Netlink }

func (s egressSets) Ensure(name string, fam Family) error {
	return s.n.Create(name, fam == IPv6, egress.MaxElem)
}

// TestKernelRefusedSurvivesWrites: the strict reject counters the Kernel
// reports are the kernel's, and what a write resets (a rewritten strict
// chain) is kept. The kernel's counter is set by hand (iptables -R -c), as
// seven refused connections of bob's would.
func TestKernelRefusedSurvivesWrites(t *testing.T) {
	k := kernelWithSets(t)
	defer func() { _ = k.Cleanup(IPv4); _ = k.Cleanup(IPv6) }()
	d := identityDesired()
	text, err := Render(d, IPv4)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Apply(IPv4, text); err != nil {
		t.Fatal(err)
	}
	// Bob's strict reject rule, as iptables -S prints it, and its position.
	out, err := exec.Command("iptables", "-S", StrictChain).Output()
	if err != nil {
		t.Fatal(err)
	}
	pos, rule := 0, ""
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "-A ") {
			pos++
			if strings.HasSuffix(line, "-j "+RejectChain) {
				rule = strings.TrimPrefix(line, "-A "+StrictChain+" ")
				break
			}
		}
	}
	args, err := Tokenize(rule)
	if err != nil || rule == "" {
		t.Fatalf("no strict reject rule in:\n%s", out)
	}
	if out, err := exec.Command("iptables", append([]string{"-R", StrictChain, fmt.Sprint(pos), "-c", "7", "420"}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("setting the counter: %v %s", err, out)
	}
	got, err := k.Refused()
	if err != nil || got[bobTablet.ID] != 7 {
		t.Fatalf("Refused = %v %v, want bob (%d) 7", got, err, bobTablet.ID)
	}
	// A full rewrite (Snapshot saw a change, so no delta) resets the
	// kernel's counter; the Kernel keeps the seven.
	if _, err := k.Snapshot(IPv4); err != nil {
		t.Fatal(err)
	}
	d.Devices[1].StrictAllow = append(d.Devices[1].StrictAllow, netip.MustParsePrefix("10.99.0.0/16"))
	if text, err = Render(d, IPv4); err != nil {
		t.Fatal(err)
	}
	if err := k.Apply(IPv4, text); err != nil {
		t.Fatal(err)
	}
	got, err = k.Refused()
	if err != nil || got[bobTablet.ID] != 7 {
		t.Errorf("after a delta write: Refused = %v %v, want bob 7", got, err)
	}
	// Another program's rule in our chain: the read-back differs, so the
	// next write is a full one, which flushes the chain and its counters.
	if out, err := exec.Command("iptables", "-A", StrictChain, "-j", "RETURN").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if _, err := k.Snapshot(IPv4); err != nil {
		t.Fatal(err)
	}
	if err := k.Apply(IPv4, text); err != nil {
		t.Fatal(err)
	}
	if kernelNow := parseRefused(saveCounters(t)); kernelNow[bobTablet.ID] != 0 {
		t.Fatalf("the full write did not reset the kernel's counter: %v", kernelNow)
	}
	got, err = k.Refused()
	if err != nil || got[bobTablet.ID] != 7 {
		t.Errorf("after a full write: Refused = %v %v, want bob 7", got, err)
	}
}

func saveCounters(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("iptables-save", "-c", "-t", "filter").Output()
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// TestSnapshotOnlyWhenTheRulesetMoved: with nf_tables, a read-back while
// nothing in the namespace changed since the last one is that read-back
// again, without an iptables-save run; any change, ours or another
// program's, in any table or family, makes the next one read the kernel.
func TestSnapshotOnlyWhenTheRulesetMoved(t *testing.T) {
	k := kernel(t)
	if !k.useGen {
		t.Skipf("backend %s: no nf_tables generation to watch", k.Backend())
	}
	defer k.Cleanup(IPv4)
	text, err := Render(household(3, true), IPv4)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Apply(IPv4, text); err != nil {
		t.Fatal(err)
	}
	first, err := k.Snapshot(IPv4)
	if err != nil || !Holds(text, first) {
		t.Fatalf("read-back after the write: %v\n%s", err, first)
	}
	again, _ := k.Snapshot(IPv4)
	if again != first || k.reads[IPv4] != 1 {
		t.Fatalf("nothing changed: want the same read-back without a run; %d runs, same=%v", k.reads[IPv4], again == first)
	}
	// Another family's change moves the generation too: read, same text.
	if out, err := exec.Command("ip6tables", "-A", "FORWARD", "-p", "tcp", "--dport", "25", "-j", "DROP").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	defer exec.Command("ip6tables", "-D", "FORWARD", "-p", "tcp", "--dport", "25", "-j", "DROP").Run()
	if s, _ := k.Snapshot(IPv4); s != first || k.reads[IPv4] != 2 {
		t.Fatalf("after an ip6tables change: %d runs (want 2), same=%v", k.reads[IPv4], s == first)
	}
	// Another program edits our chain: read, and it shows.
	if out, err := exec.Command("iptables", "-I", Chain, "3", "-j", "RETURN").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	s, _ := k.Snapshot(IPv4)
	if s == first || k.reads[IPv4] != 3 {
		t.Fatalf("after a foreign edit of %s: %d runs (want 3), changed=%v", Chain, k.reads[IPv4], s != first)
	}
	// The kernel no longer holds the last write: every later read-back
	// reads (no cached answer until the next write), and the write after
	// it is a full one.
	if _, _ = k.Snapshot(IPv4); k.reads[IPv4] != 4 {
		t.Fatalf("after a divergence: %d runs, want 4", k.reads[IPv4])
	}
	if err := k.Apply(IPv4, text); err != nil {
		t.Fatal(err)
	}
	if s, _ := k.Snapshot(IPv4); s != first {
		t.Fatalf("rewrite did not restore the rules:\n%s", s)
	}
}

func TestParseGeneration(t *testing.T) {
	// NFT_MSG_NEWGEN: nlmsghdr, nfgenmsg, NFTA_GEN_ID = 0x01020304 (big
	// endian), NFTA_GEN_PROC_PID, NFTA_GEN_PROC_NAME "nft" (padded).
	msg := []byte{
		0, 0, 0, 0, 15, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0,
		0, 0, 0, 0,
		8, 0, 1, 0, 1, 2, 3, 4,
		8, 0, 2, 0, 0, 0, 0, 7,
		8, 0, 3, 0, 'n', 'f', 't', 0,
	}
	binary.NativeEndian.PutUint32(msg, uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], nfnlSubsysNftables<<8|nftMsgNewGen)
	if g, err := parseGeneration(msg); err != nil || g != 0x01020304 {
		t.Fatalf("parseGeneration = %#x, %v", g, err)
	}
	for _, bad := range [][]byte{nil, msg[:10], msg[:20]} {
		if _, err := parseGeneration(bad); err == nil {
			t.Errorf("parseGeneration(%d bytes) accepted", len(bad))
		}
	}
	if g, err := nftGeneration(); err != nil {
		t.Logf("no nf_tables here: %v", err)
	} else {
		t.Logf("generation %d", g)
	}
}
