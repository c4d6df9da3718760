package rules

import (
	"fmt"
	"math/rand"
	"net/netip"
	"strings"
	"testing"
)

// deltaState is a household with DNS interception on, the given devices
// offline and, from `from`, only n devices.
func deltaState(n int, offline map[int]bool) Desired {
	d := Desired{DNSPort: 5353, DoHAddrs: []netip.Addr{netip.MustParseAddr("192.0.2.53")}}
	for i := 0; i < n; i++ {
		d.Devices = append(d.Devices, Device{ID: uint16(i + 1),
			MAC: fmt.Sprintf("02:00:00:00:%02x:%02x", i>>8, i&0xff), Child: fmt.Sprintf("kid%d", i/4),
			Name: fmt.Sprintf("device %d", i), Offline: offline[i], Reason: "bedtime", BypassPrevention: i%3 != 0,
		})
	}
	return d
}

// TestDeltaReachesNext: applying the delta to the kernel state of prev (the
// stateful fake) gives exactly the state a full write of next gives, for
// changes of a few devices, of many, and of the device list; the read-back
// holds the delta's expectation; and a delta costs operations in proportion
// to the devices that changed.
func TestDeltaReachesNext(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	cases := []struct {
		name       string
		prev, next Desired
		maxOps     int // -1: no bound checked
	}{
		{"nothing changed", deltaState(40, nil), deltaState(40, nil), 0},
		{"one device offline", deltaState(40, nil), deltaState(40, map[int]bool{17: true}), 4},
		{"four devices offline", deltaState(1000, nil), deltaState(1000, map[int]bool{0: true, 1: true, 2: true, 3: true}), 16},
		{"four back online", deltaState(1000, map[int]bool{0: true, 1: true, 2: true, 3: true}), deltaState(1000, nil), 16},
		{"a device added", deltaState(40, nil), deltaState(41, nil), 8},
		{"a device removed", deltaState(41, nil), deltaState(40, nil), 8},
		{"everyone offline", deltaState(40, nil), deltaState(40, allOf(40)), -1},
	}
	for r := 0; r < 20; r++ {
		a, b := map[int]bool{}, map[int]bool{}
		for i := 0; i < 60; i++ {
			a[i], b[i] = rng.Intn(2) == 0, rng.Intn(5) == 0
		}
		cases = append(cases, struct {
			name       string
			prev, next Desired
			maxOps     int
		}{fmt.Sprintf("random %d", r), deltaState(60, a), deltaState(50+rng.Intn(20), b), -1})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, next, d, exp := deltaOnFake(t, c.prev, c.next)
			if err := f.t[IPv4].restore(d); err != nil {
				t.Fatalf("delta does not apply: %v\n%s", err, d)
			}
			want := NewFake()
			if err := want.Apply(IPv4, next); err != nil {
				t.Fatal(err)
			}
			if got, w := f.Save(IPv4), want.Save(IPv4); got != w {
				t.Fatalf("after the delta:\n%s\nwant (full write):\n%s\ndelta:\n%s", got, w, d)
			}
			after, _ := f.Snapshot(IPv4)
			if !exp.holds(after) {
				t.Errorf("the read-back does not hold the delta's expectation")
			}
			ops := strings.Count(d, "\n-") + strings.Count(d, "\n:")
			if strings.HasPrefix(d, "-") {
				ops++
			}
			if c.maxOps >= 0 && ops > c.maxOps {
				t.Errorf("delta has %d operations, want at most %d:\n%s", ops, c.maxOps, d)
			}
		})
	}
}

// deltaOnFake writes prev to a fake in full and returns it with next's
// restore input and the delta from prev to next (not yet applied).
func deltaOnFake(t *testing.T, prev, next Desired) (*Fake, string, string, expectation) {
	t.Helper()
	p, err := Render(prev, IPv4)
	if err != nil {
		t.Fatal(err)
	}
	n, err := Render(next, IPv4)
	if err != nil {
		t.Fatal(err)
	}
	f := NewFake()
	if err := f.Apply(IPv4, p); err != nil {
		t.Fatal(err)
	}
	base, _ := f.Snapshot(IPv4)
	d, exp, ok := delta(p, n, base)
	if !ok {
		t.Fatalf("no delta between two states with the same chains")
	}
	return f, n, d, exp
}

func allOf(n int) map[int]bool {
	m := map[int]bool{}
	for i := 0; i < n; i++ {
		m[i] = true
	}
	return m
}

// TestDeltaRefused: a full write is due when the tables or the chains
// differ, or when the read-back does not match the last write.
func TestDeltaRefused(t *testing.T) {
	const prev = "*filter\n:FAMGUARD - [0:0]\n-A FAMGUARD -j RETURN\nCOMMIT\n"
	base := "filter::FAMGUARD\nfilter:-A FAMGUARD -j RETURN\n"
	for _, next := range []string{
		"*filter\n:FAMGUARD - [0:0]\n:FAMGUARD-REJECT - [0:0]\n-A FAMGUARD -j RETURN\nCOMMIT\n",            // a new chain
		"*nat\n:FAMGUARD-DNS - [0:0]\nCOMMIT\n*filter\n:FAMGUARD - [0:0]\n-A FAMGUARD -j RETURN\nCOMMIT\n", // a new table
		"*filter\n:FAMGUARD - [0:0]\n-I FAMGUARD 1 -j RETURN\nCOMMIT\n",                                    // not a Render output
	} {
		if _, _, ok := delta(prev, next, base); ok {
			t.Errorf("delta from\n%sto\n%s", prev, next)
		}
	}
	next := "*filter\n:FAMGUARD - [0:0]\n-A FAMGUARD -j DROP\nCOMMIT\n"
	if d, _, ok := delta(prev, next, base); !ok || d != "*filter\n-D FAMGUARD 1\n-I FAMGUARD 1 -j DROP\nCOMMIT\n" {
		t.Errorf("delta = %q, %v", d, ok)
	}
	// Another program added a rule to our chain: the read-back no longer
	// matches what was written.
	if _, _, ok := delta(prev, next, base+"filter:-A FAMGUARD -j ACCEPT\n"); ok {
		t.Errorf("delta from a read-back that does not match the last write")
	}
}

// TestExpectationCatchesForeignChange: a rule the delta kept but another
// program replaced just before the delta ran fails the read-back check (the
// Kernel then marks the read-back, and the daemon's next heal writes all).
func TestExpectationCatchesForeignChange(t *testing.T) {
	f, _, d, exp := deltaOnFake(t, deltaState(10, nil), deltaState(10, map[int]bool{2: true}))
	// Another program replaces a rule the delta keeps, then the delta runs.
	for _, cmd := range []string{"-D FAMGUARD-DNS53 1", "-I FAMGUARD-DNS53 1 -p udp -j ACCEPT"} {
		if err := f.runIn(IPv4, "nat", cmd); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.t[IPv4].restore(d); err != nil {
		t.Fatal(err)
	}
	after, _ := f.Snapshot(IPv4)
	if exp.holds(after) {
		t.Errorf("the expectation holds although a kept rule was replaced")
	}
}
