package daemon

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/famguard/famguard/agent/clock"
	"github.com/famguard/famguard/agent/netwatch"
	"github.com/famguard/famguard/agent/savedstate"
	"github.com/famguard/famguard/agent/tz"
	"github.com/famguard/famguard/rules"
)

// fakeDataplane is rules' stateful fake (it really applies the restore
// input and reads back like the kernel) plus failure injection and a count
// of applies.
type fakeDataplane struct {
	mu      sync.Mutex
	fake    *rules.Fake
	applies int
	tries   int // applies attempted, failed ones included
	fail    error
}

func newFakeDataplane() *fakeDataplane { return &fakeDataplane{fake: rules.NewFake()} }

func (f *fakeDataplane) Apply(fam rules.Family, text string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tries++
	if f.fail != nil {
		return f.fail
	}
	f.applies++
	return f.fake.Apply(fam, text)
}

func (f *fakeDataplane) Snapshot(fam rules.Family) (string, error) { return f.fake.Snapshot(fam) }
func (f *fakeDataplane) Cleanup(fam rules.Family) error            { return f.fake.Cleanup(fam) }
func (f *fakeDataplane) Backend() string                           { return "fake" }

// get is the family's table as iptables-save would print it.
func (f *fakeDataplane) get(fam rules.Family) string { return f.fake.Save(fam) }

func (f *fakeDataplane) setFail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = err
}

// fakeNeighbours sends one fixed table.
type fakeNeighbours struct{ table netwatch.Table }

func (n fakeNeighbours) Run(ctx context.Context, out chan<- netwatch.Table) error {
	out <- n.table
	<-ctx.Done()
	return nil
}

const profile = `version: 1
timezone: Europe/Berlin
children:
  alice:
    devices:
      - {mac: "02:00:00:00:00:11", name: "Alice's phone"}
    schedules:
      - {name: bedtime, days: [daily], from: "21:00", to: "07:00", action: offline}
`

var berlin, _ = tz.Load("Europe/Berlin")

type harness struct {
	t       *testing.T
	dir     string
	dp      *fakeDataplane
	d       *Daemon
	reload  chan struct{}
	cut     chan cutCall
	cancel  context.CancelFunc
	stopped chan struct{}
}

func newHarness(t *testing.T, start time.Time, content string) *harness {
	t.Helper()
	dir := t.TempDir()
	if content != "" {
		if err := os.WriteFile(filepath.Join(dir, "family.yaml"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h := &harness{t: t, dir: dir, dp: newFakeDataplane(), reload: make(chan struct{}, 1),
		cut: make(chan cutCall, 10), stopped: make(chan struct{})}
	h.d = New(Config{
		ProfilesDir: dir,
		Clock:       clock.StartingAt(start),
		Env:         tz.Env{Root: t.TempDir(), Getenv: func(string) string { return "" }},
		Dataplane:   h.dp,
		Neighbours: fakeNeighbours{netwatch.Table{"02:00:00:00:00:11": {
			netip.MustParseAddr("192.0.2.11"), netip.MustParseAddr("2001:db8:1::11")}}},
		Conntrack:    harnessConntrack(h),
		Reload:       h.reload,
		Log:          slog.New(slog.NewTextHandler(io.Discard, nil)),
		HealInterval: 50 * time.Millisecond,
		WatchFiles:   true,
	})
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { _ = h.d.Run(ctx); close(h.stopped) }()
	t.Cleanup(func() { cancel(); <-h.stopped })
	return h
}

func (h *harness) status() Status {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	v, err := h.d.Handle(ctx, "status", nil)
	if err != nil {
		h.t.Fatal(err)
	}
	return v.(Status)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	// Generous: CI machines are small and busy. Passing tests return as
	// soon as the condition holds.
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestBedtimeTransitionAppliesRulesAndCutsConnections(t *testing.T) {
	bed := time.Date(2026, 11, 26, 21, 0, 0, 0, berlin)
	h := newHarness(t, bed.Add(-300*time.Millisecond), profile)

	eventually(t, "first apply", func() bool { return strings.Contains(h.dp.get(rules.IPv4), ":FAMGUARD ") })
	if blocksAlice(h.dp.get(rules.IPv4)) {
		t.Fatal("Alice's MAC is in the rules before bedtime")
	}
	// The loop sleeps until 21:00 on the agent's clock, then blocks.
	// One pass writes IPv4, then IPv6: wait for both (checking IPv6 the
	// moment IPv4 shows the change raced the second write).
	eventually(t, "bedtime rules", func() bool {
		return blocksAlice(h.dp.get(rules.IPv4)) && blocksAlice(h.dp.get(rules.IPv6))
	})
	if !strings.Contains(h.dp.get(rules.IPv6), "2001:db8:1::11") {
		t.Error("IPv6 rules do not cut traffic towards Alice's known address")
	}
	select {
	case c := <-h.cut:
		if len(c.ids) != 1 || c.ids[0] != h.d.kid.ids.Devices["02:00:00:00:00:11"] || c.dnsOnly || c.unmarked {
			t.Errorf("conntrack deletion %+v, want every connection of Alice's device ID", c)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no conntrack deletion when Alice went offline")
	}
	st := h.status()
	if len(st.Devices) != 1 || st.Devices[0].Online || !st.Devices[0].Seen {
		t.Fatalf("status devices = %+v", st.Devices)
	}
	if st.Zone.Name != "Europe/Berlin" || st.Policy == nil {
		t.Errorf("status zone %+v policy %+v", st.Zone, st.Policy)
	}
}

func TestInvalidReloadKeepsLastGoodPolicy(t *testing.T) {
	h := newHarness(t, time.Date(2026, 11, 26, 22, 0, 0, 0, berlin), profile)
	eventually(t, "bedtime rules", func() bool { return blocksAlice(h.dp.get(rules.IPv4)) })
	good := h.status().Policy.Digest

	// Broken: a bad time. The whole set must be rejected.
	bad := strings.Replace(profile, `"21:00"`, `"21:60"`, 1)
	if err := os.WriteFile(filepath.Join(h.dir, "family.yaml"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, "rejected reload", func() bool { return !h.status().LastReload.OK })
	st := h.status()
	if st.Policy.Digest != good {
		t.Errorf("policy changed to %s after a broken edit, want %s", st.Policy.Digest, good)
	}
	if len(st.LastReload.Problems) == 0 || !strings.Contains(st.LastReload.Problems[0], "family.yaml:8:") {
		t.Errorf("problems %q should name family.yaml line 8", st.LastReload.Problems)
	}
	if !blocksAlice(h.dp.get(rules.IPv4)) {
		t.Error("block lifted by a broken edit")
	}
}

func TestNoValidPolicyLeavesKernelUntouched(t *testing.T) {
	h := newHarness(t, time.Now(), "version: 1\nchildren: [oops]\n")
	eventually(t, "rejected load", func() bool { return h.status().LastReload.At.After(time.Time{}) })
	st := h.status()
	if st.LastReload.OK || st.Policy != nil {
		t.Fatalf("invalid set accepted: %+v", st.LastReload)
	}
	time.Sleep(100 * time.Millisecond)
	h.dp.mu.Lock()
	n := h.dp.applies
	h.dp.mu.Unlock()
	if n != 0 {
		t.Errorf("%d applies without a valid policy; the previous agent's rules must be left alone", n)
	}
}

func TestHealRestoresRemovedRules(t *testing.T) {
	h := newHarness(t, time.Date(2026, 11, 26, 22, 0, 0, 0, berlin), profile)
	// Settled: the MAC rule and, once the neighbour table arrived, the rule
	// for Alice's address.
	eventually(t, "bedtime rules", func() bool { return strings.Contains(h.dp.get(rules.IPv4), "-d 192.0.2.11/32") })
	want := h.dp.get(rules.IPv4)
	_ = h.dp.Cleanup(rules.IPv4) // another program flushed our chains
	eventually(t, "heal", func() bool { return h.dp.get(rules.IPv4) == want })
	if h.status().Dataplane.Heals == 0 {
		t.Error("heal not counted in status")
	}
}

func TestFailedApplyIsRetried(t *testing.T) {
	h := newHarness(t, time.Date(2026, 11, 26, 22, 0, 0, 0, berlin), "")
	h.dp.setFail(errors.New("iptables-restore: line 3 failed"))
	if err := os.WriteFile(filepath.Join(h.dir, "family.yaml"), []byte(profile), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, "failure reported", func() bool { return h.status().Dataplane.LastError != "" })
	h.dp.setFail(nil)
	eventually(t, "retried apply", func() bool { return blocksAlice(h.dp.get(rules.IPv4)) })
	if e := h.status().Dataplane.LastError; e != "" {
		t.Errorf("last error still %q after recovery", e)
	}
}

// countingDataplane counts snapshots, to catch a busy loop.
type countingDataplane struct {
	*fakeDataplane
	snapshots atomic.Int64
}

func (c *countingDataplane) Snapshot(fam rules.Family) (string, error) {
	c.snapshots.Add(1)
	return c.fakeDataplane.Snapshot(fam)
}

// TestClosedEventSourcesDoNotSpin: event sources that could not start hand
// over closed channels; the loop must stop listening to them, not spin.
func TestClosedEventSourcesDoNotSpin(t *testing.T) {
	dir := profileDir(t, profile)
	closed := make(chan struct{})
	close(closed)
	dp := &countingDataplane{fakeDataplane: newFakeDataplane()}
	d := New(Config{ProfilesDir: dir, Clock: clock.StartingAt(time.Date(2026, 11, 26, 22, 0, 0, 0, berlin)),
		Dataplane: dp, WallJumps: closed, RulesChanged: closed, Reload: closed,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), HealInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	time.Sleep(200 * time.Millisecond)
	cancel()
	<-done
	// One snapshot per family after the first apply; a spinning loop would
	// have taken thousands.
	if n := dp.snapshots.Load(); n > 4 {
		t.Errorf("%d snapshots in 200 ms with closed event channels: the loop spins", n)
	}
}

func TestSIGHUPReload(t *testing.T) {
	h := newHarness(t, time.Date(2026, 11, 26, 12, 0, 0, 0, berlin), profile)
	eventually(t, "loaded", func() bool { return h.status().Policy != nil })
	h.reload <- struct{}{}
	eventually(t, "SIGHUP reload", func() bool { return h.status().LastReload.Trigger == "SIGHUP" })
	// The re-read found nothing new: the load before it stays visible.
	st := h.status()
	if !strings.HasPrefix(st.LastReload.Message, "profiles unchanged") || st.LastChange.Trigger == "SIGHUP" ||
		!strings.Contains(st.LastChange.Message, "loaded") || !st.LastChange.At.Before(st.LastReload.At) {
		t.Errorf("after an unchanged SIGHUP: last_reload %+v, last_change %+v; want the earlier load as last_change", st.LastReload, st.LastChange)
	}
}

// steppableClock is a clock someone can set, like NTP or `date -s`.
type steppableClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *steppableClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *steppableClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// TestWallClockStepReevaluatesAtOnce: the loop sleeps on a monotonic timer
// until the next transition (hours away here); when the wall clock is
// stepped past bedtime, the step signal makes it re-evaluate immediately.
func TestWallClockStepReevaluatesAtOnce(t *testing.T) {
	dir := profileDir(t, profile)
	clk := &steppableClock{now: time.Date(2026, 11, 26, 12, 0, 0, 0, berlin)}
	jumps := make(chan struct{}, 1)
	dp := newFakeDataplane()
	runDaemon(t, Config{ProfilesDir: dir, Clock: clk, Dataplane: dp, WallJumps: jumps,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), HealInterval: time.Hour})

	eventually(t, "noon rules", func() bool { return strings.Contains(dp.get(rules.IPv4), ":FAMGUARD ") })
	if blocksAlice(dp.get(rules.IPv4)) {
		t.Fatal("Alice blocked at noon")
	}
	clk.set(time.Date(2026, 11, 26, 21, 30, 0, 0, berlin)) // NTP steps the clock
	jumps <- struct{}{}
	eventually(t, "bedtime rules right after the step", func() bool {
		return blocksAlice(dp.get(rules.IPv4))
	})
	clk.set(time.Date(2026, 11, 26, 12, 0, 0, 0, berlin)) // and back
	jumps <- struct{}{}
	eventually(t, "block lifted right after stepping back", func() bool {
		return !blocksAlice(dp.get(rules.IPv4))
	})
}

// racingDataplane lets another program flush famguard's chain between the
// daemon's write and its read-back, once.
type racingDataplane struct {
	*fakeDataplane
	raced atomic.Bool
}

func (r *racingDataplane) Snapshot(fam rules.Family) (string, error) {
	if fam == rules.IPv4 && blocksAlice(r.get(fam)) && r.raced.CompareAndSwap(false, true) {
		if err := r.fake.Run(fam, "-F FAMGUARD"); err != nil {
			return "", err
		}
	}
	return r.fakeDataplane.Snapshot(fam)
}

// TestReadBackRaceIsHealed: a flush that lands between the write and the
// read-back must not become the baseline; the rules come back.
func TestReadBackRaceIsHealed(t *testing.T) {
	dir := profileDir(t, profile)
	dp := &racingDataplane{fakeDataplane: newFakeDataplane()}
	runDaemon(t, Config{ProfilesDir: dir, Clock: clock.StartingAt(time.Date(2026, 11, 26, 22, 0, 0, 0, berlin)),
		Dataplane: dp, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), HealInterval: 50 * time.Millisecond})
	eventually(t, "the race to happen", func() bool { return dp.raced.Load() })
	eventually(t, "Alice's rule back after the racing flush", func() bool {
		return strings.Contains(dp.get(rules.IPv4), "--mac-source 02:00:00:00:00:11")
	})
}

// attemptRecorder fails every apply and records when each IPv4 attempt ran.
type attemptRecorder struct {
	*fakeDataplane
	mu    sync.Mutex
	times []time.Time
}

func (a *attemptRecorder) Apply(fam rules.Family, text string) error {
	if fam == rules.IPv4 {
		a.mu.Lock()
		a.times = append(a.times, time.Now())
		a.mu.Unlock()
	}
	return a.fakeDataplane.Apply(fam, text)
}

func (a *attemptRecorder) attempts() []time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]time.Time(nil), a.times...)
}

// TestFailedApplyBacksOffExponentially: a firewall tool that keeps failing
// is retried after RetryBase, then twice as long each time, up to RetryMax —
// not at every heal tick (10 ms here) — and status says how many failed in a
// row and when the next retry runs. The first success resets it all.
func TestFailedApplyBacksOffExponentially(t *testing.T) {
	dir := profileDir(t, profile)
	dp := &attemptRecorder{fakeDataplane: newFakeDataplane()}
	dp.setFail(errors.New("iptables-restore: stand-in failure"))
	base, maxDelay := 40*time.Millisecond, 320*time.Millisecond
	d := runDaemon(t, Config{ProfilesDir: dir, Clock: clock.StartingAt(time.Date(2026, 11, 26, 22, 0, 0, 0, berlin)),
		Dataplane: dp, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		HealInterval: 10 * time.Millisecond, RetryBase: base, RetryMax: maxDelay})
	status := func() Status { return statusOf(t, d) }

	eventually(t, "seven attempts", func() bool { return len(dp.attempts()) >= 7 })
	at := dp.attempts()
	want := []time.Duration{base, 2 * base, 4 * base, 8 * base, maxDelay, maxDelay}
	for i, w := range want {
		gap := at[i+1].Sub(at[i])
		// Never earlier than the backoff; later only by scheduling noise.
		if gap < w-5*time.Millisecond || gap > w+250*time.Millisecond {
			t.Errorf("retry %d came %v after the previous attempt; want about %v", i+1, gap.Round(time.Millisecond), w)
		}
	}
	st := status()
	if st.Dataplane.ConsecutiveFailures < 7 || st.Dataplane.RetryBackoff != maxDelay.String() || st.Dataplane.NextRetry == nil {
		t.Errorf("status during failures: %+v; want ≥7 consecutive failures, backoff %v and a next retry", st.Dataplane, maxDelay)
	}
	if st.Dataplane.LastError == "" || st.Dataplane.Failures < 7 {
		t.Errorf("status during failures: last_error %q, failures %d", st.Dataplane.LastError, st.Dataplane.Failures)
	}

	dp.setFail(nil)
	eventually(t, "the rules applied after the tool recovered", func() bool {
		return blocksAlice(dp.get(rules.IPv4))
	})
	eventually(t, "status cleared", func() bool {
		s := status().Dataplane
		return s.ConsecutiveFailures == 0 && s.NextRetry == nil && s.RetryBackoff == "" && s.LastError == ""
	})
}

// TestFailedSaveIsRetried: a device-state file that cannot be written (its
// directory is missing here; a full or read-only file system in the lab)
// does not stop enforcement, shows in status, and is written once it can
// be, without waiting for the next change of state.
func TestFailedSaveIsRetried(t *testing.T) {
	dir := profileDir(t, profile)
	stateDir := filepath.Join(t.TempDir(), "not-yet")
	path := filepath.Join(stateDir, "device-state.json")
	dp := newFakeDataplane()
	d := runDaemon(t, Config{ProfilesDir: dir, Clock: clock.StartingAt(time.Date(2026, 11, 26, 22, 0, 0, 0, berlin)),
		Dataplane: dp, SavedState: savedstate.New(path), Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		HealInterval: 20 * time.Millisecond})
	status := func() Status { return statusOf(t, d) }
	eventually(t, "the save error in status", func() bool {
		s := status().SavedState
		return s != nil && strings.Contains(s.Error, path)
	})
	if !blocksAlice(dp.get(rules.IPv4)) {
		t.Error("Alice not blocked while the state file cannot be written")
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the states saved once the directory exists", func() bool {
		s := status().SavedState
		return s.Error == "" && s.Writes == 1
	})
	if f, err := savedstate.New(path).Load(); err != nil || f.Devices["02:00:00:00:00:11"].Online {
		t.Errorf("saved file: %+v, %v; want Alice offline", f, err)
	}
}

// TestClockStepOnlyForSimulatedClocks: the lab's clock-step hook moves a
// --clock clock and re-evaluates at once; without --clock it is refused.
func TestClockStepOnlyForSimulatedClocks(t *testing.T) {
	h := newHarness(t, time.Date(2026, 11, 26, 12, 0, 0, 0, berlin), profile)
	eventually(t, "loaded", func() bool { return h.status().Policy != nil })
	if _, err := h.d.Handle(context.Background(), "clock-step", []string{"9h"}); err == nil {
		t.Fatal("clock-step accepted without a simulated clock")
	}

	dir := profileDir(t, profile)
	dp := newFakeDataplane()
	d := runDaemon(t, Config{ProfilesDir: dir, Clock: clock.StartingAt(time.Date(2026, 11, 26, 12, 0, 0, 0, berlin)), ClockSimulated: true,
		Dataplane: dp, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), HealInterval: time.Hour})
	ctx := context.Background()
	eventually(t, "noon rules", func() bool { return strings.Contains(dp.get(rules.IPv4), ":FAMGUARD ") })
	if _, err := d.Handle(ctx, "clock-step", []string{"9h30m"}); err != nil {
		t.Fatal(err)
	}
	if !blocksAlice(dp.get(rules.IPv4)) {
		t.Error("Alice not blocked right after stepping to 21:30")
	}
	if _, err := d.Handle(ctx, "clock-step", []string{"-9h30m"}); err != nil {
		t.Fatal(err)
	}
	if blocksAlice(dp.get(rules.IPv4)) {
		t.Error("Alice still blocked after stepping back to noon")
	}
	if _, err := d.Handle(ctx, "clock-step", []string{"soon"}); err == nil {
		t.Error("clock-step accepted a bad duration")
	}
}

// profileDir is a new profile directory holding content as family.yaml.
func profileDir(t *testing.T, content string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "family.yaml"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runDaemon runs a daemon made from cfg until the test ends.
func runDaemon(t *testing.T, cfg Config) *Daemon {
	t.Helper()
	d := New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return d
}

// statusOf is what `famguard status` would show of d.
func statusOf(t *testing.T, d *Daemon) Status {
	t.Helper()
	return ask(t, d, "status").(Status)
}

// TestReloadsStayFlat: a thousand reloads that each really change the
// policy (two valid variants, alternated; one puts the device offline, so
// each reload also cuts its connections) leave the agent's goroutines and
// open files where they were after the first hundred, as status reports
// them. Real file changes, reloaded through the control socket's request
// (synchronous, so the loop is not throttled by the watcher's debounce);
// the watcher sees every write too.
func TestReloadsStayFlat(t *testing.T) {
	h := newHarness(t, time.Date(2026, 11, 26, 12, 0, 0, 0, berlin), profile)
	eventually(t, "loaded", func() bool { return h.status().Policy != nil })
	lunch := strings.Replace(profile, "schedules:\n", "schedules:\n      - {name: lunch, days: [daily], from: \"11:00\", to: \"13:00\", action: offline}\n", 1)
	path := filepath.Join(h.dir, "family.yaml")
	var first RuntimeStatus
	digests := map[string]bool{}
	for i := 1; i <= 1000; i++ {
		content := profile
		if i%2 == 1 {
			content = lunch
		}
		if err := os.WriteFile(path+".tmp", []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		v, err := h.d.Handle(ctx, "reload", nil)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if r := v.(ReloadResult); !r.OK {
			t.Fatalf("reload %d: %+v", i, r)
		} else {
			digests[r.Policy] = true
		}
		select { // the offline variant cuts the device's connections
		case <-h.cut:
		default:
		}
		if i == 100 {
			time.Sleep(50 * time.Millisecond) // let the watcher's own reloads settle
			first = h.status().Runtime
		}
	}
	time.Sleep(50 * time.Millisecond)
	last := h.status().Runtime
	t.Logf("after 100 reloads: %+v; after 1000: %+v", first, last)
	if len(digests) != 2 {
		t.Errorf("reloads applied %d distinct policies, want the 2 variants", len(digests))
	}
	if d := last.Goroutines - first.Goroutines; d > 5 || d < -5 {
		t.Errorf("goroutines went from %d to %d over 900 reloads", first.Goroutines, last.Goroutines)
	}
	if d := last.OpenFDs - first.OpenFDs; d > 3 || d < -3 || first.OpenFDs <= 0 {
		t.Errorf("open files went from %d to %d over 900 reloads", first.OpenFDs, last.OpenFDs)
	}
	if last.RSSBytes == 0 || last.HeapBytes == 0 {
		t.Errorf("runtime status incomplete: %+v", last)
	}
}

// cutCall is one rules.Conntrack.Cut call.
type cutCall struct {
	ids               []uint16
	dnsOnly, unmarked bool
}

type chanConntrack chan cutCall

func (c chanConntrack) Cut(ids []uint16, dnsOnly, unmarked bool) (uint, error) {
	c <- cutCall{append([]uint16(nil), ids...), dnsOnly, unmarked}
	return uint(len(ids)), nil
}

func harnessConntrack(h *harness) rules.Conntrack { return chanConntrack(h.cut) }

// blocksAlice: the filter rules reject Alice's MAC (mangle lists every
// device's MAC, offline or not).
func blocksAlice(text string) bool {
	return strings.Contains(text, "-A FAMGUARD -m mac --mac-source 02:00:00:00:00:11 ")
}

// churningNeighbours sends a changed table every few milliseconds, as a
// busy LAN does.
type churningNeighbours struct{ every time.Duration }

func (n churningNeighbours) Run(ctx context.Context, out chan<- netwatch.Table) error {
	tick := time.NewTicker(n.every)
	defer tick.Stop()
	for i := 0; ; i++ {
		t := netwatch.Table{"02:00:00:00:00:11": {netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i%100)})}}
		select {
		case out <- t:
		case <-ctx.Done():
			return nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return nil
		}
	}
}

// TestNeighbourChurnKeepsTheRetryBackoff: while applies fail, neighbour
// table changes must not start attempts of their own. Each attempt against
// a hung iptables-restore holds the loop for --restore-timeout, so
// attempts on every table change kept the loop busy back to back (status
// queued behind them in the fault lab).
func TestNeighbourChurnKeepsTheRetryBackoff(t *testing.T) {
	dir := profileDir(t, profile)
	dp := newFakeDataplane()
	dp.setFail(errors.New("iptables-restore: stand-in failure"))
	d := New(Config{
		ProfilesDir: dir,
		Clock:       clock.StartingAt(time.Date(2026, 11, 26, 22, 0, 0, 0, berlin)),
		Env:         tz.Env{Root: t.TempDir(), Getenv: func(string) string { return "" }},
		Dataplane:   dp,
		Neighbours:  churningNeighbours{every: 2 * time.Millisecond},
		Log:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		RetryBase:   250 * time.Millisecond,
		RetryMax:    250 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { _ = d.Run(ctx); close(stopped) }()
	defer func() { cancel(); <-stopped }()

	time.Sleep(time.Second)
	dp.mu.Lock()
	tries := dp.tries
	dp.mu.Unlock()
	// The start, then one retry every 250 ms: about 5 attempts of at most
	// 2 families in one second. Generous for a slow machine: churn-driven
	// attempts would be in the hundreds.
	if tries > 16 {
		t.Errorf("%d apply attempts in 1 s with a 250 ms backoff: neighbour changes bypass the backoff", tries)
	}
	if tries == 0 {
		t.Error("no apply was attempted at all")
	}
	// Once the tool works, the retry applies the newest table.
	dp.setFail(nil)
	eventually(t, "rules applied after recovery", func() bool { return strings.Contains(dp.get(rules.IPv4), ":FAMGUARD ") })
}
