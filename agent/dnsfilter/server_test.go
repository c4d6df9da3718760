package dnsfilter

// The server is written on golang.org/x/net/dns/dnsmessage; these tests
// build queries and read answers with github.com/miekg/dns, an independent
// implementation, as a cross-check of the wire format.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/famguard/famguard/scripts/fuzzseed"
)

var (
	aliceMAC  = "02:00:00:00:00:11"
	aliceAddr = netip.MustParseAddr("192.0.2.11")
	aliceV6   = netip.MustParseAddr("2001:db8:1::11")
	parent    = netip.MustParseAddr("192.0.2.31")
)

// fakeUpstream answers every A with 198.51.100.99 and AAAA with 2001:db8::99,
// and records what it was asked.
type fakeUpstream struct {
	mu    sync.Mutex
	asked []string
}

func (f *fakeUpstream) answer(m *dns.Msg) (*dns.Msg, error) {
	q := m.Question[0]
	f.mu.Lock()
	f.asked = append(f.asked, q.Name)
	f.mu.Unlock()
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

func (f *fakeUpstream) exchange(_ context.Context, query []byte, _ string) ([]byte, error) {
	m := new(dns.Msg)
	if err := m.Unpack(query); err != nil || len(m.Question) != 1 {
		return nil, errors.New("fake upstream: bad query")
	}
	r, err := f.answer(m)
	if err != nil {
		return nil, err
	}
	return r.Pack()
}

func newTestServer(t *testing.T, mode BlockMode) (*Server, *fakeUpstream) {
	up := &fakeUpstream{}
	s := NewServer(up.exchange, mode)
	aliceRules := Rules{Child: "alice", Categories: []string{"gambling"}, Deny: []string{"example-game.com"},
		Allow: []string{"ok.casino.example"}, SafeSearch: true, BypassPrevention: true}
	s.Publish(NewSnapshot(
		map[string]Rules{aliceMAC: aliceRules},
		map[string][]netip.Addr{aliceMAC: {aliceAddr, aliceV6}, "02:00:00:00:00:31": {parent}},
		store(t)).WithPorts(map[int]Rules{alicePort: aliceRules, openPort: {Child: "unrestricted"}}, offlinePort))
	return s, up
}

// The test server's ports: alice's class, a class without restrictions,
// and the offline port.
const (
	alicePort   = 5360
	openPort    = 5362
	offlinePort = 5359
)

// portOf is the port the kernel would have redirected a query from src to
// in the tests' household: Alice's addresses to her class's, any other to
// the unrestricted class's.
func portOf(src netip.Addr) int {
	if src == aliceAddr || src == aliceV6 {
		return alicePort
	}
	return openPort
}

func query(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	return m
}

// ask packs m, answers it from src and unpacks the reply with miekg/dns.
func ask(t *testing.T, s *Server, m *dns.Msg, src netip.Addr) *dns.Msg {
	t.Helper()
	wire, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return unpack(t, s.Answer(context.Background(), wire, portOf(src), src, "udp"))
}

func unpack(t *testing.T, wire []byte) *dns.Msg {
	t.Helper()
	if wire == nil {
		t.Fatal("no reply")
	}
	r := new(dns.Msg)
	if err := r.Unpack(wire); err != nil {
		t.Fatalf("reply does not parse: %v\n% x", err, wire)
	}
	return r
}

func TestAnswers(t *testing.T) {
	s, up := newTestServer(t, NullIP)
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
		{"casino.example", dns.TypeA, parent, dns.RcodeSuccess, "198.51.100.99"},                            // a class without restrictions
		{"casino.example", dns.TypeA, netip.MustParseAddr("192.0.2.77"), dns.RcodeSuccess, "198.51.100.99"}, // the same class, another address
		{"down.example", dns.TypeA, aliceAddr, dns.RcodeServerFailure, ""},
	} {
		r := query(tc.name, tc.qtype)
		resp := ask(t, s, r, tc.src)
		if resp.Id != r.Id || resp.Rcode != tc.rcode || !resp.Response {
			t.Errorf("%s %s from %s: rcode %s id %d, want %s", tc.name, dns.TypeToString[tc.qtype], tc.src, dns.RcodeToString[resp.Rcode], resp.Id, dns.RcodeToString[tc.rcode])
			continue
		}
		if len(resp.Question) != 1 || resp.Question[0] != r.Question[0] {
			t.Errorf("%s: question not echoed: %v", tc.name, resp.Question)
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
				if len(resp.Answer) != 2 || resp.Answer[1].Header().Name != rr.Target {
					t.Errorf("%s: CNAME without the safe host's address: %v", tc.name, resp.Answer)
				}
			}
			if got == "0.0.0.0" || got == "::" {
				if h := resp.Answer[0].Header(); h.Ttl != BlockedTTL || h.Name != r.Question[0].Name || h.Class != dns.ClassINET {
					t.Errorf("%s: blocked answer header %v, want TTL %d", tc.name, h, BlockedTTL)
				}
			}
		}
		if got != tc.want {
			t.Errorf("%s %s from %s: answer %q, want %q", tc.name, dns.TypeToString[tc.qtype], tc.src, got, tc.want)
		}
		// Our own answers say recursion is available.
		if tc.want == "0.0.0.0" || tc.want == "::" || tc.rcode == dns.RcodeNameError || tc.name == "www.google.com" {
			if !resp.RecursionAvailable || !resp.RecursionDesired {
				t.Errorf("%s: RA %v RD %v, want both", tc.name, resp.RecursionAvailable, resp.RecursionDesired)
			}
		}
		if tc.rcode == dns.RcodeNameError {
			if len(resp.Ns) != 1 || resp.Ns[0].(*dns.SOA).Minttl != BlockedTTL {
				t.Errorf("%s: NXDOMAIN without the short SOA: %v", tc.name, resp.Ns)
			}
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
	resp := ask(t, s, query("casino.example", dns.TypeA), aliceAddr)
	if resp.Rcode != dns.RcodeNameError || len(resp.Answer) != 0 || len(resp.Ns) != 1 || !resp.RecursionAvailable {
		t.Fatalf("NXDOMAIN mode answer: %v", resp)
	}
	soa := resp.Ns[0].(*dns.SOA)
	if soa.Minttl != BlockedTTL || soa.Hdr.Ttl != BlockedTTL || soa.Hdr.Name != "casino.example." {
		t.Errorf("SOA %v, want minimum and TTL %d", soa, BlockedTTL)
	}
}

func TestSafeSearchCNAMEOnly(t *testing.T) {
	s, up := newTestServer(t, NullIP)
	resp := ask(t, s, query("www.bing.com", dns.TypeCNAME), aliceAddr)
	if len(resp.Answer) != 1 || resp.Answer[0].(*dns.CNAME).Target != "strict.bing.com." || len(up.asked) != 0 {
		t.Errorf("CNAME query for a safe-search name: %v (upstream asked %v)", resp, up.asked)
	}
}

// TestEDNS: our own answers carry an OPT record when the query has one.
func TestEDNS(t *testing.T) {
	s, _ := newTestServer(t, NullIP)
	m := query("casino.example", dns.TypeA)
	m.SetEdns0(4096, true)
	resp := ask(t, s, m, aliceAddr)
	if opt := resp.IsEdns0(); opt == nil || opt.UDPSize() != ourUDPSize || opt.Do() {
		t.Errorf("blocked answer to an EDNS query: %v", resp)
	}
	if resp := ask(t, s, query("casino.example", dns.TypeA), aliceAddr); resp.IsEdns0() != nil {
		t.Errorf("OPT in the answer to a query without EDNS: %v", resp)
	}
}

func TestRecentIsBounded(t *testing.T) {
	s, _ := newTestServer(t, NullIP)
	for i := 0; i < 3*RecentMax; i++ {
		ask(t, s, query("casino.example", dns.TypeA), aliceAddr)
	}
	if n := len(s.Stats().Recent); n != RecentMax {
		t.Errorf("%d recent decisions kept, want %d", n, RecentMax)
	}
}

func TestMalformedQueries(t *testing.T) {
	s, _ := newTestServer(t, NullIP)
	formerr := func(what string, m *dns.Msg) {
		t.Helper()
		resp := ask(t, s, m, aliceAddr)
		if resp.Rcode != dns.RcodeFormatError || resp.Id != m.Id || !resp.Response {
			t.Errorf("%s: %s id %d, want FORMERR id %d", what, dns.RcodeToString[resp.Rcode], resp.Id, m.Id)
		}
	}
	m := query("a.example", dns.TypeA)
	m.Question = nil
	formerr("no question", m)
	two := query("a.example", dns.TypeA)
	two.Question = append(two.Question, two.Question[0])
	formerr("two questions", two)
	notify := query("a.example", dns.TypeSOA)
	notify.Opcode = dns.OpcodeNotify
	formerr("NOTIFY", notify)
	response := query("casino.example", dns.TypeA)
	response.Response = true
	formerr("a response", response)

	// Raw bytes: a readable header gets FORMERR with its ID; less than a
	// header is dropped.
	good, _ := query("casino.example", dns.TypeA).Pack()
	for _, tc := range []struct {
		what string
		wire []byte
	}{
		{"question cut short", good[:len(good)-3]},
		{"name cut short", good[:16]},
		{"header only, one question announced", good[:12]},
		{"label length with reserved bits", append(append([]byte{}, good[:12]...), 0x80, 1, 2, 3)},
		{"pointer loop in the question", append(append([]byte{}, good[:12]...), 0xC0, 12, 0, 1, 0, 1)},
	} {
		resp := unpack(t, s.Answer(context.Background(), tc.wire, alicePort, aliceAddr, "udp"))
		if resp.Rcode != dns.RcodeFormatError || resp.Id != binary.BigEndian.Uint16(tc.wire) {
			t.Errorf("%s: %s id %d, want FORMERR", tc.what, dns.RcodeToString[resp.Rcode], resp.Id)
		}
	}
	for _, n := range []int{0, 1, 11} {
		if resp := s.Answer(context.Background(), good[:n], alicePort, aliceAddr, "udp"); resp != nil {
			t.Errorf("%d bytes: answered % x, want dropped", n, resp)
		}
	}
}

// rawUpstream is a UDP (and optionally TCP) upstream on loopback that
// answers every query with answer(query).
func rawUpstream(t *testing.T, udpAnswer, tcpAnswer func(q []byte) [][]byte) (addr string, got chan []byte) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	got = make(chan []byte, 100)
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			q := append([]byte(nil), buf[:n]...)
			got <- q
			for _, a := range udpAnswer(q) {
				_, _ = pc.WriteTo(a, from)
			}
		}
	}()
	addr = pc.LocalAddr().String()
	if tcpAnswer != nil {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					var l [2]byte
					if _, err := io.ReadFull(c, l[:]); err != nil {
						return
					}
					q := make([]byte, binary.BigEndian.Uint16(l[:]))
					if _, err := io.ReadFull(c, q); err != nil {
						return
					}
					for _, a := range tcpAnswer(q) {
						binary.BigEndian.PutUint16(l[:], uint16(len(a)))
						_, _ = c.Write(append(l[:], a...))
					}
				}()
			}
		}()
	}
	return addr, got
}

// withID is wire with its ID replaced by the one in q.
func withID(wire, q []byte) []byte {
	out := append([]byte(nil), wire...)
	copy(out, q[:2])
	return out
}

// unusualAnswer is an answer miekg/dns builds to q with what a re-encoding
// proxy could lose: an unknown record type, an EDNS option, the DO and AD
// bits, a name in mixed case.
func unusualAnswer(t *testing.T, q []byte, size int) []byte {
	m := new(dns.Msg)
	if err := m.Unpack(q); err != nil {
		t.Error(err)
		return nil
	}
	r := new(dns.Msg)
	r.SetReply(m)
	r.AuthenticatedData = true
	r.Answer = append(r.Answer, &dns.RFC3597{Hdr: dns.RR_Header{Name: "MiXeD.Example.", Rrtype: 65280, Class: dns.ClassINET, Ttl: 77}, Rdata: "c0ffee"})
	for len(r.Answer) < size {
		r.Answer = append(r.Answer, &dns.A{Hdr: dns.RR_Header{Name: m.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(203, 0, 113, byte(len(r.Answer))).To4()})
	}
	r.SetEdns0(1232, true)
	r.IsEdns0().Option = append(r.IsEdns0().Option, &dns.EDNS0_LOCAL{Code: 65001, Data: []byte("opaque")})
	b, err := r.Pack()
	if err != nil {
		t.Error(err)
	}
	return b
}

// TestForwardedBytesUnchanged: the query reaches the upstream byte for
// byte and the upstream's answer reaches the client byte for byte, apart
// from the ID.
func TestForwardedBytesUnchanged(t *testing.T) {
	sentc := make(chan []byte, 1)
	addr, got := rawUpstream(t, func(q []byte) [][]byte {
		sent := unusualAnswer(t, q, 2)
		sentc <- sent
		return [][]byte{sent}
	}, nil)
	s, _ := newTestServer(t, NullIP)
	s.exchange = UpstreamExchange(addr)
	m := query("Ordinary.Example", dns.TypeA)
	m.SetEdns0(1232, true)
	m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
	wire, _ := m.Pack()
	resp := s.Answer(context.Background(), wire, alicePort, aliceAddr, "udp")
	upq, sent := <-got, <-sentc
	if !bytes.Equal(upq[2:], wire[2:]) {
		t.Errorf("query changed on the way upstream:\n got % x\nwant % x", upq, wire)
	}
	if !bytes.Equal(resp, withID(sent, wire)) {
		t.Errorf("answer changed on the way back:\n got % x\nwant % x", resp, withID(sent, wire))
	}
	if r := unpack(t, resp); len(r.Answer) != 2 || r.IsEdns0() == nil || len(r.IsEdns0().Option) != 1 {
		t.Errorf("answer as parsed: %v", r)
	}
}

// TestStaleAnswerSkipped: an answer with another ID (a late answer to an
// abandoned query) is not taken for the answer.
func TestStaleAnswerSkipped(t *testing.T) {
	addr, _ := rawUpstream(t, func(q []byte) [][]byte {
		stale := unusualAnswer(t, q, 3)
		stale[0] ^= 0x55
		notResponse := withID(q, q)
		return [][]byte{stale, notResponse, unusualAnswer(t, q, 2)}
	}, nil)
	ex := UpstreamExchange(addr)
	for i := 0; i < 3; i++ { // also reusing the pooled socket
		wire, _ := query("a.example", dns.TypeA).Pack()
		resp, err := ex(context.Background(), wire, "udp")
		if err != nil {
			t.Fatal(err)
		}
		if r := unpack(t, resp); r.Id != binary.BigEndian.Uint16(wire) || len(r.Answer) != 2 {
			t.Errorf("took the wrong answer: %v", r)
		}
	}
}

// TestTruncated: a truncated UDP answer is fetched again over TCP for a
// client that asked over TCP; a UDP client gets it as it is (TC set) and
// asks again over TCP itself.
func TestTruncated(t *testing.T) {
	addr, _ := rawUpstream(t, func(q []byte) [][]byte {
		a := unusualAnswer(t, q, 1)
		a[2] |= flagTC
		return [][]byte{a}
	}, func(q []byte) [][]byte { return [][]byte{unusualAnswer(t, q, 40)} })
	ex := UpstreamExchange(addr)
	wire, _ := query("big.example", dns.TypeA).Pack()
	for _, tc := range []struct {
		network string
		tc      bool
		answers int
	}{{"udp", true, 1}, {"tcp", false, 40}} {
		resp, err := ex(context.Background(), wire, tc.network)
		if err != nil {
			t.Fatal(err)
		}
		if r := unpack(t, resp); r.Truncated != tc.tc || len(r.Answer) != tc.answers || r.Id != binary.BigEndian.Uint16(wire) {
			t.Errorf("%s client: TC %v, %d answers, want %v, %d", tc.network, r.Truncated, len(r.Answer), tc.tc, tc.answers)
		}
	}
}

// startFilter runs the real listener on loopback against a miekg/dns
// upstream; 127.0.0.1 is Alice's device with gambling blocked.
func startFilter(t *testing.T) string {
	return startFilterWith(t, func(*Listener) {})
}

func startFilterWith(t *testing.T, adjust func(*Listener)) string {
	t.Helper()
	up := &fakeUpstream{}
	upstream := &dns.Server{Addr: "127.0.0.1:0", Net: "udp", Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		resp, err := up.answer(r)
		if err != nil {
			return
		}
		_ = w.WriteMsg(resp)
	})}
	started := make(chan struct{})
	upstream.NotifyStartedFunc = func() { close(started) }
	go upstream.ListenAndServe()
	<-started
	t.Cleanup(func() { _ = upstream.Shutdown() })

	s := NewServer(UpstreamExchange(upstream.PacketConn.LocalAddr().String()), NullIP)
	return serveAlice(t, s, Rules{Child: "alice", Categories: []string{"gambling"}}, adjust)
}

// serveAlice serves s on a loopback port, 127.0.0.1 being Alice's device
// with rules alice, until the test ends; adjust may change the listener
// first. It returns the UDP address.
func serveAlice(t *testing.T, s *Server, alice Rules, adjust func(*Listener)) string {
	t.Helper()
	l, err := s.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Publish(NewSnapshot(map[string]Rules{aliceMAC: alice},
		map[string][]netip.Addr{aliceMAC: {netip.MustParseAddr("127.0.0.1")}}, store(t)).WithPorts(map[int]Rules{l.port: alice}, 0))
	adjust(l)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return l.udp.LocalAddr().String()
}

// TestOverTheWire runs the real listener on loopback with a real upstream
// server, over UDP and TCP.
func TestOverTheWire(t *testing.T) {
	addr := startFilter(t)
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

// TestTCPSeveralQueries: several queries on one TCP connection, then a
// malformed one that still gets FORMERR on the same connection.
func TestTCPSeveralQueries(t *testing.T) {
	addr := startFilter(t)
	conn, err := dns.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	for _, tc := range []struct{ name, want string }{
		{"casino.example", "0.0.0.0"}, {"ordinary.example", "198.51.100.99"}, {"www.casino.example", "0.0.0.0"},
	} {
		m := query(tc.name, dns.TypeA)
		if err := conn.WriteMsg(m); err != nil {
			t.Fatal(err)
		}
		r, err := conn.ReadMsg()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if r.Id != m.Id || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != tc.want {
			t.Errorf("%s: %v, want %s", tc.name, r, tc.want)
		}
	}
	bad, _ := query("casino.example", dns.TypeA).Pack()
	bad = bad[:15]
	if _, err := conn.Write(bad); err != nil { // dns.Conn adds the length prefix
		t.Fatal(err)
	}
	if r, err := conn.ReadMsg(); err != nil || r.Rcode != dns.RcodeFormatError || r.Id != binary.BigEndian.Uint16(bad) {
		t.Errorf("malformed query over TCP: %v %v", r, err)
	}
}

// TestAnswerFromQueriedAddress: on a wildcard listener, the answer leaves
// from the address the query was sent to, not from the one the kernel
// would pick (127.0.0.1 for a client on 127.0.0.1). A connected client
// socket, like the REDIRECT's reverse translation, accepts nothing else.
func TestAnswerFromQueriedAddress(t *testing.T) {
	for _, wildcard := range []string{"0.0.0.0:0", "[::]:0"} {
		s, _ := newTestServer(t, NullIP)
		l, err := s.Listen(wildcard)
		if err != nil {
			t.Logf("%s: %v", wildcard, err)
			continue
		}
		alice := Rules{Child: "alice", Categories: []string{"gambling"}}
		s.Publish(NewSnapshot(map[string]Rules{aliceMAC: alice},
			map[string][]netip.Addr{aliceMAC: {netip.MustParseAddr("127.0.0.1")}}, store(t)).WithPorts(map[int]Rules{l.port: alice}, 0))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- l.Serve(ctx) }()
		_, port, _ := net.SplitHostPort(l.udp.LocalAddr().String())
		c := &dns.Client{Timeout: time.Second}
		resp, _, err := c.Exchange(query("casino.example", dns.TypeA), net.JoinHostPort("127.0.0.2", port))
		if err != nil || len(resp.Answer) != 1 {
			t.Errorf("%s: query to 127.0.0.2: %v %v", wildcard, resp, err)
		}
		cancel()
		<-done
	}
}

// TestTCPLimits: an idle connection is closed after the idle timeout, and
// connections beyond the bound are closed at once while the others work.
func TestTCPLimits(t *testing.T) {
	addr := startFilterWith(t, func(l *Listener) { l.maxConns, l.idleTimeout = 3, 300*time.Millisecond })
	var conns []*dns.Conn
	for i := 0; i < 4; i++ {
		c, err := dns.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	works := func(c *dns.Conn) bool {
		_ = c.SetDeadline(time.Now().Add(time.Second))
		if c.WriteMsg(query("casino.example", dns.TypeA)) != nil {
			return false
		}
		r, err := c.ReadMsg()
		return err == nil && len(r.Answer) == 1
	}
	for i, c := range conns {
		if got := works(c); got != (i < 3) {
			t.Errorf("connection %d answered: %v, want %v", i, got, i < 3)
		}
	}
	time.Sleep(600 * time.Millisecond)
	if works(conns[0]) {
		t.Error("an idle connection is still open after the idle timeout")
	}
	c, err := dns.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !works(c) {
		t.Error("a new connection after the idle ones closed is not answered")
	}
}

// TestUDPGarbage: datagrams too short for a header get no answer, and the
// listener goes on answering.
func TestUDPGarbage(t *testing.T) {
	addr := startFilter(t)
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, junk := range [][]byte{{1}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}} {
		_, _ = c.Write(junk)
	}
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := c.Read(make([]byte, 512)); err == nil {
		t.Errorf("answered a datagram shorter than a header (%d bytes)", n)
	}
	resp, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(query("casino.example", dns.TypeA), addr)
	if err != nil || len(resp.Answer) != 1 {
		t.Errorf("after garbage: %v %v", resp, err)
	}
}

// FuzzAnswer feeds arbitrary wire messages to the handler: it must never
// panic; it answers everything with a readable header, with the query's ID
// and a message an independent parser accepts, and drops the rest.
func FuzzAnswer(f *testing.F) {
	edns := query("www.google.com", dns.TypeAAAA)
	edns.SetEdns0(1232, true)
	notify := query("example.org", dns.TypeSOA)
	notify.Opcode = dns.OpcodeNotify
	for _, m := range []*dns.Msg{query("casino.example", dns.TypeA), edns, query("x", dns.TypeTXT),
		query("ordinary.example", dns.TypeMX), query("use-application-dns.net", dns.TypeHTTPS), notify} {
		b, _ := m.Pack()
		f.Add(b)
	}
	f.Add([]byte{0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 1, 0, 1})
	// Real queries as dig sends them (EDNS cookies, DO bit, client subnet).
	fuzzseed.Add(f, "FuzzAnswer", fuzzseed.Bytes)
	f.Fuzz(func(t *testing.T, wire []byte) {
		s, _ := newTestServer(t, NullIP)
		resp := s.Answer(context.Background(), wire, alicePort, aliceAddr, "udp")
		if len(wire) < headerLen {
			if resp != nil {
				t.Fatal("answered less than a header")
			}
			return
		}
		m := new(dns.Msg)
		if err := m.Unpack(resp); err != nil {
			t.Fatalf("reply does not parse: %v\n% x", err, resp)
		}
		if m.Id != binary.BigEndian.Uint16(wire) || !m.Response {
			t.Fatalf("reply id %d response %v to query id %d", m.Id, m.Response, binary.BigEndian.Uint16(wire))
		}
		if (wire[2]&0x80 != 0 || wire[2]&0x78 != 0 || binary.BigEndian.Uint16(wire[4:]) != 1) && m.Rcode != dns.RcodeFormatError {
			t.Fatalf("not a one-question query, answered %s", dns.RcodeToString[m.Rcode])
		}
	})
}
