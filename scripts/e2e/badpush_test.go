package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/famguard/famguard/agent/daemon"
	"github.com/famguard/famguard/scripts/lab"
)

// TestBadPushesKeepLastGood: an operator's or a parent's push goes wrong in
// every way the issue lists — a truncated file, binary junk, a 100 MB file,
// a YAML alias bomb, deep nesting, a symlink loop, a file that cannot be
// read, 10,000 files at once. Each time the agent rejects the whole set with
// an error naming the file, the last good policy stays in force (a prober
// checks every 20 ms, over IPv4 and IPv6, that offline Alice never gets
// through), the next good push is applied, and the agent's peak memory stays
// bounded.
//
// "Cannot be read": the agent runs as root, which reads any file whatever
// its mode, so unreadable means what root cannot read either: a named pipe
// (which would block a naive open) and a directory with a profile's name.
func TestBadPushesKeepLastGood(t *testing.T) {
	f := newFamilyLab(t)
	good := filepath.Join(f.profiles, "family.yaml")
	writeFile(t, good, familyProfile)
	a := startAgent(t, f.Lab, f.profiles, f.state, bedtime.Add(30*time.Minute).Format(time.RFC3339))
	f.expectReach(t, f.alice, false, "at 21:30")
	digest := a.status().Policy.Digest
	wait4 := f.startProbe(t, f.alice, inet4, 20*time.Second)
	wait6 := f.startProbe(t, f.alice, inet6, 20*time.Second)
	start := time.Now()

	junk := make([]byte, 64<<10)
	for i := range junk {
		junk[i] = byte(i*131 + 7)
	}
	bomb := "version: 1\na: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
	pushes := []struct {
		name   string
		push   func(t *testing.T)
		undo   func(t *testing.T)
		expect string // in the reload message or a problem
	}{
		// Cut inside the bedtime window's {...}: an unclosed flow mapping is
		// never valid YAML, whatever lines the profile gains above it.
		{"truncated file", func(t *testing.T) { writeFile(t, good, familyProfile[:strings.Index(familyProfile, "from:")]) },
			func(t *testing.T) { writeFile(t, good, familyProfile) }, "family.yaml"},
		{"binary junk", func(t *testing.T) { writeFile(t, filepath.Join(f.profiles, "junk.yaml"), string(junk)) },
			remove(f.profiles, "junk.yaml"), "junk.yaml"},
		{"a 100 MB file", func(t *testing.T) {
			fh, err := os.Create(filepath.Join(f.profiles, "huge.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			if err := fh.Truncate(100 << 20); err != nil { // sparse: the test disk stays small
				t.Fatal(err)
			}
		}, remove(f.profiles, "huge.yaml"), "huge.yaml: file is 262145 bytes; a profile may be at most 262144"},
		{"alias bomb", func(t *testing.T) { writeFile(t, filepath.Join(f.profiles, "bomb.yaml"), bomb) },
			remove(f.profiles, "bomb.yaml"), "anchors, aliases and merge keys are not supported"},
		{"deep nesting", func(t *testing.T) {
			writeFile(t, filepath.Join(f.profiles, "deep.yaml"), "version: 1\nchildren: "+strings.Repeat("[", 100000)+strings.Repeat("]", 100000)+"\n")
		}, remove(f.profiles, "deep.yaml"), "deep.yaml"},
		{"a flat list of 100,000 items", func(t *testing.T) {
			writeFile(t, filepath.Join(f.profiles, "flat.yaml"), "version: 1\nx: ["+strings.Repeat("a,", 100000)+"a]\n")
		}, remove(f.profiles, "flat.yaml"), "a profile may have at most 20000"},
		{"symlink loop", func(t *testing.T) {
			if err := os.Symlink(filepath.Join(f.profiles, "loop.yaml"), filepath.Join(f.profiles, "loop.yaml")); err != nil {
				t.Fatal(err)
			}
		}, remove(f.profiles, "loop.yaml"), "loop.yaml: cannot be read: symbolic link loop"},
		{"a named pipe", func(t *testing.T) {
			if err := syscall.Mkfifo(filepath.Join(f.profiles, "pipe.yaml"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, remove(f.profiles, "pipe.yaml"), "pipe.yaml: is not a regular file (a named pipe)"},
		{"a directory with a profile's name", func(t *testing.T) {
			if err := os.Mkdir(filepath.Join(f.profiles, "dir.yaml"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, remove(f.profiles, "dir.yaml"), "dir.yaml: is not a regular file (a directory)"},
		// At once: prepared beside the live directory and swapped in with
		// renames, as a push tool does (written one by one into the live
		// directory, the first few hundred would be a valid set).
		{"10,000 files at once", func(t *testing.T) {
			staging := f.profiles + ".new"
			if err := os.Mkdir(staging, 0o755); err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(staging, "family.yaml"), familyProfile)
			for i := 0; i < 10000; i++ {
				writeFile(t, filepath.Join(staging, fmt.Sprintf("kid%05d.yaml", i)), "version: 1\n")
			}
			swapDirs(t, f.profiles, staging)
		}, func(t *testing.T) {
			swapDirs(t, f.profiles, f.profiles+".new")
			if err := os.RemoveAll(f.profiles + ".new"); err != nil {
				t.Fatal(err)
			}
		}, "10001 profile files; at most 1000 are read"},
	}
	for _, p := range pushes {
		before := a.status().LastReload.At
		p.push(t)
		st := waitReload(t, a, before)
		all := st.LastReload.Message + "\n" + strings.Join(st.LastReload.Problems, "\n")
		if st.LastReload.OK || !strings.Contains(all, p.expect) {
			t.Errorf("%s: last reload ok=%v, %q; want it rejected with %q", p.name, st.LastReload.OK, all, p.expect)
		}
		if st.Policy == nil || st.Policy.Digest != digest {
			t.Errorf("%s: policy in force changed", p.name)
		}
		if !strings.Contains(st.LastReload.Message, "still enforcing policy "+digest) {
			t.Errorf("%s: the message does not say the last good policy stays: %q", p.name, st.LastReload.Message)
		}
		before = st.LastReload.At
		p.undo(t)
		if st := waitReload(t, a, before); !st.LastReload.OK {
			t.Fatalf("%s: the good set was not accepted again: %+v", p.name, st.LastReload)
		}
		reliability(t, "bad push", p.name, "rejected with %q; last good policy kept; Alice still blocked", firstLine(strings.Join(st.LastReload.Problems, "; ")))
	}
	rss, peak := lab.ProcMemory(a.cmd.Process.Pid)
	reliability(t, "bad push", "all of the above, with a prober on offline Alice every 20 ms (IPv4 and IPv6)", "agent peak RSS %.1f MiB (bound asserted: 64 MiB), settled %.1f MiB; %v of pushes", float64(peak)/1024, float64(rss)/1024, time.Since(start).Round(time.Millisecond))
	if peak > 64<<10 {
		t.Errorf("peak RSS %.1f MiB during bad pushes; the bound is 64 MiB (a 128 MB router must not run out)", float64(peak)/1024)
	}
	f.expectReach(t, f.alice, false, "after every bad push")
	for name, wait := range map[string]func() string{"IPv4": wait4, "IPv6": wait6} {
		out := wait()
		if ok := okLines(out); len(ok) > 0 {
			t.Errorf("%s: Alice got through during the bad pushes: %q", name, ok)
		} else {
			reliability(t, "bad push", "prober during the pushes, "+name, "%d probes, 0 got through", strings.Count(out, "\n"))
		}
		if !strings.Contains(out, "blocked") {
			t.Errorf("%s: prober output shows no probes:\n%s", name, out)
		}
	}
}

// swapDirs exchanges two directories' contents by name (live ↔ other).
func swapDirs(t *testing.T, live, other string) {
	t.Helper()
	tmp := live + ".old"
	if err := os.Rename(live, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(other, live); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, other); err != nil {
		t.Fatal(err)
	}
}

func remove(dir, name string) func(t *testing.T) {
	return func(t *testing.T) {
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}

// waitReload waits for a reload after `after` and returns the status. A
// bad push can take several watcher events; the agent debounces them.
func waitReload(t *testing.T, a *agent, after time.Time) (st daemon.Status) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		st = a.status()
		if st.LastReload.At.After(after) {
			// Let a burst of events settle into its final reload.
			time.Sleep(150 * time.Millisecond)
			if again := a.status(); again.LastReload.At.Equal(st.LastReload.At) {
				return st
			}
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reload within 15 s (last %+v)", st.LastReload)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
