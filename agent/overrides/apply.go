package overrides

import (
	"fmt"
	"time"

	"github.com/famguard/famguard/agent/policy"
)

// ChildStatus is one child's overrides as status, plan and the control
// protocol show them. Field names are a contract: add, never rename.
type ChildStatus struct {
	Child        string        `json:"child"`
	Paused       *Pause        `json:"paused"`        // the pause of all the child's devices, if any
	DevicePauses []Pause       `json:"device_pauses"` // pauses of single devices
	Grant        *Grant        `json:"grant"`         // extra time running now
	Budget       *BudgetStatus `json:"budget"`        // null: no budget today
	// Offline is true when every device of the child is offline now, and
	// Why says why (the strongest reason).
	Offline bool   `json:"offline"`
	Why     string `json:"why"`
}

// BudgetStatus is a child's budget on one local day.
type BudgetStatus struct {
	// Minutes are whole minutes (numbers, for scripts).
	Day       string    `json:"day"`           // YYYY-MM-DD, family's zone
	Source    string    `json:"source"`        // the profile's entry: "mon-fri: 2h"
	Base      int       `json:"base_minutes"`  // from the profile
	Extra     int       `json:"extra_minutes"` // added today (grant --budget; may be negative)
	Total     int       `json:"total_minutes"`
	Used      int       `json:"used_minutes"`
	Left      int       `json:"left_minutes"` // 0 when used up (never negative)
	Exhausted bool      `json:"exhausted"`
	ResetsAt  time.Time `json:"resets_at,omitzero"` // next local midnight (zero while the clock is untrusted)
	// InUse: a minute counted within the last two minutes.
	InUse bool `json:"in_use"`
	// RecentMinutes is how many of the last 60 minutes counted.
	RecentMinutes int `json:"recent_minutes"`
	// RunsOutAt is when the budget runs out if the child keeps using it
	// without a break from now (only while in use): the earliest it can.
	RunsOutAt *time.Time `json:"runs_out_at,omitempty"`
	// RunsOutAtRecentRate is the same at the rate of the last 60 minutes.
	RunsOutAtRecentRate *time.Time `json:"runs_out_at_recent_rate,omitempty"`
}

func (b *BudgetStatus) left() time.Duration { return time.Duration(b.Left) * time.Minute }

func mins(m int) string { return policy.FormatMinutes(time.Duration(m) * time.Minute) }

// pauseFor is the pause that applies to a device of child now, device
// pauses first (they name the device).
func (s *State) pauseFor(child, mac string, now Now) *Pause {
	var childPause *Pause
	for i := range s.Pauses {
		p := &s.Pauses[i]
		if p.Child != child || (p.Device != "" && p.Device != mac) {
			continue
		}
		if now.Trusted && p.Until != nil && !now.T.Before(*p.Until) {
			continue // ended (removed at the next Expire)
		}
		if p.Device != "" {
			return p
		}
		childPause = p
	}
	return childPause
}

// grantFor is the child's extra time running now. Never while the clock is
// untrusted: its end could not be kept.
func (s *State) grantFor(child string, now Now) *Grant {
	if !now.Trusted {
		return nil
	}
	for i := range s.Grants {
		g := &s.Grants[i]
		if g.Child == child && !now.T.Before(g.Since) && now.T.Before(g.Until) {
			return g
		}
	}
	return nil
}

// BudgetOf is a child's budget status now (nil: no budget today).
func (s *State) BudgetOf(c policy.Child, now Now) *BudgetStatus {
	if c.Budget == nil {
		return nil
	}
	day := s.day(c.Name, now)
	d, err := time.ParseInLocation("2006-01-02", day, now.Loc)
	if err != nil {
		return nil
	}
	base, ok := c.Budget.For(d.Weekday())
	if !ok {
		return nil
	}
	b := &BudgetStatus{Day: day, Source: c.Budget.Describe(d.Weekday()), Base: int(base / time.Minute)}
	if e, ok := s.Extras[c.Name]; ok && e.Day == day {
		b.Extra = e.Minutes
	}
	b.Total = max(b.Base+b.Extra, 0)
	if u, ok := s.Usage[c.Name]; ok && u.Day == day {
		b.Used = u.Minutes
		recent := u.recentAt(now.T)
		b.InUse = recent&3 != 0
		for i := 0; i < 60; i++ {
			if recent&(1<<i) != 0 {
				b.RecentMinutes++
			}
		}
	}
	b.Left = max(b.Total-b.Used, 0)
	b.Exhausted = b.Used >= b.Total
	if now.Trusted {
		b.ResetsAt = NextMidnight(now.T, now.Loc)
		if b.InUse && !b.Exhausted {
			t := now.T.Add(b.left())
			b.RunsOutAt = &t
			if b.RecentMinutes > 0 {
				r := now.T.Add(b.left() * 60 / time.Duration(b.RecentMinutes)).Truncate(time.Minute)
				b.RunsOutAtRecentRate = &r
			}
		}
	}
	return b
}

// Apply puts the overrides on top of the states the schedule (or the boot
// policy) gives, in the order the package comment sets out, and returns the
// new states and each child's status. Reasons name the override and the
// command that made it; Until is when the device's state next changes.
func (s *State) Apply(pol *policy.Policy, states []policy.DeviceState, now Now) ([]policy.DeviceState, []ChildStatus) {
	out := make([]policy.DeviceState, len(states))
	copy(out, states)
	var children []ChildStatus
	for _, c := range pol.Children {
		cs := ChildStatus{Child: c.Name, DevicePauses: []Pause{}, Budget: s.BudgetOf(c, now), Grant: s.grantFor(c.Name, now)}
		for _, p := range s.Pauses {
			if p.Child != c.Name {
				continue
			}
			if p.Device == "" {
				q := p
				cs.Paused = &q
			} else {
				cs.DevicePauses = append(cs.DevicePauses, p)
			}
		}
		devices, offline := 0, 0
		for i := range out {
			st := &out[i]
			if st.Child != c.Name {
				continue
			}
			devices++
			s.applyOne(st, cs.Budget, cs.Grant, s.pauseFor(c.Name, st.MAC, now), now)
			if !st.Online {
				offline++
				if cs.Why == "" {
					cs.Why = st.Reason
				}
			}
		}
		cs.Offline = devices > 0 && offline == devices
		if !cs.Offline {
			cs.Why = ""
		}
		children = append(children, cs)
	}
	return out, children
}

func (s *State) applyOne(st *policy.DeviceState, b *BudgetStatus, g *Grant, p *Pause, now Now) {
	switch {
	case p != nil:
		st.Online = false
		switch {
		case p.PendingFor != 0:
			st.Reason = fmt.Sprintf("paused by %s: for %s once the router's clock is synchronised", quoteBy(p.By), time.Duration(p.PendingFor))
			st.Until = nil
		case p.Until != nil:
			u := *p.Until
			st.Reason = fmt.Sprintf("paused by %s until %s", quoteBy(p.By), when(u, now))
			st.Until = &u
		default:
			st.Reason = fmt.Sprintf("paused by %s until resumed", quoteBy(p.By))
			st.Until = nil
		}
		st.ActiveWindows = append(st.ActiveWindows[:len(st.ActiveWindows):len(st.ActiveWindows)], "pause")
	case g != nil:
		u := g.Until
		otherwise := ""
		switch {
		case !st.Online:
			otherwise = st.Reason
		case b != nil && b.Exhausted:
			otherwise = budgetReason(st.Child, b, now)
		}
		if otherwise != "" {
			st.Reason = fmt.Sprintf("extra time granted by %s until %s (otherwise %s)", quoteBy(g.By), when(u, now), otherwise)
			st.Online = true
			st.Until = &u
		} else {
			st.Reason += fmt.Sprintf("; extra time until %s", when(u, now))
			if st.Until == nil || u.Before(*st.Until) {
				st.Until = &u
			}
		}
		st.ActiveWindows = append(st.ActiveWindows[:len(st.ActiveWindows):len(st.ActiveWindows)], "extra-time")
	case b != nil && b.Exhausted && st.Online:
		st.Online = false
		st.Until = nil
		if !b.ResetsAt.IsZero() {
			r := b.ResetsAt
			st.Until = &r
		}
		st.Reason = budgetReason(st.Child, b, now)
		st.ActiveWindows = append(st.ActiveWindows[:len(st.ActiveWindows):len(st.ActiveWindows)], "budget")
	case b != nil && st.Online:
		st.Reason += fmt.Sprintf("; budget %s of %s left today", mins(b.Left), mins(b.Total))
	}
}

func budgetReason(child string, b *BudgetStatus, now Now) string {
	again := "once the clock is synchronised and a new day has begun"
	if !b.ResetsAt.IsZero() {
		again = "at " + when(b.ResetsAt, now)
	}
	return fmt.Sprintf("daily budget used up: %s of %s used today (%s); online again %s, or with extra time (famguard grant %s 30m)",
		mins(b.Used), mins(b.Total), b.Source, again, child)
}

func quoteBy(by string) string {
	if by == "" {
		return "a parent"
	}
	return "`" + by + "`"
}

// when prints an instant for a reason: "19:30" today, "Fri 07:00" within a
// week, else the date.
func when(t time.Time, now Now) string {
	l, n := t.In(now.Loc), now.T.In(now.Loc)
	y1, m1, d1 := l.Date()
	y2, m2, d2 := n.Date()
	switch {
	case y1 == y2 && m1 == m2 && d1 == d2:
		return l.Format("15:04")
	case l.Sub(n) < 6*24*time.Hour:
		return l.Format("Mon 15:04")
	}
	return l.Format("2006-01-02 15:04")
}
