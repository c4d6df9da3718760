package rules

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
)

// Chain names. Fixed and short (iptables allows 28 characters); the agent
// owns exactly these two chains and one jump rule.
const (
	Chain       = "FAMGUARD"
	RejectChain = "FAMGUARD-REJECT"
	DNSChain    = "FAMGUARD-DNS"
	DoHChain    = "FAMGUARD-DOH"
	BypassChain = "FAMGUARD-BYPASS"
	InputChain  = "FAMGUARD-INPUT"
	// JumpComment marks the single jump from FORWARD, so a person reading
	// iptables-save knows whose rule it is.
	JumpComment = "famguard: enforce per-device schedules"
	// DNSJumpComment marks the jump from nat PREROUTING.
	DNSJumpComment = "famguard: DNS of protected devices"
	// InputJumpComment marks the jump from filter INPUT.
	InputJumpComment = "famguard: the DNS filter answers only redirected queries"
	maxComment       = 200 // xt_comment allows 255 bytes; leave room for quoting
)

// hook is one of famguard's entry points: a jump from a built-in chain.
type hook struct {
	table, builtin, chain string
	spec                  []string
}

// hooks are famguard's only rules in built-in chains, one per table. The
// filter jump lets only packets outside established flows in: established
// traffic costs one state test and never enters our chain, whatever the
// number of devices (when a device goes offline the agent deletes its
// conntrack entries, so its next packet is NEW or INVALID and does enter).
// The nat table only ever sees the first packet of a connection anyway. The
// INPUT jump, for new connections to the router only, keeps the DNS filter
// from being anyone's resolver: see Render.
var hooks = []hook{
	{"filter", "FORWARD", Chain, []string{"-m", "conntrack", "!", "--ctstate", "RELATED,ESTABLISHED", "-m", "comment", "--comment", JumpComment, "-j", Chain}},
	{"filter", "INPUT", InputChain, []string{"-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", InputJumpComment, "-j", InputChain}},
	{"nat", "PREROUTING", DNSChain, []string{"-m", "comment", "--comment", DNSJumpComment, "-j", DNSChain}},
}

// Render builds the iptables-restore --noflush input that replaces
// famguard's chains with the desired state, in one transaction.
//
// Per-packet cost does not grow with the number of devices for established
// traffic: the jump from FORWARD (see jumpSpec) lets only packets that are
// not part of an established or related flow into our chain, so only the
// first packet of a new connection walks the per-device rules, and only
// offline devices have rules at all. Bedtime still bites for
// connections that were open before it, because the daemon deletes the
// conntrack entries of a device when it goes offline: its next packet is NEW.
//
// Declaring `:CHAIN - [0:0]` under --noflush flushes just that chain, so the
// old rules and the new rules swap atomically: there is no moment without
// protection.
func Render(d Desired, fam Family) (string, error) {
	devs := append([]Device(nil), d.Devices...)
	sort.Slice(devs, func(i, j int) bool {
		if devs[i].Child != devs[j].Child {
			return devs[i].Child < devs[j].Child
		}
		return devs[i].MAC < devs[j].MAC
	})
	macs := make([]string, len(devs))
	for i, dev := range devs {
		mac, err := canonicalMAC(dev.MAC)
		if err != nil {
			return "", fmt.Errorf("device %q of %s: %w", dev.Name, dev.Child, err)
		}
		macs[i] = mac
	}
	var b strings.Builder
	// DNS interception: every query of a protected device, to whatever
	// server, goes to famguard's listener (nat sees only a connection's
	// first packet, so this costs nothing per packet).
	// Without interception famguard leaves the nat table alone entirely.
	if d.DNSPort > 0 {
		fmt.Fprintf(&b, "*nat\n:%s - [0:0]\n", DNSChain)
		for i, dev := range devs {
			for _, proto := range []string{"udp", "tcp"} {
				fmt.Fprintf(&b, "-A %s -m mac --mac-source %s -p %s -m %s --dport 53 -m comment --comment %s -j REDIRECT --to-ports %d\n",
					DNSChain, macs[i], proto, proto, Comment("famguard: DNS of "+who(dev)), d.DNSPort)
			}
		}
		b.WriteString("COMMIT\n")
	}
	b.WriteString("*filter\n")
	fmt.Fprintf(&b, ":%s - [0:0]\n:%s - [0:0]\n:%s - [0:0]\n:%s - [0:0]\n:%s - [0:0]\n", Chain, BypassChain, DoHChain, InputChain, RejectChain)
	// The DNS filter's port is for redirected queries only. It listens on
	// every address (a redirect delivers to the address the packet came in
	// on), so without this anyone who can reach the router — the WAN side
	// included, where a firewall lets it — could use it as a resolver, and a
	// device could query it directly to learn what is filtered. Redirected
	// packets carry conntrack's DNAT state; the router's own queries come in
	// on lo.
	if d.DNSPort > 0 {
		fmt.Fprintf(&b, "-A %s -i lo -j RETURN\n", InputChain)
		for _, proto := range []string{"udp", "tcp"} {
			fmt.Fprintf(&b, "-A %s -p %s -m %s --dport %d -m conntrack ! --ctstate DNAT -m comment --comment \"famguard: DNS filter port, not redirected\" -j DROP\n",
				InputChain, proto, proto, d.DNSPort)
		}
	}
	var bypass []string // rules of BypassChain: devices whose encrypted DNS is refused
	for i, dev := range devs {
		mac := macs[i]
		if !dev.Offline {
			if dev.BypassPrevention && d.DNSPort > 0 {
				bypass = append(bypass, fmt.Sprintf("-A %s -m mac --mac-source %s -m comment --comment %s -j %s\n",
					BypassChain, mac, Comment("famguard: "+who(dev)+": encrypted DNS (bypass prevention)"), RejectChain))
			}
			continue
		}
		comment := Comment(fmt.Sprintf("famguard: %s: %s", who(dev), dev.Reason))
		fmt.Fprintf(&b, "-A %s -m mac --mac-source %s -m comment --comment %s -j %s\n", Chain, mac, comment, RejectChain)
		addrs := append([]netip.Addr(nil), dev.Addrs...)
		sort.Slice(addrs, func(i, j int) bool { return addrs[i].Less(addrs[j]) })
		for _, a := range addrs {
			a = a.Unmap()
			if (fam == IPv4) != a.Is4() || a.IsLinkLocalUnicast() || !a.IsValid() {
				continue // link-local addresses are never forwarded
			}
			fmt.Fprintf(&b, "-A %s -d %s -m comment --comment %s -j %s\n", Chain, netip.PrefixFrom(a, a.BitLen()), Comment("famguard: to "+who(dev)), RejectChain)
		}
	}
	// Bypass prevention tests the port first and the device second, so a new
	// connection that is neither DoT/DoQ (853) nor HTTPS to a listed DoH
	// resolver never walks the per-device list.
	if len(bypass) > 0 {
		for _, proto := range []string{"tcp", "udp"} {
			fmt.Fprintf(&b, "-A %s -p %s -m %s --dport 853 -j %s\n", Chain, proto, proto, BypassChain)
		}
		doh := append([]netip.Addr(nil), d.DoHAddrs...)
		sort.Slice(doh, func(i, j int) bool { return doh[i].Less(doh[j]) })
		listed := false
		for _, a := range doh {
			if a = a.Unmap(); a.Is4() == (fam == IPv4) && a.IsValid() {
				fmt.Fprintf(&b, "-A %s -d %s -m comment --comment \"famguard: DNS-over-HTTPS resolver\" -j %s\n", DoHChain, netip.PrefixFrom(a, a.BitLen()), BypassChain)
				listed = true
			}
		}
		if listed {
			for _, proto := range []string{"tcp", "udp"} {
				fmt.Fprintf(&b, "-A %s -p %s -m %s --dport 443 -j %s\n", Chain, proto, proto, DoHChain)
			}
		}
		for _, r := range bypass {
			b.WriteString(r)
		}
	}
	// Reject rather than drop: apps fail at once instead of hanging.
	fmt.Fprintf(&b, "-A %s -p tcp -j REJECT --reject-with tcp-reset\n", RejectChain)
	if fam == IPv6 {
		fmt.Fprintf(&b, "-A %s -j REJECT --reject-with icmp6-adm-prohibited\n", RejectChain)
	} else {
		fmt.Fprintf(&b, "-A %s -j REJECT --reject-with icmp-admin-prohibited\n", RejectChain)
	}
	b.WriteString("COMMIT\n")
	return b.String(), nil
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
var ourChains = map[string][]string{"filter": {Chain, DoHChain, BypassChain, InputChain, RejectChain}, "nat": {DNSChain}}

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
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case strings.ContainsRune(" _.,:;()/+=@-", r):
			b.WriteRune(r)
		case r == '\'':
			// "Alice's phone" reads fine as "Alices phone"; iptables-save
			// would print a quote back escaped, so keep comments quote-free.
		case r == '–' || r == '—':
			b.WriteByte('-')
		default:
			b.WriteByte('_')
		}
		if b.Len() >= maxComment {
			break
		}
	}
	out := b.String()
	if len(out) > maxComment {
		out = out[:maxComment]
	}
	return `"` + out + `"`
}

func canonicalMAC(s string) (string, error) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return "", fmt.Errorf("%q is not a MAC address", s)
	}
	return hw.String(), nil
}
