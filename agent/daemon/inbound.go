package daemon

import (
	"net/netip"
	"time"

	"github.com/famguard/famguard/agent/egress"
	"github.com/famguard/famguard/rules"
)

// The inbound guard's sets (rules.Desired.InboundSet; the design and what it
// costs are in rules/INBOUND.md). The kernel adds to the set in force the
// addresses that devices which are not offline use; the loop adds, at each
// reconcile, the neighbour-table addresses of such devices (a quiet server
// behind a port forward stays reachable), and whenever a device stops being
// open — it goes offline, or a trusted or online MAC becomes an offline
// one — it switches the rules to a fresh set filled only from devices that
// are still open. Deleting the newly offline device's addresses would miss
// those the agent has not learnt (a fresh IPv6 address used a moment before
// bedtime), which is the very hole the guard closes; a fresh set cannot hold
// them. The switch is part of the same iptables-restore that makes the
// device offline, so there is no moment in which the old set's entries let
// a connection to the offline device through.

// InboundSets is the ipset side of the inbound guard (egress.Netlink;
// egress.Fake in tests).
type InboundSets interface {
	Create(name string, v6 bool, maxElem uint32) error
	Add(name string, addr netip.Addr, timeout uint32) error
	Destroy(name string) error
	Info(name string) (egress.SetInfo, error)
}

// InboundStatus is the guard in status (dataplane.inbound).
type InboundStatus struct {
	Set string `json:"set"` // the generation in force (SET+"4", SET+"6")
	// Guard: someone is offline, so connections from outside reach only
	// the addresses in the sets.
	Guard bool      `json:"guard"`
	Open4 int       `json:"open_ipv4"`
	Open6 int       `json:"open_ipv6"`
	_     [0]func() // not comparable: no generated equality function (router build size)
}

// inboundStatus is nil before the first apply with the guard's sets.
func (d *Daemon) inboundStatus() *InboundStatus {
	if d.cfg.Inbound == nil || d.in.base == "" || d.in.open == nil {
		return nil
	}
	st := &InboundStatus{Set: d.in.base, Guard: len(d.in.open.closed) > 0 || !d.in.open.unknown}
	v4, v6 := egress.Names(d.in.base)
	if i, err := d.cfg.Inbound.Info(v4); err == nil {
		st.Open4 = i.Entries
	}
	if i, err := d.cfg.Inbound.Info(v6); err == nil {
		st.Open6 = i.Entries
	}
	return st
}

// The two generations the guard alternates between. Strict sets are "fg-"
// and a child's name, so these names are never a child's; the prefix is
// egress's, so that famguard cleanup (egress.Ours) removes them.
var inboundGens = [2]string{egress.InboundPrefix + "a", egress.InboundPrefix + "b"}

// inboundState is what the loop keeps of the guard.
type inboundState struct {
	base    string       // the generation the kernel rules name ("": none yet)
	open    *openDevices // who was open in the state last applied (nil: none applied)
	pending string       // the generation of the apply in progress
	next    *openDevices
	failed  bool // an add failed (logged once until one works again)
	// topped is when each address went into the generation toppedGen:
	// reconcile runs at every neighbour change and reload, and adding
	// every known address again each time cost one netlink round trip per
	// address on the reload path. An address is added again only once
	// half its kernel timeout has passed (to keep it from expiring).
	toppedGen string
	topped    map[netip.Addr]time.Time
	// Not comparable: no generated equality function (router build size).
	_ [0]func()
}

// openDevices says whose addresses may be in the inbound set: trusted
// devices, devices that are online, and (when the unknown class is open)
// every MAC that is neither.
type openDevices struct {
	open, closed map[string]bool
	unknown      bool
}

func openOf(desired rules.Desired) *openDevices {
	o := &openDevices{open: map[string]bool{}, closed: map[string]bool{}}
	for _, m := range desired.Trusted {
		o.open[m] = true
	}
	for _, dev := range desired.Devices {
		if dev.Offline {
			o.closed[dev.MAC] = true
		} else {
			o.open[dev.MAC] = true
		}
	}
	u := desired.Unknown
	o.unknown = u.Allow || (u.Class.ID != 0 && !u.Class.Offline)
	return o
}

func (o *openDevices) is(mac string) bool {
	return o.open[mac] || (!o.closed[mac] && o.unknown)
}

// closedSince reports whether a MAC (or the unknown class) that was open in
// prev is not open in o.
func (o *openDevices) closedSince(prev *openDevices) bool {
	if prev == nil || (prev.unknown && !o.unknown) {
		return true
	}
	for _, l := range []map[string]bool{prev.open, prev.closed, o.open, o.closed} {
		for mac := range l {
			if prev.is(mac) && !o.is(mac) {
				return true
			}
		}
	}
	return false
}

// prepareInbound picks the inbound set of the next apply and fills it:
// the one in force, topped up, or a fresh one when someone stopped being
// open. Needs a LAN (to tell inbound from outbound) and the sets.
func (d *Daemon) prepareInbound(desired *rules.Desired) {
	if d.cfg.Inbound == nil || len(desired.LAN) == 0 {
		return
	}
	now := openOf(*desired)
	gen := d.in.base
	if gen == "" || now.closedSince(d.in.open) {
		var err error
		if gen, err = d.freshInbound(); err != nil {
			// No sets (the kernel lacks ip_set, kmod-ipt-ipset on
			// OpenWrt): rules naming one would fail as a whole, so
			// everything else is enforced without the guard.
			if !d.in.failed {
				d.log.Error("inbound sets unusable: no inbound guard", "err", err)
			}
			d.in.failed = true
			return
		}
	}
	if gen != d.in.toppedGen {
		d.in.toppedGen, d.in.topped = gen, map[netip.Addr]time.Time{}
	}
	v4, v6 := egress.Names(gen)
	added := 0
	now0 := time.Now()
	for mac, addrs := range d.neigh {
		if !now.is(mac) {
			continue
		}
		for _, a := range addrs {
			a = a.Unmap()
			if !a.IsValid() || a.IsLinkLocalUnicast() {
				continue // never forwarded
			}
			if at, ok := d.in.topped[a]; ok && now0.Sub(at) < rules.InboundTimeout*time.Second/2 {
				continue
			}
			name := v4
			if a.Is6() {
				name = v6
			}
			if err := d.cfg.Inbound.Add(name, a, rules.InboundTimeout); err != nil {
				if !d.in.failed {
					d.log.Warn("inbound set: add failed", "err", err)
				}
				d.in.failed = true
				continue
			}
			d.in.topped[a] = now0
			added++
		}
	}
	if added > 0 {
		d.in.failed = false
	}
	desired.InboundSet = gen
	d.in.pending, d.in.next = gen, now
}

// freshInbound empties the generation not in force and returns it. At the
// first apply since start the kernel may still name either (the rules of
// an agent that stopped without cleanup): the one that can be destroyed is
// the one no rule names. One that is still named (an apply that wrote one
// family and failed the other) is kept, with what this agent put there.
func (d *Daemon) freshInbound() (string, error) {
	d.in.toppedGen = "" // the sets are made empty: nothing is in them
	gen := otherGen(d.in.base)
	if d.destroyGen(gen) != nil && d.in.base == "" {
		gen = inboundGens[1]
		_ = d.destroyGen(gen)
	}
	v4, v6 := egress.Names(gen)
	err := d.cfg.Inbound.Create(v4, false, egress.MaxElem)
	if err == nil {
		err = d.cfg.Inbound.Create(v6, true, egress.MaxElem)
	}
	return gen, err
}

func otherGen(gen string) string {
	if gen == inboundGens[0] {
		return inboundGens[1]
	}
	return inboundGens[0]
}

// destroyGen removes a generation's sets; sets that do not exist are no
// error, sets a rule names are.
func (d *Daemon) destroyGen(gen string) error {
	v4, v6 := egress.Names(gen)
	err := d.cfg.Inbound.Destroy(v4)
	if err6 := d.cfg.Inbound.Destroy(v6); err == nil {
		err = err6
	}
	return err
}

// inboundApplied: the kernel names the pending generation now; the other
// one goes (after a switch, and at the first apply whatever an earlier
// agent left; otherwise it does not exist).
func (d *Daemon) inboundApplied() {
	if d.cfg.Inbound == nil || d.in.pending == "" {
		return
	}
	d.in.base, d.in.open, d.in.pending = d.in.pending, d.in.next, ""
	if err := d.destroyGen(otherGen(d.in.base)); err != nil {
		d.log.Warn("cannot remove an unused inbound set", "err", err)
	}
}
