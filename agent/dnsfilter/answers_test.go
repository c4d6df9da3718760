package dnsfilter

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/famguard/famguard/agent/categories"

	"github.com/famguard/famguard/scripts/fuzzseed"
)

// canned answers questions listed in rrs (by "name type", e.g.
// "www.a.example. A") with those records, and the rest like fakeUpstream.
type canned struct {
	fakeUpstream
	rrs map[string][]string // records in zone-file text
	raw []byte              // when set: the answer for every query, ID patched
}

func (c *canned) exchange(ctx context.Context, query []byte, network string) ([]byte, error) {
	if c.raw != nil {
		out := append([]byte(nil), c.raw...)
		if len(out) >= 2 {
			copy(out, query[:2])
		}
		return out, nil
	}
	m := new(dns.Msg)
	if err := m.Unpack(query); err != nil || len(m.Question) != 1 {
		return nil, errors.New("canned upstream: bad query")
	}
	q := m.Question[0]
	texts, ok := c.rrs[q.Name+" "+dns.TypeToString[q.Qtype]]
	if !ok {
		return c.fakeUpstream.exchange(ctx, query, network)
	}
	r := new(dns.Msg)
	r.SetReply(m)
	for _, t := range texts {
		rr, err := dns.NewRR(t)
		if err != nil {
			return nil, err
		}
		r.Answer = append(r.Answer, rr)
	}
	return r.Pack()
}

// answerTo packs the reply to q with the records in zone-file text.
func answerTo(q *dns.Msg, texts []string, compress bool) []byte {
	r := new(dns.Msg)
	r.SetReply(q)
	for _, t := range texts {
		rr, err := dns.NewRR(t)
		if err != nil {
			panic(err)
		}
		r.Answer = append(r.Answer, rr)
	}
	r.Compress = compress
	b, err := r.Pack()
	if err != nil {
		panic(err)
	}
	return b
}

func newCannedServer(t *testing.T, mode BlockMode, rules Rules, rrs map[string][]string) (*Server, *canned) {
	return cannedServer(store(t), mode, rules, rrs)
}

func cannedServer(st *categories.Store, mode BlockMode, rules Rules, rrs map[string][]string) (*Server, *canned) {
	up := &canned{rrs: rrs}
	s := NewServer(up.exchange, mode)
	s.Publish(NewSnapshot(map[string]Rules{aliceMAC: rules}, map[string][]netip.Addr{aliceMAC: {aliceAddr}}, st).
		WithPorts(map[int]Rules{alicePort: rules, openPort: {Child: "unrestricted"}}, offlinePort))
	return s, up
}

var aliceRules = Rules{Child: "alice", Categories: []string{"gambling"}, Deny: []string{"example-game.com"},
	Allow: []string{"ok.casino.example"}, SafeSearch: true, BypassPrevention: true}

// answerTricks: the upstream's answers to harmless questions.
var answerTricks = map[string][]string{
	"cdn.example. A": {"cdn.example. 300 IN CNAME www.casino.example.", "www.casino.example. 300 IN A 198.51.100.7"},
	"chain.example. A": {"chain.example. 300 IN CNAME a.example.", "a.example. 300 IN CNAME b.example.",
		"b.example. 300 IN CNAME Poker.Example.", "poker.example. 300 IN A 198.51.100.8"},
	"x.mirror.example. A": {"mirror.example. 300 IN DNAME casino.example.", "x.mirror.example. 300 IN CNAME x.casino.example.",
		"x.casino.example. 300 IN A 198.51.100.9"},
	"svc.example. HTTPS":   {"svc.example. 300 IN HTTPS 1 casino.example. alpn=h2"},
	"self.example. HTTPS":  {"self.example. 300 IN HTTPS 1 . alpn=h2 ipv4hint=198.51.100.10"},
	"alias.example. HTTPS": {"alias.example. 300 IN HTTPS 0 example-game.com."},
	"svcb.example. SVCB":   {"svcb.example. 300 IN SVCB 1 poker.example."},
	"search.example. A":    {"search.example. 300 IN CNAME www.google.com.", "www.google.com. 300 IN A 198.51.100.11"},
	"okcdn.example. A":     {"okcdn.example. 300 IN CNAME ok.casino.example.", "ok.casino.example. 300 IN A 198.51.100.12"},
	"doh.example. A":       {"doh.example. 300 IN CNAME use-application-dns.net.", "use-application-dns.net. 300 IN A 198.51.100.13"},
	"plain.example. A":     {"plain.example. 300 IN CNAME edge.cdn.example.", "edge.cdn.example. 300 IN A 198.51.100.14"},
}

func TestAnswerTargetsChecked(t *testing.T) {
	for _, tc := range []struct {
		name   string
		qtype  uint16
		rcode  int
		first  string // first answer's data, "" for none
		reason string // the recent block's reason, "" for none
	}{
		{"cdn.example", dns.TypeA, dns.RcodeSuccess, "0.0.0.0", "cdn.example via CNAME to www.casino.example: gambling (casino.example)"},
		{"chain.example", dns.TypeA, dns.RcodeSuccess, "0.0.0.0", "chain.example via CNAME to poker.example: gambling (poker.example)"},
		{"x.mirror.example", dns.TypeA, dns.RcodeSuccess, "0.0.0.0", "x.mirror.example via DNAME to casino.example: gambling (casino.example)"},
		{"svc.example", dns.TypeHTTPS, dns.RcodeNameError, "", "svc.example via HTTPS to casino.example: gambling (casino.example)"},
		{"alias.example", dns.TypeHTTPS, dns.RcodeNameError, "", "alias.example via HTTPS to example-game.com: deny list (example-game.com)"},
		{"svcb.example", dns.TypeSVCB, dns.RcodeNameError, "", "svcb.example via SVCB to poker.example: gambling (poker.example)"},
		{"doh.example", dns.TypeA, dns.RcodeNameError, "", "doh.example via CNAME to use-application-dns.net: Firefox DoH canary (bypass prevention)"},
		{"self.example", dns.TypeHTTPS, dns.RcodeSuccess, "1 . alpn=\"h2\" ipv4hint=\"198.51.100.10\"", ""},
		{"okcdn.example", dns.TypeA, dns.RcodeSuccess, "ok.casino.example.", ""},
		{"plain.example", dns.TypeA, dns.RcodeSuccess, "edge.cdn.example.", ""},
		// Safe search keeps working through a CNAME to a search engine.
		{"search.example", dns.TypeA, dns.RcodeSuccess, "forcesafesearch.google.com.", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newCannedServer(t, NullIP, aliceRules, answerTricks)
			resp := ask(t, s, query(tc.name, tc.qtype), aliceAddr)
			got := ""
			if len(resp.Answer) > 0 {
				got = strings.TrimPrefix(resp.Answer[0].String(), resp.Answer[0].Header().String())
			}
			if resp.Rcode != tc.rcode || got != tc.first {
				t.Fatalf("%s: %s %q, want %s %q\n%v", tc.name, dns.RcodeToString[resp.Rcode], got, dns.RcodeToString[tc.rcode], tc.first, resp)
			}
			st := s.Stats()
			switch {
			case tc.reason == "" && len(st.Recent) > 0:
				t.Errorf("recent = %+v, want none", st.Recent)
			case tc.reason != "" && (len(st.Recent) != 1 || st.Recent[0].Reason != tc.reason || st.Recent[0].Name != tc.name):
				t.Errorf("recent = %+v, want reason %q", st.Recent, tc.reason)
			}
		})
	}
}

func TestAnswerTargetsNXDomainMode(t *testing.T) {
	s, _ := newCannedServer(t, NXDomain, aliceRules, answerTricks)
	if resp := ask(t, s, query("cdn.example", dns.TypeA), aliceAddr); resp.Rcode != dns.RcodeNameError || len(resp.Answer) != 0 {
		t.Errorf("CNAME to a blocked name in NXDOMAIN mode: %v", resp)
	}
	if n := s.Stats().Counters[aliceMAC]["gambling"]; n != 1 {
		t.Errorf("gambling counted %d times, want 1", n)
	}
}

// TestUnprotectedAnswersUntouched: a class without restrictions gets the
// upstream's answer as it is.
func TestUnprotectedAnswersUntouched(t *testing.T) {
	s, _ := newCannedServer(t, NullIP, aliceRules, answerTricks)
	if resp := ask(t, s, query("cdn.example", dns.TypeA), parent); len(resp.Answer) != 2 || resp.Answer[0].(*dns.CNAME).Target != "www.casino.example." {
		t.Errorf("unprotected device: %v", resp)
	}
}

func TestMalformedUpstreamAnswer(t *testing.T) {
	good, _ := (&dns.Msg{MsgHdr: dns.MsgHdr{Response: true}, Question: []dns.Question{{Name: "a.example.", Qtype: dns.TypeA, Qclass: dns.ClassINET}},
		Answer: []dns.RR{&dns.CNAME{Hdr: dns.RR_Header{Name: "a.example.", Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 60}, Target: "casino.example."}}}).Pack()
	for name, raw := range map[string][]byte{
		"cut in the CNAME":      good[:len(good)-3],
		"rdlength beyond":       append(append([]byte(nil), good[:len(good)-17]...), 0xFF, 0xFF),
		"answer count too high": func() []byte { b := append([]byte(nil), good...); b[7] = 2; return b }(),
		"pointer loop": func() []byte {
			b := append([]byte(nil), good...)
			i := bytes.Index(b, []byte("\x06casino"))
			b[i], b[i+1] = 0xC0, byte(i) // the target points at itself
			return b
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			s, up := newCannedServer(t, NullIP, aliceRules, nil)
			up.raw = raw
			if resp := ask(t, s, query("a.example", dns.TypeA), aliceAddr); resp.Rcode != dns.RcodeServerFailure {
				t.Errorf("malformed upstream answer passed as %v", resp)
			}
			if n := s.Stats().Counters[aliceMAC]["bad-answer"]; n != 1 {
				t.Errorf("bad-answer counted %d times", n)
			}
		})
	}
}

// TestTruncatedCutAnswer: a truncated upstream answer cut inside a record
// becomes our own TC answer, so the client asks again over TCP.
func TestTruncatedCutAnswer(t *testing.T) {
	q := query("a.example", dns.TypeA)
	whole := answerTo(q, []string{"a.example. 60 IN CNAME b.example.", "b.example. 60 IN A 198.51.100.1"}, false)
	cut := append([]byte(nil), whole[:len(whole)-2]...)
	cut[2] |= flagTC
	s, up := newCannedServer(t, NullIP, aliceRules, nil)
	up.raw = cut
	resp := ask(t, s, q, aliceAddr)
	if !resp.Truncated || resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 0 {
		t.Errorf("cut truncated answer passed as %v", resp)
	}
}

func TestReadName(t *testing.T) {
	// "www" + pointer to "Example.COM" at offset 12.
	msg := append(make([]byte, 12), []byte("\x07Example\x03COM\x00\x03www\xC0\x0C")...)
	name, next, err := readName(msg, 25)
	if err != nil || name != "www.example.com" || next != len(msg) {
		t.Errorf("readName = %q %d %v", name, next, err)
	}
	if name, next, err := readName(msg, 12); err != nil || name != "example.com" || next != 25 {
		t.Errorf("readName = %q %d %v", name, next, err)
	}
	if name, _, err := readName([]byte{0}, 0); err != nil || name != "" {
		t.Errorf("root = %q %v", name, err)
	}
	for _, bad := range [][]byte{{0xC0}, {0x40, 0}, {5, 'a'}, {0xC0, 0}, {1, 'a', 0xC0, 0}} {
		if _, _, err := readName(bad, 0); err == nil {
			t.Errorf("readName(% x) accepted", bad)
		}
	}
	long := bytes.Repeat([]byte("\x3Faaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), 5)
	if _, _, err := readName(append(long, 0), 0); err == nil {
		t.Error("a name over 255 bytes accepted")
	}
}

// FuzzWalkAnswers holds the answer walker against miekg/dns: it never
// panics; when both parse a message they find the same target names; and
// with collect every answer TTL ends at most at the cap.
func FuzzWalkAnswers(f *testing.F) {
	for _, texts := range answerTricks {
		f.Add(answerTo(query("q.example", dns.TypeA), texts, true))
	}
	fuzzseed.Add(f, "FuzzWalkAnswers", fuzzseed.Bytes)
	f.Fuzz(func(t *testing.T, msg []byte) {
		sc, err := walkAnswers(append([]byte(nil), msg...), false, 0)
		m := new(dns.Msg)
		if merr := m.Unpack(msg); merr != nil || err != nil {
			return
		}
		var want []string
		for _, rr := range m.Answer {
			switch rr := rr.(type) {
			case *dns.CNAME:
				want = append(want, "CNAME "+rr.Target)
			case *dns.DNAME:
				want = append(want, "DNAME "+rr.Target)
			case *dns.HTTPS:
				if rr.Target != "." {
					want = append(want, "HTTPS "+rr.Target)
				}
			case *dns.SVCB:
				if rr.Target != "." {
					want = append(want, "SVCB "+rr.Target)
				}
			}
		}
		var got []string
		for _, tg := range sc.targets {
			got = append(got, tg.kind+" "+tg.name+".")
		}
		if len(got) != len(want) {
			t.Fatalf("targets %q, miekg/dns reads %q", got, want)
		}
		for i := range got {
			if !strings.EqualFold(got[i], strings.ReplaceAll(want[i], "\\.", ".")) && !strings.Contains(want[i], "\\") {
				t.Fatalf("targets %q, miekg/dns reads %q", got, want)
			}
		}
		capped := append([]byte(nil), msg...)
		if _, err := walkAnswers(capped, true, 100); err != nil {
			t.Fatalf("collect failed where the plain walk passed: %v", err)
		}
		if err := m.Unpack(capped); err != nil {
			t.Fatalf("capping TTLs broke the message: %v", err)
		}
		for _, rr := range m.Answer {
			if rr.Header().Ttl > 100 {
				t.Fatalf("TTL %d above the cap: %v", rr.Header().Ttl, rr)
			}
		}
	})
}

// FuzzForwardedAnswer feeds arbitrary upstream answers to a protected
// device's query: the filter never panics, its reply always parses, and an
// answer in which miekg/dns reads a CNAME, DNAME or HTTPS/SVCB target that is
// blocked never reaches the device.
func FuzzForwardedAnswer(f *testing.F) {
	for _, texts := range answerTricks {
		f.Add(answerTo(query("q.example", dns.TypeA), texts, false))
	}
	fuzzseed.Add(f, "FuzzForwardedAnswer", fuzzseed.Bytes)
	st := store(f)
	f.Fuzz(func(t *testing.T, upstream []byte) {
		s, up := cannedServer(st, NullIP, aliceRules, nil)
		up.raw = upstream
		q, _ := query("q.example", dns.TypeA).Pack()
		resp := s.Answer(context.Background(), q, alicePort, aliceAddr, "udp")
		if len(upstream) >= headerLen && binary.BigEndian.Uint16(resp) != binary.BigEndian.Uint16(q) {
			t.Fatalf("reply ID %x, query %x", resp[:2], q[:2])
		}
		forwarded := len(upstream) >= headerLen && bytes.Equal(resp[2:], upstream[2:])
		if !forwarded {
			if err := new(dns.Msg).Unpack(resp); err != nil {
				t.Fatalf("our own reply does not parse: %v", err)
			}
			return
		}
		m := new(dns.Msg)
		if m.Unpack(upstream) != nil {
			return
		}
		for _, rr := range m.Answer {
			var tg string
			switch rr := rr.(type) {
			case *dns.CNAME:
				tg = rr.Target
			case *dns.DNAME:
				tg = rr.Target
			case *dns.HTTPS:
				tg = rr.Target
			case *dns.SVCB:
				tg = rr.Target
			default:
				continue
			}
			if d := Decide(tg, aliceRules, s.snap.Load().store); d.Action != Forward {
				t.Fatalf("forwarded an answer with %s to %s (%s)", dns.TypeToString[rr.Header().Rrtype], tg, d.Reason)
			}
		}
	})
}
