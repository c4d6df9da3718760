package daemon

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// maxDelay bounds how long a burst of events can postpone a reload.
const maxDelay = 500 * time.Millisecond

// settle is the quiet after a file was completed (see watchDir).
const settle = 2 * time.Millisecond

// watchDir tells the loop (through changed, coalescing) that a watched
// directory (the profiles, the category lists) may have changed.
//
// Why the parent directory is watched too: a watch on the directory itself is
// lost when an operator swaps the whole directory (rename or symlink swap of
// profiles.d), and the directory may not exist yet at boot. Files are not
// watched one by one because an editor's or a push's atomic rename replaces
// the inode and a per-file watch silently stops firing. Chmod-only events are
// ignored (touching permissions changes nothing we read). Events are
// debounced: a push of many files, or an editor's write-rename-chmod dance,
// becomes one reload once the directory has been quiet for `quiet`, but never
// later than maxDelay after the first event, so a directory that keeps
// changing cannot postpone reloads for ever. The loader then decides whether
// anything really changed (by content digest), and a half-written file is
// simply rejected until its last write arrives.
//
// A file that is complete — renamed into place (how editors, pushes and
// `famguard assign` write) or closed after writing — and that complete
// accepts (a profile, not an editor's temporary file) needs no quiet of
// `quiet`: only `settle`, enough to fold the back-to-back renames of a
// multi-file push. So a parent's save is applied some 20 ms sooner, while
// a write still in progress (no close yet) waits as before. complete may
// be nil: every event then waits `quiet`.
//
// ready is closed once the watches are in place (or could not be): the loop
// waits for it before its first load, so an edit made while the agent starts
// is either read by that load or seen by the watch, never lost between them.
func watchDir(ctx context.Context, dir string, quiet time.Duration, complete func(name string) bool, log *slog.Logger, changed chan<- struct{}, ready chan<- struct{}) {
	w, err := newDirWatcher()
	if err != nil {
		close(ready)
		log.Error("cannot watch the profile directory; changes are picked up only on SIGHUP", "dir", dir, "err", err)
		return
	}
	defer w.Close()

	parent := filepath.Dir(filepath.Clean(dir))
	base := filepath.Base(filepath.Clean(dir))
	watchingDir := false
	addDir := func() {
		if err := w.Add(dir); err == nil {
			watchingDir = true
		} else if !os.IsNotExist(err) {
			log.Warn("cannot watch the profile directory", "dir", dir, "err", err)
		}
	}
	if err := w.Add(parent); err != nil {
		log.Warn("cannot watch the profile directory's parent; a swap of the whole directory is noticed only on SIGHUP", "dir", parent, "err", err)
	}
	addDir()
	close(ready)

	var debounce *time.Timer
	var fire <-chan time.Time
	var first time.Time // first event of the current burst
	touch := func(wait time.Duration) {
		now := time.Now()
		if fire == nil {
			first = now
		}
		if rest := maxDelay - now.Sub(first); rest < wait {
			wait = max(rest, 0)
		}
		debounce, fire = arm(debounce, wait)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			// An overflowed queue means we lost events: reload to be sure.
			log.Warn("profile watch error; reloading to be safe", "err", err)
			touch(quiet)
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if ev.attribOnly() {
				continue
			}
			inDir := filepath.Dir(ev.Name) == filepath.Clean(dir)
			isDir := filepath.Dir(ev.Name) == parent && filepath.Base(ev.Name) == base
			if !inDir && !isDir {
				continue // another file beside the profile directory
			}
			if isDir {
				// The directory was created, removed, renamed or swapped:
				// (re)establish the watch on whatever is there now.
				if watchingDir {
					_ = w.Remove(dir)
					watchingDir = false
				}
				addDir()
			}
			touch(eventWait(ev, inDir, quiet, complete))
		case <-fire:
			fire = nil
			select {
			case changed <- struct{}{}:
			default: // a reload is already pending; it will read the latest files
			}
		}
	}
}

// eventWait is the quiet an event asks for: settle for a complete file
// in the directory that complete accepts, quiet for anything else.
func eventWait(ev dirEvent, inDir bool, quiet time.Duration, complete func(string) bool) time.Duration {
	if inDir && ev.Mask&(unix.IN_MOVED_TO|unix.IN_CLOSE_WRITE) != 0 && complete != nil && complete(ev.Name) {
		return min(quiet, settle)
	}
	return quiet
}

func arm(t *time.Timer, d time.Duration) (*time.Timer, <-chan time.Time) {
	if t == nil {
		t = time.NewTimer(d)
	} else {
		t.Stop()
		t.Reset(d)
	}
	return t, t.C
}
