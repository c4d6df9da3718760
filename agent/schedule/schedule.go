// Package schedule is the pure time engine behind famguard's per-device
// schedules: weekly windows written as wall-clock times in the family's zone.
//
// Semantics (these are the contract the rest of the agent and the README rely on):
//   - A window is active on the wall-clock interval [From, To) of each day in
//     Days. To <= From means the window crosses midnight and the whole window
//     belongs to the day it starts on: Thu 21:00–07:00 covers Friday 06:30 but a
//     window listing only "fri" does not cover Friday 06:30 from Thursday.
//   - Evaluation compares wall-clock time in the zone, never UTC offsets, so a
//     daylight-saving change is exact: a boundary that falls into a
//     spring-forward gap takes effect at the instant the clock jumps past it; a
//     wall time that occurs twice (autumn) is inside the window both times.
//   - Several windows may overlap; the state is the union of active windows.
//
// Nothing here reads the clock or the file system: callers pass instants.
package schedule

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Days is a set of weekdays: bit i set means time.Weekday(i) is included.
type Days uint8

// AllDays is every day of the week.
const AllDays Days = 0x7f

var dayNames = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

func dayIndex(s string) (time.Weekday, bool) {
	for i, n := range dayNames {
		if s == n {
			return time.Weekday(i), true
		}
	}
	return 0, false
}

const daysHelp = "use mon, tue, wed, thu, fri, sat, sun, a range like mon-fri, weekdays, weekends or daily"

// ParseDays reads a profile's `days` list: single days, ranges (a range may
// wrap: fri-mon is Fri, Sat, Sun, Mon), "weekdays", "weekends" and "daily".
func ParseDays(items []string) (Days, error) {
	if len(items) == 0 {
		return 0, errors.New("no days given: " + daysHelp)
	}
	var d Days
	for _, raw := range items {
		item := strings.ToLower(strings.TrimSpace(raw))
		switch item {
		case "daily", "everyday", "all":
			d |= AllDays
			continue
		case "weekdays":
			d |= 0x3e
			continue
		case "weekends":
			d |= 0x41
			continue
		}
		from, to, isRange := strings.Cut(item, "-")
		a, ok := dayIndex(from)
		if !ok {
			return 0, fmt.Errorf("unknown day %q: %s", raw, daysHelp)
		}
		if !isRange {
			d |= 1 << a
			continue
		}
		b, ok := dayIndex(to)
		if !ok {
			return 0, fmt.Errorf("unknown day %q in range %q: %s", to, raw, daysHelp)
		}
		for w := a; ; w = (w + 1) % 7 {
			d |= 1 << w
			if w == b {
				break
			}
		}
	}
	return d, nil
}

// Has reports whether weekday w is in the set.
func (d Days) Has(w time.Weekday) bool { return d&(1<<w) != 0 }

// String is a compact human form: "daily", "Mon–Fri", "Sun–Thu", "Sat, Sun".
func (d Days) String() string {
	if d&AllDays == AllDays {
		return "daily"
	}
	if d == 0 {
		return "never"
	}
	// Find a start day that is in the set and whose predecessor is not, so
	// a wrapping run such as Sun–Thu or Fri–Mon is printed as one range.
	start := time.Weekday(0)
	for i := 0; i < 7; i++ {
		w := time.Weekday(i)
		if d.Has(w) && !d.Has((w+6)%7) {
			start = w
			break
		}
	}
	var parts []string
	for i := 0; i < 7; {
		w := (start + time.Weekday(i)) % 7
		if !d.Has(w) {
			i++
			continue
		}
		j := i
		for j+1 < 7 && d.Has((start+time.Weekday(j+1))%7) {
			j++
		}
		end := (start + time.Weekday(j)) % 7
		switch {
		case j == i:
			parts = append(parts, title(w))
		case j == i+1:
			parts = append(parts, title(w), title(end))
		default:
			parts = append(parts, title(w)+"–"+title(end))
		}
		i = j + 1
	}
	return strings.Join(parts, ", ")
}

func title(w time.Weekday) string { return w.String()[:3] }

// ParseClock reads "HH:MM" (or "H:MM") as minutes since midnight, 0–1440;
// "24:00" is the end of the day.
func ParseClock(s string) (int, error) {
	h, m, ok := strings.Cut(strings.TrimSpace(s), ":")
	bad := fmt.Errorf("expected a time like \"21:00\" (HH:MM, 00:00–24:00), got %q", s)
	if !ok || len(m) != 2 || len(h) < 1 || len(h) > 2 {
		return 0, bad
	}
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if err1 != nil || err2 != nil || hh < 0 || mm < 0 || mm > 59 || hh > 24 || (hh == 24 && mm != 0) {
		return 0, bad
	}
	return hh*60 + mm, nil
}

// FormatClock prints minutes since midnight as HH:MM.
func FormatClock(m int) string { return fmt.Sprintf("%02d:%02d", m/60, m%60) }

// Window is one schedule entry of a child.
type Window struct {
	Name     string
	Days     Days
	From, To int // minutes since midnight; To <= From crosses midnight
	Offline  bool
	Block    []string // categories blocked inside the window
}

// Validate checks what a parser cannot: a window needs days and a length.
func (w Window) Validate() error {
	switch {
	case w.Days == 0:
		return errors.New("no days: " + daysHelp)
	case w.From < 0 || w.From >= 1440:
		return fmt.Errorf("from must be between 00:00 and 23:59, got %s", FormatClock(w.From))
	case w.To < 0 || w.To > 1440:
		return fmt.Errorf("to must be between 00:00 and 24:00, got %s", FormatClock(w.To))
	case w.From == w.To:
		return fmt.Errorf("from and to are both %s: a window needs a length (for the whole day use from \"00:00\" to \"24:00\")", FormatClock(w.From))
	}
	return nil
}

// crosses reports whether the window runs past midnight into the next day.
func (w Window) crosses() bool { return w.To <= w.From }

// ActiveAt reports whether the window covers the wall-clock time of t (t is
// expected in the family's zone). Only the wall clock matters, so daylight
// saving changes cannot shift a window.
func (w Window) ActiveAt(t time.Time) bool {
	min := t.Hour()*60 + t.Minute()
	day := t.Weekday()
	if !w.crosses() {
		return w.Days.Has(day) && min >= w.From && min < w.To
	}
	// Evening part belongs to today; the morning part to yesterday's window.
	if w.Days.Has(day) && min >= w.From {
		return true
	}
	return w.Days.Has((day+6)%7) && min < w.To
}

// Active returns the indices of the windows active at t.
func Active(ws []Window, t time.Time) []int {
	var out []int
	for i, w := range ws {
		if w.ActiveAt(t) {
			out = append(out, i)
		}
	}
	return out
}

func sameSet(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// NextChange returns the first instant strictly after t at which the set of
// active windows differs from the set at t, looking at most horizon ahead.
//
// The set can only change where the wall clock crosses a window boundary:
// at a boundary's wall time on some day (mapped to an instant with each UTC
// offset in use around it), or at a zone transition, where the wall clock
// jumps (over a spring-forward gap, or back over an autumn hour). So those
// candidates are collected, sorted, and evaluated in order.
func NextChange(ws []Window, t time.Time, horizon time.Duration) (time.Time, bool) {
	if len(ws) == 0 {
		return time.Time{}, false
	}
	loc := t.Location()
	end := t.Add(horizon)
	var cands []time.Time
	add := func(c time.Time) {
		if c.After(t) && !c.After(end) {
			cands = append(cands, c)
		}
	}
	// Boundaries: every window's from/to on each day in range.
	y, m, d := t.Date()
	days := int(horizon/(24*time.Hour)) + 2
	for i := -1; i <= days; i++ {
		for _, w := range ws {
			for _, b := range []int{w.From, w.To} {
				for _, c := range wallInstants(y, m, d+i, b, loc) {
					add(c)
				}
			}
		}
	}
	// Zone transitions in range.
	for c := t; c.Before(end); {
		_, zend := c.ZoneBounds()
		if zend.IsZero() {
			break
		}
		if !zend.After(c) {
			// On the last day of a leap year Go can report an end before
			// c for zones served by a POSIX rule (golang/go#81583): step
			// over that day an hour at a time instead of looping forever.
			zend = c.Add(time.Hour)
		}
		add(zend)
		c = zend
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].Before(cands[j]) })
	now := Active(ws, t)
	for _, c := range cands {
		if !sameSet(Active(ws, c.In(loc)), now) {
			return c.In(loc), true
		}
	}
	return time.Time{}, false
}

// wallInstants returns the instants at which the wall clock in loc shows
// minute-of-day `min` on the given date: none inside a spring-forward gap,
// two inside a repeated autumn hour.
func wallInstants(y int, m time.Month, d, min int, loc *time.Location) []time.Time {
	// The same wall time as if it were UTC; subtracting each candidate
	// offset gives the real instant, kept only if it reads back the same.
	naive := time.Date(y, m, d, 0, min, 0, 0, time.UTC)
	var out []time.Time
	seen := map[int]bool{}
	for _, probe := range []time.Duration{-26 * time.Hour, 0, 26 * time.Hour} {
		_, off := naive.Add(probe).In(loc).Zone()
		if seen[off] {
			continue
		}
		seen[off] = true
		c := naive.Add(-time.Duration(off) * time.Second).In(loc)
		cy, cm, cd := c.Date()
		ny, nm, nd := naive.Date()
		if cy == ny && cm == nm && cd == nd && c.Hour()*60+c.Minute() == naive.Hour()*60+naive.Minute() {
			out = append(out, c)
		}
	}
	return out
}

// Describe is the window in words: "Sun–Thu 21:00–07:00".
func (w Window) Describe() string {
	return fmt.Sprintf("%s %s–%s", w.Days, FormatClock(w.From), FormatClock(w.To))
}
