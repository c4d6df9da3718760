package daemon

import (
	"sort"

	"github.com/famguard/famguard/agent/dnsfilter"
	"github.com/famguard/famguard/agent/egress"
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
	classPorts map[string]int  // child → its class's DNS filter port
	listening  []int           // ports asked of DNSPorts last
	redirect   map[uint16]int  // device ID → the port its DNS goes to, as applied
	installed  bool            // redirects were applied at least once since start
	offline    map[uint16]bool // IDs (devices, the unknown class) offline as applied
	// unknownStrict is the child whose strict rules unknown devices follow
	// ("": none); status counts their refusals under it.
	unknownStrict string
}

// newlyOfflineIDs are the IDs whose connections must be cut now: devices
// and the unknown-device class that were online in the previous applied
// state (or are new) and are offline in this one.
func (d *Daemon) newlyOfflineIDs(desired rules.Desired) []uint16 {
	now := map[uint16]bool{}
	for _, dev := range desired.Devices {
		if dev.Offline {
			now[dev.ID] = true
		}
	}
	if u := desired.Unknown; !u.Allow && u.Class.Offline && len(desired.LAN) > 0 {
		id := u.Class.ID
		if id == 0 {
			id = rules.DefaultUnknownID
		}
		now[id] = true
	}
	var cut []uint16
	for id := range now {
		if !d.kid.offline[id] {
			cut = append(cut, id)
		}
	}
	sort.Slice(cut, func(i, j int) bool { return cut[i] < cut[j] })
	d.kid.offline = now
	return cut
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
	children := map[string]policy.Child{}
	for _, c := range d.pol.Children {
		bypass[c.Name] = c.BypassPrevention
		children[c.Name] = c
	}
	desired := rules.Desired{LAN: d.cfg.LAN}
	dns := d.cfg.DNS != nil && d.cfg.DNSPort > 0
	if dns {
		desired.DNSPort = d.cfg.DNSPort
		desired.DoHAddrs = d.cfg.DoH.Addrs
		desired.OfflineDNSPort = d.cfg.DNSPort + offlinePortOffset
	}
	// The unknown-device class: the kernel applies it to every LAN device
	// no rule names, seen or not yet seen (a MAC made up a second ago
	// included). Rows of seen unknown devices are for status only, unless
	// their rule differs from the class's (a randomised MAC under its own
	// randomized_devices rule): those get a row of their own below.
	unknownRule := d.pol.UnknownDevices()
	class := d.pol.UnknownClasses(d.evaluator())[0]
	var enforcedStates []policy.DeviceState
	for _, s := range states {
		switch {
		case s.Kind == policy.KindTrusted:
			desired.Trusted = append(desired.Trusted, s.MAC)
		case s.Kind == policy.KindUnknown && d.pol.UnknownRuleFor(s.MAC) == unknownRule:
		case s.Kind == policy.KindUnknown && !enforced(s):
			desired.Trusted = append(desired.Trusted, s.MAC) // allowed by its own rule
		default:
			enforcedStates = append(enforcedStates, s)
		}
	}
	states = enforcedStates
	keepMAC, keepClass := map[string]bool{}, map[string]bool{}
	for _, s := range states {
		keepMAC[s.MAC], keepClass[s.Child] = true, true
	}
	if unknownRule.Action == policy.UnknownLike {
		keepClass[unknownRule.Like] = true
	}
	classPorts := map[string]int{}
	d.kid.unknownStrict = ""
	switch unknownRule.Action {
	case policy.UnknownAllow:
		desired.Unknown = rules.UnknownPolicy{Allow: true}
	default:
		c := rules.Device{ID: rules.DefaultUnknownID, Child: "unknown", Name: "any other device",
			Offline: !class.Online, Reason: class.Reason, BypassPrevention: class.Child == "" || bypass[class.Child]}
		if dns && class.Child != "" {
			port, err := d.kid.ids.port(class.Child, d.cfg.DNSPort, keepClass)
			if err != nil {
				return desired, err
			}
			c.DNSPort, classPorts[class.Child] = port, port
			c.Name = "any other device, like " + class.Child
			setStrict(&c, children[class.Child])
			if c.Strict {
				d.kid.unknownStrict = class.Child
			}
		}
		desired.Unknown = rules.UnknownPolicy{Class: c}
	}
	for _, s := range states {
		id, err := d.kid.ids.device(s.MAC, keepMAC)
		if err != nil {
			return desired, err
		}
		dev := rules.Device{
			ID: id, MAC: s.MAC, Child: s.Child, Name: s.Device,
			Offline: !s.Online, Reason: s.Reason, Addrs: d.neigh[s.MAC],
			BypassPrevention: bypass[s.Child],
		}
		if dns {
			port, err := d.kid.ids.port(s.Child, d.cfg.DNSPort, keepClass)
			if err != nil {
				return desired, err
			}
			dev.DNSPort, classPorts[s.Child] = port, port
			setStrict(&dev, children[s.Child])
		}
		desired.Devices = append(desired.Devices, dev)
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

// strictSet is the base name of a strict child's sets ("" when the child
// is not strict): the same for its devices and for unknown devices like it,
// since they share the child's DNS port and so its answers.
func strictSet(c policy.Child) string {
	if !c.Strict {
		return ""
	}
	return egress.SetBase(c.Name)
}

// setStrict makes dev strict when its child is. Only with DNS filtering on
// (the caller's condition): strict admits only what the filter answered,
// so without the filter it would admit nothing but the LAN.
func setStrict(dev *rules.Device, c policy.Child) {
	if c.Strict {
		dev.Strict, dev.StrictSet, dev.StrictAllow = true, strictSet(c), c.AllowIPs
	}
}

// StrictSets is what status reads of the strict-egress sets (egress.Sets).
type StrictSets interface {
	Stats(base string) (egress.Stats, error)
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
