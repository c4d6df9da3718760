package schedule

import (
	"strings"
	"testing"
	"time"

	"github.com/famguard/famguard/agent/tz"
	"github.com/famguard/famguard/scripts/fuzzseed"
)

func zone(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := tz.Load(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func mustDays(t testing.TB, items ...string) Days {
	t.Helper()
	d, err := ParseDays(items)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func win(t testing.TB, name, from, to string, days ...string) Window {
	t.Helper()
	f, err := ParseClock(from)
	if err != nil {
		t.Fatal(err)
	}
	e, err := ParseClock(to)
	if err != nil {
		t.Fatal(err)
	}
	return Window{Name: name, Days: mustDays(t, days...), From: f, To: e, Offline: true}
}

func TestParseDays(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
		err  string
	}{
		{[]string{"mon"}, "Mon", ""},
		{[]string{"mon-fri"}, "Mon–Fri", ""},
		{[]string{"sun", "mon", "tue", "wed", "thu"}, "Sun–Thu", ""},
		{[]string{"fri-mon"}, "Fri–Mon", ""},
		{[]string{"sat", "sun"}, "Sat, Sun", ""},
		{[]string{"weekends"}, "Sat, Sun", ""},
		{[]string{"weekdays"}, "Mon–Fri", ""},
		{[]string{"daily"}, "daily", ""},
		{[]string{"MON", "Wed"}, "Mon, Wed", ""},
		{[]string{"mon", "wed", "fri"}, "Mon, Wed, Fri", ""},
		{[]string{"mon-sun"}, "daily", ""},
		{[]string{"mnday"}, "", `unknown day "mnday"`},
		{[]string{"mon-frday"}, "", `unknown day "frday" in range`},
		{[]string{}, "", "no days given"},
	} {
		d, err := ParseDays(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseDays(%q) error = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || d.String() != tc.want {
			t.Errorf("ParseDays(%q) = %q, %v; want %q", tc.in, d.String(), err, tc.want)
		}
	}
}

func TestParseClock(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		ok   bool
	}{
		{"00:00", 0, true}, {"07:00", 420, true}, {"7:05", 425, true}, {"21:30", 1290, true},
		{"23:59", 1439, true}, {"24:00", 1440, true},
		{"24:01", 0, false}, {"25:00", 0, false}, {"21:60", 0, false}, {"2100", 0, false},
		{"21:0", 0, false}, {"", 0, false}, {"-1:00", 0, false}, {"ab:cd", 0, false},
	} {
		got, err := ParseClock(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseClock(%q) = %d, %v; want %d ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestValidate(t *testing.T) {
	w := win(t, "x", "21:00", "21:00", "daily")
	if err := w.Validate(); err == nil || !strings.Contains(err.Error(), "needs a length") {
		t.Errorf("from == to: %v", err)
	}
	if err := win(t, "x", "00:00", "24:00", "daily").Validate(); err != nil {
		t.Errorf("whole day: %v", err)
	}
	if err := (Window{Days: 0, From: 1, To: 2}).Validate(); err == nil {
		t.Error("no days accepted")
	}
}

func TestActiveAt(t *testing.T) {
	berlin := zone(t, "Europe/Berlin")
	at := func(s string) time.Time {
		v, err := time.ParseInLocation("Mon 2006-01-02 15:04", s, berlin)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	bedtime := win(t, "bedtime", "21:00", "07:00", "sun", "mon", "tue", "wed", "thu")
	friOnly := win(t, "fri", "21:00", "07:00", "fri")
	homework := win(t, "homework", "16:00", "18:00", "mon-fri")
	allDay := win(t, "all", "00:00", "24:00", "sat")
	for _, tc := range []struct {
		w    Window
		at   string
		want bool
	}{
		{bedtime, "Thu 2026-11-26 20:59", false},
		{bedtime, "Thu 2026-11-26 21:00", true},
		{bedtime, "Thu 2026-11-26 23:59", true},
		{bedtime, "Fri 2026-11-27 00:00", true},  // crosses midnight
		{bedtime, "Fri 2026-11-27 06:30", true},  // Thursday's window covers Friday morning
		{bedtime, "Fri 2026-11-27 07:00", false}, // end is exclusive
		{bedtime, "Fri 2026-11-27 21:30", false}, // Friday is not a bedtime day
		{bedtime, "Sat 2026-11-28 06:30", false}, // Friday's window doesn't exist
		{bedtime, "Mon 2026-11-30 06:30", true},  // Sunday's window, across the week boundary
		{friOnly, "Fri 2026-11-27 06:30", false}, // anchored on Friday evening, not Thursday
		{friOnly, "Sat 2026-11-28 06:30", true},
		{homework, "Mon 2026-11-23 16:00", true},
		{homework, "Mon 2026-11-23 18:00", false},
		{homework, "Sat 2026-11-28 17:00", false},
		{allDay, "Sat 2026-11-28 00:00", true},
		{allDay, "Sat 2026-11-28 23:59", true},
		{allDay, "Sun 2026-11-29 00:00", false},
	} {
		if got := tc.w.ActiveAt(at(tc.at)); got != tc.want {
			t.Errorf("%s (%s) at %s: active=%v, want %v", tc.w.Name, tc.w.Describe(), tc.at, got, tc.want)
		}
	}
}

func TestOverlappingWindows(t *testing.T) {
	berlin := zone(t, "Europe/Berlin")
	ws := []Window{
		win(t, "homework", "16:00", "18:00", "mon-fri"),
		win(t, "screen-break", "17:00", "19:00", "daily"),
	}
	mon := func(h, m int) time.Time { return time.Date(2026, 11, 23, h, m, 0, 0, berlin) }
	for _, tc := range []struct {
		at   time.Time
		want []int
	}{
		{mon(15, 59), nil}, {mon(16, 30), []int{0}}, {mon(17, 30), []int{0, 1}}, {mon(18, 30), []int{1}}, {mon(19, 0), nil},
	} {
		if got := Active(ws, tc.at); !sameSet(got, tc.want) {
			t.Errorf("Active at %s = %v, want %v", tc.at.Format("15:04"), got, tc.want)
		}
	}
	next, ok := NextChange(ws, mon(17, 30), 8*24*time.Hour)
	if !ok || !next.Equal(mon(18, 0)) {
		t.Errorf("NextChange in the overlap = %v, want 18:00", next)
	}
}

func TestNextChange(t *testing.T) {
	berlin := zone(t, "Europe/Berlin")
	ny := zone(t, "America/New_York")
	utc := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		name string
		loc  *time.Location
		ws   []Window
		at   string // RFC3339
		want string // RFC3339 in UTC, "" = none
	}{
		{"bedtime starts", berlin, []Window{win(t, "b", "21:00", "07:00", "sun-thu")}, "2026-11-26T20:00:00+01:00", "2026-11-26T20:00:00Z"},
		{"bedtime ends next morning", berlin, []Window{win(t, "b", "21:00", "07:00", "sun-thu")}, "2026-11-26T21:00:00+01:00", "2026-11-27T06:00:00Z"},
		{"weekend skipped", berlin, []Window{win(t, "b", "21:00", "07:00", "sun-thu")}, "2026-11-27T08:00:00+01:00", "2026-11-29T20:00:00Z"},
		{"adjacent windows are one change", berlin, []Window{win(t, "a", "16:00", "18:00", "daily"), win(t, "b", "18:00", "20:00", "daily")}, "2026-11-26T16:30:00+01:00", "2026-11-26T17:00:00Z"},
		{"no windows", berlin, nil, "2026-11-26T16:30:00+01:00", ""},
		{"always on", berlin, []Window{win(t, "all", "00:00", "24:00", "daily")}, "2026-11-26T16:30:00+01:00", ""},
		// Berlin spring forward: 2026-03-29 02:00 CET → 03:00 CEST.
		{"berlin spring: bedtime ends at 07:00 CEST", berlin, []Window{win(t, "b", "21:00", "07:00", "daily")}, "2026-03-28T22:00:00+01:00", "2026-03-29T05:00:00Z"},
		{"berlin spring: boundary in the gap takes effect at the jump", berlin, []Window{win(t, "n", "02:30", "05:00", "daily")}, "2026-03-29T01:00:00+01:00", "2026-03-29T01:00:00Z"},
		// Berlin autumn: 2026-10-25 03:00 CEST → 02:00 CET (02:xx twice).
		{"berlin autumn: bedtime ends at 07:00 CET", berlin, []Window{win(t, "b", "21:00", "07:00", "daily")}, "2026-10-24T22:00:00+02:00", "2026-10-25T06:00:00Z"},
		{"berlin autumn: repeated hour ends the window first time", berlin, []Window{win(t, "n", "02:00", "02:30", "daily")}, "2026-10-25T02:10:00+02:00", "2026-10-25T00:30:00Z"},
		{"berlin autumn: repeated hour re-enters the window", berlin, []Window{win(t, "n", "02:00", "02:30", "daily")}, "2026-10-25T02:40:00+02:00", "2026-10-25T01:00:00Z"},
		// New York spring forward: 2026-03-08 02:00 EST → 03:00 EDT.
		{"new york spring: 21:00 bedtime", ny, []Window{win(t, "b", "21:00", "07:00", "daily")}, "2026-03-08T05:30:00-04:00", "2026-03-08T11:00:00Z"},
		{"new york spring: window from the gap", ny, []Window{win(t, "n", "02:15", "04:00", "sun")}, "2026-03-08T01:30:00-05:00", "2026-03-08T07:00:00Z"},
		// New York fall back: 2026-11-01 02:00 EDT → 01:00 EST.
		{"new york autumn: bedtime ends at 07:00 EST", ny, []Window{win(t, "b", "21:00", "07:00", "sat")}, "2026-10-31T23:00:00-04:00", "2026-11-01T12:00:00Z"},
	} {
		at := utc(tc.at).In(tc.loc)
		got, ok := NextChange(tc.ws, at, 8*24*time.Hour)
		if tc.want == "" {
			if ok {
				t.Errorf("%s: NextChange = %v, want none", tc.name, got)
			}
			continue
		}
		if !ok || !got.Equal(utc(tc.want)) {
			t.Errorf("%s: NextChange(%s) = %v (ok=%v), want %s", tc.name, at, got.UTC(), ok, tc.want)
		}
		if ok && got.Location() != tc.loc {
			t.Errorf("%s: result in %v, want %v", tc.name, got.Location(), tc.loc)
		}
	}
}

func FuzzParseDaysAndClock(f *testing.F) {
	for _, s := range []string{"mon", "mon-fri", "fri-mon", "daily", "weekends", "21:00", "24:00", "7:5", "", "-"} {
		f.Add(s)
	}
	fuzzseed.AddLines(f, "FuzzParseDaysAndClock")
	f.Fuzz(func(t *testing.T, s string) {
		if d, err := ParseDays([]string{s}); err == nil {
			if d == 0 || d&^AllDays != 0 {
				t.Errorf("ParseDays(%q) = %b", s, d)
			}
			if back, err := ParseDays(strings.Split(strings.ReplaceAll(strings.ReplaceAll(strings.ToLower(d.String()), "–", "-"), " ", ""), ",")); err != nil || back != d {
				t.Errorf("String round trip of %q: %q → %b, %v", s, d.String(), back, err)
			}
		}
		if m, err := ParseClock(s); err == nil && (m < 0 || m > 1440) {
			t.Errorf("ParseClock(%q) = %d", s, m)
		}
	})
}
