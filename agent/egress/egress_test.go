package egress

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
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

// benchSet is a fresh kernel set fg-bench4 for benchmarks (room for 4 Mi
// entries: benchmarks add many), removed when the benchmark ends.
func benchSet(b *testing.B) *Netlink {
	lab.RequirePrivateNetns(b)
	k, err := NewNetlink()
	if err != nil {
		b.Fatal(err)
	}
	_ = k.Destroy("fg-bench4")
	if err := k.Create("fg-bench4", false, 1<<22); err != nil {
		k.Close()
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = k.Destroy("fg-bench4"); k.Close() })
	return k
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
			k := benchSet(b)
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
		b := binary.NativeEndian.AppendUint32(nil, uint32(16+len(payload)))
		b = binary.NativeEndian.AppendUint16(b, typ)
		b = binary.NativeEndian.AppendUint16(b, 0)
		b = binary.NativeEndian.AppendUint32(b, seq)
		b = binary.NativeEndian.AppendUint32(b, 0)
		return append(b, payload...)
	}
	errno := func(e int32) []byte { return binary.NativeEndian.AppendUint32(nil, uint32(-e)) }
	for _, tc := range []struct {
		name string
		in   []byte
		want string // seq:errno of every acknowledgement, in order
		bad  bool
	}{
		{"ack", msg(unix.NLMSG_ERROR, 7, errno(0)...), "7:0", false},
		{"full", msg(unix.NLMSG_ERROR, 7, errno(4352)...), "7:4352", false},
		{"two in one datagram", append(msg(unix.NLMSG_ERROR, 6, errno(2)...), msg(unix.NLMSG_ERROR, 7, errno(17)...)...), "6:2 7:17", false},
		{"odd length then ours", append(append(msg(99, 7, 1), 0, 0, 0), msg(unix.NLMSG_ERROR, 7, errno(0)...)...), "7:0", false},
		{"not an ack", msg(99, 7, errno(0)...), "", false},
		{"ack without errno", msg(unix.NLMSG_ERROR, 7), "", false},
		{"length beyond", msg(unix.NLMSG_ERROR, 7, errno(0)...)[:18], "", true},
		{"short", []byte{1, 2, 3}, "", false},
	} {
		var got []string
		err := acks(tc.in, func(seq uint32, errno int32, _ []byte) { got = append(got, fmt.Sprintf("%d:%d", seq, errno)) })
		if strings.Join(got, " ") != tc.want || (err != nil) != tc.bad {
			t.Errorf("%s: acks = %q %v, want %q", tc.name, got, err, tc.want)
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

// BenchmarkNetlinkAddBatch: new addresses in batches of n, one write and
// one acknowledgement each: as AddBatch sends them (a list message) and as
// one message per entry (what a failing list's rest costs). ns/op and
// cpu-ns/op are per address (README.md quotes them).
func BenchmarkNetlinkAddBatch(b *testing.B) {
	for _, form := range []string{"list", "each"} {
		for _, n := range []int{1, 8, 32, 128} {
			b.Run(fmt.Sprintf("%s/%d", form, n), func(b *testing.B) {
				k := benchSet(b)
				adds := make([]KernelAdd, n)
				idx := make([]int, n)
				for i := range idx {
					idx[i] = i
				}
				b.ReportAllocs()
				defer reportCPU(b)()
				i := 0
				for b.Loop() {
					j := i % n
					i++
					adds[j] = KernelAdd{Set: "fg-bench4", Addr: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), Timeout: 600}
					if j < n-1 {
						continue
					}
					if form == "list" {
						k.AddBatch(adds)
					} else {
						k.add.mu.Lock()
						k.add.send(adds, idx)
						k.add.mu.Unlock()
					}
					for _, a := range adds {
						if a.Err != nil {
							b.Fatal(a.Err)
						}
					}
				}
			})
		}
	}
}

// TestNetlinkBatch: one batch mixing good entries with entries the kernel
// refuses (a missing set, the wrong family, a full set): each refused entry
// gets its own error, every other one is in the kernel. Larger batches
// than one write holds are split, and a batch of which every entry fails
// loses none of the errors.
func TestNetlinkBatch(t *testing.T) {
	k, _, base := netlinkSets(t, "batch")
	v4, v6 := Names(base)
	if err := k.Create("fg-small4", false, 1); err != nil {
		t.Fatal(err)
	}
	defer k.Destroy("fg-small4")
	ip := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}) }
	adds := []KernelAdd{
		{Set: v4, Addr: ip(1), Timeout: 600},
		{Set: "fg-missing4", Addr: ip(2), Timeout: 600},
		{Set: v6, Addr: netip.MustParseAddr("2001:db8::1"), Timeout: 600},
		{Set: v6, Addr: ip(3), Timeout: 600}, // wrong family
		{Set: "fg-small4", Addr: ip(4), Timeout: 600},
		{Set: "fg-small4", Addr: ip(5), Timeout: 600}, // full
		{Set: strings.Repeat("x", 40), Addr: ip(6), Timeout: 600},
		{Set: v4, Addr: ip(7), Timeout: 600},
		{Set: v6, Addr: netip.MustParseAddr("2001:db8::5"), Timeout: 600}, // after the wrong family: tried again
		{Set: "fg-small4", Addr: ip(4), Timeout: 900},                     // after the full one: a refresh, which a full set takes
	}
	k.AddBatch(adds)
	for i, a := range adds {
		wantErr := i == 1 || i == 3 || i == 5 || i == 6
		if (a.Err != nil) != wantErr {
			t.Errorf("entry %d (%s %s): %v, want error %v", i, a.Set, a.Addr, a.Err, wantErr)
		}
	}
	if !errors.Is(adds[5].Err, ErrFull) {
		t.Errorf("full set: %v, want ErrFull", adds[5].Err)
	}
	if !errors.Is(adds[1].Err, unix.ENOENT) {
		t.Errorf("missing set: %v, want ENOENT", adds[1].Err)
	}
	for _, a := range []KernelAdd{adds[0], adds[2], adds[4], adds[7], adds[8]} {
		if !kernelHolds(t, k, a.Set, a.Addr) {
			t.Errorf("%s does not hold %s", a.Set, a.Addr)
		}
	}
	// Split: 300 entries, three writes.
	many := make([]KernelAdd, 300)
	for i := range many {
		many[i] = KernelAdd{Set: v4, Addr: ip(1000 + i), Timeout: 600}
	}
	k.AddBatch(many)
	for _, a := range many {
		if a.Err != nil {
			t.Fatal(a.Err)
		}
	}
	if r, err := k.h.IpsetList(v4); err != nil || r.NumEntries != 302 {
		t.Errorf("after 300 more adds the set holds %d entries (%v), want 302", r.NumEntries, err)
	}
	// Every entry failing: one error each, none lost.
	for i := range many {
		many[i] = KernelAdd{Set: "fg-small4", Addr: ip(2000 + i), Timeout: 600}
	}
	k.AddBatch(many)
	for i, a := range many {
		if !errors.Is(a.Err, ErrFull) {
			t.Fatalf("entry %d to a full set: %v, want ErrFull", i, a.Err)
		}
	}
	// And the socket is in step again afterwards.
	if err := k.Add(v4, ip(9), 600); err != nil || !kernelHolds(t, k, v4, ip(9)) {
		t.Errorf("add after the failing batch: %v", err)
	}
}

// kernelHolds asks the kernel (ipset test, over the library) whether set
// holds addr.
func kernelHolds(t *testing.T, k *Netlink, set string, addr netip.Addr) bool {
	t.Helper()
	r, err := k.h.IpsetList(set)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range r.Entries {
		if a, ok := netip.AddrFromSlice(e.IP); ok && a.Unmap() == addr {
			return true
		}
	}
	return false
}

// gatedSets is Sets over a Fake whose first batch waits in the kernel until
// release is closed; held is closed when it does.
func gatedSets(t *testing.T) (s *Sets, f *Fake, held, release chan struct{}) {
	s, f, _ = newFakeSets(t)
	held, release = make(chan struct{}), make(chan struct{})
	var once sync.Once
	f.BeforeBatch = func([]KernelAdd) {
		first := false
		once.Do(func() { first = true })
		if first {
			close(held)
			<-release
		}
	}
	return s, f, held, release
}

// gathering is how many adds wait in the batch being gathered.
func gathering(s *Sets) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.next == nil {
		return 0
	}
	return len(s.next.slots)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestGroupCommit: answers arriving while a batch is in the kernel go
// together in the next batch, each returns once its own addresses are in
// the kernel, and one address the kernel refuses fails exactly the answers
// that held it.
func TestGroupCommit(t *testing.T) {
	s, f, held, release := gatedSets(t)
	bad := netip.MustParseAddr("198.51.100.66")
	f.Refuse = map[netip.Addr]error{bad: errors.New("ipset fg-alice4: refused")}
	first := make(chan error, 1)
	go func() { first <- s.Add("fg-alice", a4, time.Minute) }()
	<-held // the first batch (a4 alone) is in the kernel
	answers := [][]Entry{
		{{netip.MustParseAddr("198.51.100.1"), time.Minute}},
		{{netip.MustParseAddr("198.51.100.2"), time.Minute}, {netip.MustParseAddr("2001:db8::2"), time.Minute}},
		{{netip.MustParseAddr("198.51.100.3"), time.Minute}, {bad, time.Minute}}, // fails
		{{bad, time.Hour}}, // fails: the same address, in the same batch
		{{netip.MustParseAddr("2001:db8::4"), time.Minute}},
		{{a4, time.Second}}, // on its way already, long enough: waits for the first batch
	}
	errs := make([]chan error, len(answers))
	for i, es := range answers {
		errs[i] = make(chan error, 1)
		go func() {
			err := s.AddAll("fg-alice", es)
			// When AddAll returns nil, the kernel holds every address.
			for _, e := range es {
				set := "fg-alice4"
				if e.Addr.Is6() {
					set = "fg-alice6"
				}
				if _, ok := f.Holds(set, e.Addr); err == nil && !ok {
					err = fmt.Errorf("returned before the kernel held %s", e.Addr)
				}
			}
			errs[i] <- err
		}()
	}
	waitFor(t, "the answers to gather", func() bool { return gathering(s) == 6 }) // bad once
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for i := range answers {
		err := <-errs[i]
		if fails := i == 2 || i == 3; (err != nil) != fails {
			t.Errorf("answer %d: %v, want failure %v", i, err, fails)
		}
	}
	f.mu.Lock()
	batches := fmt.Sprint(f.Batches)
	f.mu.Unlock()
	if batches != "[1 6]" {
		t.Errorf("batches %s, want [1 6]: the first, then everything that arrived while it was in the kernel", batches)
	}
	// The refused address is not remembered as held: the next answer
	// naming it tries the kernel again.
	delete(f.Refuse, bad)
	if err := s.Add("fg-alice", bad, time.Minute); err != nil {
		t.Errorf("after the kernel takes it again: %v", err)
	}
}

// TestBatchNeverShortens: an address on its way with a short hold and
// later answers with longer TTLs: the kernel ends up holding the longest,
// also when the short add is already in the kernel's hands; answers for an
// address whose batch still gathers lengthen that add, not a new one.
func TestBatchNeverShortens(t *testing.T) {
	s, f, held, release := gatedSets(t)
	c := &clock{time.Unix(1_800_000_000, 0)}
	s.now, f.Now = c.now, c.now
	done := make(chan error, 3)
	go func() { done <- s.Add("fg-alice", a4, 10*time.Second) }() // in the kernel's hands
	<-held
	gatheringUntil := func(want time.Duration) func() bool {
		return func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.next != nil && len(s.next.slots) == 1 && s.next.slots[0].until == uint32(c.t.Add(want).Unix())
		}
	}
	go func() { done <- s.Add("fg-alice", a4, time.Hour) }() // a new add behind it
	waitFor(t, "the hour's add to gather", gatheringUntil(time.Hour+DefaultGrace))
	go func() { done <- s.Add("fg-alice", a4, 2*time.Hour) }() // lengthens it
	waitFor(t, "the gathering add to be lengthened", gatheringUntil(2*time.Hour+DefaultGrace))
	close(release)
	for range 3 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if until, ok := f.Holds("fg-alice4", a4); !ok || until.Sub(c.t) != 2*time.Hour+DefaultGrace {
		t.Errorf("held until +%v, want +%v", until.Sub(c.t), 2*time.Hour+DefaultGrace)
	}
	if n := strings.Count(strings.Join(f.Calls, "\n"), "add "); n != 2 {
		t.Errorf("%d kernel adds, want 2: %v", n, f.Calls)
	}
}

// TestConcurrentAdds: many answers at once, some sharing addresses: every
// AddAll that returns nil finds its addresses in the kernel at that moment,
// and the adds went in fewer batches than answers (run with -race).
func TestConcurrentAdds(t *testing.T) {
	s, f, _ := newFakeSets(t)
	s.now, f.Now = time.Now, time.Now
	var wg sync.WaitGroup
	var mu sync.Mutex
	var missing []string
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				es := []Entry{{netip.AddrFrom4([4]byte{10, 2, byte(g), byte(i)}), time.Minute}, {netip.AddrFrom4([4]byte{10, 3, 0, byte(i)}), time.Duration(g) * time.Second}}
				if err := s.AddAll("fg-alice", es); err != nil {
					t.Error(err)
					return
				}
				for _, e := range es {
					if _, ok := f.Holds("fg-alice4", e.Addr); !ok {
						mu.Lock()
						missing = append(missing, e.Addr.String())
						mu.Unlock()
					}
				}
			}
		}()
	}
	wg.Wait()
	if len(missing) > 0 {
		t.Errorf("AddAll returned before the kernel held %v", missing)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	t.Logf("%d answers, %d kernel adds in %d batches", 32*50, len(f.Calls)-2, len(f.Batches))
}

// reportCPU reports the process's CPU time (user and system) per op when
// the returned func runs: on a machine shared with other work, steadier
// than the wall time.
func reportCPU(b *testing.B) func() {
	cpu := func() time.Duration {
		var ru unix.Rusage
		_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := cpu()
	return func() { b.ReportMetric(float64(cpu()-start)/float64(b.N), "cpu-ns/op") }
}

// BenchmarkSetsAddAllUnique: answers of one new address each, from p
// concurrent goroutines on one P (a router's single core, the bench's
// pinned server), through Sets into the real kernel: the strict cost of an
// answer whose address is new, per answer (cpu-ns/op), and the batch size
// the group commit reached (adds/write).
func BenchmarkSetsAddAllUnique(b *testing.B) {
	for _, p := range []int{1, 8, 64} {
		b.Run(fmt.Sprint(p), func(b *testing.B) {
			s := New(benchSet(b))
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
			var next atomic.Uint32
			b.SetParallelism(p)
			b.ReportAllocs()
			defer reportCPU(b)()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := next.Add(1)
					if err := s.Add("fg-bench", netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), time.Minute); err != nil {
						b.Error(err)
						return
					}
				}
			})
			w, a := s.Writes()
			b.ReportMetric(float64(a)/float64(max(w, 1)), "adds/write")
		})
	}
}

// BenchmarkSetsAddAllHeld: answers whose two addresses the set holds
// already (the steady state of popular names): no kernel call, the cost
// is Sets' own table.
func BenchmarkSetsAddAllHeld(b *testing.B) {
	f := &Fake{}
	s := New(f)
	if err := s.EnsureSets("fg-bench"); err != nil {
		b.Fatal(err)
	}
	es := make([][]Entry, 4096)
	for i := range es {
		es[i] = []Entry{{netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 5 * time.Minute}, {netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)}), 5 * time.Minute}}
		if err := s.AddAll("fg-bench", es[i]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := s.AddAll("fg-bench", es[i%len(es)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// TestTableBounded: Sets remembers at most cacheMax addresses a set;
// beyond that new addresses still go to the kernel (every answer), an
// address it remembers keeps being remembered, and once entries expired a
// sweep makes room again.
func TestTableBounded(t *testing.T) {
	s, f, c := newFakeSets(t)
	ip := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}) }
	for i := range cacheMax + 100 {
		if err := s.Add("fg-alice", ip(i), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	table := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.known["fg-alice"].v4.m)
	}
	if n := table(); n != cacheMax {
		t.Errorf("table holds %d addresses, want %d", n, cacheMax)
	}
	adds := func() int { return strings.Count(strings.Join(f.Calls, "\n"), "add ") }
	before := adds()
	_ = s.Add("fg-alice", ip(0), time.Minute)           // remembered: no kernel call
	_ = s.Add("fg-alice", ip(cacheMax+50), time.Minute) // not remembered: a kernel call
	if got := adds() - before; got != 1 {
		t.Errorf("%d kernel adds, want 1", got)
	}
	// Everything expired: the next new address sweeps the table.
	c.t = c.t.Add(2*time.Minute + RefreshEvery)
	_ = s.Add("fg-alice", ip(cacheMax+200), time.Minute)
	if n := table(); n != 1 {
		t.Errorf("after the sweep the table holds %d addresses, want 1", n)
	}
}

// TestNetlinkGroupCommit: many answers at once through Sets into the real
// kernel (the test's private namespace): every AddAll that returns nil
// finds each of its addresses in the kernel set at that moment (asked over
// a separate netlink socket), and the adds went in fewer writes than
// answers.
func TestNetlinkGroupCommit(t *testing.T) {
	k, s, base := netlinkSets(t, "group")
	v4, v6 := Names(base)
	const workers, each = 32, 100
	var wg sync.WaitGroup
	var mu sync.Mutex
	var missing []string
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				es := []Entry{{netip.AddrFrom4([4]byte{10, 4, byte(g), byte(i)}), time.Minute}, {netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 4, byte(g), 15: byte(i)}), time.Minute}}
				if err := s.AddAll(base, es); err != nil {
					t.Error(err)
					return
				}
				for _, e := range es {
					set := v4
					if e.Addr.Is6() {
						set = v6
					}
					if ok, err := k.h.IpsetTest(set, &netlink.IPSetEntry{IP: e.Addr.AsSlice()}); err != nil || !ok {
						mu.Lock()
						missing = append(missing, fmt.Sprintf("%s (%v)", e.Addr, err))
						mu.Unlock()
					}
				}
			}
		}()
	}
	wg.Wait()
	if len(missing) > 0 {
		t.Errorf("%d addresses not in the kernel set when AddAll returned: %v", len(missing), missing[:min(len(missing), 5)])
	}
	st, err := s.Stats(base)
	if err != nil || st.Open4 != workers*each || st.Open6 != workers*each {
		t.Errorf("stats %+v %v, want %d addresses each", st, err, workers*each)
	}
	w, a := s.Writes()
	t.Logf("%d answers of 2 new addresses: %d adds in %d kernel writes (%.1f a write)", workers*each, a, w, float64(a)/float64(w))
	if a != 2*workers*each || w >= workers*each {
		t.Errorf("%d adds in %d writes: want %d adds in fewer writes than %d answers", a, w, 2*workers*each, workers*each)
	}
}

// TestMessageLayout parses a list message with the netlink library's and
// the syscall package's parsers, which read the host's byte order: on the
// big-endian mips routers too (run it there with qemu: GOARCH=mips go test
// -c, no kernel needed). The kernel's error answer to it, with the
// failing line written in, gives that line back.
func TestMessageLayout(t *testing.T) {
	adds := []KernelAdd{
		{Set: "fg-alice4", Addr: netip.MustParseAddr("198.51.100.7"), Timeout: 360},
		{Set: "fg-alice4", Addr: netip.MustParseAddr("198.51.100.8"), Timeout: 90},
	}
	b := appendList(nil, 77, true, "fg-alice4", adds, []int{0, 1})
	msgs, err := syscall.ParseNetlinkMessage(b)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("parse: %v %d messages", err, len(msgs))
	}
	h := msgs[0].Header
	if h.Type != unix.NFNL_SUBSYS_IPSET<<8|ipsetCmdAdd || h.Flags != unix.NLM_F_REQUEST|unix.NLM_F_ACK || h.Seq != 77 || int(h.Len) != len(b) {
		t.Errorf("header %+v", h)
	}
	top, err := nl.ParseRouteAttrAsMap(msgs[0].Data[4:]) // after nfgenmsg
	if err != nil {
		t.Fatal(err)
	}
	if v := top[ipsetAttrProtocol].Value; len(v) != 1 || v[0] != ipsetProtocol {
		t.Errorf("protocol %v", v)
	}
	if v := string(top[ipsetAttrSetname].Value); v != "fg-alice4\x00" {
		t.Errorf("set name %q", v)
	}
	datas, err := nl.ParseRouteAttr(top[ipsetAttrADT|nlaNested].Value)
	if err != nil || len(datas) != 2 {
		t.Fatalf("list: %v %d entries", err, len(datas))
	}
	for i, d := range datas {
		if d.Attr.Type != ipsetAttrData|nlaNested {
			t.Errorf("entry %d: attribute type %#x", i, d.Attr.Type)
		}
		e, err := nl.ParseRouteAttrAsMap(d.Value)
		if err != nil {
			t.Fatal(err)
		}
		if got := binary.BigEndian.Uint32(e[ipsetAttrTimeout|nlaNetByteorder].Value); got != adds[i].Timeout {
			t.Errorf("entry %d: timeout %d", i, got)
		}
		if got := nl.NativeEndian().Uint32(e[ipsetAttrLineno].Value); got != uint32(i+1) {
			t.Errorf("entry %d: line %d", i, got)
		}
		ip, err := nl.ParseRouteAttr(e[ipsetAttrIP|nlaNested].Value)
		if err != nil || len(ip) != 1 || netip.AddrFrom4([4]byte(ip[0].Value)) != adds[i].Addr {
			t.Errorf("entry %d: address %v %v", i, ip, err)
		}
	}
	// ipset's error answer: the request with its top-level line number
	// set to the failing entry's.
	echo := append([]byte(nil), b...)
	for off := unix.NLMSG_HDRLEN + 4; off < len(echo); {
		l := int(nl.NativeEndian().Uint16(echo[off:]))
		if nl.NativeEndian().Uint16(echo[off+2:]) == ipsetAttrLineno {
			nl.NativeEndian().PutUint32(echo[off+4:], 2)
			break
		}
		off += (l + 3) &^ 3
	}
	if got := linenoOf(echo); got != 2 {
		t.Errorf("linenoOf = %d, want 2", got)
	}
	if got := linenoOf(b[:unix.NLMSG_HDRLEN]); got != 0 {
		t.Errorf("linenoOf(a header alone) = %d, want 0", got)
	}
}
