package dnsfilter

import (
	"context"
	"net/netip"
	"testing"

	"github.com/miekg/dns"

	"github.com/famguard/famguard/agent/egress"
)

// The CPU cost of checking answers, in process (no sockets): a protected
// device's query forwarded to an upstream that answers from memory. Figures
// in ../egress/README.md.

type nopOpener struct{}

func (nopOpener) AddAll(string, []egress.Entry) error { return nil }

func benchAnswer(b *testing.B, rules Rules, texts []string) {
	m := query("www.example.org", dns.TypeA)
	q, _ := m.Pack()
	answer := answerTo(m, texts, true)
	exchange := func(_ context.Context, query []byte, _ string) ([]byte, error) {
		out := append([]byte(nil), answer...)
		copy(out, query[:2])
		return out, nil
	}
	s := NewServer(exchange, NullIP)
	s.SetOpener(nopOpener{})
	s.Publish(NewSnapshot(map[string]Rules{aliceMAC: rules}, map[string][]netip.Addr{aliceMAC: {aliceAddr}}, store(b)).
		WithPorts(map[int]Rules{alicePort: rules}, 0))
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if out := s.Answer(ctx, q, alicePort, aliceAddr, "udp"); len(out) != len(answer) {
			b.Fatalf("answer of %d bytes, want %d", len(out), len(answer))
		}
	}
}

var (
	plainAnswer = []string{"www.example.org. 300 IN A 198.51.100.1"}
	cnameAnswer = []string{"www.example.org. 300 IN CNAME www.example.org.cdn.example.net.",
		"www.example.org.cdn.example.net. 60 IN CNAME e1234.a.edge.example.net.",
		"e1234.a.edge.example.net. 20 IN A 198.51.100.1", "e1234.a.edge.example.net. 20 IN A 198.51.100.2"}
)

func BenchmarkAnswerPlain(b *testing.B)       { benchAnswer(b, aliceRules, plainAnswer) }
func BenchmarkAnswerCNAMEChain(b *testing.B)  { benchAnswer(b, aliceRules, cnameAnswer) }
func BenchmarkAnswerStrictPlain(b *testing.B) { benchAnswer(b, strictRules, plainAnswer) }
func BenchmarkAnswerStrictCNAME(b *testing.B) { benchAnswer(b, strictRules, cnameAnswer) }

// BenchmarkWalkAnswers is the walk alone, over the CNAME chain's answer.
func BenchmarkWalkAnswers(b *testing.B) {
	msg := answerTo(query("www.example.org", dns.TypeA), cnameAnswer, true)
	b.ReportAllocs()
	for b.Loop() {
		if sc, err := walkAnswers(msg, false, 0); err != nil || len(sc.targets) != 2 {
			b.Fatal(sc, err)
		}
	}
}
