package daemon

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/famguard/famguard/agent/egress"
	"github.com/famguard/famguard/agent/netwatch"
	"github.com/famguard/famguard/rules"
)

func inboundProfile(bedtime string) string {
	return fmt.Sprintf(`version: 1
timezone: Europe/Berlin
unknown_devices: offline
trusted:
  - {mac: "02:00:00:00:00:31", name: "Mum's laptop"}
children:
  alice:
    devices: [{mac: "02:00:00:00:00:11", name: "Alice's phone"}]
    schedules:
      - {name: bedtime, days: [daily], from: %q, to: "07:00", action: offline}
  bob:
    devices: [{mac: "02:00:00:00:00:21", name: "Bob's tablet"}]
`, bedtime)
}

// TestInboundSets: the loop fills the inbound set in force with the
// neighbour-table addresses of devices that are not offline (never an
// offline one's, never an unknown device's under the offline default), and
// when alice goes offline the rules switch to a fresh set without her
// addresses — also without one the kernel learnt from her a moment before
// bedtime that the agent never saw — and the old set is destroyed.
func TestInboundSets(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	write := func(bedtime string) {
		if err := os.WriteFile(filepath.Join(dir, "family.yaml"), []byte(inboundProfile(bedtime)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("21:00")
	a := netip.MustParseAddr
	neigh := netwatch.Table{
		"02:00:00:00:00:11": {a("192.0.2.11"), a("2001:db8:1::11"), a("fe80::11")},
		"02:00:00:00:00:21": {a("192.0.2.21"), a("2001:db8:1::21")},
		"02:00:00:00:00:31": {a("192.0.2.31")},
		"02:00:00:00:00:99": {a("192.0.2.99")}, // an unknown device: offline
	}
	fake := &egress.Fake{}
	dp := newFakeDataplane()
	reload := make(chan struct{}, 1)
	cfg := dnsDaemonConfig(t, dir, state, time.Date(2026, 11, 26, 12, 0, 0, 0, berlin), dp, nil, nil)
	cfg.Neighbours, cfg.Inbound, cfg.Reload = fakeNeighbours{neigh}, fake, reload
	d := runDaemon(t, cfg)

	holds := func(set string, addrs ...string) string {
		var out []string
		for _, s := range addrs {
			if _, ok := fake.Holds(set, a(s)); ok {
				out = append(out, s)
			}
		}
		return strings.Join(out, " ")
	}
	eventually(t, "rules with the inbound set fgin-a", func() bool {
		return strings.Contains(dp.get(rules.IPv4), "--match-set fgin-a4 dst") && strings.Contains(dp.get(rules.IPv6), "--match-set fgin-a6 dst")
	})
	// The neighbour table arrives after the first apply.
	eventually(t, "bob's address in fgin-a4", func() bool { return holds("fgin-a4", "192.0.2.21") != "" })
	if got := holds("fgin-a4", "192.0.2.11", "192.0.2.21", "192.0.2.31", "192.0.2.99"); got != "192.0.2.11 192.0.2.21 192.0.2.31" {
		t.Errorf("fgin-a4 holds %q: want alice, bob and the parent, not the unknown device", got)
	}
	if got := holds("fgin-a6", "2001:db8:1::11", "2001:db8:1::21", "fe80::11"); got != "2001:db8:1::11 2001:db8:1::21" {
		t.Errorf("fgin-a6 holds %q", got)
	}
	// Unknown devices are offline (the default), so the guard is on.
	if in := statusOf(t, d).Inbound; in == nil || in.Set != "fgin-a" || !in.Guard || in.Open4 != 3 || in.Open6 != 2 {
		t.Errorf("status inbound = %+v, want fgin-a, guard on, 3 and 2 addresses", in)
	}
	// The kernel learnt a fresh address of alice's that the agent never
	// saw (her -j SET while she was online).
	if err := fake.Add("fgin-a6", a("2001:db8:1::e:1"), rules.InboundTimeout); err != nil {
		t.Fatal(err)
	}

	write("11:00")
	reload <- struct{}{}
	eventually(t, "rules switched to fgin-b", func() bool {
		return strings.Contains(dp.get(rules.IPv4), "--match-set fgin-b4 dst") && strings.Contains(dp.get(rules.IPv6), "--add-set fgin-b6 src")
	})
	if got := holds("fgin-b4", "192.0.2.11", "192.0.2.21", "192.0.2.31", "192.0.2.99"); got != "192.0.2.21 192.0.2.31" {
		t.Errorf("fgin-b4 holds %q: want bob and the parent only", got)
	}
	if got := holds("fgin-b6", "2001:db8:1::11", "2001:db8:1::21", "2001:db8:1::e:1"); got != "2001:db8:1::21" {
		t.Errorf("fgin-b6 holds %q: want bob's only", got)
	}
	eventually(t, "the old set destroyed", func() bool {
		_, err := fake.Info("fgin-a6")
		return err != nil
	})

	// Back online: nobody stopped being open, so the set in force is kept
	// and topped up (alice's addresses are back in it).
	write("21:00")
	reload <- struct{}{}
	eventually(t, "alice topped up into fgin-b", func() bool { return holds("fgin-b4", "192.0.2.11") == "192.0.2.11" })
	if !strings.Contains(dp.get(rules.IPv4), "--add-set fgin-b4 src") {
		t.Errorf("the set in force changed though nobody went offline:\n%s", dp.get(rules.IPv4))
	}
}

// noSets is a kernel without ip_set: every create fails.
type noSets struct{ egress.Fake }

func (*noSets) Create(string, bool, uint32) error {
	return fmt.Errorf("ipset create: protocol not supported")
}

// TestInboundWithoutSets: a kernel that cannot make the sets (no
// kmod-ipt-ipset) gets every other rule, without the guard: rules naming a
// set would fail as a whole.
func TestInboundWithoutSets(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "family.yaml"), []byte(inboundProfile("11:00")), 0o644); err != nil {
		t.Fatal(err)
	}
	dp := newFakeDataplane()
	cfg := dnsDaemonConfig(t, dir, state, time.Date(2026, 11, 26, 12, 0, 0, 0, berlin), dp, nil, nil)
	cfg.Inbound = &noSets{}
	d := runDaemon(t, cfg)
	eventually(t, "alice offline in the rules", func() bool { return strings.Contains(dp.get(rules.IPv4), "alice/Alices phone") })
	if v4 := dp.get(rules.IPv4); strings.Contains(v4, "fgin-") || strings.Contains(v4, "-j "+rules.InboundChain) {
		t.Errorf("rules name an inbound set that could not be made:\n%s", v4)
	}
	if in := statusOf(t, d).Inbound; in != nil {
		t.Errorf("status inbound = %+v without sets", in)
	}
}

// countingSets counts the adds that reach the kernel.
type countingSets struct {
	egress.Fake
	mu   sync.Mutex
	adds int
}

func (c *countingSets) Add(name string, addr netip.Addr, timeout uint32) error {
	c.mu.Lock()
	c.adds++
	c.mu.Unlock()
	return c.Fake.Add(name, addr, timeout)
}

func (c *countingSets) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.adds
}

// repeatingNeighbours sends the same table n times, as a LAN whose
// entries change state (REACHABLE, STALE) without new addresses does.
type repeatingNeighbours struct {
	table netwatch.Table
	n     int
	sent  chan struct{}
}

func (r repeatingNeighbours) Run(ctx context.Context, out chan<- netwatch.Table) error {
	for i := 0; i < r.n; i++ {
		select {
		case out <- r.table:
		case <-ctx.Done():
			return nil
		}
	}
	close(r.sent)
	<-ctx.Done()
	return nil
}

// TestInboundTopUpAddsOnlyNewAddresses: a reconcile (every neighbour
// change) must not send every known address to the kernel again.
func TestInboundTopUpAddsOnlyNewAddresses(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "family.yaml"), []byte(inboundProfile("21:00")), 0o644); err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr
	neigh := netwatch.Table{"02:00:00:00:00:21": {a("192.0.2.21"), a("2001:db8:1::21")}}
	sets := &countingSets{}
	src := repeatingNeighbours{table: neigh, n: 20, sent: make(chan struct{})}
	cfg := dnsDaemonConfig(t, dir, state, time.Date(2026, 11, 26, 12, 0, 0, 0, berlin), newFakeDataplane(), nil, nil)
	cfg.Neighbours, cfg.Inbound = src, sets
	d := runDaemon(t, cfg)
	<-src.sent
	statusOf(t, d) // the loop has handled the tables sent before this request
	if _, ok := sets.Holds("fgin-a4", a("192.0.2.21")); !ok {
		t.Fatal("bob's address is not in the set")
	}
	// Bob's two addresses, once each (the first apply may precede the
	// table: then it adds nothing).
	if got := sets.count(); got != 2 {
		t.Errorf("20 neighbour tables with the same two addresses sent %d adds to the kernel, want 2", got)
	}
}
