// Package rules turns the agent's desired per-device state into firewall
// rules and keeps the kernel in that state.
//
// The split follows kube-proxy: Render is a pure generator that builds the
// complete iptables-restore input for famguard's own chains in memory and never
// execs anything; a thin Runner execs iptables-restore / ip6tables-restore
// --noflush (one transaction per family, so there is never a moment in which a
// protected device is unprotected) and uses go-iptables only for the single
// jump rule in the built-in FORWARD chain. A stateful Fake applies restore
// input to an in-memory table so tests can assert iptables-save text, and the
// tracer walks a packet through that state to assert verdicts.
package rules

import "net/netip"

// Family selects IPv4 (iptables) or IPv6 (ip6tables).
type Family int

const (
	IPv4 Family = iota
	IPv6
)

func (f Family) String() string {
	if f == IPv6 {
		return "ipv6"
	}
	return "ipv4"
}

// Device is one protected device as the dataplane needs it.
type Device struct {
	MAC     string // lower-case, colon separated: "02:00:00:00:00:11"
	Child   string // profile key of the child, e.g. "alice"
	Name    string // the device's display name from the profile (may be empty)
	Offline bool   // true: no traffic of this device is forwarded
	// Reason says in words why the device is offline ("bedtime 21:00-07:00");
	// it ends up, escaped and capped, in the rule comment.
	Reason string
	// Addrs are the device's current addresses from the neighbour table. They
	// let an offline device also be cut off as a destination (connections
	// opened towards it), which a source-MAC match cannot see.
	Addrs []netip.Addr
	// BypassPrevention rejects DNS over TLS/QUIC (port 853) from the device,
	// so its DNS has to go through famguard's filter.
	BypassPrevention bool
}

// Desired is the complete state famguard wants in the kernel.
type Desired struct {
	Devices []Device // any order; Render sorts
	// DNSPort, when not 0, redirects every DNS query (UDP and TCP port 53, to
	// any server) of every listed device to famguard's DNS listener on the
	// router at this port.
	DNSPort int
	// DoHAddrs are DNS-over-HTTPS resolvers: devices with bypass prevention
	// may not open HTTPS (TCP or UDP 443) to them. Used only with DNSPort.
	DoHAddrs []netip.Addr
}
