package dnsfilter

import (
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/famguard/famguard/agent/egress"
)

// fakeOpener records what it opened; fail makes every AddAll fail.
type fakeOpener struct {
	mu     sync.Mutex
	opened map[string]time.Duration // "set addr" → ttl
	calls  int
	fail   error
}

func (o *fakeOpener) AddAll(set string, addrs []egress.Entry) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls++
	if o.fail != nil {
		return o.fail
	}
	if o.opened == nil {
		o.opened = map[string]time.Duration{}
	}
	for _, a := range addrs {
		o.opened[set+" "+a.Addr.String()] = a.TTL
	}
	return nil
}

var strictRules = func() Rules {
	r := aliceRules
	r.Strict, r.StrictSet = true, "fg-alice"
	return r
}()

var strictAnswers = map[string][]string{
	"many.example. A":               {"many.example. 300 IN CNAME edge.example.", "edge.example. 600 IN A 198.51.100.1", "edge.example. 999999 IN A 198.51.100.2"},
	"many.example. AAAA":            {"many.example. 30 IN AAAA 2001:db8::1"},
	"hints.example. HTTPS":          {"hints.example. 120 IN HTTPS 1 . alpn=h3 ipv4hint=198.51.100.3,198.51.100.4 ipv6hint=2001:db8::3"},
	"cdn.example. A":                answerTricks["cdn.example. A"],
	"forcesafesearch.google.com. A": {"forcesafesearch.google.com. 300 IN A 216.239.38.120"},
}

func TestStrictOpensBeforeAnswering(t *testing.T) {
	for _, tc := range []struct {
		name   string
		qtype  uint16
		opened map[string]time.Duration
		ttls   []uint32 // of the answer records as the client sees them
	}{
		{"many.example", dns.TypeA, map[string]time.Duration{"fg-alice 198.51.100.1": 600 * time.Second, "fg-alice 198.51.100.2": StrictMaxTTL * time.Second},
			[]uint32{300, 600, StrictMaxTTL}},
		{"many.example", dns.TypeAAAA, map[string]time.Duration{"fg-alice 2001:db8::1": 30 * time.Second}, []uint32{30}},
		{"hints.example", dns.TypeHTTPS, map[string]time.Duration{"fg-alice 198.51.100.3": 120 * time.Second, "fg-alice 198.51.100.4": 120 * time.Second,
			"fg-alice 2001:db8::3": 120 * time.Second}, []uint32{120}},
		// Blocked answers (0.0.0.0) open nothing.
		{"casino.example", dns.TypeA, nil, []uint32{BlockedTTL}},
		{"cdn.example", dns.TypeA, nil, []uint32{BlockedTTL}},
		// The safe-search rewrite opens the safe host's address.
		{"www.google.com", dns.TypeA, map[string]time.Duration{"fg-alice 216.239.38.120": 300 * time.Second}, []uint32{300, 300}},
	} {
		t.Run(tc.name+"/"+dns.TypeToString[tc.qtype], func(t *testing.T) {
			s, _ := newCannedServer(t, NullIP, strictRules, strictAnswers)
			o := &fakeOpener{}
			s.SetOpener(o)
			resp := ask(t, s, query(tc.name, tc.qtype), aliceAddr)
			if resp.Rcode != dns.RcodeSuccess {
				t.Fatalf("rcode %s", dns.RcodeToString[resp.Rcode])
			}
			if !reflect.DeepEqual(o.opened, tc.opened) {
				t.Errorf("opened %v, want %v", o.opened, tc.opened)
			}
			// All of an answer's addresses in one call: they reach the
			// kernel in one batch.
			if want := min(len(tc.opened), 1); o.calls != want {
				t.Errorf("%d opener calls, want %d", o.calls, want)
			}
			var ttls []uint32
			for _, rr := range resp.Answer {
				ttls = append(ttls, rr.Header().Ttl)
			}
			if !reflect.DeepEqual(ttls, tc.ttls) {
				t.Errorf("answer TTLs %v, want %v", ttls, tc.ttls)
			}
		})
	}
}

// TestStrictFailsClosed: an answer whose addresses cannot be opened is not
// sent; the failure is counted.
func TestStrictFailsClosed(t *testing.T) {
	for name, setup := range map[string]func(*Server){
		"add fails": func(s *Server) { s.SetOpener(&fakeOpener{fail: errors.New("ipset fg-alice4: set is full")}) },
		"no opener": func(*Server) {},
	} {
		t.Run(name, func(t *testing.T) {
			s, _ := newCannedServer(t, NullIP, strictRules, strictAnswers)
			setup(s)
			for _, q := range []*dns.Msg{query("many.example", dns.TypeA), query("www.google.com", dns.TypeA)} {
				if resp := ask(t, s, q, aliceAddr); resp.Rcode != dns.RcodeServerFailure || len(resp.Answer) != 0 {
					t.Errorf("%s: answered %v", q.Question[0].Name, resp)
				}
			}
			if n := s.Stats().Counters[aliceMAC]["strict-failed"]; n != 2 {
				t.Errorf("strict-failed counted %d times, want 2", n)
			}
			// An answer without addresses needs no set.
			if resp := ask(t, s, query("many.example", dns.TypeTXT), aliceAddr); resp.Rcode != dns.RcodeSuccess {
				t.Errorf("TXT: %v", resp)
			}
		})
	}
}

// TestNotStrictOpensNothing: without strict, no opener is needed and TTLs
// pass unchanged.
func TestNotStrictOpensNothing(t *testing.T) {
	s, _ := newCannedServer(t, NullIP, aliceRules, strictAnswers)
	o := &fakeOpener{fail: errors.New("must not be called")}
	s.SetOpener(o)
	resp := ask(t, s, query("many.example", dns.TypeA), aliceAddr)
	if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 3 || resp.Answer[2].Header().Ttl != 999999 {
		t.Errorf("answer %v", resp)
	}
}
