package policy

import (
	"strings"
	"testing"
	"time"
)

func TestBudgetParses(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want map[time.Weekday]time.Duration // days not listed: no budget
	}{
		{"{mon-fri: 2h, sat-sun: 4h}", map[time.Weekday]time.Duration{1: 2 * time.Hour, 2: 2 * time.Hour, 3: 2 * time.Hour, 4: 2 * time.Hour, 5: 2 * time.Hour, 6: 4 * time.Hour, 0: 4 * time.Hour}},
		{"90m", map[time.Weekday]time.Duration{0: 90 * time.Minute, 1: 90 * time.Minute, 2: 90 * time.Minute, 3: 90 * time.Minute, 4: 90 * time.Minute, 5: 90 * time.Minute, 6: 90 * time.Minute}},
		{"{weekends: 1h30m, wed: 0}", map[time.Weekday]time.Duration{0: 90 * time.Minute, 6: 90 * time.Minute, 3: 0}},
		{`{"Fri": "24h"}`, map[time.Weekday]time.Duration{5: 24 * time.Hour}},
	} {
		pol, probs := ParseFile("f.yaml", []byte("version: 1\nchildren:\n  alice:\n    devices: [{mac: \"02:00:00:00:00:11\"}]\n    budget: "+tc.in+"\n"))
		if len(probs) > 0 {
			t.Errorf("%s: %v", tc.in, probs)
			continue
		}
		b := pol.Children[0].Budget
		for w := time.Sunday; w <= time.Saturday; w++ {
			got, ok := b.For(w)
			want, wantOK := tc.want[w]
			if ok != wantOK || got != want {
				t.Errorf("%s: %s = %v,%v; want %v,%v", tc.in, w, got, ok, want, wantOK)
			}
		}
	}
}

// TestBudgetProblems: each malformed budget is one FILE:LINE:COL problem
// naming the field and what to write instead.
func TestBudgetProblems(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"{mon: 25h}", `f.yaml:5:19: children.alice.budget.mon: 25h is more than a day has`},
		{"{mon-fri: 2 hours}", `f.yaml:5:23: children.alice.budget.mon-fri: "2 hours" is not a budget: write a duration like 2h, 90m or 1h30m`},
		{"{mon-fri: 2h, fri: 1h}", `f.yaml:5:27: children.alice.budget.fri: Friday is already given by "mon-fri"`},
		{"{funday: 2h}", `f.yaml:5:14: children.alice.budget.funday: unknown day "funday"`},
		{"{mon: -1h}", `children.alice.budget.mon: -1h: a budget cannot be negative`},
		{"{mon: 90s}", `budget counts whole minutes`},
		{"[2h]", `f.yaml:5:13: children.alice.budget: expected a budget like {mon-fri: 2h, sat-sun: 4h} or 90m`},
		{"{}", `empty budget`},
	} {
		_, probs := ParseFile("f.yaml", []byte("version: 1\nchildren:\n  alice:\n    devices: [{mac: \"02:00:00:00:00:11\"}]\n    budget: "+tc.in+"\n"))
		if len(probs) != 1 || !strings.Contains(probs[0].String(), tc.want) {
			t.Errorf("budget: %s\n got  %v\n want one problem containing %q", tc.in, probs, tc.want)
		}
	}
}

func TestFormatMinutes(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "0m", 45 * time.Minute: "45m", 2 * time.Hour: "2h", 90 * time.Minute: "1h30m", -30 * time.Minute: "-30m"} {
		if got := FormatMinutes(d); got != want {
			t.Errorf("FormatMinutes(%v) = %q, want %q", d, got, want)
		}
	}
}
