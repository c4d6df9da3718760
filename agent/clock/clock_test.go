package clock

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestStartingAtRunsInRealTime(t *testing.T) {
	start := time.Date(2026, 11, 26, 20, 59, 30, 0, time.UTC)
	c := StartingAt(start)
	first := c.Now()
	if d := first.Sub(start); d < 0 || d > time.Second {
		t.Fatalf("Now right after start = %v", first)
	}
	time.Sleep(20 * time.Millisecond)
	if d := c.Now().Sub(first); d < 20*time.Millisecond {
		t.Errorf("clock advanced %v over 20ms of real time", d)
	}
}

// fakeTimer reports a clock set on demand and counts re-arms.
type fakeTimer struct {
	mu    sync.Mutex
	sets  int
	arms  int
	fired chan struct{}
}

func (f *fakeTimer) arm() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.arms++
	return nil
}

func (f *fakeTimer) wait(timeout time.Duration) error {
	select {
	case <-f.fired:
		return errClockSet
	case <-time.After(timeout):
		return nil
	}
}

func TestWatcherSignalsCoalescesAndRearms(t *testing.T) {
	f := &fakeTimer{fired: make(chan struct{})}
	out := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { watchCancelOnSet(ctx, f, out); close(done) }()

	// Three steps before the daemon looks: one pending signal. The watcher
	// re-arms after handling each step, so 4 arms means all three were
	// handled (a send on f.fired completes before its handling does).
	for i := 0; i < 3; i++ {
		f.fired <- struct{}{}
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		f.mu.Lock()
		arms := f.arms
		f.mu.Unlock()
		if arms == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("armed %d times after three clock sets, want 4", arms)
		}
	}
	select {
	case <-out:
	case <-time.After(time.Second):
		t.Fatal("no signal after the clock was set")
	}
	select {
	case <-out:
		t.Fatal("signals not coalesced")
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	<-done
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.arms != 4 {
		t.Errorf("armed %d times, want 1 + one re-arm per clock set (4)", f.arms)
	}
}

func TestWallJumpsStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := WallJumps(ctx)
	cancel()
	select {
	case _, ok := <-ch:
		if ok {
			// A real clock step during the test is possible but harmless;
			// drain until closed.
			for range ch {
			}
		}
	case <-time.After(2 * time.Second):
		t.Fatal("WallJumps did not stop after its context ended")
	}
}

// scriptedTimer returns the given wait results in order, then times out.
type scriptedTimer struct {
	mu      sync.Mutex
	results []error
	arms    int
}

func (s *scriptedTimer) arm() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.arms++
	return nil
}

func (s *scriptedTimer) wait(timeout time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.results) == 0 {
		time.Sleep(timeout)
		return nil
	}
	r := s.results[0]
	s.results = s.results[1:]
	return r
}

// TestExpiryRearmsWithoutSignal: the distant timer expiring (once a year)
// is not a clock step, but the timer must be armed again.
func TestExpiryRearmsWithoutSignal(t *testing.T) {
	s := &scriptedTimer{results: []error{errExpired, nil}}
	out := make(chan struct{}, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	watchCancelOnSet(ctx, s, out)
	select {
	case <-out:
		t.Error("an expiry was reported as a clock step")
	default:
	}
	if s.arms != 2 {
		t.Errorf("armed %d times, want 2 (initial + after expiry)", s.arms)
	}
}

func TestWhenSyncedSignalsOnce(t *testing.T) {
	var calls atomic.Int32
	check := func() (bool, error) { return calls.Add(1) >= 3, nil }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := WhenSynced(ctx, time.Millisecond, check)
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no signal after the check reported sync")
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("%d checks; it must stop checking once synced", n)
	}
}

func TestWhenSyncedGivesUpOnErrors(t *testing.T) {
	var calls atomic.Int32
	check := func() (bool, error) { calls.Add(1); return false, errors.New("EPERM") }
	ch := WhenSynced(context.Background(), time.Millisecond, check)
	time.Sleep(100 * time.Millisecond)
	select {
	case <-ch:
		t.Fatal("signalled although the check failed")
	default:
	}
	if n := calls.Load(); n != 4 {
		t.Errorf("%d checks of a failing adjtimex, want 4 then give up", n)
	}
}

func TestSyncMarkerIsPerBoot(t *testing.T) {
	dir := t.TempDir()
	if SyncedThisBoot(dir) {
		t.Fatal("synced before any marker")
	}
	if err := MarkSynced(dir); err != nil {
		t.Fatal(err)
	}
	if !SyncedThisBoot(dir) {
		t.Fatal("marker not recognised in the same boot")
	}
	// A marker from another boot (what a reboot leaves on persistent storage).
	if err := os.WriteFile(filepath.Join(dir, SyncMarker), []byte("0b0b0b0b-other-boot\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if SyncedThisBoot(dir) {
		t.Error("a previous boot's marker was trusted")
	}
}

func TestKernelSyncedAnswers(t *testing.T) {
	// The host's sync state is whatever it is; what matters is that the
	// syscall works here (adjtimex read-only needs no privilege).
	if _, err := KernelSynced(); err != nil {
		t.Fatalf("adjtimex: %v", err)
	}
}
