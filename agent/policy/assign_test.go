package policy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

const assignFamily = `version: 1
children:
  alice:
    devices: [{mac: "02:00:00:00:00:11", name: "Alice's phone"}]
  bob: {}
trusted: [{mac: "00:1a:2b:3c:4d:31", name: "Mum's phone"}]
`

func assignDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writeT(t, filepath.Join(dir, "family.yaml"), assignFamily)
	return dir
}

func TestAssign(t *testing.T) {
	dir := assignDir(t)
	path, pol, err := Assign(dir, "DA-A1-19-00-00-01", "alice", `Alice's "new" phone`)
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(dir, AssignedFile) || pol.Owner("da:a1:19:00:00:01") != "alice" {
		t.Fatalf("path %s, owner %q", path, pol.Owner("da:a1:19:00:00:01"))
	}
	if _, _, err := Assign(dir, "00:1a:2b:3c:4d:32", AssignTrusted, ""); err != nil {
		t.Fatal(err)
	}
	// Moving a device: the same MAC again replaces its entry.
	if _, _, err := Assign(dir, "da:a1:19:00:00:01", "bob", "Bob's now"); err != nil {
		t.Fatal(err)
	}
	pol, err = LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if pol.Owner("da:a1:19:00:00:01") != "bob" || !pol.IsTrusted("00:1a:2b:3c:4d:32") || len(pol.Assigned) != 2 {
		t.Errorf("after the moves: owner %q, trusted %v, assigned %+v", pol.Owner("da:a1:19:00:00:01"), pol.Trusted, pol.Assigned)
	}
	b, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(b), "# Managed by famguard") {
		t.Errorf("no header:\n%s", b)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if IsProfileFile(e.Name()) && e.Name() != "family.yaml" && e.Name() != AssignedFile {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

// TestAssignRefuses: each bad assignment is refused with a message that
// says what is wrong, and the file is left exactly as it was.
func TestAssignRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, mac, to, want string
	}{
		{"a missing child", "da:a1:19:00:00:02", "carol", `not assigned (nothing was written): there is no child "carol"; assign to a child defined in the profiles, or to trusted`},
		{"a misspelt child", "da:a1:19:00:00:02", "alcie", `(did you mean "alice"?)`},
		{"a malformed MAC", "da:a1:19:00:00", "alice", `MAC "da:a1:19:00:00" is not a MAC address like 02:00:00:00:00:11`},
		{"a broadcast MAC", "ff:ff:ff:ff:ff:ff", "alice", `is a multicast or broadcast address`},
		{"a bad target", "da:a1:19:00:00:02", "Alice Smith", `"Alice Smith": assign to a child's name (as in the profiles) or to trusted`},
		{"a child's device", "02:00:00:00:00:11", AssignTrusted, `not assigned (nothing was written): MAC 02:00:00:00:00:11 is already listed for child "alice" at DIR/family.yaml:4`},
		{"a trusted device", "00:1A:2B:3C:4D:31", "bob", `MAC 00:1a:2b:3c:4d:31 is already listed as trusted at DIR/family.yaml:6`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := assignDir(t)
			if _, _, err := Assign(dir, "da:a1:19:00:00:01", "alice", ""); err != nil {
				t.Fatal(err)
			}
			before, _ := os.ReadFile(filepath.Join(dir, AssignedFile))
			_, pol, err := Assign(dir, tc.mac, tc.to, "")
			var ae *AssignError
			if !errors.As(err, &ae) || pol != nil {
				t.Fatalf("err %v (%T), policy %v", err, err, pol)
			}
			if msg := strings.ReplaceAll(err.Error(), dir, "DIR"); !strings.Contains(msg, tc.want) {
				t.Errorf("error:\n%s\nwant it to contain\n%s", msg, tc.want)
			}
			if after, _ := os.ReadFile(filepath.Join(dir, AssignedFile)); string(after) != string(before) {
				t.Errorf("the file changed:\n%s", after)
			}
		})
	}
}

func TestAssignRefusesWhenTheSetIsBroken(t *testing.T) {
	dir := assignDir(t)
	writeT(t, filepath.Join(dir, "broken.yaml"), "version: 1\nchildren: [oops]\n")
	_, _, err := Assign(dir, "da:a1:19:00:00:01", "alice", "")
	if err == nil || !strings.Contains(err.Error(), "broken.yaml:2:11") {
		t.Fatalf("err %v", err)
	}
	if _, serr := os.Stat(filepath.Join(dir, AssignedFile)); !os.IsNotExist(serr) {
		t.Error("the file was written into a broken set")
	}
}

// TestAssignConcurrently: assigns at once each keep their entry.
func TestAssignConcurrently(t *testing.T) {
	dir := assignDir(t)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, _, err := Assign(dir, fmt.Sprintf("da:a1:19:00:01:%02x", i), "bob", "")
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	pol, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(pol.Assigned) != 16 {
		t.Errorf("%d entries after 16 concurrent assigns", len(pol.Assigned))
	}
}

// TestAssignedNameRoundTrips: whatever a parent types as a name comes back
// as typed.
func TestAssignedNameRoundTrips(t *testing.T) {
	for _, name := range []string{`Mum's "work" phone`, `back\slash`, "tab\there", "ünïcödé 📱", "# not a comment", "{a: b}", "\x07bell"} {
		dir := assignDir(t)
		if _, _, err := Assign(dir, "da:a1:19:00:00:01", "alice", name); err != nil {
			t.Fatalf("%q: %v", name, err)
		}
		pol, err := LoadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if got := pol.Assigned[0].Name; got != name {
			t.Errorf("name %q came back as %q", name, got)
		}
	}
}
