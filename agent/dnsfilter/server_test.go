package dnsfilter

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

var (
	aliceMAC  = "02:00:00:00:00:11"
	aliceAddr = netip.MustParseAddr("192.0.2.11")
	aliceV6   = netip.MustParseAddr("2001:db8:1::11")
	parent    = netip.MustParseAddr("192.0.2.31")
)

// fakeUpstream answers every A with 198.51.100.99 and AAAA with 2001:db8::99,
// and records what it was asked.
type fakeUpstream struct{ asked []string }

func (f *fakeUpstream) exchange(_ context.Context, m *dns.Msg, _ string) (*dns.Msg, error) {
	q := m.Question[0]
	f.asked = append(f.asked, q.Name)
	if q.Name == "down.example." {
		return nil, errors.New("upstream timeout")
	}
	r := new(dns.Msg)
	r.SetReply(m)
	hdr := dns.RR_Header{Name: q.Name, Rrtype: q.Qtype, Class: dns.ClassINET, Ttl: 300}
	switch q.Qtype {
	case dns.TypeA:
		r.Answer = []dns.RR{&dns.A{Hdr: hdr, A: net.ParseIP("198.51.100.99").To4()}}
	case dns.TypeAAAA:
		r.Answer = []dns.RR{&dns.AAAA{Hdr: hdr, AAAA: net.ParseIP("2001:db8::99")}}
	}
	return r, nil
}

func newTestServer(t *testing.T, mode BlockMode) (*Server, *fakeUpstream) {
	up := &fakeUpstream{}
	s := NewServer(up.exchange, mode)
	s.Publish(NewSnapshot(
		map[string]Rules{aliceMAC: {Child: "alice", Categories: []string{"gambling"}, Deny: []string{"example-game.com"},
			Allow: []string{"ok.casino.example"}, SafeSearch: true, BypassPrevention: true}},
		map[string][]netip.Addr{aliceMAC: {aliceAddr, aliceV6}, "02:00:00:00:00:31": {parent}},
		store(t)))
	return s, up
}

func query(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	return m
}

func TestAnswers(t *testing.T) {
	s, up := newTestServer(t, NullIP)
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		qtype uint16
		src   netip.Addr
		rcode int
		want  string // first answer's data, "" for none
	}{
		{"casino.example", dns.TypeA, aliceAddr, dns.RcodeSuccess, "0.0.0.0"},
		{"www.casino.example", dns.TypeAAAA, aliceV6, dns.RcodeSuccess, "::"},
		{"casino.example", dns.TypeMX, aliceAddr, dns.RcodeNameError, ""},
		{"ok.casino.example", dns.TypeA, aliceAddr, dns.RcodeSuccess, "198.51.100.99"},
		{"example-game.com", dns.TypeA, aliceAddr, dns.RcodeSuccess, "0.0.0.0"},
		{"use-application-dns.net", dns.TypeA, aliceAddr, dns.RcodeNameError, ""},
		{"www.google.com", dns.TypeA, aliceAddr, dns.RcodeSuccess, "forcesafesearch.google.com."},
		{"ordinary.example", dns.TypeA, aliceAddr, dns.RcodeSuccess, "198.51.100.99"},
		{"casino.example", dns.TypeA, parent, dns.RcodeSuccess, "198.51.100.99"},                            // not protected
		{"casino.example", dns.TypeA, netip.MustParseAddr("192.0.2.77"), dns.RcodeSuccess, "198.51.100.99"}, // unknown source
		{"down.example", dns.TypeA, aliceAddr, dns.RcodeServerFailure, ""},
	} {
		r := query(tc.name, tc.qtype)
		resp := s.Answer(ctx, r, tc.src, "udp")
		if resp.Id != r.Id || resp.Rcode != tc.rcode {
			t.Errorf("%s %s from %s: rcode %s id %d, want %s", tc.name, dns.TypeToString[tc.qtype], tc.src, dns.RcodeToString[resp.Rcode], resp.Id, dns.RcodeToString[tc.rcode])
			continue
		}
		got := ""
		if len(resp.Answer) > 0 {
			switch rr := resp.Answer[0].(type) {
			case *dns.A:
				got = rr.A.String()
			case *dns.AAAA:
				got = rr.AAAA.String()
			case *dns.CNAME:
				got = rr.Target
				if len(resp.Answer) != 2 {
					t.Errorf("%s: CNAME without the safe host's address: %v", tc.name, resp.Answer)
				}
			}
			if got == "0.0.0.0" || got == "::" {
				if ttl := resp.Answer[0].Header().Ttl; ttl != BlockedTTL {
					t.Errorf("%s: blocked TTL %d, want %d", tc.name, ttl, BlockedTTL)
				}
			}
		}
		if got != tc.want {
			t.Errorf("%s %s from %s: answer %q, want %q", tc.name, dns.TypeToString[tc.qtype], tc.src, got, tc.want)
		}
	}
	// Alice's blocked names never reach the upstream; the parent's and the
	// unknown device's queries for casino.example do.
	n := 0
	for _, asked := range up.asked {
		switch asked {
		case "casino.example.":
			n++
		case "www.casino.example.", "example-game.com.", "use-application-dns.net.":
			t.Errorf("blocked name %s was sent upstream", asked)
		}
	}
	if n != 2 {
		t.Errorf("casino.example asked upstream %d times, want 2 (parent, unknown device)", n)
	}
	st := s.Stats()
	if st.Counters[aliceMAC]["gambling"] != 3 || st.Counters[aliceMAC]["deny"] != 1 || st.Counters[aliceMAC]["bypass"] != 1 || st.Counters[aliceMAC]["safe-search"] != 1 {
		t.Errorf("counters = %v", st.Counters)
	}
	if len(st.Recent) != 5 || st.Recent[0].Reason != "casino.example: gambling (casino.example)" {
		t.Errorf("recent = %+v", st.Recent)
	}
}

func TestNXDomainMode(t *testing.T) {
	s, _ := newTestServer(t, NXDomain)
	resp := s.Answer(context.Background(), query("casino.example", dns.TypeA), aliceAddr, "udp")
	if resp.Rcode != dns.RcodeNameError || len(resp.Ns) != 1 || resp.Ns[0].(*dns.SOA).Minttl != BlockedTTL {
		t.Errorf("NXDOMAIN mode answer: %v", resp)
	}
}

func TestRecentIsBounded(t *testing.T) {
	s, _ := newTestServer(t, NullIP)
	for i := 0; i < 3*RecentMax; i++ {
		s.Answer(context.Background(), query("casino.example", dns.TypeA), aliceAddr, "udp")
	}
	if n := len(s.Stats().Recent); n != RecentMax {
		t.Errorf("%d recent decisions kept, want %d", n, RecentMax)
	}
}

func TestMalformedQueries(t *testing.T) {
	s, _ := newTestServer(t, NullIP)
	m := new(dns.Msg)
	m.Question = nil
	if r := s.Answer(context.Background(), m, aliceAddr, "udp"); r.Rcode != dns.RcodeFormatError {
		t.Errorf("no question: %s", dns.RcodeToString[r.Rcode])
	}
	two := query("a.example", dns.TypeA)
	two.Question = append(two.Question, two.Question[0])
	if r := s.Answer(context.Background(), two, aliceAddr, "udp"); r.Rcode != dns.RcodeFormatError {
		t.Errorf("two questions: %s", dns.RcodeToString[r.Rcode])
	}
}

// TestOverTheWire runs the real listener on loopback with a real upstream
// server, over UDP and TCP.
func TestOverTheWire(t *testing.T) {
	upstream := &dns.Server{Addr: "127.0.0.1:0", Net: "udp", Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		up := &fakeUpstream{}
		resp, _ := up.exchange(context.Background(), r, "udp")
		_ = w.WriteMsg(resp)
	})}
	started := make(chan struct{})
	upstream.NotifyStartedFunc = func() { close(started) }
	go upstream.ListenAndServe()
	<-started
	defer upstream.Shutdown()

	s := NewServer(UpstreamExchange(upstream.PacketConn.LocalAddr().String()), NullIP)
	s.Publish(NewSnapshot(map[string]Rules{aliceMAC: {Child: "alice", Categories: []string{"gambling"}}},
		map[string][]netip.Addr{aliceMAC: {netip.MustParseAddr("127.0.0.1")}}, store(t)))
	pc, _ := net.ListenPacket("udp", "127.0.0.1:0")
	addr := pc.LocalAddr().String()
	pc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.ListenAndServe(ctx, addr)
	time.Sleep(100 * time.Millisecond)
	for _, netw := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: netw, Timeout: 2 * time.Second}
		resp, _, err := c.Exchange(query("casino.example", dns.TypeA), addr)
		if err != nil || len(resp.Answer) != 1 || resp.Answer[0].(*dns.A).A.String() != "0.0.0.0" {
			t.Errorf("%s blocked query: %v %v", netw, resp, err)
		}
		resp, _, err = c.Exchange(query("ordinary.example", dns.TypeA), addr)
		if err != nil || len(resp.Answer) != 1 || resp.Answer[0].(*dns.A).A.String() != "198.51.100.99" {
			t.Errorf("%s forwarded query: %v %v", netw, resp, err)
		}
	}
}

// FuzzAnswer feeds arbitrary wire messages to the handler: it must never
// panic and must always produce a reply that packs.
func FuzzAnswer(f *testing.F) {
	for _, m := range []*dns.Msg{query("casino.example", dns.TypeA), query("www.google.com", dns.TypeAAAA), query("x", dns.TypeTXT)} {
		b, _ := m.Pack()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, wire []byte) {
		m := new(dns.Msg)
		if err := m.Unpack(wire); err != nil {
			return
		}
		s, _ := newTestServer(t, NullIP)
		resp := s.Answer(context.Background(), m, aliceAddr, "udp")
		if resp == nil {
			t.Fatal("no reply")
		}
		if _, err := resp.Pack(); err != nil {
			t.Fatalf("reply does not pack: %v", err)
		}
	})
}
