package e2e

import (
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

// The command line is a contract for scripts and operators: these tests pin
// exit codes, line formats and JSON field names. They need no root.

func famguard(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command(binary(t, "famguard"), args...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	}
	t.Fatal(err)
	return "", -1
}

func TestCheckContract(t *testing.T) {
	valid := repoFile(t, "testdata/profiles/valid/family")
	if out, code := famguard(t, "check", valid); code != 0 || !strings.Contains(out, "valid (2 children, 3 devices") {
		t.Errorf("check valid: exit %d, %q", code, out)
	}
	invalid := repoFile(t, "testdata/profiles/invalid/bad-values")
	out, code := famguard(t, "check", invalid)
	if code != 1 {
		t.Errorf("check invalid: exit %d, want 1", code)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 12 {
		t.Errorf("check printed %d lines, want one per problem (12):\n%s", len(lines), out)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, filepath.Join(invalid, "family.yaml")+":") {
			t.Errorf("line does not start with FILE:LINE: %q", l)
		}
	}
	// Categories without a list are warnings, not failures.
	cats := t.TempDir()
	out, code = famguard(t, "check", "--categories", cats, valid)
	if code != 0 || !strings.Contains(out, `warning: `+filepath.Join(valid, "family.yaml")+`:10:13: children.alice.block[0]: nothing is blocked for "adult" until a list is installed at `+filepath.Join(cats, "adult.txt")) {
		t.Errorf("check --categories: exit %d\n%s", code, out)
	}
	if _, code := famguard(t, "check"); code == 0 {
		t.Error("check without a directory succeeded")
	}
}

func TestPlanJSONContract(t *testing.T) {
	out, code := famguard(t, "plan", "--json", "--at", "2026-11-26T21:30:00+01:00", repoFile(t, "testdata/profiles/valid/family"))
	if code != 0 {
		t.Fatalf("plan: exit %d\n%s", code, out)
	}
	var plan struct {
		At      string                       `json:"at"`
		Devices []map[string]json.RawMessage `json:"devices"`
	}
	if err := json.Unmarshal([]byte(out), &plan); err != nil {
		t.Fatalf("plan --json is not JSON: %v\n%s", err, out)
	}
	if plan.At != "2026-11-26T21:30:00+01:00" || len(plan.Devices) != 3 {
		t.Fatalf("plan = %s", out)
	}
	for _, d := range plan.Devices {
		var keys []string
		for k := range d {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, want := range []string{"blocked_categories", "child", "mac", "online", "reason", "until"} {
			if _, ok := d[want]; !ok {
				t.Errorf("device object lacks %q: has %v", want, keys)
			}
		}
	}
	var alice struct {
		MAC               string   `json:"mac"`
		Online            bool     `json:"online"`
		Until             *string  `json:"until"`
		BlockedCategories []string `json:"blocked_categories"`
		Reason            string   `json:"reason"`
	}
	b, _ := json.Marshal(plan.Devices[0])
	_ = json.Unmarshal(b, &alice)
	if alice.MAC != "02:00:00:00:00:11" || alice.Online || alice.Until == nil || *alice.Until != "2026-11-27T07:00:00+01:00" ||
		!reflect.DeepEqual(alice.BlockedCategories, []string{"adult", "gambling"}) || !strings.HasPrefix(alice.Reason, "offline: bedtime") {
		t.Errorf("alice at 21:30 = %+v", alice)
	}
	// A device with no schedules has until: null (not a missing key).
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "p.yaml"), "version: 1\nchildren:\n  c:\n    devices: [{mac: \"02:00:00:00:00:99\"}]\n")
	out, _ = famguard(t, "plan", dir, "--json")
	if !strings.Contains(out, `"until": null`) || !strings.Contains(out, `"blocked_categories": []`) {
		t.Errorf("plan without schedules:\n%s", out)
	}
}

func TestStatusJSONContract(t *testing.T) {
	f := newFamilyLab(t)
	writeFile(t, filepath.Join(f.profiles, "family.yaml"), familyProfile)
	startAgent(t, f.Lab, f.profiles, f.state, bedtime.Add(-30*time.Minute).Format(time.RFC3339))
	out, code := famguard(t, "status", "--json", "--state", f.state)
	if code != 0 {
		t.Fatalf("status: exit %d\n%s", code, out)
	}
	var st map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"version", "clock", "zone", "policy", "last_reload", "dataplane", "devices", "runtime"} {
		if _, ok := st[k]; !ok {
			t.Errorf("status --json lacks %q", k)
		}
	}
	var devs []map[string]json.RawMessage
	_ = json.Unmarshal(st["devices"], &devs)
	if len(devs) != 3 { // Alice, Bob and the trusted parent
		t.Fatalf("status devices = %s", st["devices"])
	}
	for _, k := range []string{"mac", "child", "online", "reason", "until", "blocked_categories", "seen", "addresses"} {
		if _, ok := devs[0][k]; !ok {
			t.Errorf("status device lacks %q", k)
		}
	}
	if human, code := famguard(t, "status", "--state", f.state); code != 0 || !strings.Contains(human, "Alice's phone") {
		t.Errorf("status (human): exit %d\n%s", code, human)
	}
	if out, code := famguard(t, "status", "--state", t.TempDir()); code == 0 || !strings.Contains(out, "no famguard agent is running") {
		t.Errorf("status without an agent: exit %d %q", code, out)
	}
}
