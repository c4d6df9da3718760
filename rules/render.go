package rules

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
)

// Chain names. Fixed and short (iptables allows 28 characters); the agent
// owns exactly these chains and one jump rule per built-in chain it hooks.
const (
	Chain        = "FAMGUARD"
	RejectChain  = "FAMGUARD-REJECT"
	DNSChain     = "FAMGUARD-DNS"
	DNS53Chain   = "FAMGUARD-DNS53"
	DoHChain     = "FAMGUARD-DOH"
	BypassChain  = "FAMGUARD-BYPASS"
	InputChain   = "FAMGUARD-INPUT"
	StrictChain  = "FAMGUARD-STRICT"
	MarkChain    = "FAMGUARD-MARK"
	MACChain     = "FAMGUARD-MAC"
	OfflineChain = "FAMGUARD-OFFLINE"
	// InboundChain holds the inbound guard (renderInbound).
	InboundChain = "FAMGUARD-INBOUND"
	// JumpComment marks the single jump from FORWARD, so a person reading
	// iptables-save knows whose rule it is.
	JumpComment = "famguard: enforce per-device schedules"
	// DNSJumpComment marks the jump from nat PREROUTING.
	DNSJumpComment = "famguard: DNS of protected devices"
	// InputJumpComment marks the jump from filter INPUT.
	InputJumpComment = "famguard: the DNS filter answers only redirected queries"
	// MarkJumpComment marks the jump from mangle PREROUTING.
	MarkJumpComment = "famguard: attribute connections to devices"
	maxComment      = 200 // xt_comment allows 255 bytes; leave room for quoting
)

// hook is one of famguard's entry points: a jump from a built-in chain.
type hook struct {
	table, builtin, chain string
	spec                  []string
}

// hooks are famguard's only rules in built-in chains, one per table.
//
// mangle PREROUTING sends only packets of connections that carry no device
// ID yet into MarkChain, which writes the ID (and MarkOffline) into the
// connection mark from the source MAC of the first LAN packet: established
// traffic costs one connmark test there, whatever the number of devices.
//
// The filter jump is unconditional: its chain first rejects every packet of
// a connection marked offline — whichever side opened it, whatever address
// it uses — and then lets established traffic go with one state test. Only
// new connections walk the per-device rules. (Before issue 9 the jump itself
// skipped established traffic, and an offline device's connections had to be
// found by address in conntrack, which misses addresses learnt later.)
//
// The nat table only ever sees the first packet of a connection. The INPUT
// jump, for new connections to the router only, keeps the DNS filter from
// being anyone's resolver: see Render.
var hooks = []hook{
	{"filter", "FORWARD", Chain, []string{"-m", "comment", "--comment", JumpComment, "-j", Chain}},
	{"filter", "INPUT", InputChain, []string{"-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", InputJumpComment, "-j", InputChain}},
	{"nat", "PREROUTING", DNSChain, []string{"-m", "comment", "--comment", DNSJumpComment, "-j", DNSChain}},
	{"mangle", "PREROUTING", MarkChain, []string{"-m", "connmark", "--mark", fmt.Sprintf("0x0/%#x", MarkDeviceMask), "-m", "comment", "--comment", MarkJumpComment, "-j", MarkChain}},
}

// connMark is the --set-xmark / --mark argument for a device ID, offline or
// not, within famguard's bits.
func connMark(id uint16, offline bool) string {
	v := DeviceMark(id)
	if offline {
		v |= MarkOffline
	}
	return fmt.Sprintf("%#x/%#x", v, MarkMask)
}

// rendered is one device as the rules need it: canonical MAC, the ID its
// connections carry and the DNS port its queries go to.
type rendered struct {
	Device
	mac  string
	port int // 0: no redirect
}

// Render builds the iptables-restore --noflush input that replaces
// famguard's chains with the desired state, in one transaction.
//
// Per-packet cost does not grow with the number of devices for established
// traffic (see hooks): one connmark test in mangle, a jump, one connmark and
// one state test in filter. Only the first packets of a connection walk the
// per-device rules: the MAC list that attributes it and the list of offline
// IDs (mangle), the DNS redirects (nat, port 53 only) and, in filter, the
// rules of offline and strict devices.
//
// What a schedule change touches is kept small on purpose (reload cost,
// see delta.go): a device going offline or back changes one rule in the
// offline list and its own rules in filter; the MAC list, the DNS
// redirects and the bypass and strict lists depend only on which devices
// exist, their class and their names.
//
// Which device a connection is, and so whose rules apply, is decided by the
// kernel from the packet's source MAC, never from an address the agent
// learnt: the connection mark carries it to filter, and the DNS redirect
// port carries it to the DNS filter.
//
// Declaring `:CHAIN - [0:0]` under --noflush flushes just that chain, so the
// old rules and the new rules swap atomically: there is no moment without
// protection.
func Render(d Desired, fam Family) (string, error) {
	// Sorted by index: moving the (large) device structs while sorting
	// was a fifth of a render at 1000 devices.
	order := make([]int, len(d.Devices))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(i, j int) bool {
		a, b := &d.Devices[order[i]], &d.Devices[order[j]]
		if a.Child != b.Child {
			return a.Child < b.Child
		}
		return a.MAC < b.MAC
	})
	devs := make([]rendered, len(d.Devices))
	for i, k := range order {
		devs[i].Device = d.Devices[k]
	}
	for i := range devs {
		dev := &devs[i]
		mac, err := canonicalMAC(dev.MAC)
		if err != nil {
			return "", fmt.Errorf("device %q of %s: %w", dev.Name, dev.Child, err)
		}
		if dev.ID == 0 || dev.ID > MaxAllocID {
			// Without an ID the device's connections would carry none and
			// walk the MAC list on every packet; the daemon allocates one.
			return "", fmt.Errorf("device %s of %s: ID %d is not in 1..%d", mac, dev.Child, dev.ID, MaxAllocID)
		}
		dev.mac = mac
		dev.port = dnsPort(d, dev.Device)
	}
	trusted := make([]string, 0, len(d.Trusted))
	for _, t := range d.Trusted {
		mac, err := canonicalMAC(t)
		if err != nil {
			return "", fmt.Errorf("trusted device: %w", err)
		}
		trusted = append(trusted, mac)
	}
	sort.Strings(trusted)
	lan := append([]string(nil), d.LAN...)
	sort.Strings(lan)
	for _, l := range lan {
		if !validIface(l) {
			return "", fmt.Errorf("LAN interface %q is not an interface name", l)
		}
	}
	unknown := unknownClass(d)

	var b strings.Builder
	b.Grow(2048 + 512*len(devs)) // about what a device's rules take: no regrowth
	renderMangle(&b, d, fam, devs, trusted, lan, unknown)
	if d.DNSPort > 0 {
		renderNAT(&b, d, devs, trusted, lan, unknown)
	}
	renderFilter(&b, d, fam, devs, trusted, lan, unknown)
	return b.String(), nil
}

// unknownClass is the unknown-device class as the rules apply it: nil when
// the policy is not enforced (no LAN known, or unknown devices allowed and
// nothing to mark).
func unknownClass(d Desired) *rendered {
	if len(d.LAN) == 0 {
		return nil
	}
	c := d.Unknown.Class
	if c.ID == 0 {
		c.ID = DefaultUnknownID
	}
	if c.Child == "" {
		c.Child = "unknown"
	}
	if c.Name == "" {
		c.Name = "any other device"
	}
	if d.Unknown.Allow {
		// Allowed: the connections still get the class's ID (so they skip
		// the MAC walk after their first packet), nothing else.
		c.Offline, c.Strict = false, false
		return &rendered{Device: c}
	}
	z := d.Unknown.Class
	if z.ID == 0 && z.Child == "" && z.DNSPort == 0 && !z.Strict {
		// The zero value: the safe default, offline.
		c.Offline = true
	}
	if c.Reason == "" {
		c.Reason = "unknown device"
	}
	return &rendered{Device: c, port: dnsPort(d, c)}
}

// dnsPort is the port a device's DNS goes to while it is online (0: not
// redirected). Offline, its connections carry MarkOffline, and renderNAT's
// first rules send them to Desired.OfflineDNSPort whatever this says.
func dnsPort(d Desired, dev Device) int {
	switch {
	case d.DNSPort <= 0:
		return 0
	case dev.DNSPort > 0:
		return dev.DNSPort
	}
	return d.DNSPort
}

// renderMangle writes the attribution: the first LAN packet of a connection
// that carries no ID gives it the ID of the device whose MAC sent it
// (trusted devices: TrustedID; any other MAC on a LAN interface: the unknown
// class's), with MarkOffline when that device is offline. A connection
// opened from outside gets its ID from the device's first answer, so an
// offline device cannot be reached either, at any address.
func renderMangle(b *strings.Builder, d Desired, fam Family, devs []rendered, trusted, lan []string, unknown *rendered) {
	if len(devs) == 0 && len(trusted) == 0 && unknown == nil {
		return
	}
	fmt.Fprintf(b, "*mangle\n:%s - [0:0]\n:%s - [0:0]\n:%s - [0:0]\n", MarkChain, MACChain, OfflineChain)
	if len(lan) == 0 {
		fmt.Fprintf(b, "-A %s -j %s\n", MarkChain, MACChain)
	}
	for _, l := range lan {
		fmt.Fprintf(b, "-A %s -i %s -g %s\n", MarkChain, l, MACChain)
	}
	// A connection whose answer comes from outside the LAN is nobody's
	// (the router's own, or one the outside opened to the router): marked
	// so, its further packets skip this chain. One the outside opens to a
	// device gets the device's ID from the device's first answer instead.
	fmt.Fprintf(b, "-A %s -m conntrack --ctdir REPLY -m connmark --mark 0x0/%#x -m comment --comment \"famguard: answered from outside the LAN\" -j CONNMARK --set-xmark %s\n", MarkChain, MarkDeviceMask, connMark(OtherID, false))
	for _, mac := range trusted {
		fmt.Fprintf(b, "-A %s -m mac --mac-source %s -m comment --comment \"famguard: trusted\" -j CONNMARK --set-xmark %s\n", MACChain, mac, connMark(TrustedID, false))
	}
	for _, dev := range devs {
		fmt.Fprintf(b, "-A %s -m mac --mac-source %s -m comment --comment %s -j CONNMARK --set-xmark %s\n", MACChain, dev.mac, Comment("famguard: "+who(dev.Device)), connMark(dev.ID, false))
	}
	// Any other MAC on a LAN interface is an unknown device. Without a
	// known LAN there is no telling a LAN packet from another, so nothing
	// is marked here: such connections are marked by their first answer
	// from outside (above), and until then walk the list again.
	if unknown != nil {
		fmt.Fprintf(b, "-A %s -m connmark --mark 0x0/%#x -m comment --comment \"famguard: unknown device\" -j CONNMARK --set-xmark %s\n", MACChain, MarkDeviceMask, connMark(unknown.ID, false))
	}
	// Who is offline is kept apart from who is who: the MAC list above
	// changes only when devices come or go, and a schedule change edits
	// this short list (offline devices only) instead, so a reload does
	// not make iptables-restore fetch and edit the whole MAC list.
	fmt.Fprintf(b, "-A %s -j %s\n", MACChain, OfflineChain)
	for _, dev := range devs {
		if dev.Offline {
			fmt.Fprintf(b, "-A %s -m connmark --mark %#x/%#x -m comment --comment %s -j CONNMARK --set-xmark %#x/%#x\n",
				OfflineChain, DeviceMark(dev.ID), MarkDeviceMask, Comment("famguard: "+who(dev.Device)+" offline"), MarkOffline, MarkOffline)
		}
	}
	if unknown != nil && unknown.Offline {
		fmt.Fprintf(b, "-A %s -m connmark --mark %#x/%#x -m comment --comment \"famguard: unknown devices offline\" -j CONNMARK --set-xmark %#x/%#x\n",
			OfflineChain, DeviceMark(unknown.ID), MarkDeviceMask, MarkOffline, MarkOffline)
	}
	// The inbound set learns the LAN addresses of devices that are not
	// offline, from the kernel's own attribution just above, last in the
	// offline list: a packet of an offline device always carries
	// MarkOffline here (the MAC list gave it its ID, the offline list the
	// bit), so an offline device can never put an address in the set,
	// whatever address it makes up. Only the first packets of a connection
	// come here (the hook skips marked ones). In this short list, the set's
	// switch at a device's bedtime (agent/daemon/inbound.go) leaves the MAC
	// list alone, like the rest of a schedule change.
	if set := inboundSet(d, fam, lan); set != "" {
		fmt.Fprintf(b, "-A %s -m connmark --mark 0x0/%#x -m connmark ! --mark 0x0/%#x -m comment --comment \"famguard: inbound set\" -j SET --add-set %s src --exist --timeout %d\n",
			OfflineChain, MarkOffline, MarkDeviceMask, set, InboundTimeout)
	}
	b.WriteString("COMMIT\n")
}

// renderNAT writes the DNS interception: every query of a device, to
// whatever server (the router included), goes to the DNS filter's listener
// for its class — offline devices to the listener that refuses everything.
// The port tells the filter whose rules answer. nat sees only a
// connection's first packet, and the port is tested before any MAC.
//
// Offline is decided by the connection mark, which mangle wrote from the
// same MAC moments before (mangle PREROUTING runs before nat PREROUTING),
// not by a per-device rule here: so a device going offline or coming back
// changes its one rule in mangle and none in nat, and a reload of a schedule
// change leaves the biggest chain (two redirects a device) untouched.
func renderNAT(b *strings.Builder, d Desired, devs []rendered, trusted, lan []string, unknown *rendered) {
	fmt.Fprintf(b, "*nat\n:%s - [0:0]\n:%s - [0:0]\n", DNSChain, DNS53Chain)
	for _, proto := range []string{"udp", "tcp"} {
		fmt.Fprintf(b, "-A %s -p %s -m %s --dport 53 -j %s\n", DNSChain, proto, proto, DNS53Chain)
	}
	if d.OfflineDNSPort > 0 {
		for _, proto := range []string{"udp", "tcp"} {
			fmt.Fprintf(b, "-A %s -m connmark --mark %#x/%#x -p %s -m comment --comment \"famguard: DNS of offline devices\" -j REDIRECT --to-ports %d\n",
				DNS53Chain, MarkOffline, MarkOffline, proto, d.OfflineDNSPort)
		}
	}
	for _, mac := range trusted {
		fmt.Fprintf(b, "-A %s -m mac --mac-source %s -m comment --comment \"famguard: trusted\" -j RETURN\n", DNS53Chain, mac)
	}
	redirect := func(match string, dev *rendered) {
		comment := Comment("famguard: DNS of " + who(dev.Device))
		for _, proto := range []string{"udp", "tcp"} {
			fmt.Fprintf(b, "-A %s %s -p %s -m comment --comment %s -j REDIRECT --to-ports %d\n",
				DNS53Chain, match, proto, comment, dev.port)
		}
	}
	for i := range devs {
		redirect("-m mac --mac-source "+devs[i].mac, &devs[i])
	}
	if unknown != nil && unknown.port > 0 {
		for _, l := range lan {
			redirect("-i "+l, unknown)
		}
	}
	b.WriteString("COMMIT\n")
}

func renderFilter(b *strings.Builder, d Desired, fam Family, devs []rendered, trusted, lan []string, unknown *rendered) {
	b.WriteString("*filter\n")
	fmt.Fprintf(b, ":%s - [0:0]\n:%s - [0:0]\n:%s - [0:0]\n:%s - [0:0]\n:%s - [0:0]\n:%s - [0:0]\n:%s - [0:0]\n", Chain, BypassChain, DoHChain, InboundChain, InputChain, RejectChain, StrictChain)
	// The DNS filter's ports are for redirected queries only. It listens on
	// every address (a redirect delivers to the address the packet came in
	// on), so without this anyone who can reach the router — the WAN side
	// included, where a firewall lets it — could use it as a resolver, and a
	// device could query another class's port directly. Redirected packets
	// carry conntrack's DNAT state; the router's own queries come in on lo.
	if d.DNSPort > 0 {
		fmt.Fprintf(b, "-A %s -i lo -j RETURN\n", InputChain)
		for _, port := range filterPorts(d, devs, unknown) {
			for _, proto := range []string{"udp", "tcp"} {
				fmt.Fprintf(b, "-A %s -p %s -m %s --dport %d -m conntrack ! --ctstate DNAT -m comment --comment \"famguard: DNS filter port, not redirected\" -j DROP\n",
					InputChain, proto, proto, port)
			}
		}
	}
	// Before the established shortcut: every packet of a connection the
	// kernel marked as an offline device's, in both directions.
	fmt.Fprintf(b, "-A %s -m connmark --mark %#x/%#x -m comment --comment \"famguard: offline device\" -j %s\n", Chain, MarkOffline, MarkOffline, RejectChain)
	fmt.Fprintf(b, "-A %s -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN\n", Chain)
	renderInbound(b, d, fam, devs, lan, unknown)
	for _, mac := range trusted {
		fmt.Fprintf(b, "-A %s -m mac --mac-source %s -m comment --comment \"famguard: trusted\" -j RETURN\n", Chain, mac)
	}
	var bypass []string // rules of BypassChain: devices whose encrypted DNS is refused
	var strict []rendered
	for _, dev := range devs {
		// Offline devices keep these: the mark rule above rejects their
		// packets before they could matter, and a schedule change then
		// leaves the (per-device, long) bypass and strict lists alone.
		if dev.BypassPrevention && d.DNSPort > 0 {
			bypass = append(bypass, fmt.Sprintf("-A %s -m mac --mac-source %s -m comment --comment %s -j %s\n",
				BypassChain, dev.mac, Comment("famguard: "+who(dev.Device)+": encrypted DNS (bypass prevention)"), RejectChain))
		}
		if dev.Strict && dev.StrictSet != "" {
			strict = append(strict, dev)
		}
		if !dev.Offline {
			continue
		}
		// The connection mark catches the offline device's connections;
		// these catch its packets that have no connection (INVALID, after
		// the daemon deleted the entries) and the first packet of a
		// connection opened towards an address the agent knows.
		comment := Comment(fmt.Sprintf("famguard: %s: %s", who(dev.Device), dev.Reason))
		fmt.Fprintf(b, "-A %s -m mac --mac-source %s -m comment --comment %s -j %s\n", Chain, dev.mac, comment, RejectChain)
		addrs := append([]netip.Addr(nil), dev.Addrs...)
		sort.Slice(addrs, func(i, j int) bool { return addrs[i].Less(addrs[j]) })
		for _, a := range addrs {
			a = a.Unmap()
			if (fam == IPv4) != a.Is4() || a.IsLinkLocalUnicast() || !a.IsValid() {
				continue // link-local addresses are never forwarded
			}
			fmt.Fprintf(b, "-A %s -d %s -m comment --comment %s -j %s\n", Chain, netip.PrefixFrom(a, a.BitLen()), Comment("famguard: to "+who(dev.Device)), RejectChain)
		}
	}
	if unknown != nil && unknown.Strict && unknown.StrictSet != "" {
		strict = append(strict, *unknown)
	}
	// Bypass prevention tests the port first and the device second, so a new
	// connection that is neither DoT/DoQ (853) nor HTTPS to a listed DoH
	// resolver never walks the per-device list.
	if len(bypass) > 0 {
		for _, proto := range []string{"tcp", "udp"} {
			fmt.Fprintf(b, "-A %s -p %s -m %s --dport 853 -j %s\n", Chain, proto, proto, BypassChain)
		}
		doh := append([]netip.Addr(nil), d.DoHAddrs...)
		sort.Slice(doh, func(i, j int) bool { return doh[i].Less(doh[j]) })
		listed := false
		for _, a := range doh {
			if a = a.Unmap(); a.Is4() == (fam == IPv4) && a.IsValid() {
				fmt.Fprintf(b, "-A %s -d %s -m comment --comment \"famguard: DNS-over-HTTPS resolver\" -j %s\n", DoHChain, netip.PrefixFrom(a, a.BitLen()), BypassChain)
				listed = true
			}
		}
		if listed {
			for _, proto := range []string{"tcp", "udp"} {
				fmt.Fprintf(b, "-A %s -p %s -m %s --dport 443 -j %s\n", Chain, proto, proto, DoHChain)
			}
		}
		for _, r := range bypass {
			b.WriteString(r)
		}
	}
	renderStrict(b, fam, strict, lan)
	// Reject rather than drop: apps fail at once instead of hanging.
	fmt.Fprintf(b, "-A %s -p tcp -j REJECT --reject-with tcp-reset\n", RejectChain)
	if fam == IPv6 {
		fmt.Fprintf(b, "-A %s -j REJECT --reject-with icmp6-adm-prohibited\n", RejectChain)
	} else {
		fmt.Fprintf(b, "-A %s -j REJECT --reject-with icmp-admin-prohibited\n", RejectChain)
	}
	b.WriteString("COMMIT\n")
}

// inboundSet is the inbound set of the family that the rules use ("":
// none; the guard needs to know the LAN to tell inbound from outbound).
func inboundSet(d Desired, fam Family, lan []string) string {
	if d.InboundSet == "" || len(lan) == 0 {
		return ""
	}
	if fam == IPv6 {
		return d.InboundSet + "6"
	}
	return d.InboundSet + "4"
}

// renderInbound writes the inbound guard: while any device or the unknown
// class is offline, a connection opened from outside the LAN to a LAN
// address that no device which is not offline used (the inbound set) is
// rejected at its first packet. The connection mark cannot do this: a
// connection opened from outside gets its device ID only from the device's
// first answer, so the first packet (a SYN, a UDP datagram) would reach an
// offline device at an address the agent has not learnt yet. What it costs
// devices that are online is in INBOUND.md. Established traffic never gets
// here (the RELATED,ESTABLISHED return is just before), and outbound new
// connections leave at the first rule (-o LAN only).
func renderInbound(b *strings.Builder, d Desired, fam Family, devs []rendered, lan []string, unknown *rendered) {
	set := inboundSet(d, fam, lan)
	if set == "" {
		return
	}
	offline := unknown != nil && unknown.Offline
	for _, dev := range devs {
		offline = offline || dev.Offline
	}
	if !offline {
		return
	}
	for _, l := range lan {
		fmt.Fprintf(b, "-A %s -o %s -j %s\n", Chain, l, InboundChain)
	}
	for _, l := range lan {
		fmt.Fprintf(b, "-A %s -i %s -j RETURN\n", InboundChain, l)
	}
	fmt.Fprintf(b, "-A %s -m set --match-set %s dst -j RETURN\n", InboundChain, set)
	fmt.Fprintf(b, "-A %s -m comment --comment \"famguard: inbound, not in the set\" -j %s\n", InboundChain, RejectChain)
}

// renderStrict writes strict egress: a new connection of a strict device
// (told by its connection mark, which the kernel set from its MAC) goes only
// to the LAN, its allow_ips, and the addresses in its class's set — those
// the DNS filter answered it recently. Anything else is rejected: IP
// literals, resolvers found without DNS, proxies and VPNs by address.
func renderStrict(b *strings.Builder, fam Family, strict []rendered, lan []string) {
	if len(strict) == 0 {
		return
	}
	fmt.Fprintf(b, "-A %s -m connmark ! --mark 0x0/%#x -j %s\n", Chain, MarkDeviceMask, StrictChain)
	for _, l := range lan {
		fmt.Fprintf(b, "-A %s -o %s -j RETURN\n", StrictChain, l)
	}
	suffix := "4"
	if fam == IPv6 {
		suffix = "6"
	}
	for _, dev := range strict {
		match := fmt.Sprintf("-m connmark --mark %#x/%#x", DeviceMark(dev.ID), MarkDeviceMask)
		allow := append([]netip.Prefix(nil), dev.StrictAllow...)
		sort.Slice(allow, func(i, j int) bool { return allow[i].String() < allow[j].String() })
		for _, p := range allow {
			if p.Addr().Unmap().Is4() != (fam == IPv4) || !p.IsValid() {
				continue
			}
			fmt.Fprintf(b, "-A %s %s -d %s -j RETURN\n", StrictChain, match, p.Masked())
		}
		fmt.Fprintf(b, "-A %s %s -m set --match-set %s dst -j RETURN\n", StrictChain, match, dev.StrictSet+suffix)
		fmt.Fprintf(b, "-A %s %s -m comment --comment %s -j %s\n", StrictChain, match, Comment("famguard: "+who(dev.Device)+": strict, not answered by the filter"), RejectChain)
	}
}

// filterPorts are the DNS filter's listening ports, sorted.
func filterPorts(d Desired, devs []rendered, unknown *rendered) []int {
	seen := map[int]bool{d.DNSPort: true}
	if d.OfflineDNSPort > 0 {
		seen[d.OfflineDNSPort] = true
	}
	for _, dev := range devs {
		if dev.DNSPort > 0 {
			seen[dev.DNSPort] = true
		}
	}
	if unknown != nil && unknown.DNSPort > 0 {
		seen[unknown.DNSPort] = true
	}
	ports := make([]int, 0, len(seen))
	for p := range seen {
		ports = append(ports, p)
	}
	sort.Ints(ports)
	return ports
}

// StrictSets lists the ipsets a restore input refers to (`-m set
// --match-set NAME`): they must exist before the restore, or it fails.
func StrictSets(restore string) []string {
	var out []string
	seen := map[string]bool{}
	for _, line := range strings.Split(restore, "\n") {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if (f[i] == "--match-set" || f[i] == "--add-set") && !seen[f[i+1]] {
				seen[f[i+1]] = true
				out = append(out, f[i+1])
			}
		}
	}
	return out
}

// validIface accepts what Linux accepts as an interface name (IFNAMSIZ-1
// bytes, no slash, colon or white space), so a name cannot change a rule.
func validIface(s string) bool {
	if s == "" || len(s) > 15 || s == "." || s == ".." {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r == '/' || r == ':' || r == '"' || r == '\\' || r == '\'' || r > '~' {
			return false
		}
	}
	return true
}

// RenderCleanup removes famguard's chains from the given tables (after the
// jumps are gone).
func RenderCleanup(tables ...string) string {
	var b strings.Builder
	for _, t := range tables {
		b.WriteString("*" + t + "\n")
		for _, c := range ourChains[t] {
			fmt.Fprintf(&b, ":%s - [0:0]\n", c)
		}
		for _, c := range ourChains[t] {
			fmt.Fprintf(&b, "-X %s\n", c)
		}
		b.WriteString("COMMIT\n")
	}
	return b.String()
}

// ourChains are famguard's chains per table.
var ourChains = map[string][]string{"filter": {Chain, DoHChain, BypassChain, InboundChain, InputChain, StrictChain, RejectChain}, "nat": {DNSChain, DNS53Chain}, "mangle": {MarkChain, MACChain, OfflineChain}}

// tablesIn lists the tables a restore input writes.
func tablesIn(restore string) map[string]bool {
	used := map[string]bool{}
	for _, line := range strings.Split(restore, "\n") {
		if strings.HasPrefix(line, "*") {
			used[strings.TrimSpace(line[1:])] = true
		}
	}
	return used
}

func who(d Device) string {
	if d.Name != "" {
		return d.Child + "/" + d.Name
	}
	return d.Child + "/" + d.MAC
}

// Comment quotes a comment for iptables-restore. Names come from profiles
// written by people, so everything outside a plain safe set is replaced, and
// the length is capped: nothing a profile says can change the rule's meaning.
func Comment(s string) string {
	var b strings.Builder
	b.Grow(min(len(s), maxComment) + 2)
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			b.WriteByte(byte(r))
		case strings.ContainsRune(" _.,:;()/+=@-", r):
			b.WriteByte(byte(r))
		case r == '\'':
			// "Alice's phone" reads fine as "Alices phone"; iptables-save
			// would print a quote back escaped, so keep comments quote-free.
		case r == '–' || r == '—':
			b.WriteByte('-')
		default:
			b.WriteByte('_')
		}
		if b.Len() >= maxComment+1 {
			break
		}
	}
	// Each step writes one byte: the text is at most maxComment long.
	b.WriteByte('"')
	return b.String()
}

func canonicalMAC(s string) (string, error) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return "", fmt.Errorf("%q is not a MAC address", s)
	}
	return hw.String(), nil
}
