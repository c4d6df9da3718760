package savedstate

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/famguard/famguard/agent/policy"
)

var (
	bedtime = map[string]policy.Saved{
		"02:00:00:00:00:11": {Online: false, Categories: []string{"adult"}, Reason: "offline: bedtime"},
		"02:00:00:00:00:21": {Online: true, Categories: []string{}, Reason: "online: no schedules"},
	}
	morning = map[string]policy.Saved{
		"02:00:00:00:00:11": {Online: true, Categories: []string{"adult"}, Reason: "online: no schedule active"},
		"02:00:00:00:00:21": {Online: true, Categories: []string{}, Reason: "online: no schedules"},
	}
	at = time.Date(2026, 11, 26, 21, 0, 0, 0, time.UTC)
)

func TestWritesOnlyOnChange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "device-state.json")
	s := New(path)
	f, err := s.Load()
	if err != nil || len(f.Devices) != 0 {
		t.Fatalf("missing file: %+v, %v; want empty and no error", f, err)
	}
	steps := []struct {
		devices map[string]policy.Saved
		write   bool
	}{
		{bedtime, true},
		{bedtime, false}, // the same state again (a reconcile for another reason)
		{morning, true},
		{morning, false},
		{bedtime, true},
	}
	for i, st := range steps {
		wrote, err := s.Save(st.devices, at.Add(time.Duration(i)*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if wrote != st.write {
			t.Errorf("step %d: wrote=%v, want %v", i, wrote, st.write)
		}
	}
	if s.Writes() != 3 {
		t.Errorf("%d writes, want 3", s.Writes())
	}

	// A restarted agent reads the file and does not rewrite the same state.
	again := New(path)
	f, err = again.Load()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.Devices, bedtime) || !f.SavedAt.Equal(at.Add(4*time.Hour)) {
		t.Errorf("read back %+v", f)
	}
	if wrote, _ := again.Save(bedtime, at.Add(5*time.Hour)); wrote {
		t.Error("a restart rewrote an unchanged state")
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600 (MACs and children's names)", info.Mode().Perm())
	}
	if info.Size() > 1024 {
		t.Errorf("%d bytes for two devices: keep it small", info.Size())
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*tmp*")); len(left) > 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

func TestDamagedOrForeignFiles(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"truncated": `{"version":1,"devices":{"02:00`,
		"junk":      "\x00\x01\x02",
		"future":    `{"version":7,"devices":{}}`,
	} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		s := New(path)
		if _, err := s.Load(); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: Load error %v; want one naming the file", name, err)
		}
		// The next change replaces the damaged file.
		if wrote, err := s.Save(bedtime, at); !wrote || err != nil {
			t.Errorf("%s: Save = %v, %v", name, wrote, err)
		}
		if f, err := New(path).Load(); err != nil || !reflect.DeepEqual(f.Devices, bedtime) {
			t.Errorf("%s: after rewrite: %+v, %v", name, f, err)
		}
	}
}

func TestUnwritableDirectoryIsAnError(t *testing.T) {
	s := New(filepath.Join(t.TempDir(), "missing-dir", "device-state.json"))
	if _, err := s.Save(bedtime, at); err == nil || !strings.Contains(err.Error(), "missing-dir") {
		t.Errorf("Save into a missing directory: %v", err)
	}
	// Not marked as written: the next change tries again.
	if s.last != nil {
		t.Error("a failed write was remembered as written")
	}
}
