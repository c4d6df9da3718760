package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/famguard/famguard/scripts/fuzzseed"
)

func TestParseAt(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no zone data:", err)
	}
	// Thursday 26 November 2026, 21:30 in Berlin.
	now := time.Date(2026, 11, 26, 21, 30, 0, 0, berlin)
	tests := []struct {
		in, want string // want in RFC 3339; "" = an error
	}{
		{"2026-11-30 16:30", "2026-11-30T16:30:00+01:00"},
		{"2026-11-30T16:30", "2026-11-30T16:30:00+01:00"},
		{"2026-11-30 16:30:15", "2026-11-30T16:30:15+01:00"},
		{"2026-07-01 08:00", "2026-07-01T08:00:00+02:00"}, // summer time
		{"16:30", "2026-11-26T16:30:00+01:00"},            // today, even if past
		{" 07:05 ", "2026-11-26T07:05:00+01:00"},
		{"mon 16:30", "2026-11-30T16:30:00+01:00"},
		{"Monday 16:30", "2026-11-30T16:30:00+01:00"},
		{"thu 08:00", "2026-11-26T08:00:00+01:00"}, // today is Thursday
		{"wed 23:59", "2026-12-02T23:59:00+01:00"},
		{"SUN 00:00", "2026-11-29T00:00:00+01:00"},
		{"2026-11-26T21:30:00Z", "2026-11-26T21:30:00Z"}, // RFC 3339 keeps its offset
		{"2026-11-26T21:30:00+05:00", "2026-11-26T21:30:00+05:00"},
		{"not-a-time", ""},
		{"25:00", ""},
		{"mo 16:30", ""},
		{"mon", ""},
		{"2026-11-31 10:00", ""},
		{"", ""},
	}
	for _, tt := range tests {
		got, err := parseAt(tt.in, now, berlin)
		if tt.want == "" {
			if err == nil {
				t.Errorf("parseAt(%q) = %v, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got.Format(time.RFC3339) != tt.want {
			t.Errorf("parseAt(%q) = %v, %v; want %s", tt.in, got.Format(time.RFC3339), err, tt.want)
		}
	}
}

func TestParseAtErrorSaysWhatToWrite(t *testing.T) {
	_, err := parseAt("half past four", time.Now(), time.UTC)
	if err == nil || !strings.Contains(err.Error(), `"mon 16:30"`) || !strings.Contains(err.Error(), "RFC 3339") {
		t.Errorf("error = %v; want the accepted forms", err)
	}
	_, err = parseAt("someday 16:30", time.Now(), time.UTC)
	if err == nil || !strings.Contains(err.Error(), "not a day of the week") {
		t.Errorf("error = %v", err)
	}
}

func family(t *testing.T) string {
	t.Helper()
	return filepath.Join("..", "..", "..", "testdata", "profiles", "valid", "family")
}

// lists writes a categories directory holding lists for the names given.
func lists(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n+".txt"), []byte("example."+n+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestPlanJSONHasDNSRulesAndUnlistedCategories(t *testing.T) {
	cats := lists(t, "adult", "games")
	var out bytes.Buffer
	// Monday 16:30 in Berlin: Alice's homework blocks games and social.
	if err := cmdPlan([]string{"--json", "--at", "2026-11-30 16:30", "--categories", cats, family(t)}, &out); err != nil {
		t.Fatal(err)
	}
	var res struct {
		At            string `json:"at"`
		CategoriesDir string `json:"categories_dir"`
		Devices       []struct {
			MAC                   string   `json:"mac"`
			Blocked               []string `json:"blocked_categories"`
			SafeSearch            *bool    `json:"safe_search"`
			Allow                 []string `json:"allow"`
			Deny                  []string `json:"deny"`
			CategoriesWithoutList []string `json:"categories_without_list"`
		} `json:"devices"`
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if res.At != "2026-11-30T16:30:00+01:00" || res.CategoriesDir != cats || len(res.Devices) != 3 {
		t.Fatalf("plan = %s", out.String())
	}
	alice, bob := res.Devices[0], res.Devices[2]
	if alice.SafeSearch == nil || !*alice.SafeSearch || !reflect.DeepEqual(alice.Allow, []string{"khanacademy.org"}) || !reflect.DeepEqual(alice.Deny, []string{"example-game.com"}) {
		t.Errorf("alice's DNS rules: %+v", alice)
	}
	if !reflect.DeepEqual(alice.Blocked, []string{"adult", "gambling", "games", "social"}) || !reflect.DeepEqual(alice.CategoriesWithoutList, []string{"gambling", "social"}) {
		t.Errorf("alice's categories: blocked %v, without list %v", alice.Blocked, alice.CategoriesWithoutList)
	}
	if bob.SafeSearch == nil || *bob.SafeSearch || bob.Allow == nil || len(bob.Allow) != 0 || bob.Deny == nil || bob.CategoriesWithoutList == nil || len(bob.CategoriesWithoutList) != 0 {
		t.Errorf("bob: %+v (want safe_search false, empty lists, not null)", bob)
	}
	// Without checking: no category is marked.
	out.Reset()
	if err := cmdPlan([]string{"--json", "--at", "mon 16:30", "--categories", "", family(t)}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"categories_without_list": []`) || strings.Contains(out.String(), `"categories_without_list": [
`) {
		t.Errorf("--categories \"\" still marks categories:\n%s", out.String())
	}
}

func TestPlanTextMarksUnlistedCategories(t *testing.T) {
	cats := lists(t, "adult", "games")
	var out bytes.Buffer
	if err := cmdPlan([]string{"--at", "2026-11-30 16:30", "--categories", cats, family(t)}, &out); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{
		"adult,gambling!,games,social!",
		"! no list: nothing is blocked for gambling, social until a list is installed at " + filepath.Join(cats, "<category>.txt"),
		"alice: safe search on; always allowed: khanacademy.org; always blocked: example-game.com",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("plan output lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "bob:") {
		t.Errorf("bob has no DNS rules but is listed:\n%s", s)
	}
}

func TestPlanAcceptsAFile(t *testing.T) {
	var out bytes.Buffer
	if err := cmdPlan([]string{"--json", "--at", "16:30", filepath.Join(family(t), "family.yaml")}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"mac": "02:00:00:00:00:21"`) {
		t.Errorf("plan FILE:\n%s", out.String())
	}
}

// FuzzParseAt: plan's --at never panics; an accepted time without an offset
// of its own is in the family's zone, within a week of now, and a parent's
// "HH:MM" comes back as that wall-clock time (or, in the hour skipped when
// clocks go forward, the instant the clock jumps over it).
func FuzzParseAt(f *testing.F) {
	for _, s := range []string{"2026-11-30 16:30", "16:30", "mon 16:30", "Monday 16:30", "2026-11-26T21:30:00+01:00", "24:00", "sun 02:30", "2026-03-29 02:30"} {
		f.Add(s)
	}
	fuzzseed.AddLines(f, "FuzzParseAt")
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		f.Skip("no zone data:", err)
	}
	now := time.Date(2026, 11, 26, 21, 30, 0, 0, berlin)
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseAt(s, now, berlin)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "--at ") {
				t.Fatalf("parseAt(%q): error %q does not name the flag", s, err)
			}
			return
		}
		if _, rfcErr := time.Parse(time.RFC3339, strings.TrimSpace(s)); rfcErr == nil {
			return // its own offset
		}
		if got.Location() != berlin {
			t.Fatalf("parseAt(%q) = %v, not in the family's zone", s, got)
		}
		if w := strings.Fields(s); len(w) >= 1 && len(w) <= 2 && !strings.Contains(w[0], "-") {
			if d := got.Sub(now); d < -24*time.Hour || d > 7*24*time.Hour {
				t.Fatalf("parseAt(%q) = %v, more than a week from %v", s, got, now)
			}
		}
	})
}
