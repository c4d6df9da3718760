package rules

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/rules/*.golden")

var (
	alicePhone = Device{ID: 1, MAC: "02:00:00:00:00:11", Child: "alice", Name: "Alice's phone", Offline: true,
		Reason: "offline: bedtime (Sun–Thu 21:00–07:00)",
		Addrs: []netip.Addr{netip.MustParseAddr("2001:db8:1::11"), netip.MustParseAddr("192.0.2.11"),
			netip.MustParseAddr("fe80::11")}}
	aliceLaptop = Device{ID: 2, MAC: "02:00:00:00:00:12", Child: "alice", Name: "Alice's laptop", Offline: true,
		Reason: "offline: bedtime (Sun–Thu 21:00–07:00)"}
	bobTablet = Device{ID: 3, MAC: "02:00:00:00:00:21", Child: "bob", Name: "Bob's tablet", Offline: false,
		Reason: "online: no schedule active", Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.21")}}
	parentMAC = "02:00:00:00:00:31"
)

// goldenCase is one rendered state checked against testdata/rules (other
// files add theirs in init).
type goldenCase struct {
	name string
	d    Desired
}

var goldenCases = []goldenCase{
	{"empty", Desired{}},
	{"one-offline", Desired{Devices: []Device{alicePhone}}},
	{"family", Desired{Devices: []Device{bobTablet, aliceLaptop, alicePhone}}},
	{"dns", Desired{DNSPort: 5354, Devices: []Device{alicePhone, withBypass(bobTablet), aliceLaptop},
		DoHAddrs: []netip.Addr{netip.MustParseAddr("9.9.9.9"), netip.MustParseAddr("2620:fe::fe")}}},
	{"odd-names", Desired{Devices: []Device{{ID: 4, MAC: "02-00-00-00-00-41", Child: "eve", Offline: true,
		Name: "\"quoted\" \\ back\nslash ünïcode " + strings.Repeat("long ", 80), Reason: "x"}}}},
}

func withBypass(d Device) Device {
	d.BypassPrevention = true
	return d
}

// TestGolden: Render applied to a fresh stateful fake gives exactly the
// iptables-save text in testdata/rules (go test ./rules -run Golden -update
// rewrites it after a deliberate change).
func TestGolden(t *testing.T) {
	for _, tc := range goldenCases {
		for _, fam := range []Family{IPv4, IPv6} {
			name := tc.name + "." + fam.String() + ".golden"
			text, err := Render(tc.d, fam)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			f := NewFake()
			if err := f.Apply(fam, text); err != nil {
				t.Fatalf("%s: apply: %v", name, err)
			}
			got := f.Save(fam)
			path := filepath.Join("..", "testdata", "rules", name)
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./rules -run Golden -update)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs:\n--- got\n%s--- want\n%s", name, got, want)
			}
		}
	}
}

func TestRenderRejectsBadMAC(t *testing.T) {
	_, err := Render(Desired{Devices: []Device{{MAC: "02:00:00:00:00", Child: "x", Offline: true}}}, IPv4)
	if err == nil || !strings.Contains(err.Error(), "not a MAC") {
		t.Errorf("err = %v", err)
	}
}

func TestComment(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"alice/Alice's phone: bedtime (Sun–Thu 21:00–07:00)", `"alice/Alices phone: bedtime (Sun-Thu 21:00-07:00)"`},
		{"a \"b\" \\c\nd", `"a _b_ _c_d"`},
		{"ünï", `"_n_"`},
		{"$(reboot); `x` -j ACCEPT", `"_(reboot); _x_ -j ACCEPT"`},
	} {
		if got := Comment(tc.in); got != tc.want {
			t.Errorf("Comment(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
	if got := Comment(strings.Repeat("x", 1000)); len(got) != maxComment+2 {
		t.Errorf("long comment is %d bytes, want capped at %d", len(got), maxComment+2)
	}
}
