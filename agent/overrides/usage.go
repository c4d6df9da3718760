package overrides

import (
	"time"
)

// Budget accounting.
//
// A minute counts towards a child's budget when, in it, the child's devices
// together moved more than a threshold of bytes (both directions): real use
// (a video, a game, browsing) moves hundreds of kilobytes a minute, while a
// phone lying on the table (push notifications, keep-alives, a background
// sync check) moves a few kilobytes. DefaultThreshold sits between the two;
// `famguard run --budget-threshold` changes it.
//
// Minutes inside an offline window of the child, and minutes the whole
// child is paused, never count (whatever trickles through then is not the
// child's use). Minutes of extra time past a used-up budget do count: the
// budget shows them as used beyond the total.

// DefaultThreshold is the bytes per minute, both ways together, above which
// a minute counts: 20 KiB.
const DefaultThreshold = 20 << 10

// CountMinute records one accounting minute of a child ending at now:
// bytes moved by all its devices in it, and whether the minute may count at
// all (not in an offline window, not paused). It returns whether the minute
// was counted.
func (s *State) CountMinute(child string, bytes uint64, eligible bool, threshold uint64, now Now) (counted bool) {
	day := s.day(child, now)
	if s.Usage == nil {
		s.Usage = map[string]Usage{}
	}
	u := s.Usage[child]
	if u.Day != day {
		// A new local day (only ever forward: s.day never goes back).
		u = Usage{Day: day, Recent: u.Recent, RecentAt: u.RecentAt}
	}
	counted = eligible && bytes > threshold
	u.Recent = u.recentAt(now.T)
	if counted {
		u.Minutes++
		u.Recent |= 1
	}
	u.RecentAt = now.T.Truncate(time.Minute)
	s.Usage[child] = u
	return counted
}

// recentAt is the recent-minutes bitmask as seen at t: bit i is the minute
// slot i minutes before t's (bit 0: t's own slot).
func (u Usage) recentAt(t time.Time) uint64 {
	if u.RecentAt.IsZero() {
		return 0
	}
	gap := int(t.Truncate(time.Minute).Sub(u.RecentAt) / time.Minute)
	switch {
	case gap <= 0:
		return u.Recent
	case gap >= 64:
		return 0
	}
	return u.Recent << gap
}
