package dnsfilter

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fakeClock drives a limiter's clock by hand.
type fakeClock struct{ ns int64 }

func (c *fakeClock) now() int64              { return c.ns }
func (c *fakeClock) advance(d time.Duration) { c.ns += int64(d) }

func testLimiter(lim Limits) (*limiter, *fakeClock) {
	c := &fakeClock{ns: 1}
	l := newLimiter(lim)
	l.now = c.now
	return l, c
}

var (
	keyA = addrKey(netip.MustParseAddr("192.0.2.11"))
	keyB = addrKey(netip.MustParseAddr("192.0.2.12"))
)

// TestLimiter: table-driven steps against one limiter each: "admit N at
// once" expects how many are accepted; the clock moves between steps;
// tickets are released at once unless the step holds them.
func TestLimiter(t *testing.T) {
	type step struct {
		wait  time.Duration
		key   clientKey
		n     int
		want  int  // accepted of n
		hold  bool // keep the tickets (in flight)
		free  bool // release every held ticket before the step
		total uint64
	}
	for _, tc := range []struct {
		name  string
		lim   Limits
		steps []step
	}{
		{"burst then the sustained rate", Limits{Rate: 10, Burst: 5}, []step{
			{key: keyA, n: 8, want: 5, total: 3},                               // the burst
			{wait: 100 * time.Millisecond, key: keyA, n: 3, want: 1, total: 5}, // one interval: one more
			{wait: 250 * time.Millisecond, key: keyA, n: 3, want: 2, total: 6}, // two and a half intervals
			{wait: time.Hour, key: keyA, n: 10, want: 5, total: 11},            // a long quiet spell refills the burst, no more
		}},
		{"clients are independent", Limits{Rate: 10, Burst: 3}, []step{
			{key: keyA, n: 10, want: 3, total: 7},
			{key: keyB, n: 2, want: 2, total: 7},
			{key: keyB, n: 2, want: 1, total: 8},
		}},
		{"in-flight bound", Limits{InFlight: 2}, []step{
			{key: keyA, n: 5, want: 2, hold: true, total: 3},
			{key: keyB, n: 1, want: 1, total: 3},                         // another client is not affected
			{key: keyA, n: 1, want: 0, total: 4},                         // still two in flight
			{key: keyA, n: 3, want: 2, free: true, hold: true, total: 5}, // answered: room again
		}},
		{"a query over the in-flight bound costs no token", Limits{Rate: 1, Burst: 2, InFlight: 1}, []step{
			{key: keyA, n: 3, want: 1, hold: true, total: 2},
			{key: keyA, n: 1, want: 1, free: true, total: 2}, // the second token is still there
		}},
		{"no limits", Limits{}, []step{
			{key: keyA, n: 100000, want: 100000, hold: true},
		}},
		{"burst of one", Limits{Rate: 1000, Burst: 0}, []step{
			{key: keyA, n: 3, want: 1, total: 2},
			{wait: time.Millisecond, key: keyA, n: 3, want: 1, total: 4},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, clk := testLimiter(tc.lim)
			var held []ticket
			for i, st := range tc.steps {
				clk.advance(st.wait)
				if st.free {
					for _, tk := range held {
						l.done(tk)
					}
					held = nil
				}
				got := 0
				for j := 0; j < st.n; j++ {
					tk, ok := l.admit(st.key)
					if !ok {
						continue
					}
					got++
					if st.hold {
						held = append(held, tk)
					} else {
						l.done(tk)
					}
				}
				if got != st.want {
					t.Errorf("step %d: %d of %d admitted, want %d", i, got, st.n, st.want)
				}
				if total, _ := l.refused(); total != st.total {
					t.Errorf("step %d: %d refused in total, want %d", i, total, st.total)
				}
			}
		})
	}
}

// sameSet returns n distinct keys that fall in one set of l: first, then
// addresses.
func sameSet(l *limiter, first clientKey, n int) []clientKey {
	keys := []clientKey{first}
	for i := 0; len(keys) < n; i++ {
		if k := addrKey(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})); l.setOf(k) == l.setOf(first) {
			keys = append(keys, k)
		}
	}
	return keys
}

// TestLimiterChurn: a flood of spoofed one-query sources neither grows the
// table nor resets the limit of a flooder that keeps its entry busy, and a
// stale ticket from an evicted client does not touch the slot's new owner.
func TestLimiterChurn(t *testing.T) {
	l, clk := testLimiter(Limits{Rate: 100, Burst: 10, InFlight: 4})
	flooder := macKey("02:00:00:00:00:66")
	admitted, refused := 0, 0
	for i := 0; i < 200000; i++ {
		if i%100 == 0 { // the flooder, 10,000 a second: 100 times its rate
			if tk, ok := l.admit(flooder); ok {
				admitted++
				l.done(tk)
			} else {
				refused++
			}
		}
		clk.advance(time.Microsecond)
		k := addrKey(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
		if tk, ok := l.admit(k); ok {
			l.done(tk)
		} else {
			t.Fatalf("spoofed source %d refused its first query", i)
		}
	}
	// 200 ms on the clock: the burst and 20 intervals. One eviction would
	// have handed the flooder a fresh burst of 10.
	if admitted > 10+20+1 {
		t.Errorf("the flooder was admitted %d times in 200 ms amid 200,000 spoofed sources; its limits allow 31", admitted)
	}
	if _, by := l.refused(); by["02:00:00:00:00:66"] != uint64(refused) {
		t.Errorf("flooder refusals = %d, want %d", by["02:00:00:00:00:66"], refused)
	}

	// Stale ticket: a client evicted with a query in flight.
	l2, _ := testLimiter(Limits{InFlight: 1})
	keys := sameSet(l2, addrKey(netip.MustParseAddr("10.255.0.1")), limiterWays+1)
	old, ok := l2.admit(keys[0])
	if !ok {
		t.Fatal("first client refused")
	}
	for _, k := range keys[1:] { // every way busy: the oldest is taken
		if _, ok := l2.admit(k); !ok {
			t.Fatal("a new client was refused")
		}
	}
	l2.done(old) // must not release the new owner's query
	if _, ok := l2.admit(keys[len(keys)-1]); ok {
		t.Error("a stale ticket released another client's in-flight query")
	}
}

// TestLimiterEvictionKeepsCounts: refusals of an evicted client stay in
// status, under its MAC or, for an address, under "other".
func TestLimiterEvictionKeepsCounts(t *testing.T) {
	l, clk := testLimiter(Limits{Rate: 1, Burst: 1})
	mac := "02:00:00:00:00:11"
	keys := sameSet(l, macKey(mac), 2*limiterWays)
	for _, k := range keys[:2] {
		l.admit(k)
		l.admit(k) // refused
	}
	for _, k := range keys[2:] { // later, quieter ones evict both
		clk.advance(time.Hour)
		l.admit(k)
	}
	total, by := l.refused()
	if total != 2 || by[mac] != 1 || by[otherClients] != 1 || len(by) != 2 {
		t.Errorf("refused %d, by client %v; want 2: one under %s, one under %s", total, by, mac, otherClients)
	}
}

func TestClientKeyNames(t *testing.T) {
	for _, tc := range []struct {
		k    clientKey
		want string
	}{
		{macKey("02:00:00:00:00:11"), "02:00:00:00:00:11"},
		{macKey("AA:BB:CC:DD:EE:FF"), "aa:bb:cc:dd:ee:ff"},
		{macKey("80:00:00:48:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01"), otherClients},
		{macKey("02-00-00-00-00-11"), otherClients},
		{addrKey(netip.MustParseAddr("192.0.2.11")), "192.0.2.11"},
		{addrKey(netip.MustParseAddr("2001:db8:1::11")), "2001:db8:1::11"},
	} {
		if got := tc.k.String(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.k, got, tc.want)
		}
	}
	if macKey("02:00:00:00:00:11") == macKey("02:00:00:00:00:12") || macKey("x") == macKey("y") {
		t.Error("distinct MACs share a key")
	}
}

// slowUpstream answers like fakeUpstream after a delay, as a real resolver
// that has to recurse would; it counts what it was asked.
func slowUpstream(delay time.Duration, asked *atomic.Int64) Exchange {
	up := &fakeUpstream{}
	return func(ctx context.Context, q []byte, network string) ([]byte, error) {
		asked.Add(1)
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, errors.New("stopped")
		}
		up.mu.Lock()
		up.asked = up.asked[:0] // keep memory flat under a flood
		up.mu.Unlock()
		return up.exchange(ctx, q, network)
	}
}

// TestFloodDoesNotStarveOthers runs the real listener on loopback. One
// device (127.0.0.2) floods it as fast as it can for a bounded time while
// another (127.0.0.3) asks one query after the other: every one of the
// other's queries is answered, the flooder gets no more than its limits
// allow, and status counts the flooder's refusals, not the other's.
func TestFloodDoesNotStarveOthers(t *testing.T) {
	const (
		flooderMAC = "02:00:00:00:00:66"
		normalMAC  = "02:00:00:00:00:77"
	)
	flooderAddr, normalAddr := netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")
	var asked atomic.Int64
	s := NewServer(slowUpstream(20*time.Millisecond, &asked), NullIP)
	lim := Limits{Rate: 100, Burst: 50, InFlight: 16}
	s.SetLimits(lim)
	ln, err := s.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Publish(NewSnapshot(map[string]Rules{flooderMAC: {Child: "mallory"}, normalMAC: {Child: "alice"}},
		map[string][]netip.Addr{flooderMAC: {flooderAddr}, normalMAC: {normalAddr}}, store(t)).WithPorts(map[int]Rules{ln.port: {Child: "mallory"}}, 0))
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- ln.Serve(ctx) }()
	defer func() { cancel(); <-served }()
	addr := ln.udp.LocalAddr().(*net.UDPAddr)

	// The flooder: 10,000 queries a second (a hundred times its rate) from
	// four sockets, at most 20,000 queries or 3 s. Paced, because here it
	// shares the test's two cores with the listener: as fast as it can go
	// it would mostly measure how the scheduler splits them.
	start := time.Now()
	stop := make(chan struct{})
	var sent, answered atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		c, err := net.DialUDP("udp", &net.UDPAddr{IP: flooderAddr.AsSlice()}, addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		wg.Add(2)
		go func() {
			defer wg.Done()
			buf := make([]byte, 512)
			for {
				_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
				if _, err := c.Read(buf); err != nil {
					select {
					case <-stop:
						return
					default:
						continue
					}
				}
				answered.Add(1)
			}
		}()
		go func(w int) {
			defer wg.Done()
			wire, _ := query("flood.example", dns.TypeA).Pack()
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for i := 0; i < 5000 && time.Since(start) < 3*time.Second; {
				for j := 0; j < 25; j, i = j+1, i+1 { // 2,500 a second from each socket
					wire[0], wire[1] = byte(w), byte(i)
					if _, err := c.Write(wire); err == nil {
						sent.Add(1)
					}
				}
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		}(w)
	}

	// The other device, meanwhile: 40 queries, one after the other.
	client := &dns.Client{Timeout: time.Second, Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: normalAddr.AsSlice()}}}
	var lost int
	var worst time.Duration
	for i := 0; i < 40; i++ {
		r, rtt, err := client.Exchange(query("ordinary.example", dns.TypeA), addr.String())
		if err != nil || len(r.Answer) != 1 {
			lost++
			continue
		}
		worst = max(worst, rtt)
		time.Sleep(10 * time.Millisecond)
	}
	elapsed := time.Since(start)
	close(stop)
	wg.Wait()

	st := s.Stats()
	t.Logf("flooder: %d sent, %d answered in %v; the other: %d of 40 lost, slowest answer %v; upstream asked %d; refused %v",
		sent.Load(), answered.Load(), elapsed.Round(time.Millisecond), lost, worst, asked.Load(), st.RateLimitedBy)
	if lost > 0 {
		t.Errorf("the other device lost %d of 40 queries during the flood", lost)
	}
	if allowed := int64(lim.Burst) + int64(float64(lim.Rate)*elapsed.Seconds()) + 1; answered.Load() > allowed {
		t.Errorf("the flooder got %d answers in %v; its limits allow %d", answered.Load(), elapsed, allowed)
	}
	if sent.Load() > 1000 && st.RateLimitedBy[flooderMAC] == 0 {
		t.Errorf("no refusals counted for the flooder: %+v", st.RateLimitedBy)
	}
	if n := st.RateLimitedBy[normalMAC]; n != 0 {
		t.Errorf("the other device was refused %d queries", n)
	}
	if st.RateLimited < st.RateLimitedBy[flooderMAC] || st.Limits != lim {
		t.Errorf("status: %d refused in total, limits %+v", st.RateLimited, st.Limits)
	}
}

// TestTCPOverLimitRefused: over TCP a client over its limits gets REFUSED
// (with its ID and question), and the connection stays usable.
func TestTCPOverLimitRefused(t *testing.T) {
	var s *Server
	addr := startFilterWith(t, func(l *Listener) { s = l.s; s.SetLimits(Limits{Rate: 1, Burst: 2}) })
	conn, err := dns.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	for i, want := range []int{dns.RcodeSuccess, dns.RcodeSuccess, dns.RcodeRefused, dns.RcodeRefused} {
		m := query("casino.example", dns.TypeA)
		if err := conn.WriteMsg(m); err != nil {
			t.Fatal(err)
		}
		r, err := conn.ReadMsg()
		if err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
		if r.Rcode != want || r.Id != m.Id || len(r.Question) != 1 || r.Question[0].Name != "casino.example." {
			t.Errorf("query %d: rcode %s, id %d (want %s, %d), question %v", i, dns.RcodeToString[r.Rcode], r.Id, dns.RcodeToString[want], m.Id, r.Question)
		}
	}
	if st := s.Stats(); st.RateLimitedBy[aliceMAC] != 2 {
		t.Errorf("refusals by client: %v, want 2 for %s", st.RateLimitedBy, aliceMAC)
	}
}
