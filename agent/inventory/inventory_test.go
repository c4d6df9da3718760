package inventory

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/famguard/famguard/agent/policy"
	"github.com/famguard/famguard/scripts/fuzzseed"
)

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

func TestObserve(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 20, 0, 0, 0, time.UTC)
	inv := New()
	added := inv.Observe(map[string][]netip.Addr{
		"da:a1:19:00:00:01": addrs("192.168.1.150", "fe80::1"),
		"00:1a:2b:3c:4d:31": addrs("192.168.1.151"),
	}, t0)
	if !reflect.DeepEqual(added, []string{"00:1a:2b:3c:4d:31", "da:a1:19:00:00:01"}) {
		t.Errorf("added %v", added)
	}
	t1 := t0.Add(time.Hour)
	if added := inv.Observe(map[string][]netip.Addr{"da:a1:19:00:00:01": addrs("192.168.1.150")}, t1); len(added) != 0 {
		t.Errorf("added again: %v", added)
	}
	got := inv.List()
	want := []Device{
		{MAC: "00:1a:2b:3c:4d:31", FirstSeen: t0, LastSeen: t0, Addresses: []string{}},
		{MAC: "da:a1:19:00:00:01", Randomized: true, FirstSeen: t0, LastSeen: t1, Addresses: []string{"192.168.1.150"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("List =\n%+v\nwant\n%+v", got, want)
	}
	if p := inv.Present(); !reflect.DeepEqual(p, []string{"da:a1:19:00:00:01"}) {
		t.Errorf("Present = %v", p)
	}
}

func TestBounded(t *testing.T) {
	inv := New()
	t0 := time.Date(2026, 11, 29, 20, 0, 0, 0, time.UTC)
	for i := 0; i < MaxDevices+10; i++ {
		inv.Observe(map[string][]netip.Addr{fmt.Sprintf("00:1a:2b:%02x:%02x:01", i>>8, i&0xff): addrs("192.168.1.1")}, t0.Add(time.Duration(i)*time.Second))
	}
	list := inv.List()
	if len(list) != MaxDevices {
		t.Fatalf("%d devices, bound %d", len(list), MaxDevices)
	}
	for _, d := range list {
		if d.MAC == "00:1a:2b:00:00:01" {
			t.Error("the device seen least recently was kept")
		}
	}
}

func TestSaveLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "devices.json")
	inv := New()
	t0 := time.Date(2026, 11, 29, 20, 0, 0, 0, time.UTC)
	inv.Observe(map[string][]netip.Addr{"da:a1:19:00:00:01": addrs("192.168.1.150")}, t0)
	inv.SetNames(map[string]string{"da:a1:19:00:00:01": "Alices-iPhone", "00:00:5e:00:00:01": "not-seen"})
	if err := inv.Save(path); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if strings.Contains(string(b), "192.168") {
		t.Errorf("addresses were written: %s", b)
	}
	back, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []Device{{MAC: "da:a1:19:00:00:01", Randomized: true, FirstSeen: t0, LastSeen: t0, Addresses: []string{}, Name: "Alices-iPhone"}}
	if got := back.List(); !reflect.DeepEqual(got, want) {
		t.Errorf("loaded %+v, want %+v", got, want)
	}
	if inv, err := Load(filepath.Join(t.TempDir(), "none.json")); err != nil || len(inv.List()) != 0 {
		t.Errorf("missing file: %v %v", inv.List(), err)
	}
	os.WriteFile(path, []byte("garbage"), 0o644)
	if inv, err := Load(path); err == nil || len(inv.List()) != 0 {
		t.Errorf("garbage: %v %v", inv.List(), err)
	}
}

func TestParseLeases(t *testing.T) {
	f, err := os.Open("testdata/dhcp.leases")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := ParseLeases(f)
	want := map[string]string{"da:a1:19:00:00:01": "Alices-iPhone", "00:1a:2b:3c:4d:33": "dadrm-laptopx1b31m"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseLeases = %v, want %v", got, want)
	}
}

func TestLeaseNameIsSanitised(t *testing.T) {
	got := ParseLeases(strings.NewReader("1 02:00:00:00:00:01 192.0.2.1 evil\x1b[2J\x07name *\n1 02:00:00:00:00:02 192.0.2.2 \x1b\x1b *\n"))
	if want := map[string]string{"02:00:00:00:00:01": "evil2Jname"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// FuzzParseLeases: the lease file is written by dnsmasq from what DHCP
// clients send; whatever it holds, every key is a canonical MAC and every
// name is short and printable.
func FuzzParseLeases(f *testing.F) {
	fuzzseed.Add(f, "FuzzParseLeases", fuzzseed.Bytes)
	f.Fuzz(func(t *testing.T, data []byte) {
		for mac, name := range ParseLeases(bytes.NewReader(data)) {
			if c, err := policy.NormalizeMAC(mac); err != nil || c != mac {
				t.Fatalf("key %q is not a canonical MAC", mac)
			}
			if name == "" || len(name) > 63 || hostName(name) != name {
				t.Fatalf("name %q for %s", name, mac)
			}
		}
	})
}
