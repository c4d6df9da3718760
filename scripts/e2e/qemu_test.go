package e2e

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/famguard/famguard/agent/daemon"
	"github.com/famguard/famguard/scripts/cross"
)

// TestQemuMipsleAgent runs the mipsle router build, under qemu-mipsel-static,
// as the agent in the lab: at bedtime Alice goes offline over IPv4 and IPv6
// while Bob and the parent stay online, a profile edit moving Bob's bedtime
// is enforced and then lifted, a `nft flush ruleset` is healed, and the
// router build's own `status` reads the agent over the control socket.
//
// What qemu-user cannot give the agent, and how it copes (the test logs
// which of these it saw; it asserts only what the rules must do):
//   - qemu-user translates netlink only for NETLINK_ROUTE (and uevent, audit),
//     and within NETLINK_ROUTE not RTM_GETNEIGH (qemu 7.2): listing the
//     neighbour table fails with EOPNOTSUPP. The agent keeps resubscribing
//     (backoff up to 5 s, a warning each time), so devices are never "seen":
//     no per-address rules, no conntrack cut at bedtime (a connection opened
//     before bedtime runs on), and the DNS filter cannot map a query's
//     source address to a device. New connections are blocked by MAC all
//     the same.
//   - NETLINK_NETFILTER sockets are refused: no nf_tables change events
//     (healing falls back to the periodic comparison, --heal-interval) and
//     no conntrack deletion.
//
// On a real mipsle router the kernel serves these sockets directly.
func TestQemuMipsleAgent(t *testing.T) {
	target := cross.Router("mipsle")
	qemu := cross.RequireQemu(t, target)
	f := newFamilyLab(t)
	root := repoFile(t, "")
	version := cross.Version(root)
	start := time.Now()
	bin, err := cross.Build(context.Background(), root, version, t.TempDir(), target)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("mipsle build ready in %v", time.Since(start).Round(time.Millisecond))

	path := filepath.Join(f.profiles, "family.yaml")
	writeFile(t, path, familyProfile)
	start = time.Now()
	a := startAgentCommand(t, f.Lab, []string{qemu, bin}, f.profiles, f.state, bedtime.Add(-10*time.Second).Format(time.RFC3339))
	t.Logf("emulated agent ready %v after start", time.Since(start).Round(time.Millisecond))
	defer func() {
		if testing.Verbose() || t.Failed() {
			t.Logf("emulated agent's log:\n%s", a.log.String())
		}
	}()

	st := a.status()
	if st.Version != version {
		t.Errorf("status version %q, want %q", st.Version, version)
	}

	f.expectReach(t, f.alice, true, "before bedtime")
	f.expectReach(t, f.bob, true, "before bedtime")
	f.expectReach(t, f.parent, true, "before bedtime")

	lastChunk := f.startStream(t, f.alice, inet4+":9000")

	realBedtime := a.clock().realAt(bedtime)
	if d := time.Until(realBedtime); d < time.Second {
		t.Fatalf("test started too late: bedtime in %v", d)
	}
	time.Sleep(time.Until(realBedtime) + 2500*time.Millisecond)

	f.expectReach(t, f.alice, false, "after bedtime")
	f.expectReach(t, f.bob, true, "after Alice's bedtime, before Bob's")
	f.expectReach(t, f.parent, true, "after bedtime")
	streamCut := "no: still running 2.5s after bedtime"
	select {
	case last := <-lastChunk:
		streamCut = "yes: last data " + last.Sub(realBedtime).Round(time.Millisecond).String() + " after bedtime"
	default:
	}

	d := a.device(aliceMAC)
	if d.Online || !strings.Contains(d.Reason, "bedtime") {
		t.Errorf("status for Alice: online=%v reason=%q; want offline because of bedtime", d.Online, d.Reason)
	}

	// The parent moves Bob's bedtime to 21:00: enforced at once.
	earlier := strings.Replace(familyProfile, `from: "22:00"`, `from: "21:00"`, 1)
	writeFile(t, path, earlier)
	// The agent writes IPv4, then IPv6 (one iptables-restore each; under
	// qemu each exec takes tens of milliseconds): wait for both.
	took := f.waitReach(t, f.bob, inet4, false, 5*time.Second)
	took6 := f.waitReach(t, f.bob, inet6, false, 5*time.Second) + took
	t.Logf("Bob's earlier bedtime in force %v (IPv4), ≤ %v (IPv6) after the edit", took.Round(time.Millisecond), took6.Round(time.Millisecond))
	f.expectReach(t, f.bob, false, "after moving Bob's bedtime to 21:00")
	f.expectReach(t, f.parent, true, "after moving Bob's bedtime to 21:00")
	writeFile(t, path, familyProfile)
	took = f.waitReach(t, f.bob, inet4, true, 5*time.Second)
	took6 = f.waitReach(t, f.bob, inet6, true, 5*time.Second) + took
	t.Logf("Bob back online %v (IPv4), ≤ %v (IPv6) after the edit", took.Round(time.Millisecond), took6.Round(time.Millisecond))
	f.expectReach(t, f.bob, true, "after moving Bob's bedtime back to 22:00")
	f.expectReach(t, f.alice, false, "after moving Bob's bedtime back")

	// A firewall restart removes famguard's jump: healed.
	if _, err := f.Run(context.Background(), f.Router, "nft", "flush", "ruleset"); err != nil {
		t.Fatal(err)
	}
	took = f.waitReach(t, f.alice, inet4, false, 10*time.Second)
	took6 = f.waitReach(t, f.alice, inet6, false, 10*time.Second) + took
	t.Logf("nft flush ruleset healed (Alice blocked again) %v (IPv4), ≤ %v (IPv6) after the flush", took.Round(time.Millisecond), took6.Round(time.Millisecond))
	f.expectReach(t, f.alice, false, "after the flush was healed")
	f.expectReach(t, f.bob, true, "after the flush was healed")
	f.expectReach(t, f.parent, true, "after the flush was healed")

	// The router build's own status command, over the control socket.
	st = statusWith(t, f, []string{qemu, bin})
	if st.Version != version || st.Dataplane.Heals < 1 || st.Dataplane.Failures != 0 {
		t.Errorf("status via the mipsle build: version %q, %d heals, %d failures; want %q, ≥ 1, 0",
			st.Version, st.Dataplane.Heals, st.Dataplane.Failures, version)
	}
	var alice *daemon.DeviceStatus
	for i := range st.Devices {
		if st.Devices[i].MAC == aliceMAC {
			alice = &st.Devices[i]
		}
	}
	if alice == nil || alice.Online {
		t.Errorf("status via the mipsle build: Alice %+v, want offline", alice)
	}

	// What degraded under emulation (see the comment above).
	log := a.log.String()
	events := "on"
	if !strings.Contains(log, `heal="on nf_tables change events`) {
		events = "off (periodic comparison only)"
	}
	neigh := "ok"
	if strings.Contains(log, "listing neighbours: operation not supported") {
		neigh = "unsupported (EOPNOTSUPP), resubscribing"
	}
	t.Logf("under qemu: neighbour table %s; Alice seen=%v addresses=%v; nf_tables change events %s; pre-bedtime stream cut: %s",
		neigh, alice != nil && alice.Seen, alice != nil && len(alice.Addresses) > 0, events, streamCut)
}

// statusWith runs `famguard status --json` with the given famguard command
// in the router namespace.
func statusWith(t *testing.T, f *familyLab, command []string) daemon.Status {
	t.Helper()
	args := append(append([]string{}, command...), "status", "--json", "--state", f.state)
	out, err := f.Run(context.Background(), f.Router, args...)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	var st daemon.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	return st
}
