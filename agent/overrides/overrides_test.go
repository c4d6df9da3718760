package overrides

import (
	"errors"
	"github.com/famguard/famguard/scripts/fuzzseed"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/famguard/famguard/agent/policy"
	"github.com/famguard/famguard/agent/tz"
)

const family = `version: 1
children:
  alice:
    devices:
      - {mac: "02:00:00:00:00:11", name: "Alice's phone"}
      - {mac: "02:00:00:00:00:12", name: "Alice's laptop"}
    block: [adult]
    budget: {mon-fri: 2h, sat-sun: 4h}
    schedules:
      - {name: bedtime, days: [daily], from: "21:00", to: "07:00", action: offline}
  bob:
    devices:
      - {mac: "02:00:00:00:00:21"}
`

func load(t testing.TB) (*policy.Policy, *time.Location) {
	t.Helper()
	pol, probs := policy.ParseFile("family.yaml", []byte(family))
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	loc, err := tz.Load("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	return pol, loc
}

func at(loc *time.Location, s string) Now {
	t, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
	if err != nil {
		panic(err)
	}
	return Now{T: t, Loc: loc, Trusted: true}
}

func code(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

func stateOf(states []policy.DeviceState, mac string) policy.DeviceState {
	for _, s := range states {
		if s.MAC == mac {
			return s
		}
	}
	return policy.DeviceState{}
}

// TestPrecedence: pause > grant > used-up budget > schedule, with the
// reason naming the command and the until time.
func TestPrecedence(t *testing.T) {
	pol, loc := load(t)
	const phone, laptop = "02:00:00:00:00:11", "02:00:00:00:00:12"
	alice, _ := Resolve(pol, "alice", "")
	phoneT, _ := Resolve(pol, "", "Alice's phone")
	type step func(s *State, now Now)
	pause := func(target Target, d time.Duration) step {
		return func(s *State, now Now) {
			if _, err := s.Pause(PauseArgs{Target: target, For: d, By: "famguard pause " + target.Child}, now); err != nil {
				t.Fatal(err)
			}
		}
	}
	grant := func(d time.Duration) step {
		return func(s *State, now Now) {
			if _, err := s.Grant(pol, GrantArgs{Child: "alice", For: d, By: "famguard grant alice " + d.String()}, now); err != nil {
				t.Fatal(err)
			}
		}
	}
	use := func(minutes int) step {
		return func(s *State, now Now) {
			for i := 0; i < minutes; i++ {
				s.CountMinute("alice", 1<<20, true, DefaultThreshold, now)
			}
		}
	}
	for _, tc := range []struct {
		name   string
		at     string
		steps  []step
		mac    string
		online bool
		reason string
		until  string // "" = nil
	}{
		{"schedule only", "2026-11-26 19:00", nil, phone, true, "online: no schedule active; always blocked: adult; budget 2h of 2h left today", ""},
		{"bedtime", "2026-11-26 21:30", nil, phone, false, "offline: bedtime", "2026-11-27 07:00"},
		{"pause child", "2026-11-26 19:00", []step{pause(alice, 30*time.Minute)}, laptop, false, "paused by `famguard pause alice` until 19:30", "2026-11-26 19:30"},
		{"pause device leaves the other", "2026-11-26 19:00", []step{pause(phoneT, 30*time.Minute)}, laptop, true, "online", ""},
		{"pause device", "2026-11-26 19:00", []step{pause(phoneT, 30*time.Minute)}, phone, false, "paused by `famguard pause alice` until 19:30", "2026-11-26 19:30"},
		{"grant in bedtime", "2026-11-26 21:30", []step{grant(30 * time.Minute)}, phone, true, "extra time granted by `famguard grant alice 30m0s` until 22:00 (otherwise offline: bedtime", "2026-11-26 22:00"},
		{"pause beats grant", "2026-11-26 21:30", []step{grant(30 * time.Minute), pause(alice, time.Hour)}, phone, false, "paused by", "2026-11-26 22:30"},
		{"budget used up", "2026-11-26 19:00", []step{use(120)}, phone, false, "daily budget used up: 2h of 2h used today (mon-fri: 2h); online again at Fri 00:00", "2026-11-27 00:00"},
		{"grant beats budget", "2026-11-26 19:00", []step{use(120), grant(15 * time.Minute)}, phone, true, "extra time granted by `famguard grant alice 15m0s` until 19:15 (otherwise daily budget", "2026-11-26 19:15"},
		{"budget one short", "2026-11-26 19:00", []step{use(119)}, phone, true, "budget 1m of 2h left today", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := at(loc, tc.at)
			var s State
			for _, st := range tc.steps {
				st(&s, now)
			}
			states, _ := s.Apply(pol, pol.Evaluate(now.T, loc), now)
			got := stateOf(states, tc.mac)
			if got.Online != tc.online || !strings.Contains(got.Reason, tc.reason) {
				t.Errorf("online %v, reason %q; want %v, %q", got.Online, got.Reason, tc.online, tc.reason)
			}
			var until string
			if got.Until != nil {
				until = got.Until.In(loc).Format("2006-01-02 15:04")
			}
			if tc.until != "" && until != tc.until {
				t.Errorf("until %s, want %s", until, tc.until)
			}
			if !contains(got.BlockedCategories, "adult") {
				t.Errorf("category blocks dropped under an override: %v", got.BlockedCategories)
			}
		})
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// TestBadInput: each refused request changes nothing and says why.
func TestBadInput(t *testing.T) {
	pol, loc := load(t)
	now := at(loc, "2026-11-26 19:40")
	var s State
	alice, _ := Resolve(pol, "alice", "")
	for _, tc := range []struct {
		name, code, msg string
		do              func() error
	}{
		{"unknown child", CodeUnknownChild, `there is no child named "carol" in the profiles (children: alice, bob)`, func() error { _, err := Resolve(pol, "carol", ""); return err }},
		{"unknown device", CodeUnknownDevice, `no child's device has the MAC address or name "02:00:00:00:00:99"`, func() error { _, err := Resolve(pol, "", "02:00:00:00:00:99"); return err }},
		{"zero", CodeBadDuration, "more than zero", func() error { _, err := ParseDuration("for", "0m"); return err }},
		{"negative", CodeBadDuration, "more than zero", func() error { _, err := ParseDuration("for", "-30m"); return err }},
		{"absurd", CodeBadDuration, "more than 7 days", func() error { _, err := ParseDuration("for", "200h"); return err }},
		{"words", CodeBadDuration, `"half an hour" is not a duration`, func() error { _, err := ParseDuration("for", "half an hour"); return err }},
		{"until passed today", CodeInPast, `19:30 has already passed today (it is 19:40); for tomorrow write --until "tomorrow 19:30"`, func() error { _, err := ParseUntil("19:30", now); return err }},
		{"until in the past", CodeInPast, "is in the past", func() error { _, err := ParseUntil("2026-11-25 07:00", now); return err }},
		{"until garbage", CodeBadTime, "is not a time", func() error { _, err := ParseUntil("soon", now); return err }},
		{"until far", CodeBadDuration, "more than 7 days ahead", func() error { _, err := ParseUntil("2026-12-25 07:00", now); return err }},
		{"until untrusted", CodeClockUntrusted, "not synchronised", func() error {
			_, err := ParseUntil("21:00", Now{T: now.T, Loc: loc})
			return err
		}},
		{"grant untrusted", CodeClockUntrusted, "not synchronised", func() error {
			_, err := s.Grant(pol, GrantArgs{Child: "alice", For: time.Hour}, Now{T: now.T, Loc: loc})
			return err
		}},
		{"budget without budget", CodeNoBudget, "bob has no daily budget", func() error {
			_, err := s.Grant(pol, GrantArgs{Child: "bob", Budget: 30 * time.Minute}, now)
			return err
		}},
		{"resume not paused", CodeNotPaused, "alice is not paused; nothing changed", func() error { _, err := s.Resume(alice); return err }},
		{"both for and until", CodeBadArgs, "not both", func() error {
			_, err := s.Pause(PauseArgs{Target: alice, For: time.Hour, Until: now.T.Add(2 * time.Hour)}, now)
			return err
		}},
	} {
		err := tc.do()
		if code(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v (code %q); want code %q and %q", tc.name, err, code(err), tc.code, tc.msg)
		}
	}
	if len(s.Pauses)+len(s.Grants)+len(s.Extras)+len(s.Usage) != 0 {
		t.Errorf("refused requests changed the state: %+v", s)
	}
	// Tomorrow, and a plain future time, are fine.
	if u, err := ParseUntil("tomorrow 07:00", now); err != nil || u.In(loc).Format("2006-01-02 15:04") != "2026-11-27 07:00" {
		t.Errorf("tomorrow 07:00 = %v, %v", u, err)
	}
	if u, err := ParseUntil("20:15", now); err != nil || u.In(loc).Format("15:04") != "20:15" {
		t.Errorf("20:15 = %v, %v", u, err)
	}
}

// TestUntrustedClock: an untrusted clock never ends a pause, never starts a
// new budget day, and a --for pause made then lasts its full length from
// when the clock is trusted.
func TestUntrustedClock(t *testing.T) {
	pol, loc := load(t)
	alice, _ := Resolve(pol, "alice", "")
	now := at(loc, "2026-11-26 19:00")
	var s State
	if _, err := s.Pause(PauseArgs{Target: alice, For: 30 * time.Minute, By: "x"}, now); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 120; i++ {
		s.CountMinute("alice", 1<<20, true, DefaultThreshold, now)
	}
	// The router reboots into a clock a day ahead, then one a year behind.
	for _, wrong := range []time.Time{now.T.Add(26 * time.Hour), now.T.AddDate(-1, 0, 0)} {
		u := Now{T: wrong, Loc: loc}
		if p, g := s.Expire(u); len(p)+len(g) > 0 {
			t.Errorf("clock %v (untrusted) expired %v %v", wrong, p, g)
		}
		states, _ := s.Apply(pol, pol.Evaluate(wrong, loc), u)
		if st := stateOf(states, "02:00:00:00:00:11"); st.Online || !strings.Contains(st.Reason, "paused") {
			t.Errorf("clock %v (untrusted): %+v; want still paused", wrong, st)
		}
		if b := s.BudgetOf(pol.Children[0], u); b == nil || b.Day != "2026-11-26" || !b.Exhausted {
			t.Errorf("clock %v (untrusted): budget %+v; want 26 Nov, used up", wrong, b)
		}
	}
	// A trusted clock stepped back a day keeps the later day's count too.
	back := at(loc, "2026-11-25 19:00")
	if b := s.BudgetOf(pol.Children[0], back); b == nil || b.Day != "2026-11-26" || !b.Exhausted {
		t.Errorf("clock stepped back: budget %+v; want the 26th's, used up", b)
	}

	// A pause made before sync starts counting at sync.
	var s2 State
	untrusted := Now{T: now.T.Add(-5 * time.Hour), Loc: loc}
	p, _ := s2.Pause(PauseArgs{Target: alice, For: 30 * time.Minute}, untrusted)
	if p.Until != nil || p.PendingFor != Duration(30*time.Minute) {
		t.Fatalf("pause made untrusted: %+v", p)
	}
	s2.ClockTrusted(now.T)
	if u := s2.Pauses[0].Until; u == nil || !u.Equal(now.T.Add(30*time.Minute)) {
		t.Errorf("after sync the pause ends %v, want %v", u, now.T.Add(30*time.Minute))
	}
}

// TestDayBoundaryDST: the budget day begins at local midnight, also on the
// days the clocks change (Berlin: 29 March 2026 springs forward at 02:00,
// 25 October 2026 falls back at 03:00).
func TestDayBoundaryDST(t *testing.T) {
	_, loc := load(t)
	for _, tc := range []struct{ at, next string }{
		{"2026-03-28 23:59", "2026-03-29T00:00:00+01:00"},
		{"2026-03-29 12:00", "2026-03-30T00:00:00+02:00"}, // a 23-hour day
		{"2026-10-25 12:00", "2026-10-26T00:00:00+01:00"}, // a 25-hour day
		{"2026-10-24 23:30", "2026-10-25T00:00:00+02:00"},
	} {
		n := at(loc, tc.at)
		if got := NextMidnight(n.T, loc).Format(time.RFC3339); got != tc.next {
			t.Errorf("next midnight after %s = %s, want %s", tc.at, got, tc.next)
		}
	}
	// Usage of the 25-hour day: a minute at 23:59 counts on the 25th, one
	// a minute later on the 26th.
	pol, _ := load(t)
	var s State
	late := at(loc, "2026-10-25 23:59")
	s.CountMinute("alice", 1<<20, true, DefaultThreshold, late)
	if u := s.Usage["alice"]; u.Day != "2026-10-25" || u.Minutes != 1 {
		t.Errorf("usage %+v", u)
	}
	next := Now{T: late.T.Add(time.Minute), Loc: loc, Trusted: true}
	s.CountMinute("alice", 1<<20, true, DefaultThreshold, next)
	if u := s.Usage["alice"]; u.Day != "2026-10-26" || u.Minutes != 1 {
		t.Errorf("usage after midnight %+v", u)
	}
	if b := s.BudgetOf(pol.Children[0], next); b.Source != "mon-fri: 2h" || b.Left != 119 {
		t.Errorf("Monday's budget %+v", b)
	}
}

// TestCountThreshold: background chatter does not count; a minute over
// the threshold does; ineligible minutes (offline window, paused) never.
func TestCountThreshold(t *testing.T) {
	_, loc := load(t)
	now := at(loc, "2026-11-26 19:00")
	var s State
	for i, tc := range []struct {
		bytes    uint64
		eligible bool
		want     bool
	}{
		{0, true, false}, {4 << 10, true, false}, {DefaultThreshold, true, false},
		{DefaultThreshold + 1, true, true}, {50 << 20, false, false},
	} {
		n := Now{T: now.T.Add(time.Duration(i) * time.Minute), Loc: loc, Trusted: true}
		if got := s.CountMinute("alice", tc.bytes, tc.eligible, DefaultThreshold, n); got != tc.want {
			t.Errorf("%d bytes (eligible %v): counted %v", tc.bytes, tc.eligible, got)
		}
	}
	if s.Usage["alice"].Minutes != 1 {
		t.Errorf("minutes %d, want 1", s.Usage["alice"].Minutes)
	}
}

// TestProjection: while in use, status says when the budget runs out if
// used without a break, and at the last hour's rate.
func TestProjection(t *testing.T) {
	pol, loc := load(t)
	start := at(loc, "2026-11-26 17:00")
	var s State
	for i := 0; i < 60; i++ { // used every other minute for an hour
		n := Now{T: start.T.Add(time.Duration(i) * time.Minute), Loc: loc, Trusted: true}
		s.CountMinute("alice", uint64(i%2)*(1<<20), true, DefaultThreshold, n)
	}
	now := Now{T: start.T.Add(60*time.Minute + 10*time.Second), Loc: loc, Trusted: true}
	b := s.BudgetOf(pol.Children[0], now)
	if b.Used != 30 || !b.InUse || b.RecentMinutes != 30 {
		t.Fatalf("budget %+v", b)
	}
	if got := b.RunsOutAt.In(loc).Format("15:04"); got != "19:30" {
		t.Errorf("runs out (no break) at %s, want 19:30", got)
	}
	if got := b.RunsOutAtRecentRate.In(loc).Format("15:04"); got != "21:00" {
		t.Errorf("runs out (recent rate) at %s, want 21:00", got)
	}
}

// TestStoreDurable: pauses survive via flash; usage via RAM (kill -9) or
// flash (reboot, losing at most the unflushed minutes); loading never
// gives minutes back.
func TestStoreDurable(t *testing.T) {
	pol, loc := load(t)
	dir := t.TempDir()
	flash, ram := filepath.Join(dir, "flash.json"), filepath.Join(dir, "ram.json")
	now := at(loc, "2026-11-26 18:00")
	st := NewStore(flash, ram, time.Hour)
	var s State
	alice, _ := Resolve(pol, "alice", "")
	s.Pause(PauseArgs{Target: alice, By: "famguard pause alice"}, now)
	if err := st.SaveNow(s); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		s.CountMinute("alice", 1<<20, true, DefaultThreshold, now)
		if err := st.SaveUsage(s, true); err != nil {
			t.Fatal(err)
		}
	}
	fw, rw := st.Writes()
	if fw != 1 || rw != 11 {
		t.Errorf("writes: flash %d, RAM %d; want 1 (the pause; usage waits for the flush interval), 11", fw, rw)
	}
	// kill -9: both copies there; RAM has the minutes.
	got, err := NewStore(flash, ram, time.Hour).Load()
	if err != nil || got.Usage["alice"].Minutes != 10 || len(got.Pauses) != 1 {
		t.Errorf("after kill -9: %+v, %v", got, err)
	}
	// Reboot: RAM gone; flash has the pause, and no minutes (power cut
	// before the flush): the documented worst case.
	got2, err := NewStore(flash, filepath.Join(dir, "gone.json"), time.Hour).Load()
	if err != nil || len(got2.Pauses) != 1 || got2.Usage["alice"].Minutes != 0 {
		t.Errorf("after reboot: %+v, %v", got2, err)
	}
	// SIGTERM flushes.
	if err := st.Flush(s); err != nil {
		t.Fatal(err)
	}
	got3, _ := NewStore(flash, filepath.Join(dir, "gone.json"), time.Hour).Load()
	if got3.Usage["alice"].Minutes != 10 {
		t.Errorf("after SIGTERM and reboot: %d minutes, want 10", got3.Usage["alice"].Minutes)
	}
	// An older RAM copy with more minutes of the same day wins the count.
	s.Usage["alice"] = Usage{Day: "2026-11-26", Minutes: 3}
	st.SaveNow(s)
	st2 := NewStore(flash, ram, time.Hour)
	got4, _ := st2.Load()
	if got4.Usage["alice"].Minutes != 3 {
		t.Errorf("merged %d", got4.Usage["alice"].Minutes)
	}
}

// TestPrune: a profile that drops a child drops its overrides, loudly.
func TestPrune(t *testing.T) {
	pol, loc := load(t)
	now := at(loc, "2026-11-26 18:00")
	var s State
	bob, _ := Resolve(pol, "bob", "")
	s.Pause(PauseArgs{Target: bob, By: "famguard pause bob"}, now)
	s.Grant(pol, GrantArgs{Child: "alice", For: time.Hour}, now)
	smaller, probs := policy.ParseFile("f.yaml", []byte(strings.SplitN(family, "  bob:", 2)[0]))
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	dropped := s.Prune(smaller)
	if len(dropped) != 1 || !strings.Contains(dropped[0], "pause of bob (by famguard pause bob) dropped") || len(s.Grants) != 1 {
		t.Errorf("dropped %v, state %+v", dropped, s)
	}
}

// FuzzParseUntil: whatever a parent types after --until or --for, the
// answer is a time strictly in the future within 7 days, a duration within
// the bounds, or a coded refusal — never a panic.
func FuzzParseUntil(f *testing.F) {
	for _, s := range []string{"19:30", "tomorrow 07:00", "2026-11-27 07:00", "2026-11-26T21:00:00+01:00", "24:00", "30m", "-1h", "1h30m", "8d", "99999999h"} {
		f.Add(s)
	}
	fuzzseed.AddLines(f, "FuzzParseUntil")
	_, loc := load(f)
	now := at(loc, "2026-11-26 19:40")
	f.Fuzz(func(t *testing.T, s string) {
		if u, err := ParseUntil(s, now); err == nil {
			if !u.After(now.T) || u.Sub(now.T) > MaxDuration {
				t.Fatalf("ParseUntil(%q) = %v, outside (now, now+7d]", s, u)
			}
		} else if code(err) == "" {
			t.Fatalf("ParseUntil(%q): uncoded error %v", s, err)
		}
		if d, err := ParseDuration("for", s); err == nil {
			if d < time.Minute || d > MaxDuration {
				t.Fatalf("ParseDuration(%q) = %v", s, d)
			}
		} else if code(err) == "" {
			t.Fatalf("ParseDuration(%q): uncoded error %v", s, err)
		}
	})
}

// TestFlashWritesPerHour: an hour of use every minute writes flash at most
// 12 times (the 5-minute bound); a pause or grant is written at once and,
// carrying the usage with it, restarts the bound (here: 12 in all with two
// pauses); an idle hour writes nothing new. The figures README quotes.
func TestFlashWritesPerHour(t *testing.T) {
	pol, loc := load(t)
	dir := t.TempDir()
	mono := time.Unix(0, 0)
	st := NewStore(filepath.Join(dir, "flash.json"), filepath.Join(dir, "ram.json"), DefaultFlushEvery)
	st.now = func() time.Time { return mono }
	var s State
	if _, err := st.Load(); err != nil {
		t.Fatal(err)
	}
	start := at(loc, "2026-11-26 17:00")
	alice, _ := Resolve(pol, "alice", "")
	for m := 1; m <= 60; m++ {
		mono = mono.Add(time.Minute)
		n := Now{T: start.T.Add(time.Duration(m) * time.Minute), Loc: loc, Trusted: true}
		if m == 20 || m == 40 {
			s.Pause(PauseArgs{Target: alice, For: time.Minute}, n)
			if err := st.SaveNow(s); err != nil {
				t.Fatal(err)
			}
		}
		changed := s.CountMinute("alice", 1<<20, true, DefaultThreshold, n)
		if err := st.SaveUsage(s, changed); err != nil {
			t.Fatal(err)
		}
	}
	flash, ram := st.Writes()
	t.Logf("an hour of use every minute and 2 pauses: %d flash writes, %d RAM writes", flash, ram)
	if flash != 12 || ram != 62 {
		t.Errorf("flash %d, RAM %d; want 12 (usage at most every 5 min, pauses included), 62", flash, ram)
	}
	for m := 1; m <= 60; m++ { // idle
		mono = mono.Add(time.Minute)
		n := Now{T: start.T.Add(time.Duration(60+m) * time.Minute), Loc: loc, Trusted: true}
		changed := s.CountMinute("alice", 100, true, DefaultThreshold, n)
		if err := st.SaveUsage(s, changed); err != nil {
			t.Fatal(err)
		}
	}
	if f2, _ := st.Writes(); f2 > flash+1 {
		t.Errorf("an idle hour wrote flash %d times; want at most the one flush of the last minutes", f2-flash)
	}
}
