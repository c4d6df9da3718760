package policy

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/famguard/famguard/agent/tz"
)

func TestValidDevices(t *testing.T) {
	pol, err := LoadDir(filepath.Join(testdata, "valid", "devices"))
	if err != nil {
		t.Fatal(err)
	}
	if want := (UnknownRule{Action: UnknownLike, Like: "alice"}); pol.Unknown != want || pol.UnknownDevices() != want {
		t.Errorf("unknown = %+v / %+v, want %+v", pol.Unknown, pol.UnknownDevices(), want)
	}
	if want := (UnknownRule{Action: UnknownOffline}); pol.RandomizedDevices() != want {
		t.Errorf("randomized = %+v, want %+v", pol.RandomizedDevices(), want)
	}
	wantTrusted := []Device{{MAC: "00:1a:2b:3c:4d:31", Name: "Mum's phone"}, {MAC: "00:1a:2b:3c:4d:32"}, {MAC: "00:1a:2b:3c:4d:33", Name: "Dad's laptop"}}
	if !reflect.DeepEqual(sortedDevices(pol.Trusted), wantTrusted) {
		t.Errorf("trusted = %+v, want %+v", pol.Trusted, wantTrusted)
	}
	bob, _ := pol.Child("bob")
	if want := []Device{{MAC: "02:00:00:00:00:21", Name: "Bob's laptop"}, {MAC: "da:a1:19:00:00:01", Name: "Bob's phone (private address)"}}; !reflect.DeepEqual(bob.Devices, want) {
		t.Errorf("bob's devices = %+v (the assigned one must be among them)", bob.Devices)
	}
	if len(pol.Assigned) != 2 || pol.Assigned[0].To != "bob" || pol.Assigned[1].To != AssignTrusted {
		t.Errorf("assigned = %+v", pol.Assigned)
	}
	for mac, owner := range map[string]string{
		"00:1a:2b:3c:4d:31": AssignTrusted, "00:1a:2b:3c:4d:33": AssignTrusted,
		"02:00:00:00:00:11": "alice", "da:a1:19:00:00:01": "bob", "02:00:00:00:00:99": "",
	} {
		if got := pol.Owner(mac); got != owner {
			t.Errorf("Owner(%s) = %q, want %q", mac, got, owner)
		}
	}
	for mac, want := range map[string]UnknownRule{
		"00:1a:2b:3c:4d:99": {Action: UnknownLike, Like: "alice"}, // universally administered: unknown_devices
		"da:a1:19:00:00:99": {Action: UnknownOffline},             // locally administered: randomized_devices
	} {
		if got := pol.UnknownRuleFor(mac); got != want {
			t.Errorf("UnknownRuleFor(%s) = %+v, want %+v", mac, got, want)
		}
	}
}

// TestUnknownDefault: no file sets unknown_devices → offline once a child is
// defined (a child's new MAC is never free), allow while none is (a fresh
// install restricts nothing); randomized_devices follows unknown_devices.
func TestUnknownDefault(t *testing.T) {
	for _, tc := range []struct {
		name, profile string
		unknown       UnknownRule
		randomized    UnknownRule
	}{
		{"fresh install", "version: 1\n",
			UnknownRule{Action: UnknownAllow, Default: true}, UnknownRule{Action: UnknownAllow, Default: true}},
		{"a child defined (version-1 file as before issue 9)", "version: 1\nchildren:\n  alice:\n    devices: [{mac: \"02:00:00:00:00:11\"}]\n",
			UnknownRule{Action: UnknownOffline, Default: true}, UnknownRule{Action: UnknownOffline, Default: true}},
		{"allow chosen explicitly", "version: 1\nunknown_devices: allow\nchildren:\n  alice: {}\n",
			UnknownRule{Action: UnknownAllow}, UnknownRule{Action: UnknownAllow}},
		{"upper case", "version: 1\nunknown_devices: Offline\n",
			UnknownRule{Action: UnknownOffline}, UnknownRule{Action: UnknownOffline}},
		{"randomised only", "version: 1\nrandomized_devices: {like: alice}\nchildren:\n  alice: {}\n",
			UnknownRule{Action: UnknownOffline, Default: true}, UnknownRule{Action: UnknownLike, Like: "alice"}},
		{"both", "version: 1\nunknown_devices: {like: bob}\nrandomized_devices: offline\nchildren:\n  bob: {}\n",
			UnknownRule{Action: UnknownLike, Like: "bob"}, UnknownRule{Action: UnknownOffline}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol, probs := ParseFile("f.yaml", []byte(tc.profile))
			if len(probs) > 0 {
				t.Fatal(probs)
			}
			if got := pol.UnknownDevices(); got != tc.unknown {
				t.Errorf("UnknownDevices = %+v, want %+v", got, tc.unknown)
			}
			if got := pol.RandomizedDevices(); got != tc.randomized {
				t.Errorf("RandomizedDevices = %+v, want %+v", got, tc.randomized)
			}
		})
	}
}

// TestDeviceKeyProblems: each mistake a parent can make with the new keys
// is one problem at FILE:LINE:COL that says what to write.
func TestDeviceKeyProblems(t *testing.T) {
	const kids = "children:\n  alice:\n    devices: [{mac: \"02:00:00:00:00:11\"}]\n"
	for _, tc := range []struct {
		name, profile, want string
	}{
		{"like a missing child", "version: 1\nunknown_devices: {like: alicia}\n" + kids,
			`f.yaml:2:25: unknown_devices.like: there is no child "alicia" (did you mean "alice"?)`},
		{"like with a bad name", "version: 1\nrandomized_devices: {like: Alice}\n" + kids,
			`f.yaml:2:28: randomized_devices.like: "Alice" is not a child's name`},
		{"unknown value", "version: 1\nunknown_devices: quarantine\n",
			`f.yaml:2:18: unknown_devices: "quarantine": use offline`},
		{"empty mapping", "version: 1\nunknown_devices: {}\n",
			`f.yaml:2:18: unknown_devices: empty mapping: use offline`},
		{"trusted and a child's", "version: 1\ntrusted: [{mac: \"02:00:00:00:00:11\"}]\n" + kids,
			`f.yaml:2:17: trusted[0].mac: MAC 02:00:00:00:00:11 is already listed for child "alice" at f.yaml:5; a device is either trusted or one child's`},
		{"trusted twice", "version: 1\ntrusted: [{mac: \"02:00:00:00:00:31\"}, {mac: \"02:00:00:00:00:31\"}]\n",
			`f.yaml:2:45: trusted[1].mac: MAC 02:00:00:00:00:31 is already listed as trusted at f.yaml:2; list each device once`},
		{"trusted malformed", "version: 1\ntrusted: [{mac: \"02:00:00:00:00\"}]\n",
			`f.yaml:2:17: trusted[0].mac: "02:00:00:00:00" is not a MAC address`},
		{"trusted multicast", "version: 1\ntrusted: [{mac: \"01:00:5e:00:00:01\"}]\n",
			`f.yaml:2:17: trusted[0].mac: "01:00:5e:00:00:01" is a multicast or broadcast address`},
		{"trusted not a list", "version: 1\ntrusted: {mac: \"02:00:00:00:00:31\"}\n",
			`f.yaml:2:10: trusted: expected a list like [a, b], got a mapping`},
		{"assigned to a missing child", "version: 1\nassigned: [{mac: \"02:00:00:00:00:41\", to: bob}]\n" + kids,
			`f.yaml:2:43: assigned[0].to: there is no child "bob"; assign to a child defined in the profiles, or to trusted`},
		{"assigned malformed MAC", "version: 1\nassigned: [{mac: \"xx:00:00:00:00:41\", to: alice}]\n" + kids,
			`f.yaml:2:18: assigned[0].mac: "xx:00:00:00:00:41" is not a MAC address`},
		{"assigned twice", "version: 1\nassigned: [{mac: \"02:00:00:00:00:41\", to: alice}, {mac: \"02:00:00:00:00:41\", to: trusted}]\n" + kids,
			`f.yaml:2:57: assigned[1].mac: MAC 02:00:00:00:00:41 is already listed for child "alice" at f.yaml:2; a device is either trusted or one child's`},
		{"assigned a child's device, blamed on the assignment", "version: 1\n" + kids + "assigned: [{mac: \"02:00:00:00:00:11\", to: trusted}]\n",
			`f.yaml:5:18: assigned[0].mac: MAC 02:00:00:00:00:11 is already listed for child "alice" at f.yaml:4`},
		{"assigned unknown key", "version: 1\nassigned: [{mac: \"02:00:00:00:00:41\", to: alice, child: alice}]\n" + kids,
			`f.yaml:2:50: assigned[0].child: unknown key "child"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol, probs := ParseFile("f.yaml", []byte(tc.profile))
			if pol != nil || len(probs) != 1 {
				t.Fatalf("got policy %v and problems:\n%v\nwant one problem starting %q", pol, probs, tc.want)
			}
			if got := probs[0].String(); !strings.HasPrefix(got, tc.want) {
				t.Errorf("problem\n%s\nwant it to start with\n%s", got, tc.want)
			}
		})
	}
}

func TestIsRandomized(t *testing.T) {
	for mac, want := range map[string]bool{
		"02:00:00:00:00:11": true, "da:a1:19:00:00:01": true, "a6:00:00:00:00:01": true, "0e:00:00:00:00:01": true,
		"00:1a:2b:3c:4d:31": false, "f0:18:98:00:00:01": false, "not a mac": false,
	} {
		if got := IsRandomized(mac); got != want {
			t.Errorf("IsRandomized(%s) = %v, want %v", mac, got, want)
		}
	}
}

// TestEvaluateSeen: each kind of device gets a row that says why, and an
// unknown device "like alice" is exactly as restricted as Alice's own.
func TestEvaluateSeen(t *testing.T) {
	berlin, _ := tz.Load("Europe/Berlin")
	bedtime := time.Date(2026, 11, 26, 22, 0, 0, 0, berlin) // Alice's bedtime 20:00-07:00
	day := time.Date(2026, 11, 26, 12, 0, 0, 0, berlin)
	const kids = "children:\n  alice:\n    devices: [{mac: \"02:00:00:00:00:11\"}]\n    block: [gambling]\n    schedules: [{name: bedtime, days: daily, from: \"20:00\", to: \"07:00\", action: offline}]\n"
	type row struct {
		mac, kind, child string
		online           bool
		reason           string // a part of the reason
	}
	for _, tc := range []struct {
		name, profile string
		at            time.Time
		seen          []string
		want          []row
	}{
		{"default: offline once a child is defined", "version: 1\n" + kids, day,
			[]string{"00:1a:2b:3c:4d:99", "02:00:00:00:00:11", "00:1a:2b:3c:4d:99"},
			[]row{
				{"02:00:00:00:00:11", KindChild, "alice", true, "online"},
				{"00:1a:2b:3c:4d:99", KindUnknown, "", false, "unknown device: offline until a parent assigns it (the default once a child is defined; unknown_devices in a profile changes it; famguard assign 00:1a:2b:3c:4d:99 CHILD|trusted)"},
			}},
		{"like alice at bedtime", "version: 1\nunknown_devices: {like: alice}\n" + kids, bedtime,
			[]string{"da:00:00:00:00:01"},
			[]row{
				{"02:00:00:00:00:11", KindChild, "alice", false, "offline: bedtime"},
				{"da:00:00:00:00:01", KindUnknown, "alice", false, "unknown device, treated like alice (randomized_devices or unknown_devices: like alice): offline: bedtime"},
			}},
		{"like alice by day: her blocks", "version: 1\nunknown_devices: {like: alice}\n" + kids, day,
			[]string{"00:1a:2b:3c:4d:99"},
			[]row{
				{"02:00:00:00:00:11", KindChild, "alice", true, "online"},
				{"00:1a:2b:3c:4d:99", KindUnknown, "alice", true, "always blocked: gambling; famguard assign 00:1a:2b:3c:4d:99 CHILD|trusted"},
			}},
		{"randomised MACs offline, others allowed", "version: 1\nunknown_devices: allow\nrandomized_devices: offline\ntrusted: [{mac: \"00:1a:2b:3c:4d:31\", name: Mum}]\n" + kids, day,
			[]string{"00:1a:2b:3c:4d:31", "00:1a:2b:3c:4d:99", "da:00:00:00:00:01"},
			[]row{
				{"02:00:00:00:00:11", KindChild, "alice", true, "online"},
				{"00:1a:2b:3c:4d:31", KindTrusted, "", true, "trusted device: never restricted"},
				{"00:1a:2b:3c:4d:99", KindUnknown, "", true, "unknown device: allowed (unknown_devices: allow)"},
				{"da:00:00:00:00:01", KindUnknown, "", false, "offline until a parent assigns it (randomized_devices or unknown_devices: offline"},
			}},
		{"fresh install: allow", "version: 1\n", day, []string{"00:1a:2b:3c:4d:99"},
			[]row{{"00:1a:2b:3c:4d:99", KindUnknown, "", true, "allowed (the default while no child is defined)"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol, probs := ParseFile("f.yaml", []byte(tc.profile))
			if len(probs) > 0 {
				t.Fatal(probs)
			}
			got := pol.EvaluateSeen(tc.seen, At(tc.at, berlin))
			if len(got) != len(tc.want) {
				t.Fatalf("got %d rows, want %d: %+v", len(got), len(tc.want), got)
			}
			for i, w := range tc.want {
				g := got[i]
				if g.MAC != w.mac || g.Kind != w.kind || g.Child != w.child || g.Online != w.online || !strings.Contains(g.Reason, w.reason) {
					t.Errorf("row %d = %+v\nwant %+v", i, g, w)
				}
				if g.Randomized != IsRandomized(g.MAC) {
					t.Errorf("row %d: randomized %v", i, g.Randomized)
				}
			}
			// The same rows before the clock is trusted: a like-alice
			// device follows Alice's boot policy.
			unsynced := pol.EvaluateSeen(tc.seen, func(q *Policy) []DeviceState { return q.EvaluateUnsynced(BootOffline, nil, time.Time{}) })
			for i, s := range unsynced {
				if s.Kind == KindUnknown && s.Child == "alice" && s.Online {
					t.Errorf("unsynced row %d: a like-alice device is online under boot policy offline: %+v", i, s)
				}
			}
		})
	}
}

func TestUnknownClassesAndRestricted(t *testing.T) {
	pol, probs := ParseFile("f.yaml", []byte("version: 1\nrandomized_devices: {like: alice}\nchildren:\n  alice: {}\n  bob: {}\n"))
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	cls := pol.UnknownClasses(At(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC), time.UTC))
	if len(cls) != 2 || cls[0].MAC != "" || cls[0].Online || !strings.Contains(cls[0].Reason, "famguard assign MAC CHILD|trusted") ||
		cls[1].Child != "alice" || !cls[1].Randomized || !cls[1].Online {
		t.Fatalf("classes = %+v", cls)
	}
	states := pol.EvaluateSeen([]string{"00:1a:2b:3c:4d:99", "da:00:00:00:00:01"}, At(time.Now(), time.UTC))
	got := Restricted(states, pol.Children)
	want := []string{
		"unknown device 00:1a:2b:3c:4d:99 is offline: if it is a parent's, run `famguard assign 00:1a:2b:3c:4d:99 trusted`; if it is a child's, `famguard assign 00:1a:2b:3c:4d:99 CHILD` (alice, bob)",
		"unknown device da:00:00:00:00:01 is under alice's rules: if it is a parent's, run `famguard assign da:00:00:00:00:01 trusted`; if it is a child's, `famguard assign da:00:00:00:00:01 CHILD` (alice, bob)",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Restricted =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestSavedOfKeepsOnlyChildren(t *testing.T) {
	saved := SavedOf([]DeviceState{
		{MAC: "02:00:00:00:00:11", Child: "alice"},
		{MAC: "00:1a:2b:3c:4d:31", Kind: KindTrusted, Online: true},
		{MAC: "da:00:00:00:00:01", Kind: KindUnknown, Child: "alice"},
	})
	if len(saved) != 1 {
		t.Errorf("saved %v, want only Alice's device", saved)
	}
}
