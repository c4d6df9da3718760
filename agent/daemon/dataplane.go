package daemon

import (
	"sort"

	"github.com/famguard/famguard/agent/dnsfilter"
	"github.com/famguard/famguard/agent/policy"
	"github.com/famguard/famguard/rules"
)

// DNSPorts binds the DNS filter's listeners (dnsfilter.Ports).
type DNSPorts interface {
	// Ensure makes listeners run on exactly these ports.
	Ensure(ports []int) error
}

// kernelIdentity is what the loop keeps about kernel identities: the
// allocation (identity.go), the class ports of the policy in force, and the
// DNS redirect each device has in the kernel.
type kernelIdentity struct {
	ids        *identities
	classPorts map[string]int // child → its class's DNS filter port
	listening  []int          // ports asked of DNSPorts last
	redirect   map[uint16]int // device ID → the port its DNS goes to, as applied
	installed  bool           // redirects were applied at least once since start

	unknownOffline, unknownSeen bool // the unknown-device class's state, as applied
}

// desired is the complete kernel state for these device states: each
// device with its ID, its class's DNS port, and the listeners for those
// ports bound before the rules that redirect to them are written.
func (d *Daemon) desired(states []policy.DeviceState) (rules.Desired, error) {
	if d.kid.ids == nil {
		ids, err := loadIdentities(d.cfg.StateDir)
		if err != nil {
			d.log.Warn("device identities unreadable; allocating afresh", "err", err)
		}
		d.kid.ids = ids
	}
	bypass := map[string]bool{}
	for _, c := range d.pol.Children {
		bypass[c.Name] = c.BypassPrevention
	}
	desired := rules.Desired{LAN: d.cfg.LAN}
	for _, t := range d.pol.Trusted {
		desired.Trusted = append(desired.Trusted, t.MAC)
	}
	dns := d.cfg.DNS != nil && d.cfg.DNSPort > 0
	if dns {
		desired.DNSPort = d.cfg.DNSPort
		desired.DoHAddrs = d.cfg.DoH.Addrs
		desired.OfflineDNSPort = d.cfg.DNSPort + offlinePortOffset
	}
	keepMAC, keepClass := map[string]bool{unknownClassKey: true}, map[string]bool{}
	for _, s := range states {
		keepMAC[s.MAC], keepClass[s.Child] = true, true
	}
	unknownAllowed := d.pol.UnknownDevices().Action == policy.UnknownAllow && d.pol.RandomizedDevices().Action == policy.UnknownAllow
	classPorts := map[string]int{}
	for _, s := range states {
		if s.Kind == policy.KindTrusted {
			continue // in d.pol.Trusted
		}
		if !enforced(s) {
			// An unknown device the policy allows. The kernel's class of
			// unknown devices may be stricter (for MACs it has not seen
			// yet): this one is let be like a trusted device.
			if !unknownAllowed {
				desired.Trusted = append(desired.Trusted, s.MAC)
			}
			continue
		}
		id, err := d.kid.ids.device(s.MAC, keepMAC)
		if err != nil {
			return desired, err
		}
		dev := rules.Device{
			ID: id, MAC: s.MAC, Child: s.Child, Name: s.Device,
			Offline: !s.Online, Reason: s.Reason, Addrs: d.neigh[s.MAC],
			BypassPrevention: bypass[s.Child],
		}
		if dev.Child == "" {
			dev.Child = "unknown" // an unknown device that is offline: its DNS goes to the refusing port
		}
		if dns && s.Child != "" {
			port, err := d.kid.ids.port(s.Child, d.cfg.DNSPort, keepClass)
			if err != nil {
				return desired, err
			}
			dev.DNSPort, classPorts[s.Child] = port, port
		}
		desired.Devices = append(desired.Devices, dev)
	}
	unknown, err := d.unknownClass(states, keepMAC, keepClass, dns)
	if err != nil {
		return desired, err
	}
	desired.Unknown = unknown
	if p := unknown.Class.DNSPort; p > 0 {
		classPorts[unknown.Class.Child] = p
	}
	if err := d.kid.ids.save(); err != nil {
		d.log.Warn("cannot keep the device identities in the state directory; a restarted agent allocates afresh", "err", err)
	}
	if dns && d.cfg.DNSPorts != nil {
		// The ports in use by the rules now in the kernel stay open until
		// the new rules are in.
		want := append([]int{d.cfg.DNSPort, desired.OfflineDNSPort}, sortedPorts(classPorts)...)
		if err := d.cfg.DNSPorts.Ensure(union(want, d.kid.listening)); err != nil {
			return desired, err
		}
		d.kid.listening = want
	}
	d.kid.classPorts = classPorts
	return desired, nil
}

// unknownClassKey allocates the unknown-device class's ID among the MACs.
const unknownClassKey = "class:unknown"

// unknownClass is the kernel's rule for MACs on the LAN that no profile
// lists and the agent has not seen yet (those it has seen are rows of
// their own). When unknown_devices and randomized_devices differ it is
// offline — the kernel cannot tell a randomised MAC by a rule — until the
// agent sees the device and gives it its own rule, a moment later.
func (d *Daemon) unknownClass(states []policy.DeviceState, keepMAC, keepClass map[string]bool, dns bool) (rules.UnknownPolicy, error) {
	rule := d.pol.UnknownDevices()
	if r := d.pol.RandomizedDevices(); r != rule {
		if r.Action == policy.UnknownAllow && rule.Action == policy.UnknownAllow {
			return rules.UnknownPolicy{Allow: true}, nil
		}
		rule = policy.UnknownRule{Action: policy.UnknownOffline}
	}
	if rule.Action == policy.UnknownAllow {
		return rules.UnknownPolicy{Allow: true}, nil
	}
	id, err := d.kid.ids.device(unknownClassKey, keepMAC)
	if err != nil {
		return rules.UnknownPolicy{}, err
	}
	class := rules.Device{ID: id, Child: "unknown", Name: "any other device", Offline: true,
		Reason: "unknown device: offline until a parent assigns it"}
	if rule.Action == policy.UnknownLike {
		class.Child, class.Offline = rule.Like, false
		class.Reason = "unknown device: the rules of " + rule.Like
		for _, s := range states {
			if s.Child == rule.Like && s.Kind == "" {
				class.Offline = !s.Online
				break
			}
		}
		if dns {
			keepClass[rule.Like] = true
			if class.DNSPort, err = d.kid.ids.port(rule.Like, d.cfg.DNSPort, keepClass); err != nil {
				return rules.UnknownPolicy{}, err
			}
		}
	}
	return rules.UnknownPolicy{Class: class}, nil
}

// cutUnknownClass deletes the connections of the unknown-device class when
// it has just gone offline (unknown devices like a child at bedtime).
func (d *Daemon) cutUnknownClass(desired rules.Desired) {
	c := desired.Unknown.Class
	off := !desired.Unknown.Allow && c.Offline && c.ID != 0
	was := d.kid.unknownOffline
	d.kid.unknownOffline = off
	if off && !was && d.kid.unknownSeen {
		d.cutOffline([]uint16{c.ID})
	}
	d.kid.unknownSeen = true
}

// closeStalePorts closes the listeners no rule redirects to any more.
func (d *Daemon) closeStalePorts() {
	if d.cfg.DNSPorts == nil || d.kid.listening == nil {
		return
	}
	if err := d.cfg.DNSPorts.Ensure(d.kid.listening); err != nil {
		d.log.Warn("DNS filter ports", "err", err)
	}
}

// classRules is what each class port answers with: the rules of the class's
// child as one of its devices has them now (an online one when there is
// one: the offline devices' queries go to the refusing port anyway).
func (d *Daemon) classRules(perMAC map[string]dnsfilter.Rules) map[int]dnsfilter.Rules {
	states := append([]policy.DeviceState(nil), d.states...)
	sort.Slice(states, func(i, j int) bool { return states[i].MAC < states[j].MAC })
	out := map[int]dnsfilter.Rules{}
	online := map[int]bool{}
	for _, s := range states {
		port := d.kid.classPorts[s.Child]
		if port == 0 || online[port] {
			continue
		}
		if _, ok := out[port]; ok && !s.Online {
			continue
		}
		r := perMAC[s.MAC]
		r.Device = ""
		out[port], online[port] = r, s.Online
	}
	return out
}

// cutOffline deletes every connection of the devices that have just gone
// offline, by their IDs: also those at addresses the agent never learnt,
// and those opened from outside.
func (d *Daemon) cutOffline(ids []uint16) {
	if len(ids) == 0 || d.cfg.Conntrack == nil {
		return
	}
	n, err := d.cfg.Conntrack.Cut(ids, false, false)
	if err != nil {
		d.log.Error("could not delete the connections of newly offline devices; their packets are rejected by the connection mark all the same", "err", err)
		return
	}
	d.log.Info("cut live connections of newly offline devices", "connections", n, "devices", len(ids))
}

// cutDNS deletes the port-53 connections of every device whose DNS redirect
// was just installed or changed (new device, another class, offline or
// back): a query flow opened before would keep going where it went. At the
// first install since start also the connections without an ID (opened
// before famguard's rules were in the kernel).
func (d *Daemon) cutDNS(desired rules.Desired) {
	if desired.DNSPort <= 0 {
		return
	}
	now := map[uint16]int{}
	var changed []uint16
	for _, dev := range desired.Devices {
		port := dev.DNSPort
		if dev.Offline && desired.OfflineDNSPort > 0 {
			port = desired.OfflineDNSPort
		}
		now[dev.ID] = port
		if d.kid.redirect[dev.ID] != port {
			changed = append(changed, dev.ID)
		}
	}
	first := !d.kid.installed
	d.kid.redirect, d.kid.installed = now, true
	d.closeStalePorts()
	if d.cfg.Conntrack == nil || (len(changed) == 0 && !first) {
		return
	}
	n, err := d.cfg.Conntrack.Cut(changed, true, first)
	if err != nil {
		d.log.Warn("could not delete DNS connections opened before their redirect", "err", err)
		return
	}
	if n > 0 {
		d.log.Info("deleted DNS connections opened before their redirect", "connections", n, "devices", len(changed))
	}
}

// union of two port lists, sorted, without duplicates.
func union(a, b []int) []int {
	seen := map[int]bool{}
	var out []int
	for _, l := range [][]int{a, b} {
		for _, p := range l {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	sort.Ints(out)
	return out
}
