// Package overrides holds the everyday controls a parent uses on top of the
// profiles: pause (a child or one device offline now), extra time (a grant
// that ends by itself) and daily time budgets (minutes of real use per local
// day). It is pure logic plus a store; the daemon owns one State and asks it
// what applies at each evaluation.
//
// Overrides are state, not profile edits: a profile reload never drops them,
// except those of a child or device the new profiles no longer have (dropped
// and logged by the caller through Prune).
//
// Precedence, from strongest to weakest, for each device at an instant:
//
//  1. pause (of the device, or of all its child's devices): offline;
//  2. extra time (a grant of the child): online, even inside an offline
//     window or past a used-up budget;
//  3. a used-up daily budget: offline until the next local midnight;
//  4. the profile's schedules (and, before the clock is trusted, the boot
//     policy).
//
// Category blocks (always, and those of the windows active now) keep
// applying under every override: a grant opens the internet, not the
// categories.
//
// An untrusted clock (boot before NTP) is never believed for ending
// anything: while it is untrusted a pause does not end, a grant does not
// start working (it is refused: its end could not be kept), the budget day
// does not roll over, and --until cannot be resolved (refused). A timed pause
// made then lasts until the clock is trusted plus its full duration.
package overrides

import (
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode"

	"github.com/famguard/famguard/agent/policy"
)

// MaxDuration bounds a pause or grant: a longer one is almost certainly a
// typo (a pause "for 30d"), and a profile edit is the tool for standing rules.
const MaxDuration = 7 * 24 * time.Hour

// Pause takes a child's devices, or one device, offline.
type Pause struct {
	Child  string `json:"child"`
	Device string `json:"device,omitempty"` // MAC; "" means every device of the child
	// DeviceName is the device's profile name when it had one (display).
	DeviceName string     `json:"device_name,omitempty"`
	Since      time.Time  `json:"since"`
	Until      *time.Time `json:"until"` // nil: until resumed (or, with PendingFor, until the clock is trusted)
	// PendingFor is the duration of a --for pause made while the clock was
	// not trusted: it starts counting only once the clock is trusted.
	PendingFor Duration `json:"pending_for,omitempty"`
	By         string   `json:"by"` // who or which command: "famguard pause alice --for 30m"
}

// Grant is extra time: the child is online until Until whatever the schedule
// or the budget say.
type Grant struct {
	Child string    `json:"child"`
	Since time.Time `json:"since"`
	Until time.Time `json:"until"`
	By    string    `json:"by"`
}

// Extra is budget added (or taken away) for one local day only.
type Extra struct {
	Day     string   `json:"day"` // YYYY-MM-DD in the family's zone
	Minutes int      `json:"minutes"`
	By      []string `json:"by,omitempty"`
}

// Usage is the counted minutes of one child on one local day.
type Usage struct {
	Day     string `json:"day"`
	Minutes int    `json:"minutes"`
	// Recent is a bit per minute for the last 64 minutes (bit 0 = the last
	// counted minute slot, at RecentAt), kept to project when a budget runs out.
	// Not persisted: after a restart the projection starts afresh, and the
	// files change only when minutes count.
	Recent   uint64    `json:"-"`
	RecentAt time.Time `json:"-"`
}

// State is everything the overrides hold. The zero value is empty and usable.
type State struct {
	Pauses []Pause          `json:"pauses"`
	Grants []Grant          `json:"grants"`
	Extras map[string]Extra `json:"extras"` // child → today's extra budget
	Usage  map[string]Usage `json:"usage"`  // child → today's usage
}

// Duration is a time.Duration written as "30m" in JSON.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(`"` + policy.FormatMinutes(time.Duration(d)) + `"`), nil
}

func (d *Duration) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Error is a refused request, with a protocol code (agent/control) and a
// message for a parent. Nothing was changed when one is returned.
type Error struct {
	Code  string
	Field string
	Msg   string
}

func (e *Error) Error() string      { return e.Msg }
func (e *Error) ErrorCode() string  { return e.Code }
func (e *Error) ErrorField() string { return e.Field }

func fail(code, field, format string, args ...any) *Error {
	return &Error{Code: code, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Error codes (documented in agent/control/PROTOCOL.md).
const (
	CodeUnknownChild   = "unknown-child"
	CodeUnknownDevice  = "unknown-device"
	CodeBadDuration    = "bad-duration"
	CodeBadTime        = "bad-time"
	CodeInPast         = "in-the-past"
	CodeClockUntrusted = "clock-untrusted"
	CodeNotPaused      = "not-paused"
	CodeNoGrant        = "no-grant"
	CodeNoBudget       = "no-budget"
	CodeBadArgs        = "bad-args"
)

// Now is the clock as the caller knows it: the instant, the family's zone
// and whether the instant can be believed.
type Now struct {
	T       time.Time
	Loc     *time.Location
	Trusted bool
}

// Day is the local date of t in the family's zone, as YYYY-MM-DD.
func Day(t time.Time, loc *time.Location) string { return t.In(loc).Format("2006-01-02") }

// NextMidnight is the next start of a local day after t: exact across
// daylight-saving changes because it is computed in wall-clock terms.
func NextMidnight(t time.Time, loc *time.Location) time.Time {
	l := t.In(loc)
	return time.Date(l.Year(), l.Month(), l.Day()+1, 0, 0, 0, 0, loc)
}

// ParseDuration reads a pause or grant duration ("30m", "1h30m", "2h") and
// refuses zero, negative and over-7-day ones.
func ParseDuration(field, s string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fail(CodeBadDuration, field, "%q is not a duration: write it like 30m, 1h30m or 2h", s)
	}
	switch {
	case d <= 0:
		return 0, fail(CodeBadDuration, field, "%s: a duration must be more than zero, like 30m", s)
	case d > MaxDuration:
		return 0, fail(CodeBadDuration, field, "%s is more than 7 days; for standing rules edit the profile (schedules), or pause without a duration and resume later", s)
	case d < time.Minute:
		return 0, fail(CodeBadDuration, field, "%s is less than a minute; write at least 1m", s)
	}
	return d, nil
}

// ParseUntil reads --until: "19:30" (today, in the family's zone),
// "tomorrow 07:00", "2026-11-27 07:00" or an RFC 3339 instant. It must lie
// in the future and at most 7 days ahead.
func ParseUntil(s string, now Now) (time.Time, error) {
	if !now.Trusted {
		return time.Time{}, fail(CodeClockUntrusted, "until", "the router's clock is not synchronised yet (no NTP answer since boot), so --until %s cannot be placed in time; pause without --until (or with --for) and resume later", s)
	}
	s = strings.TrimSpace(s)
	l := now.T.In(now.Loc)
	var t time.Time
	hhmm := func(v string, y int, m time.Month, d int) (time.Time, bool) {
		hm, err := time.Parse("15:04", v)
		if err != nil {
			return time.Time{}, false
		}
		return time.Date(y, m, d, hm.Hour(), hm.Minute(), 0, 0, now.Loc), true
	}
	var ok bool
	switch {
	case strings.HasPrefix(s, "tomorrow "):
		t, ok = hhmm(strings.TrimPrefix(s, "tomorrow "), l.Year(), l.Month(), l.Day()+1)
	case len(s) <= 5:
		t, ok = hhmm(s, l.Year(), l.Month(), l.Day())
		if ok && !t.After(now.T) {
			return time.Time{}, fail(CodeInPast, "until", "%s has already passed today (it is %s); for tomorrow write --until \"tomorrow %s\"", s, l.Format("15:04"), s)
		}
	default:
		var err error
		if t, err = time.ParseInLocation("2006-01-02 15:04", s, now.Loc); err == nil {
			ok = true
		} else if t, err = time.Parse(time.RFC3339, s); err == nil {
			ok = true
		}
	}
	if !ok {
		return time.Time{}, fail(CodeBadTime, "until", "%q is not a time: write 19:30, \"tomorrow 07:00\" or \"2026-11-27 07:00\" (the family's zone, %s)", s, now.Loc)
	}
	if !t.After(now.T) {
		return time.Time{}, fail(CodeInPast, "until", "%s is in the past (it is %s)", t.In(now.Loc).Format("Mon 2006-01-02 15:04"), l.Format("Mon 2006-01-02 15:04"))
	}
	if t.Sub(now.T) > MaxDuration {
		return time.Time{}, fail(CodeBadDuration, "until", "%s is more than 7 days ahead; for standing rules edit the profile", t.In(now.Loc).Format("Mon 2006-01-02 15:04"))
	}
	return t, nil
}

// Target is what a pause or resume names: a child, or one device by MAC or
// by its profile name.
type Target struct {
	Child      string
	Device     string // MAC, "" for the whole child
	DeviceName string
}

func (t Target) String() string {
	if t.Device == "" {
		return t.Child
	}
	if t.DeviceName != "" {
		return fmt.Sprintf("%s (%s, %s)", t.DeviceName, t.Child, t.Device)
	}
	return fmt.Sprintf("%s's device %s", t.Child, t.Device)
}

// Resolve finds a child (by name) or a device (by MAC or profile name).
func Resolve(pol *policy.Policy, child, device string) (Target, error) {
	if (child == "") == (device == "") {
		return Target{}, fail(CodeBadArgs, "child", "name either a child or a device")
	}
	if child != "" {
		if _, ok := findChild(pol, child); !ok {
			return Target{}, fail(CodeUnknownChild, "child", "there is no child named %q in the profiles (children: %s)", child, childNames(pol))
		}
		return Target{Child: child}, nil
	}
	want := strings.ToLower(strings.TrimSpace(device))
	var found []Target
	for _, c := range pol.Children {
		for _, d := range c.Devices {
			if d.MAC == want || (d.Name != "" && strings.EqualFold(d.Name, device)) {
				found = append(found, Target{Child: c.Name, Device: d.MAC, DeviceName: d.Name})
			}
		}
	}
	switch len(found) {
	case 0:
		return Target{}, fail(CodeUnknownDevice, "device", "no child's device has the MAC address or name %q (see `famguard status` for the devices)", device)
	case 1:
		return found[0], nil
	}
	return Target{}, fail(CodeUnknownDevice, "device", "%q names %d devices; use the MAC address instead", device, len(found))
}

func findChild(pol *policy.Policy, name string) (policy.Child, bool) {
	for _, c := range pol.Children {
		if c.Name == name {
			return c, true
		}
	}
	return policy.Child{}, false
}

func childNames(pol *policy.Policy) string {
	var n []string
	for _, c := range pol.Children {
		n = append(n, c.Name)
	}
	if len(n) == 0 {
		return "none defined"
	}
	return strings.Join(n, ", ")
}

// CleanBy makes the "who/which command" text safe to show: printable, one
// line, at most 120 characters.
func CleanBy(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, strings.TrimSpace(s))
	if r := []rune(s); len(r) > 120 {
		s = string(r[:117]) + "..."
	}
	return s
}

// PauseArgs is a pause request, resolved against the policy by Pause.
type PauseArgs struct {
	Target Target
	For    time.Duration // 0: no duration
	Until  time.Time     // zero: none
	By     string
}

// Pause starts (or replaces) a pause. Only one pause per target: a new one
// replaces the old, so "pause alice --for 1h" after "--for 10m" means an
// hour from now.
func (s *State) Pause(a PauseArgs, now Now) (Pause, error) {
	if a.For != 0 && !a.Until.IsZero() {
		return Pause{}, fail(CodeBadArgs, "for", "give either a duration (--for) or an end time (--until), not both")
	}
	p := Pause{Child: a.Target.Child, Device: a.Target.Device, DeviceName: a.Target.DeviceName, Since: now.T, By: CleanBy(a.By)}
	switch {
	case a.For != 0 && !now.Trusted:
		p.PendingFor = Duration(a.For)
	case a.For != 0:
		u := now.T.Add(a.For)
		p.Until = &u
	case !a.Until.IsZero():
		u := a.Until
		p.Until = &u
	}
	out := s.Pauses[:0:0]
	for _, q := range s.Pauses {
		if q.Child == p.Child && q.Device == p.Device {
			continue
		}
		out = append(out, q)
	}
	s.Pauses = append(out, p)
	s.sortPauses()
	return p, nil
}

func (s *State) sortPauses() {
	sort.Slice(s.Pauses, func(i, j int) bool {
		a, b := s.Pauses[i], s.Pauses[j]
		if a.Child != b.Child {
			return a.Child < b.Child
		}
		return a.Device < b.Device
	})
}

// Resume lifts the pause of a target. Resuming a child lifts its own pause
// and every pause of one of its devices. It returns what was lifted.
func (s *State) Resume(t Target) ([]Pause, error) {
	var kept, lifted []Pause
	for _, p := range s.Pauses {
		if p.Child == t.Child && (t.Device == "" || p.Device == t.Device) {
			lifted = append(lifted, p)
			continue
		}
		kept = append(kept, p)
	}
	if len(lifted) == 0 {
		for _, p := range s.Pauses {
			if p.Child == t.Child && p.Device == "" {
				return nil, fail(CodeNotPaused, "device", "%s is paused with all of %s's devices; resume %s (all of them), or pause the others one by one", t, t.Child, t.Child)
			}
		}
		return nil, fail(CodeNotPaused, "child", "%s is not paused; nothing changed", t)
	}
	s.Pauses = kept
	return lifted, nil
}

// GrantArgs is extra time: For from now, or (Budget != 0) minutes added to
// today's budget.
type GrantArgs struct {
	Child  string
	For    time.Duration
	Budget time.Duration // may be negative (budget adjust)
	By     string
}

// Grant gives extra time. A new grant replaces the child's current one (it
// then ends For from now); budget extra adds up over the day.
func (s *State) Grant(pol *policy.Policy, a GrantArgs, now Now) (any, error) {
	c, ok := findChild(pol, a.Child)
	if !ok {
		return nil, fail(CodeUnknownChild, "child", "there is no child named %q in the profiles (children: %s)", a.Child, childNames(pol))
	}
	if (a.For == 0) == (a.Budget == 0) {
		return nil, fail(CodeBadArgs, "for", "give either a duration (grant %s 30m) or a budget change (--budget +30m)", a.Child)
	}
	if a.Budget != 0 {
		if c.Budget == nil {
			return nil, fail(CodeNoBudget, "budget", "%s has no daily budget in the profiles, so there is nothing to add to; use extra time instead (grant %s 30m)", a.Child, a.Child)
		}
		if a.Budget%time.Minute != 0 || a.Budget > 24*time.Hour || a.Budget < -24*time.Hour {
			return nil, fail(CodeBadDuration, "budget", "%s: a budget change is whole minutes, at most 24h either way, like +30m", a.Budget)
		}
		day := s.day(a.Child, now)
		e := s.Extras[a.Child]
		if e.Day != day {
			e = Extra{Day: day}
		}
		e.Minutes += int(a.Budget / time.Minute)
		e.By = append(e.By, CleanBy(a.By))
		if len(e.By) > 8 {
			e.By = e.By[len(e.By)-8:]
		}
		if s.Extras == nil {
			s.Extras = map[string]Extra{}
		}
		s.Extras[a.Child] = e
		return e, nil
	}
	if !now.Trusted {
		return nil, fail(CodeClockUntrusted, "for", "the router's clock is not synchronised yet (no NTP answer since boot), so extra time could not end on time; try again once it is (famguard status shows it)")
	}
	g := Grant{Child: a.Child, Since: now.T, Until: now.T.Add(a.For), By: CleanBy(a.By)}
	out := s.Grants[:0:0]
	for _, q := range s.Grants {
		if q.Child != g.Child {
			out = append(out, q)
		}
	}
	s.Grants = append(out, g)
	sort.Slice(s.Grants, func(i, j int) bool { return s.Grants[i].Child < s.Grants[j].Child })
	return g, nil
}

// EndGrant cancels a child's extra time.
func (s *State) EndGrant(child string) (Grant, error) {
	for i, g := range s.Grants {
		if g.Child == child {
			s.Grants = append(s.Grants[:i:i], s.Grants[i+1:]...)
			return g, nil
		}
	}
	return Grant{}, fail(CodeNoGrant, "child", "%s has no extra time running; nothing changed", child)
}

// day is the budget day for child: the local date when the clock is
// trusted. Before that the day of the last usage record is kept (an
// untrusted clock never starts a new day), or today's date by the clock if
// there is none.
func (s *State) day(child string, now Now) string {
	today := Day(now.T, now.Loc)
	u, ok := s.Usage[child]
	if !ok {
		return today
	}
	if !now.Trusted || today < u.Day {
		// A clock stepped back to an earlier day never restarts a budget.
		return u.Day
	}
	return today
}

// ClockTrusted starts the pending --for pauses made while the clock was
// untrusted: they last their full duration from now.
func (s *State) ClockTrusted(now time.Time) bool {
	changed := false
	for i, p := range s.Pauses {
		if p.PendingFor != 0 && p.Until == nil {
			u := now.Add(time.Duration(p.PendingFor))
			s.Pauses[i].Until, s.Pauses[i].PendingFor = &u, 0
			changed = true
		}
	}
	return changed
}

// Expire removes pauses and grants that have ended (only with a trusted
// clock) and returns them, for the log.
func (s *State) Expire(now Now) (pauses []Pause, grants []Grant) {
	if !now.Trusted {
		return nil, nil
	}
	keptP := s.Pauses[:0:0]
	for _, p := range s.Pauses {
		if p.Until != nil && !now.T.Before(*p.Until) {
			pauses = append(pauses, p)
			continue
		}
		keptP = append(keptP, p)
	}
	keptG := s.Grants[:0:0]
	for _, g := range s.Grants {
		if !now.T.Before(g.Until) {
			grants = append(grants, g)
			continue
		}
		keptG = append(keptG, g)
	}
	s.Pauses, s.Grants = keptP, keptG
	return pauses, grants
}

// Prune drops what belongs to children or devices the policy no longer has
// and returns a line per dropped override, for the log.
func (s *State) Prune(pol *policy.Policy) []string {
	children := map[string]policy.Child{}
	macs := map[string]bool{}
	for _, c := range pol.Children {
		children[c.Name] = c
		for _, d := range c.Devices {
			macs[c.Name+"/"+d.MAC] = true
		}
	}
	var dropped []string
	keptP := s.Pauses[:0:0]
	for _, p := range s.Pauses {
		_, ok := children[p.Child]
		if ok && (p.Device == "" || macs[p.Child+"/"+p.Device]) {
			keptP = append(keptP, p)
			continue
		}
		dropped = append(dropped, fmt.Sprintf("pause of %s (by %s) dropped: no longer in the profiles", Target{Child: p.Child, Device: p.Device, DeviceName: p.DeviceName}, p.By))
	}
	keptG := s.Grants[:0:0]
	for _, g := range s.Grants {
		if _, ok := children[g.Child]; ok {
			keptG = append(keptG, g)
			continue
		}
		dropped = append(dropped, fmt.Sprintf("extra time of %s (by %s) dropped: no longer in the profiles", g.Child, g.By))
	}
	s.Pauses, s.Grants = keptP, keptG
	for c := range s.Extras {
		if _, ok := children[c]; !ok {
			delete(s.Extras, c)
			dropped = append(dropped, fmt.Sprintf("budget extra of %s dropped: no longer in the profiles", c))
		}
	}
	for c := range s.Usage {
		if _, ok := children[c]; !ok {
			delete(s.Usage, c)
		}
	}
	return dropped
}
