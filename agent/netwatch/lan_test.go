package netwatch

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/famguard/famguard/scripts/fuzzseed"
	"github.com/famguard/famguard/scripts/lab"
)

func TestParseUCINetwork(t *testing.T) {
	for file, want := range map[string][]string{
		"openwrt-23.05":        {"br-lan"},
		"openwrt-19.07-bridge": {"br-lan"},
		"openwrt-19.07-plain":  {"eth1"},
		"no-lan":               nil,
	} {
		f, err := os.Open(filepath.Join("testdata", "network", file))
		if err != nil {
			t.Fatal(err)
		}
		got := ParseUCINetwork(f)
		f.Close()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %v, want %v", file, got, want)
		}
	}
	// A list of ports in ifname (19.07 without a bridge type): each one.
	if got := ParseUCINetwork(strings.NewReader("config interface 'lan'\n\tlist ifname 'eth1'\n\tlist ifname 'wlan0'\n")); !reflect.DeepEqual(got, []string{"eth1", "wlan0"}) {
		t.Errorf("list ifname: %v", got)
	}
}

func TestDefaultLAN(t *testing.T) {
	none := func(string) bool { return false }
	brlan := func(n string) bool { return n == "br-lan" }
	for _, tc := range []struct {
		name, config string
		exists       func(string) bool
		want         []string
		source       string
	}{
		{"OpenWrt config", "testdata/network/openwrt-19.07-plain", none, []string{"eth1"}, "the lan interface in testdata/network/openwrt-19.07-plain"},
		{"no lan in config, br-lan exists", "testdata/network/no-lan", brlan, []string{"br-lan"}, "br-lan exists"},
		{"no config, br-lan exists", "testdata/network/missing", brlan, []string{"br-lan"}, "br-lan exists"},
		{"nothing", "testdata/network/missing", none, nil, "none found"},
	} {
		got, src := DefaultLAN(tc.config, tc.exists)
		if !reflect.DeepEqual(got, tc.want) || !strings.HasPrefix(src, tc.source) {
			t.Errorf("%s: %v (%s), want %v (%s)", tc.name, got, src, tc.want, tc.source)
		}
	}
}

func TestParseLANFlag(t *testing.T) {
	for in, want := range map[string][]string{
		"br-lan": {"br-lan"}, "br-lan, wlan0,br-lan": {"br-lan", "wlan0"}, "eth0.1": {"eth0.1"},
	} {
		if got, err := ParseLANFlag(in); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ParseLANFlag(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", ",", "br lan", "a/b", "averyveryverylongname"} {
		if _, err := ParseLANFlag(bad); err == nil {
			t.Errorf("ParseLANFlag(%q) accepted", bad)
		}
	}
}

// TestOnLANFilters: with a LAN set, neighbours on other links (the WAN
// gateway) are not in the table; a missing LAN interface is not an error.
func TestOnLANFilters(t *testing.T) {
	n := NewNeighbours(slog.New(slog.NewTextHandler(io.Discard, nil)))
	n.linkIndex = func(name string) (int, error) {
		if name == "br-lan" {
			return 7, nil
		}
		return 0, &net.OpError{Op: "link", Err: os.ErrNotExist}
	}
	neighs := []netlink.Neigh{
		{LinkIndex: 7, IP: net.ParseIP("192.168.1.11"), HardwareAddr: mac("02:00:00:00:00:11"), State: netlink.NUD_REACHABLE},
		{LinkIndex: 3, IP: net.ParseIP("203.0.113.1"), HardwareAddr: mac("00:1a:2b:3c:4d:01"), State: netlink.NUD_REACHABLE},
	}
	if got := BuildTable(n.onLAN(neighs)); len(got) != 2 {
		t.Errorf("no LAN set: %v, want both", got)
	}
	n.SetLAN([]string{"br-lan", "wlan9"})
	got := BuildTable(n.onLAN(neighs))
	if len(got) != 1 || got["02:00:00:00:00:11"] == nil {
		t.Errorf("LAN br-lan: %v, want only the LAN device", got)
	}
	if !n.missing["wlan9"] {
		t.Error("the missing interface was not noted")
	}
}

// TestNeighboursOnlyOnLAN: on the real kernel, a neighbour on the "WAN"
// link is not in the table once the LAN is set, and one on the LAN is.
func TestNeighboursOnlyOnLAN(t *testing.T) {
	lab.RequirePrivateNetns(t)
	for _, l := range [][2]string{{"flan0", "flan1"}, {"fwan0", "fwan1"}} {
		sh(t, "ip", "link", "add", l[0], "type", "veth", "peer", "name", l[1])
		defer sh(t, "ip", "link", "del", l[0])
		sh(t, "ip", "link", "set", l[0], "up")
	}
	sh(t, "ip", "addr", "add", "198.18.1.1/24", "dev", "flan0")
	sh(t, "ip", "addr", "add", "198.18.2.1/24", "dev", "fwan0")
	sh(t, "ip", "neigh", "add", "198.18.1.11", "lladdr", "02:00:00:00:01:11", "dev", "flan0", "nud", "permanent")
	sh(t, "ip", "neigh", "add", "198.18.2.1", "lladdr", "00:1a:2b:00:02:01", "dev", "fwan0", "nud", "permanent")
	n := NewNeighbours(slog.New(slog.NewTextHandler(io.Discard, nil)))
	n.SetLAN([]string{"flan0"})
	ch := make(chan Table, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go n.Run(ctx, ch)
	tab := waitTable(t, ch, "the LAN device", func(tab Table) bool { return len(tab["02:00:00:00:01:11"]) == 1 })
	if _, ok := tab["00:1a:2b:00:02:01"]; ok {
		t.Errorf("the WAN neighbour is in the LAN table: %v", tab)
	}
}

// FuzzParseUCINetwork: whatever /etc/config/network holds, the LAN it
// yields is a list of valid interface names.
func FuzzParseUCINetwork(f *testing.F) {
	fuzzseed.Add(f, "FuzzParseUCINetwork", fuzzseed.Bytes)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, name := range ParseUCINetwork(bytes.NewReader(data)) {
			if !ifaceName.MatchString(name) {
				t.Fatalf("interface name %q", name)
			}
		}
	})
}
