package policy

import (
	"strings"
	"testing"
	"time"
)

const bootProfile = `version: 1
children:
  alice:
    devices: [{mac: "02:00:00:00:00:11"}, {mac: "02:00:00:00:00:12"}]
    block: [adult]
    schedules:
      - {name: bedtime, days: daily, from: "21:00", to: "07:00", action: offline}
      - {name: homework, days: [mon-fri], from: "16:00", to: "18:00", block: [games]}
  bob:
    devices: [{mac: "02:00:00:00:00:21"}]
    schedules:
      - {name: school, days: [mon-fri], from: "08:00", to: "13:00", block: [social]}
`

func TestEvaluateUnsynced(t *testing.T) {
	pol, probs := ParseFile("boot.yaml", []byte(bootProfile))
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	savedAt := time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC)
	type want struct {
		online bool
		cats   string
		reason string // a fragment the reason must contain
	}
	for _, tc := range []struct {
		name  string
		bp    BootPolicy
		saved map[string]Saved
		want  map[string]want
	}{
		{"nothing saved: an offline window means offline, every window's categories blocked", BootSaved, nil, map[string]want{
			"02:00:00:00:00:11": {false, "adult,games", "offline: clock not yet synchronised (no saved state) and the child has offline windows (bedtime)"},
			"02:00:00:00:00:12": {false, "adult,games", "offline windows (bedtime)"},
			"02:00:00:00:00:21": {true, "social", "online: clock not yet synchronised (no saved state); no offline window"},
		}},
		{"saved states are kept, plus the current always-blocked categories", BootSaved, map[string]Saved{
			"02:00:00:00:00:11": {Online: true, Categories: []string{"games"}, Reason: "online; homework blocks games"},
			"02:00:00:00:00:21": {Online: false, Categories: nil, Reason: "offline: bedtime"},
		}, map[string]want{
			"02:00:00:00:00:11": {true, "adult,games", "online: clock not yet synchronised, keeping the state saved 2026-11-26T20:00:00Z (online; homework blocks games)"},
			"02:00:00:00:00:12": {false, "adult,games", "no saved state"}, // a device added since: protective default
			"02:00:00:00:00:21": {false, "", "offline: clock not yet synchronised, keeping the state saved"},
		}},
		{"boot policy offline ignores what was saved", BootOffline, map[string]Saved{
			"02:00:00:00:00:11": {Online: true},
			"02:00:00:00:00:21": {Online: false},
		}, map[string]want{
			"02:00:00:00:00:11": {false, "adult,games", "(boot policy offline) and the child has offline windows"},
			"02:00:00:00:00:12": {false, "adult,games", "boot policy offline"},
			"02:00:00:00:00:21": {true, "social", "no offline window"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			states := pol.EvaluateUnsynced(tc.bp, tc.saved, savedAt)
			if len(states) != len(tc.want) {
				t.Fatalf("%d states, want %d", len(states), len(tc.want))
			}
			for _, s := range states {
				w := tc.want[s.MAC]
				if s.Online != w.online || strings.Join(s.BlockedCategories, ",") != w.cats || !strings.Contains(s.Reason, w.reason) {
					t.Errorf("%s: online=%v cats=%q reason=%q\nwant online=%v cats=%q reason containing %q",
						s.MAC, s.Online, strings.Join(s.BlockedCategories, ","), s.Reason, w.online, w.cats, w.reason)
				}
				if s.Until != nil {
					t.Errorf("%s: until %v; while the clock is unknown no change can be scheduled", s.MAC, s.Until)
				}
				if !strings.HasSuffix(s.Reason, "the schedule applies once the time is known") {
					t.Errorf("%s: the reason must say the schedule resumes with the time: %q", s.MAC, s.Reason)
				}
			}
		})
	}
}

// TestSavedOfRoundTrip: what is saved after a trusted evaluation restores
// exactly the same online state and categories.
func TestSavedOfRoundTrip(t *testing.T) {
	pol, probs := ParseFile("boot.yaml", []byte(bootProfile))
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	// Thursday 16:30 UTC: Alice in homework, Bob online.
	trusted := pol.Evaluate(time.Date(2026, 11, 26, 16, 30, 0, 0, time.UTC), time.UTC)
	restored := pol.EvaluateUnsynced(BootSaved, SavedOf(trusted), time.Now())
	for i := range trusted {
		a, b := trusted[i], restored[i]
		if a.MAC != b.MAC || a.Online != b.Online || strings.Join(a.BlockedCategories, ",") != strings.Join(b.BlockedCategories, ",") {
			t.Errorf("restored %+v, saved from %+v", b, a)
		}
	}
}

func TestParseBootPolicy(t *testing.T) {
	for _, ok := range []string{"saved", "offline", "schedule"} {
		if _, err := ParseBootPolicy(ok); err != nil {
			t.Error(err)
		}
	}
	if _, err := ParseBootPolicy("keep"); err == nil || !strings.Contains(err.Error(), "saved, offline or schedule") {
		t.Errorf("ParseBootPolicy(keep) = %v", err)
	}
}
