package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/famguard/famguard/agent/policy"
	"github.com/famguard/famguard/agent/savedstate"
)

// TestBootClock: a router just rebooted and its clock is not yet trusted.
// The clock reads Thursday noon, when the schedule would let everyone
// online, but that reading cannot be believed yet:
//   - Alice was offline when the router went down (saved state): she stays
//     offline, over IPv4 and IPv6;
//   - Bob has a bedtime window and nothing saved: offline (the protective
//     default);
//   - the parent is untouched.
//
// When the ntp hotplug signal arrives (`famguard notify clock-synced`, what
// the package's hotplug script runs) the schedule takes over at once: both
// children are online at noon. The sync is remembered for this boot, so a
// restarted agent follows the schedule from its first second.
func TestBootClock(t *testing.T) {
	f := newFamilyLab(t)
	writeFile(t, filepath.Join(f.profiles, "family.yaml"), familyProfile)
	if err := os.MkdirAll(f.state, 0o700); err != nil {
		t.Fatal(err)
	}
	savedPath := filepath.Join(f.state, "device-state.json")
	if _, err := savedstate.New(savedPath).Save(map[string]policy.Saved{
		aliceMAC: {Online: false, Categories: []string{"adult", "gambling"}, Reason: "offline: bedtime (daily 21:00–07:00)"},
	}, bedtime.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}

	// --clock-trust signal: this host's kernel may well report NTP sync;
	// the lab stands for a router whose clock nobody has set yet.
	a := startAgent(t, f.Lab, f.profiles, f.state, noon.Format(time.RFC3339), "--clock-trust", "signal")
	f.expectReach(t, f.alice, false, "untrusted clock, Alice saved offline")
	f.expectReach(t, f.bob, false, "untrusted clock, Bob has a bedtime and nothing saved")
	f.expectReach(t, f.parent, true, "untrusted clock, the parent")
	st := a.status()
	if st.Clock.Trusted || st.Clock.BootPolicy != "saved" {
		t.Errorf("status clock = %+v; want untrusted, boot policy saved", st.Clock)
	}
	if r := a.device(aliceMAC).Reason; !strings.Contains(r, "keeping the state saved") {
		t.Errorf("Alice's reason %q does not say she keeps her saved state", r)
	}
	out, err := cli(t, f.Lab, "status", "--state", f.state)
	if err != nil || !strings.Contains(out, "NOT YET SYNCHRONISED") {
		t.Errorf("status text does not show the untrusted clock (%v):\n%s", err, out)
	}
	if before, _ := os.ReadFile(savedPath); !strings.Contains(string(before), `"online": false`) {
		t.Errorf("the saved state was rewritten from an untrusted clock:\n%s", before)
	}

	// The ntp hotplug signal.
	start := time.Now()
	if out, err := cli(t, f.Lab, "notify", "clock-synced", "--state", f.state); err != nil {
		t.Fatalf("notify clock-synced: %v\n%s", err, out)
	}
	f.waitReach(t, f.alice, inet4, true, 3*time.Second)
	f.waitReach(t, f.bob, inet6, true, 3*time.Second)
	reliability(t, "boot clock", "untrusted clock at noon: Alice saved offline, Bob with a bedtime and nothing saved", "both offline until `notify clock-synced`; then the schedule applied within %v", time.Since(start).Round(time.Millisecond))
	f.expectReach(t, f.alice, true, "after the sync, at noon")
	f.expectReach(t, f.bob, true, "after the sync, at noon")
	st = a.status()
	if !st.Clock.Trusted || !strings.Contains(st.Clock.TrustSource, "hotplug") {
		t.Errorf("after the sync: clock = %+v", st.Clock)
	}
	f2, err := savedstate.New(savedPath).Load()
	if err != nil || !f2.Devices[aliceMAC].Online || !f2.Devices[bobMAC].Online {
		t.Errorf("states saved after the sync: %+v, %v; want both online", f2.Devices, err)
	}

	// Same boot, agent restarted: the remembered sync makes it trust the
	// clock at once.
	a.stop()
	a.start(noon.Format(time.RFC3339))
	if st := a.status(); !st.Clock.Trusted || !strings.Contains(st.Clock.TrustSource, "earlier this boot") {
		t.Errorf("restarted agent: clock = %+v; want trusted from the marker", st.Clock)
	}
	f.expectReach(t, f.alice, true, "restarted agent, same boot, noon")
}

// TestNotifyFirewallHeals: after `nft flush ruleset` (what `service firewall
// stop` does) famguard's rules are back within 5 s with the periodic check
// out of the picture (1 h): the nf_tables change events and the fw4 include's
// poke (`famguard notify firewall`) each trigger a heal, whichever comes
// first. notify succeeds quietly when no agent runs (a firewall reload must
// never fail because of famguard).
func TestNotifyFirewallHeals(t *testing.T) {
	f := newFamilyLab(t)
	writeFile(t, filepath.Join(f.profiles, "family.yaml"), familyProfile)
	// A long heal interval: only the nf_tables events or the poke can heal.
	a := startAgent(t, f.Lab, f.profiles, f.state, bedtime.Add(30*time.Minute).Format(time.RFC3339), "--heal-interval", "1h")
	f.expectReach(t, f.alice, false, "at 21:30")
	want, want6 := settledRules(t, f) // once the neighbour table has added the devices' addresses
	if _, err := f.Run(t.Context(), f.Router, "nft", "flush", "ruleset"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if out, err := cli(t, f.Lab, "notify", "firewall", "--state", f.state); err != nil {
		t.Fatalf("notify firewall: %v\n%s", err, out)
	}
	for !sameLines(famguardLines(t, f.Lab, "iptables-save"), want) || !sameLines(famguardLines(t, f.Lab, "ip6tables-save"), want6) {
		if time.Since(start) > 5*time.Second {
			t.Fatal("not healed within 5 s of nft flush ruleset and the firewall poke")
		}
		time.Sleep(20 * time.Millisecond)
	}
	reliability(t, "firewall", "`nft flush ruleset` (what `service firewall stop` does), periodic check off", "rules back after %v", time.Since(start).Round(time.Millisecond))
	f.expectReach(t, f.alice, false, "after the heal")
	if a.status().Dataplane.Heals < 1 {
		t.Error("status counts no heal")
	}
	a.stop()
	out, err := cli(t, f.Lab, "notify", "firewall", "--state", f.state)
	if err != nil || !strings.Contains(out, "no famguard agent is running") {
		t.Errorf("notify firewall without an agent: %v\n%s", err, out)
	}
}
