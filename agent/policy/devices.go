package policy

// Devices that are not a child's: the unknown-device policy, trusted
// devices and assignments.
//
// Why a policy for unknown devices at all: a child who turns on "private
// Wi-Fi address" (or forgets the network, or sets any MAC by hand) shows up
// as a device no profile lists. If such a device were free, every schedule
// and block would be one settings switch away. So a device that is in no
// child's list and not trusted gets the unknown-device policy:
//
//	unknown_devices: offline          # or allow, or {like: alice}
//	randomized_devices: {like: alice} # optional: for locally administered MACs
//	trusted:  [{mac: ..., name: "Mum's phone"}]
//	assigned: [{mac: ..., to: alice|trusted, name: ...}]  # famguard assign writes these
//
// The default, when no file sets unknown_devices, is offline as soon as at
// least one child is defined (a child's new MAC is never free; a parent adds
// their own devices once with `famguard assign MAC trusted`), and allow
// while no child is defined (a fresh install restricts nothing).
//
// `assigned:` entries are what `famguard assign` writes into the file it
// manages (profiles.d/famguard-assigned.yaml). They are validated like any
// other device and merged: an entry assigned to a child becomes one of that
// child's devices, one assigned to `trusted` a trusted device. `to: trusted`
// always means the trusted list (a child named "trusted" cannot be assigned
// to with it).

import (
	"fmt"
	"net"
	"strings"

	"gopkg.in/yaml.v3"
)

// UnknownAction is what an unknown-device policy does.
type UnknownAction string

const (
	UnknownUnset   UnknownAction = ""        // no file set it: the default applies
	UnknownOffline UnknownAction = "offline" // no internet until a parent assigns the device
	UnknownAllow   UnknownAction = "allow"   // unrestricted (famguard before issue 9)
	UnknownLike    UnknownAction = "like"    // the rules of the child named in Like
)

// UnknownRule is the policy for devices in no child's list and not trusted.
type UnknownRule struct {
	Action UnknownAction `json:"action"`
	Like   string        `json:"like,omitempty"` // the child, when Action is UnknownLike
	// Default is true when no profile chose the rule (set by the resolving
	// helpers, never by the parser).
	Default bool `json:"default,omitempty"`
}

// String is the rule as a profile writes it: offline, allow, like alice.
func (r UnknownRule) String() string {
	if r.Action == UnknownLike {
		return "like " + r.Like
	}
	if r.Action == UnknownUnset {
		return "unset"
	}
	return string(r.Action)
}

// Assignment is one `assigned:` entry.
type Assignment struct {
	MAC  string `json:"mac"`
	To   string `json:"to"` // a child's name, or AssignTrusted
	Name string `json:"name,omitempty"`
}

// AssignTrusted is the `to:` of an assignment to the trusted list.
const AssignTrusted = "trusted"

// UnknownDevices is the resolved unknown-device policy: what the profiles
// say, else the default (offline once a child is defined, else allow).
func (p *Policy) UnknownDevices() UnknownRule {
	if p.Unknown.Action != UnknownUnset {
		return p.Unknown
	}
	if len(p.Children) > 0 {
		return UnknownRule{Action: UnknownOffline, Default: true}
	}
	return UnknownRule{Action: UnknownAllow, Default: true}
}

// RandomizedDevices is the resolved policy for unknown devices with a
// locally administered (randomised) MAC: randomized_devices if a profile
// sets it, else whatever UnknownDevices says.
func (p *Policy) RandomizedDevices() UnknownRule {
	if p.Randomized.Action != UnknownUnset {
		return p.Randomized
	}
	return p.UnknownDevices()
}

// UnknownRuleFor is the rule that applies to an unknown device with this MAC.
func (p *Policy) UnknownRuleFor(mac string) UnknownRule {
	if IsRandomized(mac) {
		return p.RandomizedDevices()
	}
	return p.UnknownDevices()
}

// IsRandomized says whether a MAC is locally administered (bit 1 of the
// first octet): what phones and laptops use for "private Wi-Fi address",
// and what `ip link set address` usually makes up. Such a MAC says nothing
// about the hardware and can change at any time.
func IsRandomized(mac string) bool {
	hw, err := net.ParseMAC(mac)
	return err == nil && len(hw) > 0 && hw[0]&2 != 0
}

// NormalizeMAC returns the canonical form (lower case, colons) of a MAC a
// person typed, or an error saying what a MAC looks like. `famguard assign`
// uses it for its argument.
func NormalizeMAC(s string) (string, error) { return parseMAC(s) }

// IsTrusted says whether the MAC is a trusted device.
func (p *Policy) IsTrusted(mac string) bool {
	for _, d := range p.Trusted {
		if d.MAC == mac {
			return true
		}
	}
	return false
}

// Owner says whom a MAC belongs to: a child's name, AssignTrusted, or ""
// (an unknown device).
func (p *Policy) Owner(mac string) string {
	if p.IsTrusted(mac) {
		return AssignTrusted
	}
	for _, c := range p.Children {
		for _, d := range c.Devices {
			if d.MAC == mac {
				return c.Name
			}
		}
	}
	return ""
}

// Child returns the child with this name.
func (p *Policy) Child(name string) (Child, bool) {
	for _, c := range p.Children {
		if c.Name == name {
			return c, true
		}
	}
	return Child{}, false
}

// --- parsing ---

type unknownRef struct {
	rule    UnknownRule
	pos     position // the key's value
	likePos position // the like: value (Action UnknownLike)
}

type assignRef struct {
	a     Assignment
	toPos position
}

// unknownNode reads `offline`, `allow` or `{like: CHILD}`.
func (p *parser) unknownNode(n *yaml.Node, field string) *unknownRef {
	const want = "use offline (no internet until a parent assigns the device), allow (no restriction), or {like: CHILD} (that child's rules)"
	switch n.Kind {
	case yaml.ScalarNode:
		s := strings.ToLower(strings.TrimSpace(n.Value))
		switch UnknownAction(s) {
		case UnknownOffline, UnknownAllow:
			return &unknownRef{rule: UnknownRule{Action: UnknownAction(s)}, pos: p.pos(n, field)}
		}
		if strings.HasPrefix(s, "like") {
			p.problem(n, field, "%s: write like as a mapping, e.g. {like: alice}", describe(n))
			return nil
		}
		p.problem(n, field, "%s: %s", describe(n), want)
	case yaml.MappingNode:
		f := p.mapping(n, field, "unknown")
		v, ok := f["like"]
		if !ok {
			if len(n.Content) == 0 {
				p.problem(n, field, "empty mapping: %s", want)
			}
			return nil
		}
		s, ok := p.str(v, field+".like")
		if !ok {
			return nil
		}
		if !childName.MatchString(s) {
			p.problem(v, field+".like", "%q is not a child's name (lower-case letters, digits, - or _)", s)
			return nil
		}
		return &unknownRef{rule: UnknownRule{Action: UnknownLike, Like: s}, pos: p.pos(n, field), likePos: p.pos(v, field+".like")}
	default:
		p.problem(n, field, "expected a value, got %s: %s", kindName(n), want)
	}
	return nil
}

// macEntry reads the mac: and name: of a device-like mapping and records the
// MAC for the cross-file checks under owner (a child's name or AssignTrusted).
func (p *parser) macEntry(n *yaml.Node, path string, f map[string]*yaml.Node, owner string, assigned bool) Device {
	dev := Device{}
	if m, ok := f["mac"]; !ok {
		p.problem(n, path+".mac", "missing: every device needs its MAC address")
	} else if s, ok := p.str(m, path+".mac"); ok {
		if mac, err := parseMAC(s); err != nil {
			p.problem(m, path+".mac", "%v", err)
		} else {
			dev.MAC = mac
			p.macs = append(p.macs, macRef{mac: mac, owner: owner, assigned: assigned, pos: p.pos(m, path+".mac")})
		}
	}
	if nm, ok := f["name"]; ok {
		if s, ok := p.str(nm, path+".name"); ok {
			dev.Name = s
		}
	}
	return dev
}

func (p *parser) trustedNode(n *yaml.Node) {
	for i, dn := range p.seq(n, "trusted") {
		path := fmt.Sprintf("trusted[%d]", i)
		if dn.Kind != yaml.MappingNode {
			p.problem(dn, path, "expected a device like {mac: \"02:00:00:00:00:31\", name: \"Mum's phone\"}, got %s", kindName(dn))
			continue
		}
		if d := p.macEntry(dn, path, p.mapping(dn, path, "device"), AssignTrusted, false); d.MAC != "" {
			p.trusted = append(p.trusted, d)
		}
	}
}

func (p *parser) assignedNode(n *yaml.Node) {
	for i, an := range p.seq(n, "assigned") {
		path := fmt.Sprintf("assigned[%d]", i)
		if an.Kind != yaml.MappingNode {
			p.problem(an, path, "expected {mac: \"02:00:00:00:00:41\", to: alice, name: \"Alice's tablet\"} (to: a child or trusted), got %s", kindName(an))
			continue
		}
		f := p.mapping(an, path, "assigned")
		to, ok := f["to"]
		if !ok {
			p.problem(an, path+".to", "missing: say whose device it is, a child's name or trusted")
			continue
		}
		s, ok := p.str(to, path+".to")
		if !ok {
			continue
		}
		if s != AssignTrusted && !childName.MatchString(s) {
			p.problem(to, path+".to", "%q is neither trusted nor a child's name (lower-case letters, digits, - or _)", s)
			continue
		}
		d := p.macEntry(an, path, f, s, true)
		if d.MAC != "" {
			p.assigned = append(p.assigned, assignRef{a: Assignment{MAC: d.MAC, To: s, Name: d.Name}, toPos: p.pos(to, path+".to")})
		}
	}
}

// deviceKeys reads the file-level keys of this file.
func (p *parser) deviceKeys(fields map[string]*yaml.Node) {
	if n, ok := fields["unknown_devices"]; ok {
		p.unknown = p.unknownNode(n, "unknown_devices")
	}
	if n, ok := fields["randomized_devices"]; ok {
		p.randomized = p.unknownNode(n, "randomized_devices")
	}
	if n, ok := fields["trusted"]; ok {
		p.trustedNode(n)
	}
	if n, ok := fields["assigned"]; ok {
		p.assignedNode(n)
	}
}

// mergeDevices checks what spans files for the device keys and fills pol.
// It runs after the children are merged (childAt holds every child).
func mergeDevices(pol *Policy, parsers []*parser, childAt map[string]position) Problems {
	var probs Problems
	at := func(pos position, format string, args ...any) {
		probs = append(probs, Problem{File: pos.file, Line: pos.line, Col: pos.col, Field: pos.field, Msg: fmt.Sprintf(format, args...), crossFile: true})
	}
	var unknown, randomized *unknownRef
	one := func(prev **unknownRef, r *unknownRef, key string) {
		if r == nil {
			return
		}
		if *prev != nil {
			at(r.pos, "%s is already set at %s:%d; set it in one file only", key, (*prev).pos.file, (*prev).pos.line)
			return
		}
		*prev = r
		if r.rule.Action == UnknownLike {
			if _, ok := childAt[r.rule.Like]; !ok {
				at(r.likePos, "there is no child %q%s; name a child defined in the profiles, or use offline or allow", r.rule.Like, childHint(r.rule.Like, childAt))
			}
		}
	}
	index := map[string]int{}
	for i, c := range pol.Children {
		index[c.Name] = i
	}
	for _, p := range parsers {
		one(&unknown, p.unknown, "unknown_devices")
		one(&randomized, p.randomized, "randomized_devices")
		pol.Trusted = append(pol.Trusted, p.trusted...)
		for _, a := range p.assigned {
			pol.Assigned = append(pol.Assigned, a.a)
			if a.a.To == AssignTrusted {
				pol.Trusted = append(pol.Trusted, Device{MAC: a.a.MAC, Name: a.a.Name})
				continue
			}
			i, ok := index[a.a.To]
			if !ok {
				at(a.toPos, "there is no child %q%s; assign to a child defined in the profiles, or to trusted", a.a.To, childHint(a.a.To, childAt))
				continue
			}
			pol.Children[i].Devices = append(pol.Children[i].Devices, Device{MAC: a.a.MAC, Name: a.a.Name})
		}
	}
	if unknown != nil {
		pol.Unknown = unknown.rule
	}
	if randomized != nil {
		pol.Randomized = randomized.rule
	}
	return probs
}

// childHint suggests a defined child close to a misspelt name.
func childHint(name string, childAt map[string]position) string {
	if s := closest(name, sortedKeys(keysOf(childAt))); s != "" {
		return fmt.Sprintf(" (did you mean %q?)", s)
	}
	return ""
}

func keysOf(m map[string]position) map[string]bool {
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

// checkMACs reports every MAC listed more than once: for children, trusted
// or assigned, in one file or across files. Assigned entries come last.
func checkMACs(parsers []*parser) Problems {
	var probs Problems
	macAt := map[string]macRef{}
	for _, assigned := range []bool{false, true} {
		for _, p := range parsers {
			for _, m := range p.macs {
				if m.assigned != assigned {
					continue
				}
				if prev, dup := macAt[m.mac]; dup {
					probs = append(probs, Problem{File: m.pos.file, Line: m.pos.line, Col: m.pos.col, Field: m.pos.field,
						Msg: duplicateMAC(m.mac, prev, m.owner)})
					continue
				}
				macAt[m.mac] = m
			}
		}
	}
	return probs
}

// duplicateMAC says why a MAC may not be listed again for owner.
func duplicateMAC(mac string, prev macRef, owner string) string {
	where := fmt.Sprintf("%s:%d", prev.pos.file, prev.pos.line)
	switch {
	case prev.owner == AssignTrusted && owner == AssignTrusted:
		return fmt.Sprintf("MAC %s is already listed as trusted at %s; list each device once", mac, where)
	case prev.owner == AssignTrusted:
		return fmt.Sprintf("MAC %s is already listed as trusted at %s; a device is either trusted or one child's: remove one of the two", mac, where)
	case owner == AssignTrusted:
		return fmt.Sprintf("MAC %s is already listed for child %q at %s; a device is either trusted or one child's: remove one of the two", mac, prev.owner, where)
	case prev.owner == owner:
		return fmt.Sprintf("MAC %s is already listed for the same child at %s; a device belongs to one child, once", mac, where)
	}
	return fmt.Sprintf("MAC %s is already listed for child %q at %s; a device belongs to one child, once", mac, prev.owner, where)
}
