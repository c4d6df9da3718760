package rules

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// The household of the identity tests: alice (offline at bedtime), bob
// (online, strict), a parent's trusted phone, unknown devices at the safe
// default (offline), LAN br-lan.
var (
	idLAN       = "br-lan"
	idWAN       = "wan"
	idUnknown   = "02:99:00:00:00:99"
	idInet4     = netip.MustParseAddr("198.51.100.10")
	idInet6     = netip.MustParseAddr("2001:db8:2::10")
	idAllowed4  = netip.MustParseAddr("203.0.113.7")
	idAnswered4 = netip.MustParseAddr("198.51.100.80")
	idAnswered6 = netip.MustParseAddr("2001:db8:2::80")
)

func identityDesired() Desired {
	a := alicePhone
	a.DNSPort = 5360
	b := bobTablet
	b.DNSPort, b.Strict, b.StrictSet = 5361, true, "fg-bob"
	b.StrictAllow = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8:3::/48")}
	return Desired{
		DNSPort: 5354, OfflineDNSPort: 5359,
		Devices: []Device{a, b},
		Trusted: []string{parentMAC},
		LAN:     []string{idLAN},
	}
}

func init() {
	goldenCases = append(goldenCases,
		goldenCase{"identity", identityDesired()},
		goldenCase{"unknown-like-child", func() Desired {
			d := identityDesired()
			d.Unknown = UnknownPolicy{Class: Device{ID: 9, Child: "unknown (like bob)", DNSPort: 5361, Strict: true, StrictSet: "fg-bob"}}
			return d
		}()},
		goldenCase{"unknown-allowed", func() Desired {
			d := identityDesired()
			d.Unknown = UnknownPolicy{Allow: true}
			return d
		}()},
	)
}

// TestIdentityVerdicts walks packets through the applied rules: who a
// packet belongs to comes from its MAC as the kernel matches it, carried by
// the connection mark; the DNS port tells the filter whose rules answer.
func TestIdentityVerdicts(t *testing.T) {
	f := NewFake()
	d := identityDesired()
	for _, fam := range []Family{IPv4, IPv6} {
		apply(t, f, fam, d)
	}
	type addrs struct{ alice, bob, parent, other, inet, allowed, answered netip.Addr }
	v4 := addrs{netip.MustParseAddr("192.0.2.11"), netip.MustParseAddr("192.0.2.21"), netip.MustParseAddr("192.0.2.31"),
		netip.MustParseAddr("192.0.2.99"), idInet4, idAllowed4, idAnswered4}
	v6 := addrs{netip.MustParseAddr("2001:db8:1::11"), netip.MustParseAddr("2001:db8:1::21"), netip.MustParseAddr("2001:db8:1::31"),
		netip.MustParseAddr("2001:db8:1::99"), idInet6, netip.MustParseAddr("2001:db8:3::7"), idAnswered6}
	aliceOff := DeviceMark(alicePhone.ID) | MarkOffline
	for _, fam := range []Family{IPv4, IPv6} {
		a, prohibited, set := v4, "icmp-admin-prohibited", "fg-bob4"
		if fam == IPv6 {
			a, prohibited, set = v6, "icmp6-adm-prohibited", "fg-bob6"
		}
		sets := map[string][]netip.Addr{set: {a.answered}}
		fromLAN := func(mac string, src, dst netip.Addr, proto string, port int) Packet {
			return Packet{InMAC: mac, Src: src, Dst: dst, Proto: proto, CtState: "NEW", DstPort: port, InIface: idLAN, OutIface: idWAN, Sets: sets}
		}
		fromWAN := func(src, dst netip.Addr, proto string, port int) Packet {
			return Packet{InMAC: "02:aa:00:00:00:01", Src: src, Dst: dst, Proto: proto, CtState: "NEW", DstPort: port, InIface: idWAN, OutIface: idLAN, Sets: sets}
		}
		with := func(p Packet, f func(*Packet)) Packet { f(&p); return p }
		for _, tc := range []struct {
			name     string
			p        Packet
			action   string
			with     string
			mark     uint32 // the connection mark after mangle
			redirect int
		}{
			// Unknown devices (the safe default: offline).
			{"unknown MAC at bedtime, TCP", fromLAN(idUnknown, a.other, a.inet, "tcp", 443), "REJECT", "tcp-reset", DeviceMark(DefaultUnknownID) | MarkOffline, 0},
			{"unknown MAC at bedtime, ICMP", fromLAN(idUnknown, a.other, a.inet, "icmp", 0), "REJECT", prohibited, DeviceMark(DefaultUnknownID) | MarkOffline, 0},
			{"unknown MAC, DNS to anywhere: the refusing port", fromLAN(idUnknown, a.other, a.inet, "udp", 53), "ACCEPT", "", DeviceMark(DefaultUnknownID) | MarkOffline, 5359},
			{"unknown MAC, established reply from outside", with(fromWAN(a.inet, a.other, "tcp", 50000), func(p *Packet) {
				p.CtState, p.CtDir, p.CtMark = "ESTABLISHED", "REPLY", DeviceMark(DefaultUnknownID)|MarkOffline
			}), "REJECT", "tcp-reset", DeviceMark(DefaultUnknownID) | MarkOffline, 0},
			// Trusted: never restricted, never redirected.
			{"trusted, TCP", fromLAN(parentMAC, a.parent, a.inet, "tcp", 443), "ACCEPT", "", DeviceMark(TrustedID), 0},
			{"trusted, IP literal (strict is not theirs)", fromLAN(parentMAC, a.parent, a.other, "udp", 4500), "ACCEPT", "", DeviceMark(TrustedID), 0},
			{"trusted, DNS not redirected", fromLAN(parentMAC, a.parent, a.inet, "udp", 53), "ACCEPT", "", DeviceMark(TrustedID), 0},
			// Offline child: every address, both directions, whoever opened it.
			{"offline child, new TCP from a fresh address", fromLAN(alicePhone.MAC, a.other, a.inet, "tcp", 443), "REJECT", "tcp-reset", aliceOff, 0},
			{"offline child, DNS: the refusing port", fromLAN(alicePhone.MAC, a.alice, a.inet, "tcp", 53), "ACCEPT", "", aliceOff, 5359},
			{"offline child, flow opened before bedtime, after the cut", with(fromLAN(alicePhone.MAC, a.alice, a.inet, "tcp", 443), func(p *Packet) { p.CtState = "NEW" }), "REJECT", "tcp-reset", aliceOff, 0},
			{"offline child's connection, reply direction", with(fromWAN(a.inet, a.alice, "udp", 40000), func(p *Packet) {
				p.CtState, p.CtDir, p.CtMark = "ESTABLISHED", "REPLY", aliceOff
			}), "REJECT", prohibited, aliceOff, 0},
			{"opened from outside: the offline child's first answer", with(fromLAN(alicePhone.MAC, a.other, a.inet, "tcp", 0), func(p *Packet) {
				p.CtState, p.CtDir = "ESTABLISHED", "REPLY"
			}), "REJECT", "tcp-reset", aliceOff, 0},
			{"opened from outside: its next packet", with(fromWAN(a.inet, a.other, "tcp", 22), func(p *Packet) {
				p.CtState, p.CtMark = "ESTABLISHED", aliceOff
			}), "REJECT", "tcp-reset", aliceOff, 0},
			{"offline child, packet without a connection", with(fromLAN(alicePhone.MAC, a.alice, a.inet, "tcp", 443), func(p *Packet) { p.CtState = "INVALID" }), "REJECT", "tcp-reset", 0, 0},
			// Strict bob: only what the filter answered, the LAN, allow_ips.
			{"strict, IP literal", fromLAN(bobTablet.MAC, a.bob, a.inet, "tcp", 443), "REJECT", "tcp-reset", DeviceMark(bobTablet.ID), 0},
			{"strict, QUIC to an IP literal", fromLAN(bobTablet.MAC, a.bob, a.inet, "udp", 443), "REJECT", prohibited, DeviceMark(bobTablet.ID), 0},
			{"strict, answered address", fromLAN(bobTablet.MAC, a.bob, a.answered, "tcp", 443), "ACCEPT", "", DeviceMark(bobTablet.ID), 0},
			{"strict, allow_ips", fromLAN(bobTablet.MAC, a.bob, a.allowed, "udp", 3478), "ACCEPT", "", DeviceMark(bobTablet.ID), 0},
			{"strict, the LAN", with(fromLAN(bobTablet.MAC, a.bob, a.parent, "tcp", 445), func(p *Packet) { p.OutIface = idLAN }), "ACCEPT", "", DeviceMark(bobTablet.ID), 0},
			{"strict, established", with(fromLAN(bobTablet.MAC, a.bob, a.inet, "tcp", 443), func(p *Packet) {
				p.CtState, p.CtMark = "ESTABLISHED", DeviceMark(bobTablet.ID)
			}), "ACCEPT", "", DeviceMark(bobTablet.ID), 0},
			{"strict, DNS: bob's class port", fromLAN(bobTablet.MAC, a.bob, a.inet, "udp", 53), "ACCEPT", "", DeviceMark(bobTablet.ID), 5361},
			// Outside the LAN: never an unknown device.
			{"from the WAN, opened from outside", fromWAN(a.inet, a.bob, "tcp", 22), "ACCEPT", "", 0, 0},
			{"the router's own connection, answer from outside", with(fromWAN(a.inet, a.bob, "tcp", 0), func(p *Packet) {
				p.CtState, p.CtDir, p.Hook = "ESTABLISHED", "REPLY", "INPUT"
			}), "ACCEPT", "", DeviceMark(OtherID), 0},
			// The DNS filter's ports answer only redirected queries.
			{"a class port queried directly", with(fromLAN(idUnknown, a.other, a.bob, "udp", 5361), func(p *Packet) { p.Hook = "INPUT" }), "DROP", "", DeviceMark(DefaultUnknownID) | MarkOffline, 0},
		} {
			v, err := Trace(f.Save(fam), tc.p)
			if err != nil {
				t.Fatalf("%s %s: %v", fam, tc.name, err)
			}
			if v.Action != tc.action || v.RejectWith != tc.with || v.Mark != tc.mark || v.RedirectPort != tc.redirect {
				t.Errorf("%s %s: %s %s mark %#x port %d, want %s %s mark %#x port %d\n  path %q", fam, tc.name,
					v.Action, v.RejectWith, v.Mark, v.RedirectPort, tc.action, tc.with, tc.mark, tc.redirect, v.Path)
			}
		}
	}
}

// TestIdentityUnknownPolicies: `like: bob` puts unknown devices under bob's
// class (his DNS port, strict with his set); `allow` lets them be.
func TestIdentityUnknownPolicies(t *testing.T) {
	other, inet := netip.MustParseAddr("192.0.2.99"), idInet4
	p := func(port int) Packet {
		return Packet{InMAC: idUnknown, Src: other, Dst: inet, Proto: "udp", CtState: "NEW", DstPort: port, InIface: idLAN, OutIface: idWAN,
			Sets: map[string][]netip.Addr{"fg-bob4": {idAnswered4}}}
	}
	like := identityDesired()
	like.Unknown = UnknownPolicy{Class: Device{ID: 9, Child: "unknown", DNSPort: 5361, Strict: true, StrictSet: "fg-bob"}}
	allow := identityDesired()
	allow.Unknown = UnknownPolicy{Allow: true}
	for _, tc := range []struct {
		name     string
		d        Desired
		port     int
		action   string
		redirect int
		mark     uint32
	}{
		{"like bob: DNS to bob's port", like, 53, "ACCEPT", 5361, DeviceMark(9)},
		{"like bob: strict, IP literal", like, 443, "REJECT", 0, DeviceMark(9)},
		{"allow: passes", allow, 443, "ACCEPT", 0, DeviceMark(DefaultUnknownID)},
		{"allow: DNS not redirected", allow, 53, "ACCEPT", 0, DeviceMark(DefaultUnknownID)},
	} {
		f := NewFake()
		apply(t, f, IPv4, tc.d)
		v, err := Trace(f.Save(IPv4), p(tc.port))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if v.Action != tc.action || v.RedirectPort != tc.redirect || v.Mark != tc.mark {
			t.Errorf("%s: %s port %d mark %#x, want %s port %d mark %#x\n  path %q", tc.name, v.Action, v.RedirectPort, v.Mark, tc.action, tc.redirect, tc.mark, v.Path)
		}
	}
}

// TestEstablishedCostIsFlat: a packet of an established, attributed
// connection takes the same path with 2 devices as with 250 (of which 249
// offline): one connmark test in mangle, the jump, the offline test and the
// established return in filter.
func TestEstablishedCostIsFlat(t *testing.T) {
	path := func(n, offline int) []string {
		d := identityDesired()
		d.Devices = nil
		for i := 0; i < n; i++ {
			d.Devices = append(d.Devices, Device{ID: uint16(i + 1), MAC: fmt.Sprintf("02:00:00:01:%02x:%02x", i>>8, i&0xff),
				Child: fmt.Sprintf("kid%d", i/4), Offline: i < offline, Reason: "bedtime",
				Addrs: []netip.Addr{netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})}})
		}
		f := NewFake()
		apply(t, f, IPv4, d)
		online := d.Devices[n-1]
		v, err := Trace(f.Save(IPv4), Packet{InMAC: online.MAC, Src: netip.MustParseAddr("192.0.2.250"), Dst: idInet4, Proto: "tcp",
			CtState: "ESTABLISHED", CtMark: DeviceMark(online.ID), DstPort: 443, InIface: idLAN, OutIface: idWAN})
		if err != nil || v.Action != "ACCEPT" {
			t.Fatalf("%d devices: %+v %v", n, v, err)
		}
		return v.Path
	}
	small, big := path(2, 1), path(250, 249)
	if strings.Join(small, "\n") != strings.Join(big, "\n") || len(big) != 2 {
		t.Errorf("established path differs or is long:\n2 devices: %q\n250 devices: %q", small, big)
	}
}

// TestApplyCreatesSetsFirst: a restore naming a strict set creates the set
// first; when that fails nothing is applied and the error names the set.
func TestApplyCreatesSetsFirst(t *testing.T) {
	f := NewFake()
	apply(t, f, IPv4, Desired{Devices: []Device{alicePhone}})
	before := f.Save(IPv4)
	f.Sets.Fail = errors.New("creating ipset fg-bob4: operation not permitted")
	text, err := Render(identityDesired(), IPv4)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Apply(IPv4, text); err == nil || !strings.Contains(err.Error(), "fg-bob4") {
		t.Errorf("apply with a failing set: %v", err)
	}
	if f.Save(IPv4) != before {
		t.Error("a failed apply changed the rules")
	}
	f.Sets.Fail = nil
	if err := f.Apply(IPv4, text); err != nil {
		t.Fatal(err)
	}
	if !f.Sets.Has("fg-bob4") || f.Sets.Has("fg-bob6") {
		t.Errorf("sets after an IPv4 apply: fg-bob4 %v, fg-bob6 %v", f.Sets.Has("fg-bob4"), f.Sets.Has("fg-bob6"))
	}
}

func TestRenderRejectsBadIdentity(t *testing.T) {
	for _, tc := range []struct {
		name string
		d    Desired
		want string
	}{
		{"no ID", Desired{Devices: []Device{{MAC: "02:00:00:00:00:01", Child: "x"}}}, "ID 0 is not in"},
		{"reserved ID", Desired{Devices: []Device{{ID: TrustedID, MAC: "02:00:00:00:00:01", Child: "x"}}}, "is not in"},
		{"bad trusted MAC", Desired{Trusted: []string{"nope"}}, "trusted device"},
		{"bad LAN name", Desired{LAN: []string{"br-lan -j ACCEPT"}}, "not an interface name"},
	} {
		if _, err := Render(tc.d, IPv4); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}
