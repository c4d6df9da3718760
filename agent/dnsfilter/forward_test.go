package dnsfilter

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestForwardingListener runs the real UDP listener with the real upstream
// exchange against a scripted upstream, through every way a forwarded
// answer can end: passed on, blocked by a CNAME target, rewritten for safe
// search (a second exchange), cut off and fetched again over TCP, and no
// answer at all (SERVFAIL at the upstream timeout, after which the shared
// upstream socket still works).
func TestForwardingListener(t *testing.T) {
	a := func(name, ip string) dns.RR {
		return &dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP(ip).To4()}
	}
	cname := func(name, target string) dns.RR {
		return &dns.CNAME{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 60}, Target: target}
	}
	bigAnswer := func(m *dns.Msg) []dns.RR {
		var rrs []dns.RR
		for i := 0; i < 300; i++ { // some 4.8 kB: more than the upstream UDP buffer
			rrs = append(rrs, a(m.Question[0].Name, "198.51.100."+strconv.Itoa(i%250)))
		}
		return rrs
	}
	answer := func(q []byte, overTCP bool) [][]byte {
		m := new(dns.Msg)
		if err := m.Unpack(q); err != nil || len(m.Question) != 1 {
			return nil
		}
		r := new(dns.Msg)
		r.SetReply(m)
		switch name := strings.ToLower(m.Question[0].Name); name {
		case "ordinary.example.":
			r.Answer = []dns.RR{a(name, "198.51.100.7")}
		case "alias.example.":
			r.Answer = []dns.RR{cname(name, "www.casino.example."), a("www.casino.example.", "198.51.100.8")}
		case "search.example.":
			r.Answer = []dns.RR{cname(name, "www.google.com."), a("www.google.com.", "198.51.100.9")}
		case "forcesafesearch.google.com.":
			r.Answer = []dns.RR{a(name, "216.239.38.120")}
		case "big.example.":
			r.Answer = bigAnswer(m)
			if !overTCP {
				r.Compress = false
			}
		case "silent.example.":
			return nil // never answered
		}
		b, err := r.Pack()
		if err != nil {
			t.Error(err)
			return nil
		}
		return [][]byte{b}
	}
	upstream, _ := rawUpstream(t, func(q []byte) [][]byte { return answer(q, false) }, func(q []byte) [][]byte { return answer(q, true) })

	s := NewServer(UpstreamExchange(upstream), NullIP)
	addr := serveAlice(t, s, Rules{Child: "alice", Categories: []string{"gambling"}, SafeSearch: true}, func(*Listener) {})

	// A raw client: the cut-off answer comes back whole (4.8 kB), more
	// than a DNS client's default buffer.
	ask := func(name string) *dns.Msg {
		t.Helper()
		c, err := net.Dial("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		m := query(name, dns.TypeA)
		wire, _ := m.Pack()
		if _, err := c.Write(wire); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 65536)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		r := new(dns.Msg)
		if err := r.Unpack(buf[:n]); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if r.Id != m.Id || len(r.Question) != 1 || !strings.EqualFold(r.Question[0].Name, dns.Fqdn(name)) {
			t.Errorf("%s: answer to another query: %v", name, r)
		}
		return r
	}
	lastA := func(r *dns.Msg) string {
		for i := len(r.Answer) - 1; i >= 0; i-- {
			if x, ok := r.Answer[i].(*dns.A); ok {
				return x.A.String()
			}
		}
		return ""
	}
	for _, tc := range []struct {
		name, want string
		rcode      int
		answers    int // 0: any
	}{
		{"ordinary.example", "198.51.100.7", dns.RcodeSuccess, 1},
		{"alias.example", "0.0.0.0", dns.RcodeSuccess, 1},         // its CNAME target is gambling
		{"search.example", "216.239.38.120", dns.RcodeSuccess, 0}, // CNAME to Google: safe search
		{"big.example", "198.51.100.49", dns.RcodeSuccess, 300},   // fetched again over TCP
		{"silent.example", "", dns.RcodeServerFailure, 0},         // the upstream's timeout
		{"ORDINARY.example", "198.51.100.7", dns.RcodeSuccess, 1}, // after the timeout, the socket still works
	} {
		r := ask(tc.name)
		if r.Rcode != tc.rcode || lastA(r) != tc.want || (tc.answers > 0 && len(r.Answer) != tc.answers) {
			t.Errorf("%s: rcode %s, %d answers, last A %q; want %s, %d, %q\n%v", tc.name, dns.RcodeToString[r.Rcode], len(r.Answer), lastA(r),
				dns.RcodeToString[tc.rcode], tc.answers, tc.want, r)
		}
	}
	if c := s.Stats().Counters[aliceMAC]; c["safe-search"] != 1 || c["gambling"] != 1 {
		t.Errorf("counters %v: want one safe-search rewrite and one gambling block", c)
	}
}
