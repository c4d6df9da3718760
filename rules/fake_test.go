package rules

import (
	"net/netip"
	"strings"
	"testing"
)

func apply(t *testing.T, f *Fake, fam Family, d Desired) {
	t.Helper()
	text, err := Render(d, fam)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Apply(fam, text); err != nil {
		t.Fatal(err)
	}
}

func TestFakeReplacesAtomically(t *testing.T) {
	for _, fam := range []Family{IPv4, IPv6} {
		f := NewFake()
		apply(t, f, fam, Desired{Devices: []Device{alicePhone, aliceLaptop}})
		apply(t, f, fam, Desired{Devices: []Device{aliceLaptop}})
		s := f.Save(fam)
		if strings.Contains(s, alicePhone.MAC) || !strings.Contains(s, aliceLaptop.MAC) {
			t.Errorf("%s: stale or missing rules after re-apply:\n%s", fam, s)
		}
		if n := strings.Count(s, "-j FAMGUARD\n"); n != 1 {
			t.Errorf("%s: %d jumps, want 1", fam, n)
		}

		// A broken transaction changes nothing and names its line.
		before := f.Save(fam)
		err := f.Apply(fam, "*filter\n:FAMGUARD - [0:0]\n-A FAMGUARD -j NOWHERE\nCOMMIT\n")
		if err == nil || !strings.Contains(err.Error(), "line 3") {
			t.Errorf("%s: broken input error = %v, want it to name line 3", fam, err)
		}
		if f.Save(fam) != before {
			t.Errorf("%s: a failed transaction changed the table", fam)
		}
	}
}

func TestFakeJumpStaysFirstAndCleanupRestores(t *testing.T) {
	f := NewFake()
	if err := f.Run(IPv4, "-A FORWARD -p tcp -j DROP"); err != nil {
		t.Fatal(err)
	}
	fresh := f.Save(IPv4)
	apply(t, f, IPv4, Desired{Devices: []Device{alicePhone}})
	// Another program puts a rule in front of ours; the next apply moves
	// our jump back to the top and keeps the other rule.
	if err := f.Run(IPv4, "-I FORWARD 1 -j ACCEPT"); err != nil {
		t.Fatal(err)
	}
	apply(t, f, IPv4, Desired{Devices: []Device{alicePhone}})
	lines := strings.Split(f.Save(IPv4), "\n")
	var fwd []string
	for _, l := range lines {
		if strings.HasPrefix(l, "-A FORWARD") {
			fwd = append(fwd, l)
		}
	}
	if len(fwd) != 3 || !strings.HasSuffix(fwd[0], "-j FAMGUARD") || fwd[1] != "-A FORWARD -j ACCEPT" {
		t.Errorf("FORWARD = %q", fwd)
	}
	if err := f.Run(IPv4, "-D FORWARD -j ACCEPT"); err != nil {
		t.Fatal(err)
	}
	if err := f.Cleanup(IPv4); err != nil {
		t.Fatal(err)
	}
	if got := f.Save(IPv4); got != fresh {
		t.Errorf("after cleanup:\n%s\nwant\n%s", got, fresh)
	}
	if err := f.Cleanup(IPv4); err != nil {
		t.Errorf("second cleanup: %v", err)
	}
}

func TestSnapshotNoticesOtherPrograms(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(f *Fake) error
	}{
		{"flush our chain", func(f *Fake) error { return f.Run(IPv4, "-F FAMGUARD") }},
		{"flush FORWARD", func(f *Fake) error { return f.Run(IPv4, "-F FORWARD") }},
		{"rule before our jump", func(f *Fake) error { return f.Run(IPv4, "-I FORWARD 1 -j ACCEPT") }},
		{"nft flush ruleset", func(f *Fake) error { f.FlushRuleset(IPv4); return nil }},
	} {
		f := NewFake()
		apply(t, f, IPv4, Desired{Devices: []Device{alicePhone}})
		before, _ := f.Snapshot(IPv4)
		if err := tc.change(f); err != nil {
			t.Fatal(err)
		}
		after, _ := f.Snapshot(IPv4)
		if after == before {
			t.Errorf("%s: snapshot unchanged", tc.name)
		}
		if jumpFirstOnce(after, map[string]bool{"filter": true}) {
			if tc.name != "flush our chain" {
				t.Errorf("%s: jump still reported first", tc.name)
			}
		}
		// Re-applying heals.
		apply(t, f, IPv4, Desired{Devices: []Device{alicePhone}})
		if healed, _ := f.Snapshot(IPv4); healed != before {
			t.Errorf("%s: not healed:\n%s\nwant\n%s", tc.name, healed, before)
		}
	}
}

// TestTraceVerdicts walks packets through the applied rules: this is what
// the rules do, not what their text looks like.
func TestTraceVerdicts(t *testing.T) {
	f := NewFake()
	d := Desired{Devices: []Device{alicePhone, bobTablet}}
	v4 := struct{ alice, bob, parent, inet netip.Addr }{
		netip.MustParseAddr("192.0.2.11"), netip.MustParseAddr("192.0.2.21"), netip.MustParseAddr("192.0.2.31"), netip.MustParseAddr("198.51.100.10")}
	v6 := struct{ alice, bob, parent, inet netip.Addr }{
		netip.MustParseAddr("2001:db8:1::11"), netip.MustParseAddr("2001:db8:1::21"), netip.MustParseAddr("2001:db8:1::31"), netip.MustParseAddr("2001:db8:2::10")}
	for _, fam := range []Family{IPv4, IPv6} {
		apply(t, f, fam, d)
		a := v4
		prohibited := "icmp-admin-prohibited"
		if fam == IPv6 {
			a, prohibited = v6, "icmp6-adm-prohibited"
		}
		for _, tc := range []struct {
			name   string
			p      Packet
			action string
			with   string
		}{
			{"offline child, new TCP", Packet{InMAC: alicePhone.MAC, Src: a.alice, Dst: a.inet, Proto: "tcp", CtState: "NEW", DstPort: 443}, "REJECT", "tcp-reset"},
			{"offline child, new UDP", Packet{InMAC: alicePhone.MAC, Src: a.alice, Dst: a.inet, Proto: "udp", CtState: "NEW", DstPort: 443}, "REJECT", prohibited},
			// Established packets of a connection that already carries an
			// ID skip the MAC walk (mangle) and every device rule (filter):
			// the cost does not grow with devices. A connection opened
			// while the device was online carries no offline bit: bedtime
			// bites because the agent deletes the device's conntrack
			// entries by its ID, which makes its next packet NEW.
			{"child, established while online", Packet{InMAC: alicePhone.MAC, Src: a.alice, Dst: a.inet, Proto: "tcp", CtState: "ESTABLISHED", DstPort: 443, CtMark: DeviceMark(1)}, "ACCEPT", ""},
			{"offline child, established", Packet{InMAC: alicePhone.MAC, Src: a.alice, Dst: a.inet, Proto: "tcp", CtState: "ESTABLISHED", DstPort: 443, CtMark: DeviceMark(1) | MarkOffline}, "REJECT", "tcp-reset"},
			{"offline child, reply direction", Packet{InMAC: "02:99:00:00:00:01", Src: a.inet, Dst: a.alice, Proto: "udp", CtState: "ESTABLISHED", CtDir: "REPLY", DstPort: 5000, CtMark: DeviceMark(1) | MarkOffline}, "REJECT", prohibited},
			{"offline child, changed address", Packet{InMAC: alicePhone.MAC, Src: a.parent, Dst: a.inet, Proto: "tcp", CtState: "NEW", DstPort: 443}, "REJECT", "tcp-reset"},
			{"connection opened towards the offline child", Packet{InMAC: "02:99:00:00:00:01", Src: a.inet, Dst: a.alice, Proto: "tcp", CtState: "NEW", DstPort: 443}, "REJECT", "tcp-reset"},
			{"online child", Packet{InMAC: bobTablet.MAC, Src: a.bob, Dst: a.inet, Proto: "tcp", CtState: "NEW", DstPort: 443}, "ACCEPT", ""},
			{"towards the online child", Packet{InMAC: "02:99:00:00:00:01", Src: a.inet, Dst: a.bob, Proto: "udp", CtState: "NEW", DstPort: 443}, "ACCEPT", ""},
			{"parent, not in any profile", Packet{InMAC: parentMAC, Src: a.parent, Dst: a.inet, Proto: "tcp", CtState: "NEW", DstPort: 443}, "ACCEPT", ""},
		} {
			v, err := Trace(f.Save(fam), tc.p)
			if err != nil {
				t.Fatalf("%s %s: %v", fam, tc.name, err)
			}
			if v.Action != tc.action || v.RejectWith != tc.with {
				t.Errorf("%s %s: %s %s, want %s %s (path %q)", fam, tc.name, v.Action, v.RejectWith, tc.action, tc.with, v.Path)
			}
		}
	}
	// After another program flushed our chain the offline child passes:
	// exactly the gap the heal closes.
	if err := f.Run(IPv4, "-F FAMGUARD"); err != nil {
		t.Fatal(err)
	}
	if v, _ := Trace(f.Save(IPv4), Packet{InMAC: alicePhone.MAC, Src: v4.alice, Dst: v4.inet, Proto: "tcp", CtState: "NEW", DstPort: 443}); v.Action != "ACCEPT" {
		t.Errorf("flushed chain still rejects: %+v", v)
	}
}

func TestTraceRefusesUnknownRules(t *testing.T) {
	save := "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -m length --length 100 -j DROP\nCOMMIT\n"
	if _, err := Trace(save, Packet{Proto: "tcp", CtState: "NEW"}); err == nil {
		t.Error("a rule the tracer does not understand must be an error")
	}
}

// TestDNSInterceptionOnAndOff: with a DNS port every protected device's DNS
// is redirected (nat) and encrypted DNS refused for devices with bypass
// prevention; switching it off removes famguard's nat part entirely, and
// cleanup leaves the tables as they were.
func TestDNSInterceptionOnAndOff(t *testing.T) {
	for _, fam := range []Family{IPv4, IPv6} {
		f := NewFake()
		fresh := f.Save(fam)
		on := Desired{DNSPort: 5354, Devices: []Device{alicePhone, withBypass(bobTablet)}}
		apply(t, f, fam, on)
		s := f.Save(fam)
		if n := strings.Count(s, "-j REDIRECT --to-ports 5354"); n != 4 {
			t.Errorf("%s: %d redirect rules, want udp+tcp for 2 devices:\n%s", fam, n, s)
		}
		if !strings.Contains(s, "-A PREROUTING -m comment --comment \""+DNSJumpComment+"\" -j FAMGUARD-DNS") {
			t.Errorf("%s: no nat jump:\n%s", fam, s)
		}
		apply(t, f, fam, Desired{Devices: on.Devices})
		if s := f.Save(fam); strings.Contains(s, "FAMGUARD-DNS") || strings.Contains(s, "--dport 853") {
			t.Errorf("%s: DNS switched off but famguard's nat part or DoT rules remain:\n%s", fam, s)
		}
		apply(t, f, fam, on)
		if err := f.Cleanup(fam); err != nil {
			t.Fatal(err)
		}
		// The filter table is exactly as before; the nat table, created
		// for the interception, is left empty (iptables cannot remove a
		// table, only its chains and rules).
		got := f.Save(fam)
		if !strings.HasPrefix(got, fresh) || strings.Contains(got, "FAMGUARD") {
			t.Errorf("%s: after cleanup\n%s\nwant\n%s followed by an empty nat table", fam, got, fresh)
		}
	}
}

func TestTraceBypassPrevention(t *testing.T) {
	f := NewFake()
	doh := netip.MustParseAddr("198.51.100.153")
	apply(t, f, IPv4, Desired{DNSPort: 5354, Devices: []Device{withBypass(bobTablet)}, DoHAddrs: []netip.Addr{doh}})
	bob, dot := netip.MustParseAddr("192.0.2.21"), netip.MustParseAddr("198.51.100.53")
	for _, tc := range []struct {
		p      Packet
		action string
	}{
		{Packet{InMAC: bobTablet.MAC, Src: bob, Dst: dot, Proto: "tcp", CtState: "NEW", DstPort: 853}, "REJECT"}, // DNS over TLS
		{Packet{InMAC: bobTablet.MAC, Src: bob, Dst: dot, Proto: "udp", CtState: "NEW", DstPort: 853}, "REJECT"}, // DNS over QUIC
		{Packet{InMAC: bobTablet.MAC, Src: bob, Dst: dot, Proto: "tcp", CtState: "NEW", DstPort: 443}, "ACCEPT"},
		{Packet{InMAC: bobTablet.MAC, Src: bob, Dst: doh, Proto: "tcp", CtState: "NEW", DstPort: 443}, "REJECT"}, // DNS over HTTPS to a listed resolver
		{Packet{InMAC: bobTablet.MAC, Src: bob, Dst: doh, Proto: "udp", CtState: "NEW", DstPort: 443}, "REJECT"}, // ... over HTTP/3
		{Packet{InMAC: parentMAC, Src: netip.MustParseAddr("192.0.2.31"), Dst: doh, Proto: "tcp", CtState: "NEW", DstPort: 443}, "ACCEPT"},
		{Packet{InMAC: parentMAC, Src: netip.MustParseAddr("192.0.2.31"), Dst: dot, Proto: "tcp", CtState: "NEW", DstPort: 853}, "ACCEPT"},
	} {
		v, err := Trace(f.Save(IPv4), tc.p)
		if err != nil || v.Action != tc.action {
			t.Errorf("%+v: %+v %v, want %s", tc.p, v, err, tc.action)
		}
	}
}

// TestTraceDNSFilterPort: the DNS filter's port answers what the nat rules
// redirected there (protected devices' port-53 queries) and the router's own
// loopback, and nothing that was sent to it directly, from the LAN or the
// WAN; the router's other services are none of famguard's business.
func TestTraceDNSFilterPort(t *testing.T) {
	f := NewFake()
	apply(t, f, IPv4, Desired{DNSPort: 5354, Devices: []Device{withBypass(bobTablet)}})
	bob, router, wan := netip.MustParseAddr("192.0.2.21"), netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("203.0.113.7")
	for _, tc := range []struct {
		name   string
		p      Packet
		action string
	}{
		{"Bob's query redirected from port 53", Packet{InMAC: bobTablet.MAC, Src: bob, Dst: router, Proto: "udp", CtState: "NEW,DNAT", DstPort: 5354, Hook: "INPUT", InIface: "br-lan"}, "ACCEPT"},
		{"Bob's TCP query redirected", Packet{InMAC: bobTablet.MAC, Src: bob, Dst: router, Proto: "tcp", CtState: "NEW,DNAT", DstPort: 5354, Hook: "INPUT", InIface: "br-lan"}, "ACCEPT"},
		{"Bob querying the filter port directly", Packet{InMAC: bobTablet.MAC, Src: bob, Dst: router, Proto: "udp", CtState: "NEW", DstPort: 5354, Hook: "INPUT", InIface: "br-lan"}, "DROP"},
		{"a WAN host querying the filter port", Packet{InMAC: "02:99:00:00:00:01", Src: wan, Dst: router, Proto: "udp", CtState: "NEW", DstPort: 5354, Hook: "INPUT", InIface: "wan"}, "DROP"},
		{"a WAN host over TCP", Packet{InMAC: "02:99:00:00:00:01", Src: wan, Dst: router, Proto: "tcp", CtState: "NEW", DstPort: 5354, Hook: "INPUT", InIface: "wan"}, "DROP"},
		{"the router's own test query", Packet{Src: router, Dst: router, Proto: "udp", CtState: "NEW", DstPort: 5354, Hook: "INPUT", InIface: "lo"}, "ACCEPT"},
		{"the router's resolver on 53, for anyone", Packet{InMAC: parentMAC, Src: netip.MustParseAddr("192.0.2.31"), Dst: router, Proto: "udp", CtState: "NEW", DstPort: 53, Hook: "INPUT", InIface: "br-lan"}, "ACCEPT"},
	} {
		v, err := Trace(f.Save(IPv4), tc.p)
		if err != nil || v.Action != tc.action {
			t.Errorf("%s: %+v %v, want %s", tc.name, v, err, tc.action)
		}
	}
	// Without DNS filtering the chain is empty: nothing of the router's is
	// touched.
	g := NewFake()
	apply(t, g, IPv4, Desired{Devices: []Device{bobTablet}})
	if v, err := Trace(g.Save(IPv4), Packet{Src: wan, Dst: router, Proto: "udp", CtState: "NEW", DstPort: 5354, Hook: "INPUT", InIface: "wan"}); err != nil || v.Action != "ACCEPT" {
		t.Errorf("DNS off: %+v %v", v, err)
	}
}

func TestHolds(t *testing.T) {
	text, err := Render(Desired{DNSPort: 5354, Devices: []Device{alicePhone, withBypass(bobTablet)}}, IPv4)
	if err != nil {
		t.Fatal(err)
	}
	f := NewFake()
	if err := f.Apply(IPv4, text); err != nil {
		t.Fatal(err)
	}
	snap, _ := f.Snapshot(IPv4)
	if !Holds(text, snap) {
		t.Fatalf("a fresh apply does not hold:\n%s", snap)
	}
	for _, change := range []string{"-F FAMGUARD", "-F FORWARD", "-I FORWARD 1 -j ACCEPT", "-A FAMGUARD -j RETURN"} {
		g := NewFake()
		_ = g.Apply(IPv4, text)
		if err := g.Run(IPv4, change); err != nil {
			t.Fatal(err)
		}
		if s, _ := g.Snapshot(IPv4); Holds(text, s) {
			t.Errorf("after %q the snapshot still holds", change)
		}
	}
	if s, _ := f.Snapshot(IPv6); Holds(text, s) {
		t.Error("an empty table holds")
	}
}
