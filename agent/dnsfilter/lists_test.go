package dnsfilter

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/famguard/famguard/agent/categories"
)

// publishLists publishes Alice's strict class (and an unrestricted one)
// with store, marked pending or not.
func publishLists(s *Server, st *categories.Store, pending bool) {
	s.Publish(NewSnapshot(map[string]Rules{aliceMAC: strictRules}, map[string][]netip.Addr{aliceMAC: {aliceAddr}}, st).
		WithPorts(map[int]Rules{alicePort: strictRules, openPort: {Child: "unrestricted"}}, offlinePort).
		WithListsPending(pending))
}

// TestListsPendingFailsClosed: while the first load of the category lists
// runs, a query the lists could decide is REFUSED (not forwarded, nothing
// opened in the strict set) and counted; what the lists cannot change (the
// deny and allow lists, a class without categories) is answered as usual.
// Once the lists arrive the same query is blocked; when there are none (a
// failed load) categories are not enforced and the query is answered.
func TestListsPendingFailsClosed(t *testing.T) {
	s, up := cannedServer(nil, NullIP, strictRules, strictAnswers)
	o := &fakeOpener{}
	s.SetOpener(o)
	publishLists(s, nil, true)

	for _, tc := range []struct {
		name  string
		src   netip.Addr
		rcode int
		addr  string // the A record's address, "" for none
	}{
		{"casino.example", aliceAddr, dns.RcodeRefused, ""},                 // in the lists not loaded yet
		{"news.example", aliceAddr, dns.RcodeRefused, ""},                   // might be in them
		{"www.google.com", aliceAddr, dns.RcodeRefused, ""},                 // safe search comes after the categories
		{"example-game.com", aliceAddr, dns.RcodeSuccess, "0.0.0.0"},        // the deny list needs no lists
		{"ok.casino.example", aliceAddr, dns.RcodeSuccess, "198.51.100.99"}, // nor does the allow list
		{"casino.example", parent, dns.RcodeSuccess, "198.51.100.99"},       // a class blocking no category
	} {
		resp := ask(t, s, query(tc.name, dns.TypeA), tc.src)
		addr := ""
		for _, rr := range resp.Answer {
			if a, ok := rr.(*dns.A); ok {
				addr = a.A.String()
			}
		}
		if resp.Rcode != tc.rcode || addr != tc.addr {
			t.Errorf("pending: %s from %s: %s %q, want %s %q", tc.name, tc.src, dns.RcodeToString[resp.Rcode], addr,
				dns.RcodeToString[tc.rcode], tc.addr)
		}
	}
	if got := s.Stats().ListsNotReady; got != 3 {
		t.Errorf("lists_not_ready %d, want 3", got)
	}
	up.mu.Lock()
	asked := append([]string{}, up.asked...)
	up.mu.Unlock()
	if want := []string{"ok.casino.example.", "casino.example."}; !reflect.DeepEqual(asked, want) {
		t.Errorf("pending: upstream asked %v, want only %v (allow list, the parent's class)", asked, want)
	}
	if want := map[string]time.Duration{"fg-alice 198.51.100.99": 300 * time.Second}; !reflect.DeepEqual(o.opened, want) {
		t.Errorf("pending: opened %v, want only the allow-listed name's %v", o.opened, want)
	}

	// The lists arrive: the blocked name is blocked, the other answered.
	publishLists(s, store(t), false)
	if resp := ask(t, s, query("casino.example", dns.TypeA), aliceAddr); resp.Rcode != dns.RcodeSuccess ||
		len(resp.Answer) != 1 || resp.Answer[0].(*dns.A).A.String() != "0.0.0.0" {
		t.Errorf("loaded: casino.example answered %v", resp)
	}
	if resp := ask(t, s, query("news.example", dns.TypeA), aliceAddr); resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
		t.Errorf("loaded: news.example answered %v", resp)
	}

	// No lists (the load failed, or a fresh install without any): not
	// pending, categories are not enforced, DNS keeps working.
	publishLists(s, nil, false)
	if resp := ask(t, s, query("news.example", dns.TypeA), aliceAddr); resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
		t.Errorf("no lists: news.example answered %v", resp)
	}
	if got := s.Stats().ListsNotReady; got != 3 {
		t.Errorf("lists_not_ready %d after the lists arrived, want still 3", got)
	}
}
