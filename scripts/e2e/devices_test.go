package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/famguard/famguard/agent/daemon"
)

// legacyFamilyProfile is the family as it was written before unknown-device
// policies existed: the parent's laptop is in no list.
var legacyFamilyProfile = strings.Replace(familyProfile, parentTrusted, "", 1)

// TestUnknownDevicesAndAssign: the upgrade path, on the real kernel and
// through the CLI. With a child defined and no unknown_devices, the
// parent's unlisted laptop on the LAN (br-lan, found by the agent itself) is
// offline as an unknown device; status names it with the command that
// trusts it; `famguard devices` lists it; `famguard assign MAC trusted`
// brings it back online within a second, and refuses a missing child or a
// malformed MAC with nothing written; without an agent, assign only writes
// the file and says so.
func TestUnknownDevicesAndAssign(t *testing.T) {
	f := newFamilyLab(t)
	writeFile(t, filepath.Join(f.profiles, "family.yaml"), legacyFamilyProfile)
	a := startAgent(t, f.Lab, f.profiles, f.state, bedtime.Add(-3*time.Hour).Format(time.RFC3339))

	// The lab's devices pinged the router when it was built, so the parent
	// is in the neighbour table; the agent cuts it as an unknown device.
	st := a.waitStatus(t, "the parent named as a restricted unknown device", 10*time.Second, func(s daemon.Status) bool {
		return strings.Contains(strings.Join(s.Warnings, "\n"), "famguard assign "+parentMAC+" trusted")
	})
	f.expectReach(t, f.parent, false, "unknown parent's laptop")
	f.expectReach(t, f.alice, true, "Alice before bedtime")
	if !strings.Contains(a.log.String(), "unknown device "+parentMAC+" is offline: if it is a parent's, run `famguard assign "+parentMAC+" trusted`") {
		t.Errorf("the agent's log lacks the upgrade notice:\n%s", a.log.String())
	}
	var row *daemon.DeviceStatus
	for i := range st.Devices {
		if st.Devices[i].MAC == parentMAC {
			row = &st.Devices[i]
		}
	}
	if row == nil || row.Online || row.Kind != "unknown" || !strings.Contains(row.Reason, "unknown device: offline until a parent assigns it") {
		t.Fatalf("status row of the parent's laptop: %+v", row)
	}

	out, err := cli(t, f.Lab, "devices", "--json", "--state", f.state)
	if err != nil {
		t.Fatalf("devices --json: %v\n%s", err, out)
	}
	var devs daemon.DevicesStatus
	if err := json.Unmarshal([]byte(out), &devs); err != nil {
		t.Fatalf("devices --json: %v\n%s", err, out)
	}
	applies := map[string]string{}
	for _, d := range devs.Devices {
		applies[d.MAC] = d.Applies
		if d.MAC == parentMAC && (!d.Randomized || len(d.Addresses) == 0 || d.FirstSeen.IsZero() || d.LastSeen.IsZero()) {
			t.Errorf("the parent's entry: %+v", d)
		}
	}
	if applies[parentMAC] != "unknown: offline" || applies[aliceMAC] != "child alice" || applies[bobMAC] != "child bob" ||
		strings.Join(devs.LAN, ",") != "br-lan" || devs.Unknown == nil || !devs.Unknown.Default {
		t.Errorf("devices: LAN %v (%s), unknown %+v, applies %v", devs.LAN, devs.LANSource, devs.Unknown, applies)
	}
	if human, err := cli(t, f.Lab, "devices", "--state", f.state); err != nil || !strings.Contains(human, "1 unknown device(s)") {
		t.Errorf("devices: %v\n%s", err, human)
	}

	// Bad assignments: refused, nothing written, the parent still offline.
	assigned := filepath.Join(f.profiles, "famguard-assigned.yaml")
	for _, bad := range []struct{ args []string }{
		{[]string{parentMAC, "carol"}},
		{[]string{"02:00:00:00:00", "trusted"}},
		{[]string{aliceMAC, "trusted"}},
	} {
		out, err := cli(t, f.Lab, append([]string{"assign", "--profiles", f.profiles, "--state", f.state}, bad.args...)...)
		if err == nil || !strings.Contains(out, "not assigned") && !strings.Contains(out, "is not a MAC address") {
			t.Errorf("assign %v: %v\n%s", bad.args, err, out)
		}
		if _, err := os.Stat(assigned); !os.IsNotExist(err) {
			t.Fatalf("assign %v wrote %s", bad.args, assigned)
		}
	}

	start := time.Now()
	out, err = cli(t, f.Lab, "assign", "--profiles", f.profiles, "--state", f.state, "--name", "Parent's laptop", strings.ToUpper(parentMAC), "trusted")
	if err != nil || !strings.Contains(out, "in force now") {
		t.Fatalf("assign trusted: %v\n%s", err, out)
	}
	deadline := time.Now().Add(10 * time.Second) // generous: the lab shares a busy machine
	for !f.reaches(f.parent, inet4) {
		if time.Now().After(deadline) {
			t.Fatal("the parent's laptop is still offline 10 s after famguard assign ... trusted")
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(start)
	f.expectReach(t, f.parent, true, "after assign trusted")
	reliability(t, "unknown devices", "famguard assign MAC trusted for an unknown device cut by the default", "online again %v after the command started (CLI, validation, write, reload, apply)", took.Round(time.Millisecond))
	if d := a.device(parentMAC); d.Kind != "trusted" || d.Device != "Parent's laptop" || !d.Online {
		t.Errorf("status of the parent after assign: %+v", d)
	}
	if w := strings.Join(a.status().Warnings, "\n"); strings.Contains(w, parentMAC) {
		t.Errorf("the notice about the parent is still shown:\n%s", w)
	}

	// Without --profiles, assign writes where the running agent reads.
	if out, err := cli(t, f.Lab, "assign", "--state", f.state, "da:a1:19:00:00:02", "alice"); err != nil || !strings.Contains(out, assigned) {
		t.Errorf("assign without --profiles: %v\n%s", err, out)
	}

	// Without an agent, assign only writes the file, and says so.
	a.stop()
	out, err = cli(t, f.Lab, "assign", "--profiles", f.profiles, "--state", f.state, "da:a1:19:00:00:01", "bob")
	if err != nil || !strings.Contains(out, "no famguard agent is running") {
		t.Errorf("assign without an agent: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(assigned); !strings.Contains(string(b), `{mac: "da:a1:19:00:00:01", to: "bob"}`) || !strings.Contains(string(b), "Parent's laptop") {
		t.Errorf("%s:\n%s", assigned, b)
	}
}
