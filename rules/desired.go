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

	// ID is the device's kernel identity: the kernel writes it into the
	// conntrack mark (DeviceMark) of every connection the device takes part
	// in, matched by its source MAC. Cutting a device's connections, counting
	// its use and telling its flows apart all go by this mark, never by
	// addresses the agent learnt (which lag the kernel). 1..MaxDeviceID,
	// stable for as long as the kernel holds famguard's rules (the daemon
	// allocates it and keeps the allocation in its state directory).
	ID uint16
	// DNSPort is the port of the DNS filter's listener for this device's
	// policy class (its child, or the unknown-device class): the kernel
	// redirects the device's queries there, so the filter knows whose rules
	// answer from the port a query arrived on, not from its source address.
	// 0 means Desired.DNSPort. Offline devices are redirected to
	// Desired.OfflineDNSPort instead, whatever this says.
	DNSPort int
	// Strict limits the device's new forwarded connections to addresses in
	// its class's strict set (filled by the DNS filter before each answer
	// leaves it), the LAN, and StrictAllow.
	Strict      bool
	StrictSet   string         // base name of the class's ipsets: StrictSet+"4" (hash:ip inet), StrictSet+"6" (inet6)
	StrictAllow []netip.Prefix // allow_ips of the child: always reachable under Strict
}

// MaxDeviceID is the highest device identity; the mark layout has 12 bits.
const MaxDeviceID = 4095

// Reserved identities at the top of the range. The daemon allocates device
// and class IDs from 1 to MaxAllocID; the kernel rules use these for the
// connections that are nobody's to restrict. Every connection ends up with
// some ID, so that after its first packets it skips the per-MAC walk (a
// connection without an ID walks it on each packet).
const (
	// TrustedID marks the connections of parents' devices (Desired.Trusted).
	TrustedID = MaxDeviceID
	// DefaultUnknownID is the unknown-device class's ID when the daemon
	// did not give it one (UnknownPolicy.Class.ID == 0).
	DefaultUnknownID = MaxDeviceID - 1
	// OtherID marks connections whose reply came from outside the LAN
	// (the router's own connections, and anything else no device on the
	// LAN opened or answered).
	OtherID = MaxDeviceID - 2
	// MaxAllocID is the highest ID the daemon may give a device or a class.
	MaxAllocID = MaxDeviceID - 3
)

// The conntrack mark layout famguard owns. Other OpenWrt packages use the
// low 16 bits (mwan3, SQM, fw4 zones), so famguard keeps to the high ones.
const (
	MarkDeviceShift = 16
	MarkDeviceMask  = uint32(MaxDeviceID) << MarkDeviceShift // the device's ID
	MarkOffline     = uint32(1) << 28                        // the device is offline: every packet of the flow is rejected
	MarkMask        = MarkDeviceMask | MarkOffline
)

// DeviceMark is the conntrack mark of a device's connections.
func DeviceMark(id uint16) uint32 { return uint32(id) << MarkDeviceShift & MarkDeviceMask }

// MarkDevice is the device ID in a conntrack mark (0: not attributed).
func MarkDevice(mark uint32) uint16 { return uint16((mark & MarkDeviceMask) >> MarkDeviceShift) }

// UnknownPolicy is what applies to a device on the LAN that is neither a
// child's device nor trusted: matched in the kernel as "came in on a LAN
// interface, and no listed MAC matched".
type UnknownPolicy struct {
	// Allow leaves unknown devices alone (no redirect, no block). Only when
	// a profile chose `unknown_devices: allow` explicitly.
	Allow bool
	// The class the unknown devices share: an ID of its own (all unknown
	// devices' connections carry it), offline or not, its DNS port and
	// strictness — like a Device, with MAC unused.
	Class Device
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

	// OfflineDNSPort, when not 0, is the DNS filter's listener that answers
	// every query REFUSED: offline devices' DNS is redirected there, so
	// nothing tunnels through a resolver at bedtime.
	OfflineDNSPort int
	// Trusted are parents' devices (MACs): never restricted, never unknown.
	Trusted []string
	// LAN are the interfaces devices are on (OpenWrt's br-lan, ...). Only
	// packets that come in on them are a device's; the router's own traffic
	// and the WAN are never an unknown device. Empty: the unknown-device
	// policy is not enforced (no LAN known).
	LAN []string
	// Unknown is the unknown-device policy (zero value: Allow false with a
	// zero Class means "offline" — the safe default — once LAN is set).
	Unknown UnknownPolicy
	// InboundSet is the base name of the inbound sets (InboundSet+"4",
	// hash:ip inet; +"6", inet6): the LAN addresses that devices which are
	// not offline used. The kernel adds the source of the first LAN packet
	// of every connection whose mark says "a device, not offline"; the
	// daemon adds the neighbour-table addresses of such devices. While any
	// device or the unknown class is offline, a connection opened from
	// outside the LAN to a LAN address in neither set is rejected before its
	// first packet is forwarded (see renderInbound). Empty, or no LAN known:
	// no inbound guard. The daemon switches to a fresh, refilled set
	// whenever a device stops being online (INBOUND.md).
	InboundSet string
}

// InboundTimeout is how long, in seconds, the kernel keeps an address in
// the inbound set after the last connection a device opened from it (and
// the daemon after the last neighbour-table sighting it wrote).
const InboundTimeout = 3600
