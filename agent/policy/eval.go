package policy

import (
	"fmt"
	"strings"
	"time"

	"github.com/famguard/famguard/agent/schedule"
)

// DeviceState is what the policy means for one device at one instant. It is
// the row of `famguard plan` and, with network facts added, of `status`.
type DeviceState struct {
	MAC               string     `json:"mac"`
	Child             string     `json:"child"`
	Device            string     `json:"device,omitempty"`
	Online            bool       `json:"online"`
	Reason            string     `json:"reason"`
	Until             *time.Time `json:"until"`
	BlockedCategories []string   `json:"blocked_categories"`
	ActiveWindows     []string   `json:"active_windows"`
	// Kind is "" for a child's device, KindTrusted or KindUnknown (then
	// Child, if set, is the child whose rules apply: unknown_devices: {like:
	// CHILD}). Randomized: the MAC is locally administered.
	Kind       string `json:"kind,omitempty"`
	Randomized bool   `json:"randomized,omitempty"`
	// Decided: which layer decided each of the child's settings (layer.go);
	// absent without an operator layer, defaults or floors.
	Decided map[string]string `json:"decided,omitempty"`
}

// Evaluate computes every device's state at `at` in the family's zone,
// sorted by child and MAC.
func (p *Policy) Evaluate(at time.Time, loc *time.Location) []DeviceState {
	t := at.In(loc)
	var out []DeviceState
	for _, c := range p.Children {
		active := schedule.Active(c.Schedules, t)
		offline := false
		cats := map[string]bool{}
		for _, b := range c.Block {
			cats[b] = true
		}
		var names, offWhy, blockWhy []string
		for _, i := range active {
			w := c.Schedules[i]
			names = append(names, w.Name)
			if w.Offline {
				offline = true
				offWhy = append(offWhy, fmt.Sprintf("%s (%s)", w.Name, w.Describe()))
			}
			for _, b := range w.Block {
				cats[b] = true
			}
			if len(w.Block) > 0 && !w.Offline {
				blockWhy = append(blockWhy, fmt.Sprintf("%s blocks %s (%s)", w.Name, strings.Join(w.Block, ", "), w.Describe()))
			}
		}
		var reason string
		switch {
		case offline:
			reason = "offline: " + strings.Join(offWhy, "; ")
		case len(blockWhy) > 0:
			reason = "online; " + strings.Join(blockWhy, "; ")
		case len(c.Schedules) == 0:
			reason = "online: no schedules"
		default:
			reason = "online: no schedule active"
		}
		if len(c.Block) > 0 {
			reason += "; always blocked: " + strings.Join(c.Block, ", ")
		}
		var until *time.Time
		if next, ok := schedule.NextChange(c.Schedules, t, Horizon); ok {
			until = &next
		}
		blocked := sortedKeys(cats)
		if names == nil {
			names = []string{}
		}
		for _, d := range sortedDevices(c.Devices) {
			out = append(out, DeviceState{
				MAC: d.MAC, Child: c.Name, Device: d.Name, Online: !offline, Reason: reason,
				Until: until, BlockedCategories: blocked, ActiveWindows: names, Decided: c.Decided,
			})
		}
	}
	return out
}

// NextChange is the earliest instant at which any device's state changes.
func NextChange(states []DeviceState) (time.Time, bool) {
	var best time.Time
	for _, s := range states {
		if s.Until != nil && (best.IsZero() || s.Until.Before(best)) {
			best = *s.Until
		}
	}
	return best, !best.IsZero()
}
