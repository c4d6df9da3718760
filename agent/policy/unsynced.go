package policy

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// What applies while the router's clock is not yet known to be right.
//
// Routers without a battery-backed clock boot with "now" set to the newest
// file date under /etc, which can be hours or days off until NTP answers. A
// schedule evaluated on that clock could open bedtime in the middle of the
// night. So until the clock is trusted the daemon does not evaluate the
// schedule; it applies a boot policy instead, computed here (pure, no clock,
// no files).

// BootPolicy says what applies until the clock is trusted.
type BootPolicy string

const (
	// BootSaved (the default): each device keeps the state it had when the
	// agent last knew the time (persisted before shutdown); a device with
	// no saved state is offline if its child has any offline window.
	BootSaved BootPolicy = "saved"
	// BootOffline: every device whose child has an offline window is
	// offline until the clock is trusted, whatever was saved.
	BootOffline BootPolicy = "offline"
	// BootSchedule trusts the clock from the start (routers with a
	// battery-backed clock): the schedule applies as the clock reads.
	BootSchedule BootPolicy = "schedule"
)

// ParseBootPolicy reads the --boot-policy flag or UCI option.
func ParseBootPolicy(s string) (BootPolicy, error) {
	switch BootPolicy(s) {
	case BootSaved, BootOffline, BootSchedule:
		return BootPolicy(s), nil
	}
	return "", fmt.Errorf("boot policy %q: use saved, offline or schedule", s)
}

// Saved is one device's state as persisted while the clock was trusted.
type Saved struct {
	Online     bool     `json:"online"`
	Categories []string `json:"blocked_categories"`
	Reason     string   `json:"reason"`
}

// SavedOf extracts what is persisted from evaluated states: the children's
// devices only. Trusted and unknown devices are not written (the file is on
// flash: guests coming and going must not wear it, nor leave their MACs
// there); an unknown device "like" a child gets the child's boot policy.
func SavedOf(states []DeviceState) map[string]Saved {
	out := make(map[string]Saved, len(states))
	for _, s := range states {
		if s.Kind != KindChild {
			continue
		}
		out[s.MAC] = Saved{Online: s.Online, Categories: s.BlockedCategories, Reason: s.Reason}
	}
	return out
}

// EvaluateUnsynced computes every device's state while the clock is not
// trusted, under boot policy bp (BootSaved or BootOffline; BootSchedule
// callers evaluate normally). savedAt is when saved was written (shown in
// reasons so a parent sees where the state came from).
//
// The child's always-blocked categories come from the current policy, so a
// profile edited while the clock is unknown still takes effect there. With
// no usable saved state the answer errs on the protective side: offline if
// any offline window exists, and every category any window blocks.
func (p *Policy) EvaluateUnsynced(bp BootPolicy, saved map[string]Saved, savedAt time.Time) []DeviceState {
	var out []DeviceState
	for _, c := range p.Children {
		always := map[string]bool{}
		for _, b := range c.Block {
			always[b] = true
		}
		anyWindow := map[string]bool{}
		var offlineWindows []string
		for _, w := range c.Schedules {
			if w.Offline {
				offlineWindows = append(offlineWindows, w.Name)
			}
			for _, b := range w.Block {
				anyWindow[b] = true
			}
		}
		for _, d := range sortedDevices(c.Devices) {
			st := DeviceState{MAC: d.MAC, Child: c.Name, Device: d.Name, ActiveWindows: []string{}, Decided: c.Decided}
			cats := map[string]bool{}
			for b := range always {
				cats[b] = true
			}
			if sv, ok := saved[d.MAC]; ok && bp == BootSaved {
				st.Online = sv.Online
				for _, b := range sv.Categories {
					cats[b] = true
				}
				st.Reason = fmt.Sprintf("%s: clock not yet synchronised, keeping the state saved %s (%s)",
					onOff(sv.Online), savedAt.UTC().Format(time.RFC3339), sv.Reason)
			} else {
				for b := range anyWindow {
					cats[b] = true
				}
				st.Online = len(offlineWindows) == 0
				why := "no saved state"
				if bp == BootOffline {
					why = "boot policy offline"
				}
				if st.Online {
					st.Reason = fmt.Sprintf("online: clock not yet synchronised (%s); no offline window", why)
				} else {
					st.Reason = fmt.Sprintf("offline: clock not yet synchronised (%s) and the child has offline windows (%s)",
						why, strings.Join(offlineWindows, ", "))
				}
				if len(anyWindow) > 0 {
					st.Reason += "; every window's categories blocked"
				}
			}
			st.Reason += "; the schedule applies once the time is known"
			st.BlockedCategories = sortedKeys(cats)
			out = append(out, st)
		}
	}
	return out
}

func onOff(online bool) string {
	if online {
		return "online"
	}
	return "offline"
}

func sortedDevices(ds []Device) []Device {
	out := append([]Device(nil), ds...)
	sort.Slice(out, func(i, j int) bool { return out[i].MAC < out[j].MAC })
	return out
}
