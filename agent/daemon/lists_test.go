package daemon

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/famguard/famguard/agent/categories"
	"github.com/famguard/famguard/agent/dnsfilter"
)

const listsProfile = `version: 1
timezone: Europe/Berlin
children:
  alice:
    devices:
      - {mac: "02:00:00:00:00:11", name: "Alice's phone"}
    block: [gambling]
`

// TestListsPendingAtStart: the redirects go in at start while the category
// lists are still loading; until that first load finishes, Alice's class
// port refuses what the lists could decide (counted, shown in status) and
// answers the real address of nothing. Once the lists are in, the blocked
// name is blocked and others are answered. Without a categories directory
// (a fresh install) the first load fails at once: categories are not
// enforced, and DNS keeps answering.
func TestListsPendingAtStart(t *testing.T) {
	// answer is Alice's class port's rcode and A address for name.
	answer := func(t *testing.T, srv *dnsfilter.Server, state, name string) (int, string) {
		t.Helper()
		q, _ := (&dns.Msg{Question: []dns.Question{{Name: dns.Fqdn(name), Qtype: dns.TypeA, Qclass: dns.ClassINET}}}).Pack()
		m := new(dns.Msg)
		if err := m.Unpack(srv.Answer(context.Background(), q, classPort(t, state, "alice"), netip.MustParseAddr("192.0.2.11"), "udp")); err != nil {
			t.Fatal(err)
		}
		addr := ""
		for _, rr := range m.Answer {
			if a, ok := rr.(*dns.A); ok {
				addr = a.A.String()
			}
		}
		return m.Rcode, addr
	}
	start := func(t *testing.T, cats string) (*Daemon, *dnsfilter.Server, string) {
		dir, state := t.TempDir(), t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "family.yaml"), []byte(listsProfile), 0o644); err != nil {
			t.Fatal(err)
		}
		srv := dnsfilter.NewServer(answersA7, dnsfilter.NullIP)
		cfg := dnsDaemonConfig(t, dir, state, time.Date(2026, 11, 26, 12, 0, 0, 0, berlin), newFakeDataplane(), srv, &fakePorts{})
		cfg.CategoriesDir = cats
		d := runDaemon(t, cfg)
		eventually(t, "alice's class port assigned", func() bool {
			_, err := os.Stat(filepath.Join(state, identityFile))
			return err == nil
		})
		return d, srv, state
	}

	t.Run("loading", func(t *testing.T) {
		cats := t.TempDir()
		if err := os.WriteFile(filepath.Join(cats, "gambling.txt"), []byte("casino.example\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		release := make(chan struct{})
		var once sync.Once
		loadLists = func(dir string) (*categories.Store, categories.Stats, error) {
			<-release
			return categories.Load(dir)
		}
		t.Cleanup(func() { loadLists = categories.Load }) // runs after the daemon stopped
		d, srv, state := start(t, cats)
		t.Cleanup(func() { once.Do(func() { close(release) }) })

		eventually(t, "a query refused while the lists load", func() bool {
			rc, _ := answer(t, srv, state, "casino.example")
			return rc == dns.RcodeRefused && srv.Stats().ListsNotReady > 0
		})
		if rc, addr := answer(t, srv, state, "www.example.org"); rc != dns.RcodeRefused || addr != "" {
			t.Errorf("while loading: www.example.org answered %s %q, want REFUSED", dns.RcodeToString[rc], addr)
		}
		if st := statusOf(t, d); st.DNS == nil || !st.DNS.ListsPending || st.DNS.ListsNotReady < 2 {
			t.Errorf("status while loading: %+v", st.DNS)
		}

		once.Do(func() { close(release) })
		eventually(t, "the blocked name blocked once the lists are in", func() bool {
			rc, addr := answer(t, srv, state, "casino.example")
			return rc == dns.RcodeSuccess && addr == "0.0.0.0"
		})
		if rc, addr := answer(t, srv, state, "www.example.org"); rc != dns.RcodeSuccess || addr != "198.51.100.7" {
			t.Errorf("loaded: www.example.org answered %s %q", dns.RcodeToString[rc], addr)
		}
		if st := statusOf(t, d); st.DNS == nil || st.DNS.ListsPending || st.DNS.Domains != 1 {
			t.Errorf("status once loaded: %+v", st.DNS)
		}
	})

	t.Run("no lists", func(t *testing.T) {
		d, srv, state := start(t, filepath.Join(t.TempDir(), "missing"))
		// Queries before the failed load is in may have been refused.
		eventually(t, "answered without lists", func() bool {
			rc, addr := answer(t, srv, state, "casino.example")
			return rc == dns.RcodeSuccess && addr == "198.51.100.7"
		})
		if st := statusOf(t, d); st.DNS == nil || st.DNS.ListsPending || st.DNS.ListsError == "" {
			t.Errorf("status without lists: %+v", st.DNS)
		}
	})
}
