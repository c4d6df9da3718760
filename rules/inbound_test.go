package rules

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// The inbound guard (issue 9, "offline means offline ... from whichever side
// the flow was opened"): the household of the identity tests with the
// inbound sets; alice is offline, so the guard is on.
func inboundDesired() Desired {
	d := identityDesired()
	d.InboundSet = "fgin-a"
	return d
}

func init() {
	goldenCases = append(goldenCases,
		goldenCase{"inbound-guard", inboundDesired()},
		goldenCase{"inbound-nobody-offline", func() Desired {
			d := inboundDesired()
			d.Devices = []Device{bobTablet}
			d.Unknown = UnknownPolicy{Allow: true}
			return d
		}()},
	)
}

// TestInboundVerdicts walks packets through the guard: the kernel learns
// the addresses of devices that are not offline from their own packets; a
// connection opened from outside to any other LAN address is rejected at
// its first packet while someone is offline; an offline device can never
// put an address in the set, whatever address it sends from.
func TestInboundVerdicts(t *testing.T) {
	f := NewFake()
	for _, fam := range []Family{IPv4, IPv6} {
		apply(t, f, fam, inboundDesired())
	}
	for _, fam := range []Family{IPv4, IPv6} {
		set, strict, prohibited := "fgin-a4", "fg-bob4", "icmp-admin-prohibited"
		bob, fresh, inet, other := netip.MustParseAddr("192.0.2.21"), netip.MustParseAddr("192.0.2.201"), idInet4, netip.MustParseAddr("192.0.2.99")
		if fam == IPv6 {
			set, strict, prohibited = "fgin-a6", "fg-bob6", "icmp6-adm-prohibited"
			bob, fresh, inet, other = netip.MustParseAddr("2001:db8:1::21"), netip.MustParseAddr("2001:db8:1::e:1"), idInet6, netip.MustParseAddr("2001:db8:1::99")
		}
		sets := func(in ...netip.Addr) map[string][]netip.Addr {
			return map[string][]netip.Addr{set: in, strict: {inet}}
		}
		fromLAN := func(mac string, src netip.Addr) Packet {
			return Packet{InMAC: mac, Src: src, Dst: inet, Proto: "tcp", CtState: "NEW", DstPort: 443, InIface: idLAN, OutIface: idWAN, Sets: sets()}
		}
		fromWAN := func(dst netip.Addr, proto string, in ...netip.Addr) Packet {
			return Packet{InMAC: "02:aa:00:00:00:01", Src: inet, Dst: dst, Proto: proto, CtState: "NEW", DstPort: 7100, InIface: idWAN, OutIface: idLAN, Sets: sets(in...)}
		}

		// What the kernel adds to the set.
		for _, tc := range []struct {
			name  string
			p     Packet
			added []string
		}{
			{"online (strict) device opens a connection", fromLAN(bobTablet.MAC, bob), []string{set + " " + bob.String()}},
			{"trusted device opens a connection", fromLAN(parentMAC, other), []string{set + " " + other.String()}},
			{"online device answers a connection opened from outside", func() Packet {
				p := fromLAN(bobTablet.MAC, bob)
				p.CtDir, p.CtState = "REPLY", "ESTABLISHED"
				return p
			}(), []string{set + " " + bob.String()}},
			{"offline child, from a fresh address", fromLAN(alicePhone.MAC, fresh), nil},
			{"offline child, claiming bob's address", fromLAN(alicePhone.MAC, bob), nil},
			{"offline child answers a connection opened from outside", func() Packet {
				p := fromLAN(alicePhone.MAC, fresh)
				p.CtDir, p.CtState = "REPLY", "ESTABLISHED"
				return p
			}(), nil},
			{"unknown device (offline class)", fromLAN(idUnknown, fresh), nil},
			{"from the WAN", fromWAN(bob, "tcp"), nil},
			{"a connection that already has its ID", func() Packet {
				p := fromLAN(bobTablet.MAC, fresh)
				p.CtState, p.CtMark = "ESTABLISHED", DeviceMark(bobTablet.ID)
				return p
			}(), nil},
		} {
			v, err := Trace(f.Save(fam), tc.p)
			if err != nil {
				t.Fatalf("%s %s: %v", fam, tc.name, err)
			}
			if !slices.Equal(v.Added, tc.added) {
				t.Errorf("%s %s: added %q, want %q\n  path %q", fam, tc.name, v.Added, tc.added, v.Path)
			}
		}

		// Connections opened from outside.
		for _, tc := range []struct {
			name   string
			p      Packet
			action string
			with   string
		}{
			{"TCP to the offline child's fresh address", fromWAN(fresh, "tcp"), "REJECT", "tcp-reset"},
			{"UDP to the offline child's fresh address", fromWAN(fresh, "udp"), "REJECT", prohibited},
			{"ICMP to the offline child's fresh address", fromWAN(fresh, "icmp"), "REJECT", prohibited},
			{"TCP to an address an online device used", fromWAN(bob, "tcp", bob), "ACCEPT", ""},
			{"TCP to an address no device used", fromWAN(other, "tcp"), "REJECT", "tcp-reset"},
			{"the answer of a connection the device opened", func() Packet {
				p := fromWAN(fresh, "tcp")
				p.CtState, p.CtDir, p.CtMark = "ESTABLISHED", "REPLY", DeviceMark(bobTablet.ID)
				return p
			}(), "ACCEPT", ""},
			{"the offline child's connection, from outside, established", func() Packet {
				p := fromWAN(fresh, "tcp", fresh)
				p.CtState, p.CtMark = "ESTABLISHED", DeviceMark(alicePhone.ID)|MarkOffline
				return p
			}(), "REJECT", "tcp-reset"},
		} {
			v, err := Trace(f.Save(fam), tc.p)
			if err != nil {
				t.Fatalf("%s %s: %v", fam, tc.name, err)
			}
			if v.Action != tc.action || v.RejectWith != tc.with {
				t.Errorf("%s %s: %s %s, want %s %s\n  path %q", fam, tc.name, v.Action, v.RejectWith, tc.action, tc.with, v.Path)
			}
		}

		// The address a device's own connection put in the set lets a
		// connection from outside through: the tracer's adds are what the
		// kernel's are.
		out, err := Trace(f.Save(fam), fromLAN(bobTablet.MAC, fresh))
		if err != nil || len(out.Added) != 1 {
			t.Fatalf("%s: bob's connection: %+v %v", fam, out, err)
		}
		in, err := Trace(f.Save(fam), fromWAN(fresh, "udp", fresh))
		if err != nil || in.Action != "ACCEPT" {
			t.Errorf("%s: inbound to the address bob used: %+v %v", fam, in, err)
		}
	}
}

// TestInboundCost: the guard is hit only by packets of new connections from
// outside the LAN towards it. Established packets take the same two rules
// in filter as without the guard; a device's new outbound connection passes
// one more rule (the -o LAN test) and never enters the guard; with nobody
// offline the guard is not there at all.
func TestInboundCost(t *testing.T) {
	established := Packet{InMAC: "02:aa:00:00:00:01", Src: idInet4, Dst: netip.MustParseAddr("192.0.2.21"), Proto: "tcp", CtState: "ESTABLISHED",
		CtMark: DeviceMark(bobTablet.ID), DstPort: 50000, InIface: idWAN, OutIface: idLAN, Sets: map[string][]netip.Addr{"fgin-a4": nil, "fg-bob4": nil}}
	paths := map[string][]string{}
	for name, d := range map[string]Desired{"without": identityDesired(), "with": inboundDesired()} {
		f := NewFake()
		apply(t, f, IPv4, d)
		v, err := Trace(f.Save(IPv4), established)
		if err != nil || v.Action != "ACCEPT" {
			t.Fatalf("%s: %+v %v", name, v, err)
		}
		paths[name] = v.Path
		outbound := Packet{InMAC: bobTablet.MAC, Src: netip.MustParseAddr("192.0.2.21"), Dst: idInet4, Proto: "tcp", CtState: "NEW",
			DstPort: 443, InIface: idLAN, OutIface: idWAN, Sets: established.Sets}
		if v, err := Trace(f.Save(IPv4), outbound); err != nil || strings.Contains(strings.Join(v.Path, "\n"), InboundChain+":") {
			t.Errorf("%s: a new outbound connection entered the guard: %q %v", name, v.Path, err)
		}
	}
	if strings.Join(paths["with"], "\n") != strings.Join(paths["without"], "\n") {
		t.Errorf("established path with the guard:\n%q\nwithout:\n%q", paths["with"], paths["without"])
	}
	nobody := inboundDesired()
	nobody.Devices = []Device{bobTablet}
	nobody.Unknown = UnknownPolicy{Allow: true}
	text, err := Render(nobody, IPv4)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(text, "-j "+InboundChain) || !strings.Contains(text, "--add-set fgin-a4 src") {
		t.Errorf("nobody offline: want no guard but the set kept warm:\n%s", text)
	}
}
