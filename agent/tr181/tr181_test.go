package tr181

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/famguard/famguard/agent/policy"
	"github.com/famguard/famguard/scripts/fuzzseed"
)

func export(t *testing.T, pol *policy.Policy) []Param {
	var out []Param
	for _, p := range Export(pol, nil) {
		if !strings.HasPrefix(p.Path, "Device.X_FAMGUARD_Policy.") { // digests differ: other files
			out = append(out, p)
		}
	}
	return out
}

// TestRoundTrip: export → text → parse → import → profile → export gives
// the same parameters, for the demo family and a layered policy.
func TestRoundTrip(t *testing.T) {
	pol, err := policy.LoadDir("../../testdata/profiles/valid/family")
	if err != nil {
		t.Fatal(err)
	}
	first := export(t, pol)
	var text bytes.Buffer
	Format(&text, first)
	params, err := Parse(&text)
	if err != nil {
		t.Fatal(err)
	}
	profile, err := Import(params)
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	again, probs := policy.ParseFile("tr181.yaml", profile)
	if len(probs) > 0 {
		t.Fatalf("imported profile invalid: %v\n%s", probs, profile)
	}
	if second := export(t, again); !reflect.DeepEqual(first, second) {
		var a, b bytes.Buffer
		Format(&a, first)
		Format(&b, second)
		t.Errorf("round trip differs:\n%s\nvs\n%s\nprofile:\n%s", a.String(), b.String(), profile)
	}
	// Spot checks of the mapping.
	want := map[string]string{
		"Device.Hosts.AccessControl.1.PhysAddress":            "02:00:00:00:00:11",
		"Device.Hosts.AccessControl.1.AccessPolicy":           "Deny",
		"Device.Hosts.AccessControl.1.ScheduleRef":            "Device.Schedules.Schedule.1,Device.Schedules.Schedule.2",
		"Device.Schedules.Schedule.1.Day":                     "Monday,Tuesday,Wednesday,Thursday,Sunday",
		"Device.Schedules.Schedule.1.StartTime":               "21:00",
		"Device.Schedules.Schedule.1.Duration":                "36000",
		"Device.X_FAMGUARD_Child.1.Block":                     "adult,gambling",
		"Device.X_FAMGUARD_Child.1.BlockWindow.1.ScheduleRef": "Device.Schedules.Schedule.3",
		"Device.X_FAMGUARD_Child.1.BlockWindow.1.Categories":  "games,social",
	}
	got := map[string]string{}
	for _, p := range first {
		got[p.Path] = p.Value
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

// TestImportStandardOnly: an ACS that knows only the standard objects
// still gets each host protected by its offline schedules.
func TestImportStandardOnly(t *testing.T) {
	params, err := Parse(strings.NewReader(`
# what a TR-069 ACS sets
Device.Schedules.Schedule.1.Enable=true
Device.Schedules.Schedule.1.Day=Monday,Tuesday,Wednesday,Thursday,Friday
Device.Schedules.Schedule.1.StartTime=22:00
Device.Schedules.Schedule.1.Duration=28800
Device.Hosts.AccessControl.1.PhysAddress=02:00:00:00:00:31
Device.Hosts.AccessControl.1.HostName="Tom's Tablet"
Device.Hosts.AccessControl.1.Enable=true
Device.Hosts.AccessControl.1.AccessPolicy=Deny
Device.Hosts.AccessControl.1.ScheduleRef=Device.Schedules.Schedule.1
`))
	if err != nil {
		t.Fatal(err)
	}
	profile, err := Import(params)
	if err != nil {
		t.Fatal(err)
	}
	pol, probs := policy.ParseFile("tr181.yaml", profile)
	if len(probs) > 0 {
		t.Fatalf("%v\n%s", probs, profile)
	}
	st := pol.Evaluate(time.Date(2026, 11, 30, 23, 0, 0, 0, time.UTC), time.UTC) // a Monday
	if len(st) != 1 || st[0].Child != "tom-s-tablet" || st[0].Online {
		t.Errorf("states %+v\n%s", st, profile)
	}
}

// TestImportRefuses: what famguard cannot express is refused with the
// parameter's path.
func TestImportRefuses(t *testing.T) {
	base := "Device.Schedules.Schedule.1.Day=Monday\nDevice.Schedules.Schedule.1.StartTime=22:00\nDevice.Schedules.Schedule.1.Duration=3600\nDevice.Hosts.AccessControl.1.PhysAddress=02:00:00:00:00:31\nDevice.Hosts.AccessControl.1.ScheduleRef=Device.Schedules.Schedule.1\n"
	for _, tc := range []struct{ extra, want string }{
		{"Device.Hosts.AccessControl.1.AccessPolicy=Allow\n", "AccessControl.1.AccessPolicy: Allow with schedules"},
		{"Device.Hosts.AccessControl.1.AccessPolicy=Deny\nDevice.Schedules.Schedule.1.InverseMode=true\n", "InverseMode true is not supported"},
		{"Device.Hosts.AccessControl.1.AccessPolicy=Deny\nDevice.Schedules.Schedule.1.Duration=90\n", "Schedule.1.Duration \"90\""},
		{"Device.Hosts.AccessControl.1.AccessPolicy=Deny\nDevice.Schedules.Schedule.1.Day=Mon\n", "Day \"Mon\""},
		{"Device.Hosts.AccessControl.1.AccessPolicy=Maybe\n", "AccessPolicy \"Maybe\""},
		{"Device.Hosts.AccessControl.1.AccessPolicy=Deny\nDevice.Hosts.AccessControl.1.ScheduleRef=Device.Schedules.Schedule.9\n", "Schedule.9\" is not"},
		{"Device.X_FAMGUARD_Child.1.Name=Alice\n", "Child.1.Name \"Alice\""},
	} {
		params, err := Parse(strings.NewReader(base + tc.extra))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Import(params); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.extra, err, tc.want)
		}
	}
	if _, err := Parse(strings.NewReader("InternetGatewayDevice.X=1\n")); err == nil {
		t.Error("a non-Device path accepted")
	}
}

// TestImportQuotesNames: a host name with YAML's special characters comes
// back as written.
func TestImportQuotesNames(t *testing.T) {
	name := `Tom's "tab": [1] # {x} \ é` + "\t"
	params := []Param{
		{"Device.Hosts.AccessControl.1.PhysAddress", "02:00:00:00:00:31"},
		{"Device.Hosts.AccessControl.1.HostName", name},
		{"Device.Hosts.AccessControl.1.AccessPolicy", "Allow"},
	}
	profile, err := Import(params)
	if err != nil {
		t.Fatal(err)
	}
	pol, probs := policy.ParseFile("tr181.yaml", profile)
	if len(probs) > 0 || len(pol.Children) != 1 || pol.Children[0].Devices[0].Name != name {
		t.Errorf("%v %+v\n%s", probs, pol, profile)
	}
}

// FuzzTR181Import: any parameter list is either refused with a reason or
// becomes a profile the loader reads without panicking; an accepted profile
// that loads exports and imports again to the same parameters.
func FuzzTR181Import(f *testing.F) {
	fuzzseed.Add(f, "FuzzTR181Import", fuzzseed.Bytes)
	f.Fuzz(func(t *testing.T, data []byte) {
		params, err := Parse(bytes.NewReader(data))
		if err != nil {
			return
		}
		profile, err := Import(params)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("refusal without a reason")
			}
			return
		}
		pol, probs := policy.ParseFile("tr181.yaml", profile)
		if len(probs) > 0 {
			return // e.g. a bad MAC or category: the loader says why
		}
		first := export(t, pol)
		again, err := Import(first)
		if err != nil {
			t.Fatalf("re-import of an export: %v", err)
		}
		pol2, probs := policy.ParseFile("tr181.yaml", again)
		if len(probs) > 0 {
			t.Fatalf("re-imported profile invalid: %v\n%s", probs, again)
		}
		if second := export(t, pol2); !reflect.DeepEqual(first, second) {
			t.Fatalf("round trip differs\n%s\n%s", profile, again)
		}
	})
}
