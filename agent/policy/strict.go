package policy

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// minAllowBits is the widest allow_ips range accepted: a /8 (IPv4) or a
// /16 (IPv6). Wider ranges are almost always a mistake (0.0.0.0/0 would
// turn strict mode off without saying so); a parent who means that writes
// `strict: false`.
const (
	minAllowBits4 = 8
	minAllowBits6 = 16
)

// strict reads a child's `strict` and `allow_ips` keys.
func (p *parser) strict(c *Child, f map[string]*yaml.Node, path string) {
	if s, ok := f["strict"]; ok {
		c.Strict = p.boolean(s, path+".strict")
	}
	a, ok := f["allow_ips"]
	if !ok {
		return
	}
	seen := map[netip.Prefix]bool{}
	for i, it := range p.seq(a, path+".allow_ips") {
		field := fmt.Sprintf("%s.allow_ips[%d]", path, i)
		s, ok := p.str(it, field)
		if !ok {
			continue
		}
		pr, err := parseAllowIP(s)
		if err != nil {
			p.problem(it, field, "%v", err)
			continue
		}
		seen[pr] = true
	}
	for pr := range seen {
		c.AllowIPs = append(c.AllowIPs, pr)
	}
	sort.Slice(c.AllowIPs, func(i, j int) bool {
		a, b := c.AllowIPs[i], c.AllowIPs[j]
		if a.Addr() != b.Addr() {
			return a.Addr().Less(b.Addr())
		}
		return a.Bits() < b.Bits()
	})
}

// parseAllowIP accepts an address (one host) or a CIDR range whose host
// bits are zero, and explains the usual mistakes.
func parseAllowIP(s string) (netip.Prefix, error) {
	t := strings.TrimSpace(s)
	var pr netip.Prefix
	if strings.Contains(t, "/") {
		var err error
		if pr, err = netip.ParsePrefix(t); err != nil {
			return pr, fmt.Errorf("%q is not an address range like 203.0.113.0/24 or 2001:db8::/32", s)
		}
		if m := pr.Masked(); m != pr {
			return pr, fmt.Errorf("%q has address bits beyond /%d: write %s", s, pr.Bits(), m)
		}
	} else {
		a, err := netip.ParseAddr(t)
		if err != nil || a.Zone() != "" {
			return pr, fmt.Errorf("%q is not an address like 203.0.113.7 or a range like 203.0.113.0/24 (host names do not belong here: strict mode already allows what famguard answered)", s)
		}
		pr = netip.PrefixFrom(a, a.BitLen())
	}
	if pr.Addr().Is4In6() {
		return pr, fmt.Errorf("%q: write IPv4 ranges in IPv4 form, e.g. 203.0.113.0/24", s)
	}
	if min := minAllowBits4; (pr.Addr().Is4() && pr.Bits() < min) || (pr.Addr().Is6() && pr.Bits() < minAllowBits6) {
		if pr.Addr().Is6() {
			min = minAllowBits6
		}
		return pr, fmt.Errorf("%q is wider than /%d: that would open most of the internet; set strict: false instead, or list narrower ranges", s, min)
	}
	return pr, nil
}
