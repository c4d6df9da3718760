package daemon

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/famguard/famguard/agent/dnsfilter"
	"github.com/famguard/famguard/agent/netwatch"
	"github.com/famguard/famguard/rules"
)

// TestIdentitiesStable: IDs and class ports are allocated once, kept in the
// state directory across a restart, and not reused for another device.
func TestIdentitiesStable(t *testing.T) {
	dir := t.TempDir()
	ids, err := loadIdentities(dir)
	if err != nil {
		t.Fatal(err)
	}
	keep := map[string]bool{}
	a, _ := ids.device("02:00:00:00:00:11", keep)
	b, _ := ids.device("02:00:00:00:00:21", keep)
	pa, _ := ids.port("alice", 5354, keep)
	pb, _ := ids.port("bob", 5354, keep)
	if a != 1 || b != 2 || pa != 5356 || pb != 5357 {
		t.Fatalf("first allocation: ids %d %d ports %d %d", a, b, pa, pb)
	}
	if err := ids.save(); err != nil {
		t.Fatal(err)
	}
	again, err := loadIdentities(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := again.device("02:00:00:00:00:21", keep); got != 2 {
		t.Errorf("bob's device after a restart: %d, want 2", got)
	}
	if got, _ := again.port("alice", 5354, keep); got != 5356 {
		t.Errorf("alice's port after a restart: %d, want 5356", got)
	}
	if got, _ := again.device("02:00:00:00:00:99", keep); got != 3 {
		t.Errorf("a new device: %d, want 3 (1 and 2 stay taken)", got)
	}
	// Another DNS port: class ports move with it.
	if got, _ := again.port("alice", 6000, keep); got != 6002 {
		t.Errorf("alice's port with base 6000: %d, want 6002", got)
	}
	// A broken file: a fresh allocation and a clear error.
	if err := os.WriteFile(filepath.Join(dir, identityFile), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if ids, err := loadIdentities(dir); err == nil || len(ids.Devices) != 0 || !strings.Contains(err.Error(), identityFile) {
		t.Errorf("broken file: %v %+v", err, ids)
	}
}

type fakePorts struct {
	mu    sync.Mutex
	calls [][]int
}

func (f *fakePorts) Ensure(ports []int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, append([]int(nil), ports...))
	return nil
}

func (f *fakePorts) last() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return nil
	}
	return f.calls[len(f.calls)-1]
}

// TestRedirectsByClassAndCuts: with DNS filtering, Alice's device is
// redirected to her class's port (its listener bound first), the DNS
// filter answers her class on it, her port-53 connections — and at the
// first install those without an ID — are cut when the redirect is
// installed; at bedtime her DNS goes to the refusing port, and every
// connection of her device ID is cut.
func TestRedirectsByClassAndCuts(t *testing.T) {
	bed := time.Date(2026, 11, 26, 21, 0, 0, 0, berlin)
	dir, state := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "family.yaml"), []byte(profile), 0o644); err != nil {
		t.Fatal(err)
	}
	dp, ports, cut := newFakeDataplane(), &fakePorts{}, make(chan cutCall, 10)
	srv := dnsfilter.NewServer(nil, dnsfilter.NullIP)
	cfg := dnsDaemonConfig(t, dir, state, bed.Add(-300*time.Millisecond), dp, srv, ports)
	cfg.Neighbours = fakeNeighbours{netwatch.Table{"02:00:00:00:00:11": {netip.MustParseAddr("192.0.2.11")}}}
	cfg.Conntrack = chanConntrack(cut)
	runDaemon(t, cfg)

	next := func(what string) cutCall {
		t.Helper()
		select {
		case c := <-cut:
			return c
		case <-time.After(5 * time.Second):
			t.Fatalf("no conntrack cut: %s", what)
		}
		return cutCall{}
	}
	// The profile defines a child and the LAN is known, so unknown devices
	// are offline by default: their class's connections are cut first.
	if c := next("unknown devices offline"); !reflect.DeepEqual(c, cutCall{ids: []uint16{rules.DefaultUnknownID}}) {
		t.Errorf("first cut: %+v, want the unknown-device class (ID %d)", c, rules.DefaultUnknownID)
	}
	if c := next("redirect installed"); !reflect.DeepEqual(c, cutCall{ids: []uint16{1}, dnsOnly: true, unmarked: true}) {
		t.Errorf("first install: %+v, want Alice's (ID 1) and unmarked port-53 connections", c)
	}
	if got := ports.last(); !reflect.DeepEqual(got, []int{5354, 5355, 5356}) {
		t.Errorf("listening on %v, want the base, offline and Alice's class port", got)
	}
	if text := dp.get(rules.IPv4); !strings.Contains(text, "--mac-source 02:00:00:00:00:11 -p udp -m comment --comment \"famguard: DNS of alice/Alices phone\" -j REDIRECT --to-ports 5356") {
		t.Errorf("no redirect to Alice's class port:\n%s", text)
	}
	// At bedtime: every connection of ID 1, then its DNS to the refusing port.
	if c := next("bedtime"); !reflect.DeepEqual(c, cutCall{ids: []uint16{1}}) {
		t.Errorf("bedtime cut: %+v, want every connection of ID 1", c)
	}
	if c := next("redirect changed"); !reflect.DeepEqual(c, cutCall{ids: []uint16{1}, dnsOnly: true}) {
		t.Errorf("redirect change: %+v", c)
	}
	if text := dp.get(rules.IPv4); !strings.Contains(text, "-j REDIRECT --to-ports 5355") {
		t.Errorf("no redirect to the offline port at bedtime:\n%s", text)
	}
	data, err := os.ReadFile(filepath.Join(state, identityFile))
	if err != nil || !strings.Contains(string(data), `"02:00:00:00:00:11": 1`) || !strings.Contains(string(data), `"alice": 5356`) {
		t.Errorf("identity file: %v\n%s", err, data)
	}
}
