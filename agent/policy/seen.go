package policy

// Evaluating devices that are not a child's: trusted devices and unknown
// devices seen on the LAN.
//
// Why through the children's evaluator: an unknown device "like alice" must
// be exactly as restricted as Alice's own devices, whether the clock is
// trusted (Evaluate) or not yet (EvaluateUnsynced with its boot policy). So
// EvaluateSeen adds each such MAC as a device of that child to a copy of the
// policy, lets the evaluator of the moment compute it like any of the
// child's devices, and only then labels the row as an unknown device.

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Kinds of DeviceState rows.
const (
	KindChild   = ""        // a child's device (listed, or assigned by famguard assign)
	KindTrusted = "trusted" // a parent's device: never restricted
	KindUnknown = "unknown" // in no list: the unknown-device policy applies
)

// Evaluator computes the children's device states of a policy: Evaluate at
// an instant, or EvaluateUnsynced under a boot policy.
type Evaluator func(*Policy) []DeviceState

// At is the Evaluator of an instant in a zone.
func At(at time.Time, loc *time.Location) Evaluator {
	return func(p *Policy) []DeviceState { return p.Evaluate(at, loc) }
}

// EvaluateSeen is every device's state: the children's devices (as eval
// computes them, in its order), then every trusted device, then a row for
// each MAC in seen that no child lists and that is not trusted, under the
// unknown-device policy. seen is what is on the LAN (MACs, canonical form);
// duplicates and listed MACs in it are ignored.
func (p *Policy) EvaluateSeen(seen []string, eval Evaluator) []DeviceState {
	listed := map[string]bool{}
	for _, c := range p.Children {
		for _, d := range c.Devices {
			listed[d.MAC] = true
		}
	}
	var trusted []DeviceState
	for _, d := range sortedDevices(p.Trusted) {
		listed[d.MAC] = true
		trusted = append(trusted, DeviceState{MAC: d.MAC, Device: d.Name, Kind: KindTrusted, Online: true,
			Reason: "trusted device: never restricted", BlockedCategories: []string{}, ActiveWindows: []string{}, Randomized: IsRandomized(d.MAC)})
	}
	var unknown []string
	for _, mac := range seen {
		if !listed[mac] {
			listed[mac] = true
			unknown = append(unknown, mac)
		}
	}
	sort.Strings(unknown)
	rules := make(map[string]UnknownRule, len(unknown))
	for _, mac := range unknown {
		rules[mac] = p.UnknownRuleFor(mac)
	}
	var out, unknownRows []DeviceState
	for _, s := range p.evalLike(rules, eval) {
		if s.Kind == KindUnknown {
			unknownRows = append(unknownRows, s)
		} else {
			s.Randomized = IsRandomized(s.MAC)
			out = append(out, s)
		}
	}
	out = append(out, trusted...)
	for _, mac := range unknown {
		if r := rules[mac]; r.Action != UnknownLike { // those came from evalLike
			unknownRows = append(unknownRows, unknownState(mac, r))
		}
	}
	sort.SliceStable(unknownRows, func(i, j int) bool { return unknownRows[i].MAC < unknownRows[j].MAC })
	return append(out, unknownRows...)
}

// UnknownClasses is what applies to an unknown device not seen yet: one row
// (MAC empty) for unknown_devices and, when randomized_devices differs, one
// for randomised MACs. `famguard plan` shows them; the dataplane's unknown
// class follows the first.
func (p *Policy) UnknownClasses(eval Evaluator) []DeviceState {
	// The all-zero MAC is never a device (the loader refuses it), so it can
	// stand for "any unknown device" without colliding with a real one.
	const anyMAC = "00:00:00:00:00:00"
	one := func(r UnknownRule, name string, randomized bool) DeviceState {
		var s DeviceState
		if r.Action == UnknownLike {
			for _, row := range p.evalLike(map[string]UnknownRule{anyMAC: r}, eval) {
				if row.MAC == anyMAC {
					s = row
				}
			}
		} else {
			s = unknownState(anyMAC, r)
		}
		s.MAC, s.Device, s.Randomized = "", name, randomized
		s.Reason = strings.ReplaceAll(s.Reason, anyMAC, "MAC")
		return s
	}
	u, r := p.UnknownDevices(), p.RandomizedDevices()
	out := []DeviceState{one(u, "any other device", false)}
	if r != u {
		out = append(out, one(r, "any other device with a randomised MAC", true))
	}
	return out
}

// evalLike evaluates the policy with each MAC of like whose rule is
// UnknownLike added to that child's devices, and labels those rows.
func (p *Policy) evalLike(like map[string]UnknownRule, eval Evaluator) []DeviceState {
	q := *p
	q.Children = append([]Child(nil), p.Children...)
	extra := map[string]UnknownRule{}
	for mac, r := range like {
		if r.Action != UnknownLike {
			continue
		}
		for i := range q.Children {
			if q.Children[i].Name == r.Like {
				c := &q.Children[i]
				c.Devices = append(append([]Device(nil), c.Devices...), Device{MAC: mac})
				extra[mac] = r
			}
		}
	}
	out := eval(&q)
	for i := range out {
		r, ok := extra[out[i].MAC]
		if !ok {
			continue
		}
		s := &out[i]
		s.Kind, s.Randomized = KindUnknown, IsRandomized(s.MAC)
		s.Reason = fmt.Sprintf("unknown device, treated like %s (%s): %s; %s", r.Like, ruleKey(s.Randomized, r), s.Reason, assignHint(s.MAC))
	}
	return out
}

// unknownState is an unknown device's row under offline or allow.
func unknownState(mac string, r UnknownRule) DeviceState {
	s := DeviceState{MAC: mac, Kind: KindUnknown, Randomized: IsRandomized(mac), BlockedCategories: []string{}, ActiveWindows: []string{}}
	key := ruleKey(s.Randomized, r)
	switch r.Action {
	case UnknownAllow:
		s.Online = true
		s.Reason = fmt.Sprintf("unknown device: allowed (%s)", key)
	default:
		s.Reason = fmt.Sprintf("unknown device: offline until a parent assigns it (%s; %s)", key, assignHint(mac))
	}
	return s
}

// ruleKey names where a rule comes from, for reasons.
func ruleKey(randomized bool, r UnknownRule) string {
	if r.Default {
		if r.Action == UnknownAllow {
			return "the default while no child is defined"
		}
		return "the default once a child is defined; unknown_devices in a profile changes it"
	}
	if randomized {
		return "randomized_devices or unknown_devices: " + r.String()
	}
	return "unknown_devices: " + r.String()
}

// assignHint is the one command that takes a device out of the unknown
// policy.
func assignHint(mac string) string {
	return fmt.Sprintf("famguard assign %s CHILD|trusted", mac)
}

// Restricted lists the unknown devices in states that the unknown-device
// policy restricts (offline, or a child's rules), each with the commands
// that trust or assign it: what the log and `status` show after a load, so
// that an upgrade never silently cuts a household off.
func Restricted(states []DeviceState, children []Child) []string {
	var names []string
	for _, c := range children {
		names = append(names, c.Name)
	}
	var out []string
	for _, s := range states {
		if s.Kind != KindUnknown || s.MAC == "" || (s.Online && s.Child == "") {
			continue // allowed, or a class row
		}
		what := "offline"
		if s.Child != "" {
			what = "under " + s.Child + "'s rules"
		}
		label := s.MAC
		if s.Device != "" {
			label += " (" + s.Device + ")"
		}
		msg := fmt.Sprintf("unknown device %s is %s: if it is a parent's, run `famguard assign %s trusted`", label, what, s.MAC)
		switch len(names) {
		case 0:
		case 1:
			msg += fmt.Sprintf("; if it is %s's, `famguard assign %s %s`", names[0], s.MAC, names[0])
		default:
			msg += fmt.Sprintf("; if it is a child's, `famguard assign %s CHILD` (%s)", s.MAC, strings.Join(names, ", "))
		}
		out = append(out, msg)
	}
	return out
}
