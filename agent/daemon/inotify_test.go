package daemon

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// nextEvent waits for the watcher's next event.
func nextEvent(t *testing.T, w *dirWatcher) dirEvent {
	t.Helper()
	select {
	case ev, ok := <-w.Events:
		if !ok {
			t.Fatal("events closed")
		}
		return ev
	case err := <-w.Errors:
		t.Fatalf("watch error: %v", err)
	case <-time.After(2 * time.Second):
		t.Fatal("no event within 2s")
	}
	return dirEvent{}
}

func TestDirWatcherReportsEntriesAndItself(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "profiles.d")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	w, err := newDirWatcher()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add(dir); err != nil {
		t.Fatal(err)
	}

	// A long name: the kernel pads it, and the next event must still be found.
	long := filepath.Join(dir, "a-rather-long-profile-file-name-for-padding.yaml.tmp")
	if err := os.WriteFile(long, []byte("version: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, w); ev.Name != long || ev.Mask&unix.IN_CREATE == 0 {
		t.Fatalf("first event %+v, want IN_CREATE of %s", ev, long)
	}
	if ev := nextEvent(t, w); ev.Name != long || ev.Mask&unix.IN_MODIFY == 0 {
		t.Fatalf("second event %+v, want IN_MODIFY of %s", ev, long)
	}
	if ev := nextEvent(t, w); ev.Name != long || ev.Mask&unix.IN_CLOSE_WRITE == 0 {
		t.Fatalf("third event %+v, want IN_CLOSE_WRITE of %s (the write is complete)", ev, long)
	}
	final := filepath.Join(dir, "family.yaml")
	if err := os.Rename(long, final); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, w); ev.Name != long || ev.Mask&unix.IN_MOVED_FROM == 0 {
		t.Fatalf("event %+v, want IN_MOVED_FROM of %s", ev, long)
	}
	if ev := nextEvent(t, w); ev.Name != final || ev.Mask&unix.IN_MOVED_TO == 0 {
		t.Fatalf("event %+v, want IN_MOVED_TO of %s", ev, final)
	}
	if err := os.Chmod(final, 0o600); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, w); !ev.attribOnly() {
		t.Fatalf("chmod gave %+v, want an attribute-only event", ev)
	}

	// The directory itself going away is reported under its own name, and
	// its watch is dropped.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	for {
		ev := nextEvent(t, w)
		if ev.Name == dir && ev.Mask&unix.IN_DELETE_SELF != 0 {
			break
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		w.mu.Lock()
		n := len(w.paths)
		w.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("watch of the removed directory not dropped: %v", w.paths)
		}
		time.Sleep(10 * time.Millisecond)
	}

	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case _, ok := <-w.Events:
		for ok {
			_, ok = <-w.Events
		}
	case <-time.After(2 * time.Second):
		t.Fatal("events not closed after Close")
	}
}

func TestDirWatcherCloseWithUnreadEvents(t *testing.T) {
	dir := t.TempDir()
	w, err := newDirWatcher()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add(dir); err != nil {
		t.Fatal(err)
	}
	// More events than the channel holds, never read: Close must still end
	// the reader.
	for i := 0; i < 200; i++ {
		if err := os.WriteFile(filepath.Join(dir, "f"), []byte{byte(i)}, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(2 * time.Second)
	for {
		select {
		case _, ok := <-w.Events:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("reader did not end after Close")
		}
	}
}

// TestEventWait: a profile renamed into place or closed after writing is
// complete and waits only settle; a temporary file, a write still going
// on, a removal, or the directory itself being swapped wait the quiet.
func TestEventWait(t *testing.T) {
	const quiet = 20 * time.Millisecond
	for _, c := range []struct {
		name   string
		mask   uint32
		inDir  bool
		nilFn  bool
		expect time.Duration
	}{
		{"family.yaml", unix.IN_MOVED_TO, true, false, settle},
		{"family.yaml", unix.IN_CLOSE_WRITE, true, false, settle},
		{"family.yml", unix.IN_MOVED_TO, true, false, settle},
		{"family.yaml.tmp", unix.IN_CLOSE_WRITE, true, false, quiet},
		{".family.yaml.swp", unix.IN_MOVED_TO, true, false, quiet},
		{"family.yaml", unix.IN_MODIFY, true, false, quiet},
		{"family.yaml", unix.IN_CREATE, true, false, quiet},
		{"family.yaml", unix.IN_DELETE, true, false, quiet},
		{"family.yaml", unix.IN_MOVED_FROM, true, false, quiet},
		{"profiles.d", unix.IN_MOVED_TO | unix.IN_ISDIR, false, false, quiet},
		{"adult.txt", unix.IN_CLOSE_WRITE, true, true, quiet},
	} {
		var fn func(string) bool = isProfile
		if c.nilFn {
			fn = nil
		}
		ev := dirEvent{Name: filepath.Join("/etc/famguard/profiles.d", c.name), Mask: c.mask}
		if got := eventWait(ev, c.inDir, quiet, fn); got != c.expect {
			t.Errorf("%s mask %#x: wait %v, want %v", c.name, c.mask, got, c.expect)
		}
	}
	if got := eventWait(dirEvent{Name: "/p/family.yaml", Mask: unix.IN_MOVED_TO}, true, time.Millisecond, isProfile); got != time.Millisecond {
		t.Errorf("a quiet shorter than settle: wait %v, want the quiet", got)
	}
}
