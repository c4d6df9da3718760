package dnsfilter

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestPortDecides: the port a query arrived on decides whose rules answer,
// whatever its source address — 10 fresh addresses of Alice's device that
// no neighbour table knows yet all get the blocked answer — and a port no
// class has, or the offline port, answers REFUSED, counted in Stats.
func TestPortDecides(t *testing.T) {
	s, up := newTestServer(t, NullIP)
	ask := func(port int, src netip.Addr, name string) *dns.Msg {
		t.Helper()
		wire, err := query(name, dns.TypeA).Pack()
		if err != nil {
			t.Fatal(err)
		}
		return unpack(t, s.Answer(context.Background(), wire, port, src, "udp"))
	}
	for i := 0; i < 10; i++ {
		for _, fresh := range []netip.Addr{netip.AddrFrom4([4]byte{192, 0, 2, byte(100 + i)}),
			netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 15: byte(100 + i)})} {
			r := ask(alicePort, fresh, "casino.example")
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "0.0.0.0" {
				t.Errorf("fresh address %s on Alice's port: %v", fresh, r)
			}
		}
	}
	// Alice's own address on the unrestricted class's port: the port wins.
	if r := ask(openPort, aliceAddr, "casino.example"); len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "198.51.100.99" {
		t.Errorf("Alice's address on the unrestricted port: %v", r)
	}
	for _, tc := range []struct {
		name string
		port int
	}{{"offline port", offlinePort}, {"a port no class has", 5399}, {"no port", 0}} {
		asked := len(up.asked)
		if r := ask(tc.port, aliceAddr, "ordinary.example"); r.Rcode != dns.RcodeRefused || len(r.Answer) != 0 {
			t.Errorf("%s: rcode %s, want REFUSED", tc.name, dns.RcodeToString[r.Rcode])
		}
		if len(up.asked) != asked {
			t.Errorf("%s: the query reached the upstream", tc.name)
		}
	}
	st := s.Stats()
	if st.OfflineRefused != 1 || st.Unattributed != 2 {
		t.Errorf("offline_refused %d unattributed %d, want 1 and 2", st.OfflineRefused, st.Unattributed)
	}
}

// TestPortsListen: Ensure binds the listeners of exactly the ports asked
// for, and each answers as its port's class over the wire.
func TestPortsListen(t *testing.T) {
	s, _ := newTestServer(t, NullIP)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := s.NewPorts(ctx, "127.0.0.1")
	defer p.Close()
	free := func() int {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	alice, open, off := free(), free(), free()
	snap := NewSnapshot(nil, nil, store(t)).WithPorts(map[int]Rules{alice: {Child: "alice", Categories: []string{"gambling"}}, open: {Child: "x"}}, off)
	s.Publish(snap)
	if err := p.Ensure([]int{alice, open, off}); err != nil {
		t.Fatal(err)
	}
	c := &dns.Client{Timeout: 2 * time.Second}
	for _, tc := range []struct {
		port  int
		rcode int
		want  string
	}{{alice, dns.RcodeSuccess, "0.0.0.0"}, {open, dns.RcodeSuccess, "198.51.100.99"}, {off, dns.RcodeRefused, ""}} {
		for _, netw := range []string{"udp", "tcp"} {
			c.Net = netw
			r, _, err := c.Exchange(query("casino.example", dns.TypeA), net.JoinHostPort("127.0.0.1", strconv.Itoa(tc.port)))
			if err != nil {
				t.Fatalf("port %d %s: %v", tc.port, netw, err)
			}
			got := ""
			if len(r.Answer) == 1 {
				got = r.Answer[0].(*dns.A).A.String()
			}
			if r.Rcode != tc.rcode || got != tc.want {
				t.Errorf("port %d %s: %s %q, want %s %q", tc.port, netw, dns.RcodeToString[r.Rcode], got, dns.RcodeToString[tc.rcode], tc.want)
			}
		}
	}
	if err := p.Ensure([]int{alice}); err != nil {
		t.Fatal(err)
	}
	if got := p.Open(); len(got) != 1 || got[0] != alice {
		t.Errorf("open after shrinking: %v", got)
	}
	if _, _, err := c.Exchange(query("x.example", dns.TypeA), net.JoinHostPort("127.0.0.1", strconv.Itoa(open))); err == nil {
		t.Error("a closed port still answers")
	}
}
