package daemon

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/famguard/famguard/agent/clock"
	"github.com/famguard/famguard/agent/policy"
	"github.com/famguard/famguard/agent/savedstate"
	"github.com/famguard/famguard/agent/tz"
	"github.com/famguard/famguard/rules"
)

const aliceMAC = "02:00:00:00:00:11"

// bootHarness runs a daemon whose clock is not yet trusted.
type bootHarness struct {
	d      *Daemon
	dp     *fakeDataplane
	store  *savedstate.Store
	synced chan struct{}
	state  string
}

func newBootHarness(t *testing.T, now time.Time, bp policy.BootPolicy, saved map[string]policy.Saved) *bootHarness {
	t.Helper()
	dir := profileDir(t, profile)
	statePath := filepath.Join(t.TempDir(), "device-state.json")
	if saved != nil {
		if _, err := savedstate.New(statePath).Save(saved, now.Add(-10*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	h := &bootHarness{dp: newFakeDataplane(), store: savedstate.New(statePath), synced: make(chan struct{}, 1), state: t.TempDir()}
	h.d = runDaemon(t, Config{
		ProfilesDir: dir, Clock: clock.StartingAt(now), Dataplane: h.dp,
		Env:              tz.Env{Root: t.TempDir(), Getenv: func(string) string { return "" }},
		WaitForClockSync: true, ClockSynced: h.synced, BootPolicy: bp, SavedState: h.store, StateDir: h.state,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), HealInterval: time.Hour,
	})
	return h
}

func (h *bootHarness) aliceBlocked() bool {
	return blocksAlice(h.dp.get(rules.IPv4))
}

func applied(h *bootHarness) func() bool {
	return func() bool { return strings.Contains(h.dp.get(rules.IPv4), ":FAMGUARD ") }
}

// The clock reads noon (online by the schedule), but before shutdown Alice
// was offline: she stays offline until the clock is synchronised, then the
// schedule applies.
func TestUntrustedClockKeepsSavedOffline(t *testing.T) {
	noon := time.Date(2026, 11, 26, 12, 0, 0, 0, berlin)
	h := newBootHarness(t, noon, policy.BootSaved, map[string]policy.Saved{
		aliceMAC: {Online: false, Reason: "offline: bedtime (daily 21:00–07:00)"},
	})
	eventually(t, "first apply", applied(h))
	if !h.aliceBlocked() {
		t.Fatal("Alice's saved state was offline, but she is not blocked before the clock is trusted")
	}
	st := statusOf(t, h.d)
	if st.Clock.Trusted || st.Clock.BootPolicy != "saved" {
		t.Errorf("clock status %+v; want untrusted with boot policy saved", st.Clock)
	}
	if r := st.Devices[0].Reason; !strings.Contains(r, "clock not yet synchronised, keeping the state saved") {
		t.Errorf("reason %q does not explain the boot state", r)
	}
	if h.store.Writes() != 0 {
		t.Error("states were saved from an untrusted clock")
	}

	h.synced <- struct{}{} // the kernel reports NTP sync
	eventually(t, "Alice online by the schedule at noon", func() bool { return !h.aliceBlocked() })
	st = statusOf(t, h.d)
	if !st.Clock.Trusted || !strings.Contains(st.Clock.TrustSource, "kernel") || st.Clock.TrustedAt == nil {
		t.Errorf("clock status after sync %+v", st.Clock)
	}
	if !clock.SyncedThisBoot(h.state) {
		t.Error("the sync was not remembered for a restart of the agent")
	}
	// Now trusted, the new state is saved (it changed: offline → online).
	eventually(t, "states saved", func() bool { return h.store.Writes() == 1 })
	f, err := savedstate.New(h.store.Path()).Load()
	if err != nil || !f.Devices[aliceMAC].Online {
		t.Errorf("saved after sync: %+v, %v", f, err)
	}
}

// The clock reads bedtime, but Alice was online when the router went down
// (the clock is wrong): she keeps being online until the hotplug signal says
// the time is right.
func TestUntrustedClockKeepsSavedOnlineUntilHotplugSignal(t *testing.T) {
	night := time.Date(2026, 11, 26, 23, 0, 0, 0, berlin)
	h := newBootHarness(t, night, policy.BootSaved, map[string]policy.Saved{aliceMAC: {Online: true, Reason: "online: no schedule active"}})
	eventually(t, "first apply", applied(h))
	if h.aliceBlocked() {
		t.Fatal("Alice blocked by an untrusted clock although her saved state is online")
	}
	v, err := h.d.Handle(context.Background(), "clock-synced", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cs := v.(ClockStatus); !cs.Trusted || !strings.Contains(cs.TrustSource, "hotplug") {
		t.Errorf("clock-synced answered %+v", cs)
	}
	eventually(t, "bedtime applies once the clock is trusted", h.aliceBlocked)
}

func TestUntrustedClockWithoutSavedStateIsOffline(t *testing.T) {
	for _, bp := range []policy.BootPolicy{policy.BootSaved, policy.BootOffline} {
		t.Run(string(bp), func(t *testing.T) {
			saved := map[string]policy.Saved{aliceMAC: {Online: true}}
			if bp == policy.BootSaved {
				saved = nil // first boot: nothing saved
			}
			h := newBootHarness(t, time.Date(2026, 11, 26, 12, 0, 0, 0, berlin), bp, saved)
			eventually(t, "first apply", applied(h))
			if !h.aliceBlocked() {
				t.Fatal("a device with a bedtime window must be offline until the clock is known")
			}
		})
	}
}

// A damaged state file is reported and treated as "nothing saved".
func TestDamagedSavedStateIsProtective(t *testing.T) {
	dir := profileDir(t, profile)
	path := filepath.Join(t.TempDir(), "device-state.json")
	if err := os.WriteFile(path, []byte(`{"version":1,"devices":{"02:00`), 0o600); err != nil {
		t.Fatal(err)
	}
	dp := newFakeDataplane()
	d := runDaemon(t, Config{ProfilesDir: dir, Clock: clock.StartingAt(time.Date(2026, 11, 26, 12, 0, 0, 0, berlin)), Dataplane: dp,
		WaitForClockSync: true, SavedState: savedstate.New(path), Log: slog.New(slog.NewTextHandler(io.Discard, nil)), HealInterval: time.Hour})
	eventually(t, "Alice offline", func() bool { return blocksAlice(dp.get(rules.IPv4)) })
	if st := statusOf(t, d); st.SavedState == nil || !strings.Contains(st.SavedState.Error, path) {
		t.Errorf("status does not report the damaged file: %+v", st.SavedState)
	}
}

// Trusted from the start (the default): the schedule applies at once and
// states are saved only when they change.
func TestTrustedClockSavesOnChangeOnly(t *testing.T) {
	dir := profileDir(t, profile)
	store := savedstate.New(filepath.Join(t.TempDir(), "device-state.json"))
	dp := newFakeDataplane()
	clk := &steppableClock{now: time.Date(2026, 11, 26, 20, 0, 0, 0, berlin)}
	jumps := make(chan struct{}, 1)
	reload := make(chan struct{}, 1)
	runDaemon(t, Config{ProfilesDir: dir, Clock: clk, Dataplane: dp, SavedState: store, WallJumps: jumps, Reload: reload,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), HealInterval: time.Hour})

	eventually(t, "first save", func() bool { return store.Writes() == 1 })
	reload <- struct{}{} // same profiles, same instant: no write
	clk.set(time.Date(2026, 11, 26, 20, 30, 0, 0, berlin))
	jumps <- struct{}{}
	time.Sleep(100 * time.Millisecond)
	if n := store.Writes(); n != 1 {
		t.Fatalf("%d writes without any state change", n)
	}
	clk.set(time.Date(2026, 11, 26, 21, 30, 0, 0, berlin)) // bedtime
	jumps <- struct{}{}
	eventually(t, "bedtime saved", func() bool { return store.Writes() == 2 })
	f, err := savedstate.New(store.Path()).Load()
	if err != nil || f.Devices[aliceMAC].Online {
		t.Errorf("saved at bedtime: %+v, %v", f, err)
	}
}
