package egress

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/famguard/famguard/scripts/lab"
)

func TestMain(m *testing.M) { lab.MainInPrivateNetns(m) }

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newFakeSets(t *testing.T) (*Sets, *Fake, *clock) {
	c := &clock{time.Unix(1_800_000_000, 0)}
	f := &Fake{Now: c.now}
	s := New(f)
	s.now = c.now
	if err := s.EnsureSets("fg-alice"); err != nil {
		t.Fatal(err)
	}
	return s, f, c
}

var (
	a4 = netip.MustParseAddr("198.51.100.7")
	a6 = netip.MustParseAddr("2001:db8::7")
)

func TestAddTimeouts(t *testing.T) {
	for _, tc := range []struct {
		ttl  time.Duration
		want time.Duration
	}{
		{300 * time.Second, 360 * time.Second}, // TTL + grace
		{0, 60 * time.Second},                  // grace only
		{-5 * time.Second, 60 * time.Second},
		{7 * 24 * time.Hour, MaxTimeout}, // capped
	} {
		s, f, c := newFakeSets(t)
		if err := s.Add("fg-alice", a4, tc.ttl); err != nil {
			t.Fatal(err)
		}
		if until, ok := f.Holds("fg-alice4", a4); !ok || until.Sub(c.t) != tc.want {
			t.Errorf("ttl %v: held %v until +%v, want +%v", tc.ttl, ok, until.Sub(c.t), tc.want)
		}
	}
	// The floor applies when the grace is smaller than it.
	s, f, c := newFakeSets(t)
	s.SetGrace(0)
	_ = s.Add("fg-alice", a6, 0)
	if until, ok := f.Holds("fg-alice6", a6); !ok || until.Sub(c.t) != MinTimeout {
		t.Errorf("TTL 0 without grace: held until +%v, want +%v", until.Sub(c.t), MinTimeout)
	}
}

// TestAddNeverShortensAndCaches: a later answer with a shorter TTL keeps the
// longer hold; repeated answers cost no kernel call until RefreshEvery.
func TestAddNeverShortensAndCaches(t *testing.T) {
	s, f, c := newFakeSets(t)
	_ = s.Add("fg-alice", a4, time.Hour)
	c.t = c.t.Add(time.Second)
	_ = s.Add("fg-alice", a4, 10*time.Second)
	_ = s.Add("fg-alice", a4, time.Hour-2*time.Second)
	if n := strings.Count(strings.Join(f.Calls, "\n"), "add "); n != 1 {
		t.Errorf("%d kernel adds, want 1 (the others were held long enough): %v", n, f.Calls)
	}
	c.t = c.t.Add(RefreshEvery)
	_ = s.Add("fg-alice", a4, 10*time.Second)
	want := "add fg-alice4 198.51.100.7 " + "3629" // the hour's hold, from now
	if last := f.Calls[len(f.Calls)-1]; last != want {
		t.Errorf("refresh = %q, want %q", last, want)
	}
	// A set flushed behind the agent's back is repaired by the refresh.
	f.Flush("fg-alice4")
	c.t = c.t.Add(RefreshEvery)
	_ = s.Add("fg-alice", a4, 10*time.Second)
	if _, ok := f.Holds("fg-alice4", a4); !ok {
		t.Error("flushed address not put back after RefreshEvery")
	}
	// Entries leave by themselves.
	c.t = c.t.Add(2 * time.Hour)
	if _, ok := f.Holds("fg-alice4", a4); ok {
		t.Error("address still held after its timeout")
	}
	if err := s.Add("fg-alice", a4, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.Holds("fg-alice4", a4); !ok {
		t.Error("expired address not added again")
	}
}

func TestEnsureSetsForgetsCache(t *testing.T) {
	s, f, _ := newFakeSets(t)
	_ = s.Add("fg-alice", a4, time.Hour)
	_ = f.Destroy("fg-alice4")
	if err := s.EnsureSets("fg-alice"); err != nil {
		t.Fatal(err)
	}
	_ = s.Add("fg-alice", a4, time.Hour)
	if _, ok := f.Holds("fg-alice4", a4); !ok {
		t.Error("after EnsureSets recreated the set, the address was not added again")
	}
}

func TestErrors(t *testing.T) {
	s, f, _ := newFakeSets(t)
	if err := s.Add("fg-bob", a4, time.Minute); err == nil {
		t.Error("add to a missing set succeeded")
	}
	if err := s.EnsureSets(strings.Repeat("x", 31)); err == nil {
		t.Error("a base name too long for the kernel accepted")
	}
	if err := s.Add("fg-alice", netip.Addr{}, time.Minute); err == nil {
		t.Error("invalid address accepted")
	}
	f.sets["fg-alice4"].maxElem = 2
	for i := range 2 {
		if err := s.Add("fg-alice", netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Add("fg-alice", a4, time.Minute); !errors.Is(err, ErrFull) {
		t.Errorf("add to a full set: %v, want ErrFull", err)
	}
	// An IPv4-mapped address goes to the IPv4 set.
	if err := s.Add("fg-alice", netip.MustParseAddr("::ffff:10.0.0.1"), time.Minute); err != nil {
		t.Errorf("mapped address: %v", err)
	}
}

func TestSetBase(t *testing.T) {
	for class, want := range map[string]string{
		"alice":                             "fg-alice",
		"a-very-long-child-name-of-32-chrs": "",
		"a-very-long-child-name-of-32-chrx": "",
	} {
		got := SetBase(class)
		if want != "" && got != want {
			t.Errorf("SetBase(%q) = %q, want %q", class, got, want)
		}
		if err := checkBase(got); err != nil {
			t.Errorf("SetBase(%q) = %q: %v", class, got, err)
		}
	}
	if SetBase("a-very-long-child-name-of-32-chrs") == SetBase("a-very-long-child-name-of-32-chrx") {
		t.Error("two long names share a set")
	}
}

func TestStatsAndDestroy(t *testing.T) {
	s, _, _ := newFakeSets(t)
	_ = s.Add("fg-alice", a4, time.Minute)
	_ = s.Add("fg-alice", a6, time.Minute)
	_ = s.Add("fg-alice", netip.MustParseAddr("2001:db8::8"), time.Minute)
	st, err := s.Stats("fg-alice")
	if err != nil || st.Open4 != 1 || st.Open6 != 2 || st.MemBytes == 0 || len(st.Sets) != 2 || st.Sets[0].MaxElem != MaxElem {
		t.Errorf("stats %+v %v", st, err)
	}
	if err := s.Destroy("fg-alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stats("fg-alice"); err == nil {
		t.Error("stats of destroyed sets")
	}
}

// netlinkSets makes real kernel sets of class in the test's private
// namespace, removed at the end of the test.
func netlinkSets(t *testing.T, class string) (*Netlink, *Sets, string) {
	lab.RequirePrivateNetns(t)
	k, err := NewNetlink()
	if err != nil {
		t.Fatal(err)
	}
	s := New(k)
	base := SetBase(class)
	if err := s.EnsureSets(base); err != nil {
		k.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Destroy(base); k.Close() })
	return k, s, base
}

// TestNetlink runs the real kernel sets in the test's private namespace.
func TestNetlink(t *testing.T) {
	k, s, base := netlinkSets(t, "alice")
	if err := s.EnsureSets(base); err != nil {
		t.Fatalf("second EnsureSets: %v", err)
	}
	for _, a := range []netip.Addr{a4, a6, netip.MustParseAddr("::ffff:198.51.100.8")} {
		if err := s.Add(base, a, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	st, err := s.Stats(base)
	if err != nil || st.Open4 != 2 || st.Open6 != 1 || st.MemBytes == 0 || st.Sets[1].MaxElem != MaxElem {
		t.Fatalf("stats %+v %v", st, err)
	}
	// A set of famguard's name made by someone else, without timeouts.
	if err := k.h.IpsetDestroy(base + "6"); err != nil {
		t.Fatal(err)
	}
	if err := k.Create(base+"6", false, 10); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureSets(base); err == nil || !strings.Contains(err.Error(), "ipset destroy "+base+"6") {
		t.Errorf("mismatching set: %v", err)
	}
	// A full set says so.
	if err := k.Create("fg-small4", false, 1); err != nil {
		t.Fatal(err)
	}
	defer k.Destroy("fg-small4")
	_ = k.Add("fg-small4", a4, 30)
	if err := k.Add("fg-small4", netip.MustParseAddr("198.51.100.9"), 30); !errors.Is(err, ErrFull) {
		t.Errorf("full set: %v", err)
	}
	if err := k.Destroy("fg-none4"); err != nil {
		t.Errorf("destroying a missing set: %v", err)
	}
}

// TestNetlinkBounded fills a real set to MaxElem: the next new address is
// ErrFull (the DNS filter then fails closed), and the kernel memory of a
// full set is what README.md quotes.
func TestNetlinkBounded(t *testing.T) {
	_, s, base := netlinkSets(t, "full")
	start := time.Now()
	for i := range MaxElem {
		if err := s.Add(base, netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), time.Hour); err != nil {
			t.Fatalf("add %d: %v", i, err)
		}
	}
	took := time.Since(start)
	// The kernel counts elements per region of its hash and checks the
	// sum loosely: it may take a few more than maxelem, never many.
	extra := 0
	for ; extra < MaxElem/100; extra++ {
		if err := s.Add(base, netip.AddrFrom4([4]byte{11, 0, byte(extra >> 8), byte(extra)}), time.Hour); err != nil {
			if !errors.Is(err, ErrFull) {
				t.Fatalf("add beyond MaxElem: %v, want ErrFull", err)
			}
			break
		}
	}
	if extra == MaxElem/100 {
		t.Fatalf("the set took %d addresses beyond MaxElem", extra)
	}
	for i := range 1000 {
		a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)})
		if err := s.Add(base, a, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	st, err := s.Stats(base)
	if err != nil || st.Open4 != MaxElem+extra || st.Open6 != 1000 {
		t.Fatalf("stats %+v %v", st, err)
	}
	t.Logf("%d IPv4 adds in %v (%.1f µs each); full IPv4 set: %d entries (%d beyond MaxElem) in %.2f MiB of kernel memory; IPv6 set with 1000 entries: %.1f KiB",
		MaxElem, took.Round(time.Millisecond), float64(took.Microseconds())/MaxElem, st.Open4, extra, float64(st.Sets[0].MemBytes)/(1<<20), float64(st.Sets[1].MemBytes)/1024)
}

// TestNetlinkAddMatchesLibrary: the hand-built add leaves the same entry
// (address, timeout) as the netlink library's.
func TestNetlinkAddMatchesLibrary(t *testing.T) {
	k, _, base := netlinkSets(t, "match")
	v4, v6 := Names(base)
	for _, tc := range []struct {
		set  string
		addr netip.Addr
		add  func(string, netip.Addr, uint32) error
	}{
		{v4, netip.MustParseAddr("198.51.100.1"), k.Add}, {v4, netip.MustParseAddr("198.51.100.2"), k.addLib},
		{v6, netip.MustParseAddr("2001:db8::1"), k.Add}, {v6, netip.MustParseAddr("2001:db8::2"), k.addLib},
	} {
		if err := tc.add(tc.set, tc.addr, 500); err != nil {
			t.Fatal(err)
		}
	}
	for _, set := range []string{v4, v6} {
		r, err := k.h.IpsetList(set)
		if err != nil || len(r.Entries) != 2 {
			t.Fatalf("%s: %+v %v", set, r, err)
		}
		for _, e := range r.Entries {
			if e.Timeout == nil || *e.Timeout < 490 || *e.Timeout > 500 {
				t.Errorf("%s %v: timeout %v, want about 500", set, e.IP, e.Timeout)
			}
		}
	}
	// Replacing an entry's timeout, not failing on it.
	if err := k.Add(v4, netip.MustParseAddr("198.51.100.1"), 900); err != nil {
		t.Fatal(err)
	}
	if err := k.Add("fg-missing4", netip.MustParseAddr("198.51.100.1"), 900); err == nil {
		t.Error("add to a missing set succeeded")
	}
}

// BenchmarkNetlinkAdd: one add of a new address, hand-built and through
// the netlink library (README.md quotes both).
func BenchmarkNetlinkAdd(b *testing.B) {
	for _, tc := range []struct {
		name string
		add  func(*Netlink) func(string, netip.Addr, uint32) error
	}{{"own", func(k *Netlink) func(string, netip.Addr, uint32) error { return k.Add }},
		{"library", func(k *Netlink) func(string, netip.Addr, uint32) error { return k.addLib }}} {
		b.Run(tc.name, func(b *testing.B) {
			lab.RequirePrivateNetns(b)
			k, err := NewNetlink()
			if err != nil {
				b.Fatal(err)
			}
			defer k.Close()
			_ = k.Destroy("fg-bench4")
			if err := k.Create("fg-bench4", false, 1<<20); err != nil {
				b.Fatal(err)
			}
			defer k.Destroy("fg-bench4")
			add := tc.add(k)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				if err := add("fg-bench4", netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 600); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestAckOf(t *testing.T) {
	msg := func(typ uint16, seq uint32, payload ...byte) []byte {
		b := binary.LittleEndian.AppendUint32(nil, uint32(16+len(payload)))
		b = binary.LittleEndian.AppendUint16(b, typ)
		b = binary.LittleEndian.AppendUint16(b, 0)
		b = binary.LittleEndian.AppendUint32(b, seq)
		b = binary.LittleEndian.AppendUint32(b, 0)
		return append(b, payload...)
	}
	errno := func(e int32) []byte { return binary.LittleEndian.AppendUint32(nil, uint32(-e)) }
	for _, tc := range []struct {
		name  string
		in    []byte
		errno int32
		found bool
		bad   bool
	}{
		{"ack", msg(unix.NLMSG_ERROR, 7, errno(0)...), 0, true, false},
		{"full", msg(unix.NLMSG_ERROR, 7, errno(4352)...), 4352, true, false},
		{"stale then ours", append(msg(unix.NLMSG_ERROR, 6, errno(2)...), msg(unix.NLMSG_ERROR, 7, errno(17)...)...), 17, true, false},
		{"odd length then ours", append(append(msg(99, 7, 1), 0, 0, 0), msg(unix.NLMSG_ERROR, 7, errno(0)...)...), 0, true, false},
		{"only others", msg(unix.NLMSG_ERROR, 6, errno(0)...), 0, false, false},
		{"length beyond", msg(unix.NLMSG_ERROR, 7, errno(0)...)[:18], 0, false, true},
		{"short", []byte{1, 2, 3}, 0, false, false},
	} {
		e, found, err := ackOf(tc.in, 7)
		if e != tc.errno || found != tc.found || (err != nil) != tc.bad {
			t.Errorf("%s: ackOf = %d %v %v", tc.name, e, found, err)
		}
	}
}

// TestRepeatedAnswersCostNoSyscall: the same name answered again every
// second with the same TTL costs one kernel add until RefreshEvery, and the
// set never holds the address for less than the answer's TTL.
func TestRepeatedAnswersCostNoSyscall(t *testing.T) {
	s, f, c := newFakeSets(t)
	for i := 0; i < int(RefreshEvery/time.Second); i++ {
		if err := s.Add("fg-alice", a6, 5*time.Minute); err != nil {
			t.Fatal(err)
		}
		if until, ok := f.Holds("fg-alice6", a6); !ok || until.Sub(c.t) < 5*time.Minute {
			t.Fatalf("after %d s the set holds it for %v, less than the answer's TTL", i, until.Sub(c.t))
		}
		c.t = c.t.Add(time.Second)
	}
	if n := strings.Count(strings.Join(f.Calls, "\n"), "add "); n != 1 {
		t.Errorf("%d kernel adds for answers a second apart, want 1: %v", n, f.Calls)
	}
	_ = s.Add("fg-alice", a6, 5*time.Minute)
	if n := strings.Count(strings.Join(f.Calls, "\n"), "add "); n != 2 {
		t.Errorf("%d kernel adds after RefreshEvery, want 2 (the refresh)", n)
	}
}
