package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/famguard/famguard/scripts/lab"
)

// noon on the same Thursday: no window is active.
var noon = time.Date(2026, 11, 26, 12, 0, 0, 0, mustZone("Europe/Berlin"))

// editEffect is how long a test waits for a profile edit or a command to
// take effect before failing: far above the latency (well under a second,
// BenchmarkReloadLatency), so that only an effect that never comes fails.
const editEffect = 15 * time.Second

// lunchBlock adds a window to Alice around noon.
const lunchBlock = `      - {name: lunch, days: [thu], from: "11:00", to: "13:00", action: offline}
`

// waitReach polls host→internet (IPv4) until it equals want and returns how
// long it took, or fails after max (a deadline for an effect that never
// comes, not a latency bound: keep it generous).
func (f *familyLab) waitReach(t *testing.T, h *lab.Host, addr string, want bool, max time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if f.reaches(h, addr) == want {
			return time.Since(start)
		}
		if time.Since(start) > max {
			t.Fatalf("%s reaching %s never became %v within %v", h.Name, addr, want, max)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestProfileEditTakesEffect: editing the profile imposes a block, and
// removing it lifts the block, over IPv4 and IPv6, without a restart. It
// waits for the effect (up to editEffect) and logs how long it took; the
// latency itself is measured by BenchmarkReloadLatency
// (reload_bench_test.go, `make bench`), not asserted here: a timed
// assertion would flake on a loaded machine.
func TestProfileEditTakesEffect(t *testing.T) {
	f := newFamilyLab(t)
	path := filepath.Join(f.profiles, "family.yaml")
	writeFile(t, path, familyProfile)
	startAgent(t, f.Lab, f.profiles, f.state, noon.Format(time.RFC3339))
	f.expectReach(t, f.alice, true, "at noon")

	writeFile(t, path, familyProfile+"") // unchanged content: nothing may break
	blocked := strings.Replace(familyProfile, "      - {name: bedtime, days: [daily], from: \"21:00\"", lunchBlock+"      - {name: bedtime, days: [daily], from: \"21:00\"", 1)
	writeFile(t, path, blocked)
	took := f.waitReach(t, f.alice, inet4, false, editEffect)
	// The families are written side by side, two restores: one may
	// follow the other by a few milliseconds.
	took += f.waitReach(t, f.alice, inet6, false, editEffect)
	t.Logf("block in force %v after the edit", took.Round(time.Millisecond))
	f.expectReach(t, f.alice, false, "after adding the lunch window")
	f.expectReach(t, f.parent, true, "after adding the lunch window")

	writeFile(t, path, familyProfile)
	took = f.waitReach(t, f.alice, inet4, true, editEffect)
	took += f.waitReach(t, f.alice, inet6, true, editEffect)
	t.Logf("block lifted %v after the edit", took.Round(time.Millisecond))
	f.expectReach(t, f.alice, true, "after removing the lunch window")
}

// TestBrokenProfileKeepsLastGood: a broken edit is rejected whole, the last
// good policy stays in force, and both `check` and `status` name file and line.
func TestBrokenProfileKeepsLastGood(t *testing.T) {
	f := newFamilyLab(t)
	path := filepath.Join(f.profiles, "family.yaml")
	good := strings.Replace(familyProfile, "      - {name: bedtime, days: [daily], from: \"21:00\"", lunchBlock+"      - {name: bedtime, days: [daily], from: \"21:00\"", 1)
	writeFile(t, path, good)
	a := startAgent(t, f.Lab, f.profiles, f.state, noon.Format(time.RFC3339))
	f.expectReach(t, f.alice, false, "in the lunch window")
	digest := a.status().Policy.Digest

	// The parent fat-fingers the time and, in the same save, drops the
	// lunch window: a half-applied file would unblock Alice.
	broken := strings.Replace(familyProfile, `from: "22:00"`, `from: "25:00"`, 1)
	writeFile(t, path, broken)
	deadline := time.Now().Add(3 * time.Second)
	for {
		st := a.status()
		if !st.LastReload.OK && st.LastReload.At.After(time.Now().Add(-3*time.Second)) {
			if st.Policy == nil || st.Policy.Digest != digest {
				t.Errorf("policy in force changed to %+v after a broken edit; want %s", st.Policy, digest)
			}
			if len(st.LastReload.Problems) == 0 || !strings.Contains(st.LastReload.Problems[0], "family.yaml:14:") {
				t.Errorf("status problems %q do not name family.yaml line 14", st.LastReload.Problems)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent did not report the broken profile; last reload: %+v", st.LastReload)
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.expectReach(t, f.alice, false, "after a broken edit")

	out, err := cli(t, f.Lab, "check", f.profiles)
	if err == nil {
		t.Errorf("check accepted a broken profile: %s", out)
	}
	first := strings.SplitN(strings.TrimSpace(out), "\n", 2)[0]
	if !strings.HasPrefix(first, path+":14:") || !strings.Contains(first, "25:00") {
		t.Errorf("check's first line %q should start with %s:14: and quote the bad value", first, path)
	}

	// Fixing the file brings the new policy in.
	writeFile(t, path, familyProfile)
	f.waitReach(t, f.alice, inet4, true, 3*time.Second)
}
