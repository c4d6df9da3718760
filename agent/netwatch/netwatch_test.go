package netwatch

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/famguard/famguard/scripts/lab"
)

func TestMain(m *testing.M) { lab.MainInPrivateNetns(m) }

func sh(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func mac(s string) net.HardwareAddr { m, _ := net.ParseMAC(s); return m }

func TestBuildTableFilters(t *testing.T) {
	neighs := []netlink.Neigh{
		{IP: net.ParseIP("192.0.2.11"), HardwareAddr: mac("02:00:00:00:00:11"), State: netlink.NUD_REACHABLE},
		{IP: net.ParseIP("2001:db8:1::11"), HardwareAddr: mac("02:00:00:00:00:11"), State: netlink.NUD_STALE},
		{IP: net.ParseIP("fe80::11"), HardwareAddr: mac("02:00:00:00:00:11"), State: netlink.NUD_DELAY},
		{IP: net.ParseIP("192.0.2.11"), HardwareAddr: mac("02:00:00:00:00:11"), State: netlink.NUD_PERMANENT}, // duplicate
		{IP: net.ParseIP("192.0.2.12"), HardwareAddr: mac("02:00:00:00:00:12"), State: netlink.NUD_FAILED},
		{IP: net.ParseIP("192.0.2.13"), HardwareAddr: nil, State: netlink.NUD_INCOMPLETE},
		{IP: net.ParseIP("224.0.0.1"), HardwareAddr: mac("01:00:5e:00:00:01"), State: netlink.NUD_NOARP},
		{IP: net.ParseIP("ff02::1"), HardwareAddr: mac("02:00:00:00:00:14"), State: netlink.NUD_NOARP},
	}
	got := BuildTable(neighs)
	want := Table{"02:00:00:00:00:11": {
		netip.MustParseAddr("192.0.2.11"), netip.MustParseAddr("2001:db8:1::11"), netip.MustParseAddr("fe80::11")}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("BuildTable = %v, want %v", got, want)
	}
}

// waitTable reads tables until cond holds.
func waitTable(t *testing.T, ch <-chan Table, what string, cond func(Table) bool) Table {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case tab := <-ch:
			if cond(tab) {
				return tab
			}
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestNeighboursFollowsKernelAndResubscribes(t *testing.T) {
	lab.RequirePrivateNetns(t)
	sh(t, "ip", "link", "add", "lan0", "type", "veth", "peer", "name", "lan1")
	sh(t, "ip", "link", "set", "lan0", "up")
	sh(t, "ip", "addr", "add", "192.0.2.1/24", "dev", "lan0")
	sh(t, "ip", "neigh", "add", "192.0.2.11", "lladdr", "02:00:00:00:00:11", "dev", "lan0", "nud", "permanent")

	n := NewNeighbours(slog.New(slog.NewTextHandler(io.Discard, nil)))
	// Make the first subscription die after it started, to show the
	// watcher comes back with a full listing.
	real := n.subscribe
	var sessions atomic.Int32
	n.subscribe = func(ch chan<- netlink.NeighUpdate, done <-chan struct{}, onErr func(error)) error {
		if sessions.Add(1) == 1 {
			go func() {
				time.Sleep(300 * time.Millisecond)
				onErr(errors.New("simulated: netlink socket closed"))
			}()
		}
		return real(ch, done, onErr)
	}
	ch := make(chan Table, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go n.Run(ctx, ch)

	waitTable(t, ch, "the existing entry", func(tab Table) bool {
		return reflect.DeepEqual(tab["02:00:00:00:00:11"], []netip.Addr{netip.MustParseAddr("192.0.2.11")})
	})
	sh(t, "ip", "-6", "neigh", "add", "2001:db8:1::11", "lladdr", "02:00:00:00:00:11", "dev", "lan0", "nud", "permanent")
	waitTable(t, ch, "the new IPv6 address", func(tab Table) bool { return len(tab["02:00:00:00:00:11"]) == 2 })

	// After the simulated failure, changes are still seen.
	time.Sleep(500 * time.Millisecond)
	sh(t, "ip", "neigh", "del", "192.0.2.11", "dev", "lan0")
	sh(t, "ip", "neigh", "add", "192.0.2.21", "lladdr", "02:00:00:00:00:21", "dev", "lan0", "nud", "permanent")
	tab := waitTable(t, ch, "changes after resubscribing", func(tab Table) bool {
		return len(tab["02:00:00:00:00:21"]) == 1 && len(tab["02:00:00:00:00:11"]) == 1
	})
	if tab["02:00:00:00:00:11"][0] != netip.MustParseAddr("2001:db8:1::11") {
		t.Errorf("deleted address still listed: %v", tab)
	}
	if s := sessions.Load(); s < 2 {
		t.Errorf("%d subscriptions, want a resubscription after the failure", s)
	}
}

func conntrackList(t *testing.T, family string) string {
	t.Helper()
	out, err := exec.Command("conntrack", "-L", "-f", family).CombinedOutput()
	if err != nil {
		t.Fatalf("conntrack -L: %v %s", err, out)
	}
	return string(out)
}

func TestDeleteFlows(t *testing.T) {
	lab.RequirePrivateNetns(t)
	if _, err := exec.LookPath("conntrack"); err != nil {
		t.Fatal("conntrack tool missing: run scripts/install-deps.sh")
	}
	flows := [][]string{
		{"-s", "192.0.2.11", "-d", "198.51.100.10", "--sport", "40000", "--dport", "80"},
		{"-s", "198.51.100.10", "-d", "192.0.2.11", "--sport", "40001", "--dport", "22"}, // towards the device
		{"-s", "192.0.2.21", "-d", "198.51.100.10", "--sport", "40002", "--dport", "80"},
		{"-s", "2001:db8:1::11", "-d", "2001:db8:2::10", "--sport", "40003", "--dport", "443"},
		{"-s", "2001:db8:1::21", "-d", "2001:db8:2::10", "--sport", "40004", "--dport", "443"},
	}
	for _, f := range flows {
		args := append([]string{"-I", "-p", "tcp", "--state", "ESTABLISHED", "-t", "120", "-u", "ASSURED"}, f...)
		sh(t, append([]string{"conntrack"}, args...)...)
	}
	n, err := DeleteFlows([]netip.Addr{netip.MustParseAddr("192.0.2.11"), netip.MustParseAddr("2001:db8:1::11")})
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("deleted %d flows, want 3", n)
	}
	v4, v6 := conntrackList(t, "ipv4"), conntrackList(t, "ipv6")
	if strings.Contains(v4, "192.0.2.11") || strings.Contains(v6, "2001:db8:1::11") {
		t.Errorf("flows of the offline device remain:\n%s%s", v4, v6)
	}
	if !strings.Contains(v4, "192.0.2.21") || !strings.Contains(v6, "2001:db8:1::21") {
		t.Errorf("other devices' flows were deleted:\n%s%s", v4, v6)
	}
}

// TestNeighboursResubscribesWhenChannelCloses: the other way a netlink
// subscription dies — the library closes the update channel (socket error,
// ENOBUFS after a slow read) without calling the error callback. The watcher
// must notice, resubscribe and hand over a full listing again. The lab
// cannot break the agent's netlink socket from outside, so the failure is
// injected here, on the real kernel in a private network namespace.
func TestNeighboursResubscribesWhenChannelCloses(t *testing.T) {
	lab.RequirePrivateNetns(t)
	sh(t, "ip", "link", "add", "lan2", "type", "veth", "peer", "name", "lan3")
	defer sh(t, "ip", "link", "del", "lan2")
	sh(t, "ip", "link", "set", "lan2", "up")
	sh(t, "ip", "addr", "add", "198.18.0.1/24", "dev", "lan2")
	sh(t, "ip", "neigh", "add", "198.18.0.41", "lladdr", "02:00:00:00:00:41", "dev", "lan2", "nud", "permanent")

	n := NewNeighbours(slog.New(slog.NewTextHandler(io.Discard, nil)))
	real := n.subscribe
	var sessions atomic.Int32
	n.subscribe = func(ch chan<- netlink.NeighUpdate, done <-chan struct{}, onErr func(error)) error {
		if sessions.Add(1) > 1 {
			return real(ch, done, onErr)
		}
		// The first subscription: a proxy channel the "library" closes
		// after 200 ms.
		inner := make(chan netlink.NeighUpdate, 16)
		if err := real(inner, done, onErr); err != nil {
			return err
		}
		go func() {
			stop := time.After(200 * time.Millisecond)
			for {
				select {
				case u := <-inner:
					ch <- u
				case <-stop:
					close(ch)
					return
				}
			}
		}()
		return nil
	}
	ch := make(chan Table, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go n.Run(ctx, ch)
	waitTable(t, ch, "the existing entry", func(tab Table) bool { return len(tab["02:00:00:00:00:41"]) == 1 })
	time.Sleep(500 * time.Millisecond) // the channel closed; resubscribed after 100 ms
	sh(t, "ip", "neigh", "add", "198.18.0.51", "lladdr", "02:00:00:00:00:51", "dev", "lan2", "nud", "permanent")
	waitTable(t, ch, "a change after the channel closed", func(tab Table) bool { return len(tab["02:00:00:00:00:51"]) == 1 })
	if s := sessions.Load(); s < 2 {
		t.Errorf("%d subscriptions; want a resubscription after the channel closed", s)
	}
}
