package redteam

import (
	"encoding/hex"
	"errors"
	"os"
	"syscall"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

func TestDescribe(t *testing.T) {
	q, err := Query(7, "svc.example", "HTTPS")
	if err != nil {
		t.Fatal(err)
	}
	var p dnsmessage.Parser
	h, _ := p.Start(q)
	question, _ := p.Question()
	if h.ID != 7 || question.Type != 65 || question.Name.String() != "svc.example." {
		t.Fatalf("query: %+v %+v", h, question)
	}
	https, _ := hex.DecodeString("0001" + "07626c6f636b6564076578616d706c6500" + "00040004c6336414")
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 7, Response: true})
	_ = b.StartAnswers()
	name := dnsmessage.MustNewName("svc.example.")
	_ = b.UnknownResource(dnsmessage.ResourceHeader{Name: name, Type: 65, Class: dnsmessage.ClassINET}, dnsmessage.UnknownResource{Type: 65, Data: https})
	_ = b.AResource(dnsmessage.ResourceHeader{Name: name, Class: dnsmessage.ClassINET}, dnsmessage.AResource{A: [4]byte{0, 0, 0, 0}})
	_ = b.TXTResource(dnsmessage.ResourceHeader{Name: name, Class: dnsmessage.ClassINET}, dnsmessage.TXTResource{TXT: []string{"a b", "c"}})
	_ = b.CNAMEResource(dnsmessage.ResourceHeader{Name: name, Class: dnsmessage.ClassINET}, dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName("blocked.example.")})
	resp, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	want := Outcome("answer NOERROR HTTPS:1,blocked.example.,hint=198.51.100.20 A:0.0.0.0 TXT:a_bc CNAME:blocked.example.")
	if got := Describe(resp); got != want {
		t.Errorf("Describe = %q\nwant       %q", got, want)
	}
	if want.Kind() != "answer" || want.Rcode() != "NOERROR" || len(want.Records()) != 4 {
		t.Errorf("parsing %q: %q %q %q", want, want.Kind(), want.Rcode(), want.Records())
	}
	if got := Describe([]byte{1, 2, 3}); got.Kind() != "error" {
		t.Errorf("a short message: %q", got)
	}
	if _, err := Query(1, "x.example", "BOGUS"); err == nil {
		t.Error("an unknown query type was accepted")
	}
}

func TestClassify(t *testing.T) {
	for err, want := range map[error]Outcome{
		syscall.ECONNREFUSED:     "reset",
		syscall.ECONNRESET:       "reset",
		syscall.EHOSTUNREACH:     "prohibited EHOSTUNREACH",
		syscall.EACCES:           "prohibited EACCES",
		os.ErrDeadlineExceeded:   "timeout",
		errors.New("odd\nthing"): "error odd thing",
	} {
		if got := classify(err); got != want {
			t.Errorf("classify(%v) = %q, want %q", err, got, want)
		}
	}
	for _, o := range []Outcome{"reset", "prohibited EACCES", "port-unreachable"} {
		if !o.Refused() {
			t.Errorf("%q not counted as refused", o)
		}
	}
	for _, o := range []Outcome{"timeout", "answer REFUSED", "connected"} {
		if o.Refused() {
			t.Errorf("%q counted as refused by the network", o)
		}
	}
}

func TestHuman(t *testing.T) {
	for o, want := range map[Outcome]string{
		"answer NOERROR A:0.0.0.0 AAAA:::": "NOERROR: A 0.0.0.0, AAAA ::",
		"answer NOERROR":                   "NOERROR, no records",
		"answer REFUSED":                   "REFUSED",
		"reset":                            "TCP reset",
		"prohibited EACCES":                "ICMPv6 administratively prohibited (EACCES)",
		"prohibited From 192.0.2.1 Packet filtered": "ICMP From 192.0.2.1 Packet filtered",
		"timeout": "timeout",
	} {
		if got := o.Human(); got != want {
			t.Errorf("%q.Human() = %q, want %q", o, got, want)
		}
	}
}
