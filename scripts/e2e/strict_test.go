package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/famguard/famguard/scripts/lab"
)

// inNetns runs f on a thread that is inside the named lab namespace: the
// sockets f opens stay in that namespace after it returns. If the thread
// cannot be moved back, it stays locked and dies with its goroutine.
func inNetns(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		err = f()
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// TestStrictSetsBeforeAnswer: with strict egress, every address of an
// answer is in the child's kernel set by the time the child has the answer.
// The DNS filter (dns-bench serve: the real filter, the real netlink sets)
// runs in the router namespace, strict for the child; the upstream
// (dnsmasq in the internet namespace) answers every name with a fresh
// address; the test asks from the child's namespace and, as soon as each
// answer arrives, asks the router namespace's kernel whether the set holds
// every address in it. Until the dataplane's FORWARD rules match the sets,
// "in the set" is the whole of the guarantee the DNS side gives. The
// 10,000 tries are asked once one at a time (each answer's add a kernel
// write of its own) and once from 16 sockets at once, so that concurrent
// answers' adds go to the kernel together (egress's group commit): the
// filter reports its adds and writes when it stops, and the test wants
// fewer writes than adds.
func TestStrictSetsBeforeAnswer(t *testing.T) {
	lab.RequireRoot(t)
	ctx := context.Background()
	l, err := lab.New(ctx, fmt.Sprintf("fgs%d%d", os.Getpid()%1000, labSeq.Add(1)), []lab.DeviceSpec{{Name: "kid", MAC: aliceMAC}})
	if err != nil {
		t.Fatalf("building the lab: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("removing the lab: %v", err)
		}
	})
	kid := l.Devices["kid"]

	up := l.Cmd(ctx, l.Internet, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
		"--bind-interfaces", "--listen-address="+lab.InternetIPv4.String(), "--pid-file=", "--user=root", "--local-ttl=600",
		"--synth-domain=lab.example,10.0.0.0/8,h-", "--synth-domain=lab.example,2001:db8:3::/64,h-", "--address=/casino.example/198.51.100.66")
	upOut := &lab.SyncBuffer{}
	up.Stdout, up.Stderr = upOut, upOut
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = up.Process.Kill(); _ = up.Wait() })

	lists := t.TempDir()
	writeFile(t, filepath.Join(lists, "gambling.txt"), "casino.example\n")
	filterAddr := lab.RouterLAN4.String() + ":5399"
	filter := l.Cmd(ctx, l.Router, binary(t, "dns-bench"), "serve", "--client", kid.IPv4.String(), "--strict", "fg-kid", "--fresh-sets",
		lists, filterAddr, lab.InternetIPv4.String()+":53")
	filterOut := &lab.SyncBuffer{}
	filter.Stdout, filter.Stderr = filterOut, filterOut
	if err := filter.Start(); err != nil {
		t.Fatal(err)
	}
	var stopOnce sync.Once
	stopFilter := func() {
		stopOnce.Do(func() {
			_ = filter.Process.Signal(unix.SIGTERM)
			_ = filter.Wait()
			t.Logf("filter:\n%s", filterOut.String())
			if t.Failed() {
				t.Logf("upstream:\n%s", upOut.String())
			}
		})
	}
	t.Cleanup(stopFilter)

	// The child's socket, in the child's namespace; the kernel's sets,
	// read over netlink in the router's.
	// One asker: a socket of the child's, and a netlink handle to ask
	// the router's kernel with.
	type asker struct {
		ask   func(name string, qtype uint16) (*dns.Msg, error)
		inSet func(netip.Addr) (bool, error)
	}
	newAsker := func(t *testing.T) asker {
		var conn net.Conn
		if err := inNetns(kid.NS, func() (err error) { conn, err = net.Dial("udp", filterAddr); return err }); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		var h *netlink.Handle
		if err := inNetns(l.Router.NS, func() (err error) { h, err = netlink.NewHandle(unix.NETLINK_NETFILTER); return err }); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(h.Close)
		c := &dns.Conn{Conn: conn}
		return asker{
			ask: func(name string, qtype uint16) (*dns.Msg, error) {
				m := new(dns.Msg)
				m.SetQuestion(dns.Fqdn(name), qtype)
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if err := c.WriteMsg(m); err != nil {
					return nil, err
				}
				for {
					r, err := c.ReadMsg()
					if err != nil || r.Id == m.Id {
						return r, err
					}
				}
			},
			inSet: func(a netip.Addr) (bool, error) {
				set := "fg-kid4"
				if a.Is6() {
					set = "fg-kid6"
				}
				return h.IpsetTest(set, &netlink.IPSetEntry{IP: a.AsSlice()})
			},
		}
	}
	first := newAsker(t)
	ask, inSet := first.ask, first.inSet
	deadline := time.Now().Add(30 * time.Second)
	for {
		if r, err := ask("h-10-0-0-1.lab.example", dns.TypeA); err == nil && r.Rcode == dns.RcodeSuccess {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the filter never answered:\n%s", filterOut.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	// try asks for name number i (odd: AAAA, even: A; prefix p keeps the
	// phases' addresses apart) and checks the answer's address is in the
	// set the moment the answer arrives: misses counts those that are not.
	try := func(a asker, p, i int) (misses int, err error) {
		name, qtype := fmt.Sprintf("h-10-%d-%d-%d.lab.example", p, i>>8, i&255), dns.TypeA
		want := netip.AddrFrom4([4]byte{10, byte(p), byte(i >> 8), byte(i)})
		if i%2 == 1 {
			name, qtype = fmt.Sprintf("h-2001-db8-3--%x-%x.lab.example", p, i), dns.TypeAAAA
			want = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 3, 12: byte(p >> 8), 13: byte(p), 14: byte(i >> 8), 15: byte(i)})
		}
		r, err := a.ask(name, qtype)
		if err != nil {
			return 0, fmt.Errorf("try %d (%s): %v", i, name, err)
		}
		var got []netip.Addr
		for _, rr := range r.Answer {
			switch rr := rr.(type) {
			case *dns.A:
				got = append(got, netip.AddrFrom4([4]byte(rr.A.To4())))
			case *dns.AAAA:
				got = append(got, netip.AddrFrom16([16]byte(rr.AAAA.To16())))
			}
		}
		if r.Rcode != dns.RcodeSuccess || len(got) != 1 || got[0] != want {
			return 0, fmt.Errorf("try %d: %s %s answered %s %v, want %v", i, name, dns.TypeToString[qtype], dns.RcodeToString[r.Rcode], got, want)
		}
		for _, addr := range got {
			ok, err := a.inSet(addr)
			if err != nil {
				return misses, fmt.Errorf("ipset test %v: %v", addr, err)
			}
			if !ok {
				misses++
				t.Errorf("try %d: %v answered but not in the set", i, addr)
			}
		}
		return misses, nil
	}

	const tries = 10000
	misses := 0
	start := time.Now()
	for i := 1; i <= tries; i++ {
		m, err := try(first, 1, i)
		if err != nil {
			t.Fatal(err)
		}
		misses += m
	}
	t.Logf("%d resolve-then-check tries one at a time (half A, half AAAA, each a new address) in %v: %d misses", tries, time.Since(start).Round(time.Millisecond), misses)
	reliability(t, "strict egress", fmt.Sprintf("%d resolve-then-check tries, each answer's address looked up in the child's kernel set the moment the answer arrived", tries),
		"%d misses", misses)

	// The same from 16 sockets at once: answers arrive together, and
	// their adds share kernel writes.
	const askers = 16
	var cmisses atomic.Int64
	start = time.Now()
	if err := spread(askers, tries, func() func(int) error {
		a := newAsker(t)
		return func(i int) error {
			m, err := try(a, 2, i)
			cmisses.Add(int64(m))
			return err
		}
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d resolve-then-check tries from %d sockets at once in %v: %d misses", tries, askers, time.Since(start).Round(time.Millisecond), cmisses.Load())
	reliability(t, "strict egress", fmt.Sprintf("%d resolve-then-check tries from %d sockets at once (adds batched), each answer's address looked up the moment the answer arrived", tries, askers),
		"%d misses", cmisses.Load())

	// ipset's own view, inside the router namespace.
	for set, want := range map[string]int{"fg-kid4": tries + 1, "fg-kid6": tries} {
		out, err := l.Run(ctx, l.Router, "ipset", "list", set, "-terse")
		if err != nil {
			t.Fatalf("ipset list %s: %v\n%s", set, err, out)
		}
		if !strings.Contains(out, fmt.Sprintf("Number of entries: %d\n", want)) {
			t.Errorf("ipset list %s: want %d entries:\n%s", set, want, out)
		}
		t.Logf("ipset list %s -terse:\n%s", set, out)
	}

	t.Run("blocked answers open nothing", func(t *testing.T) {
		r, err := ask("casino.example", dns.TypeA)
		if err != nil || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "0.0.0.0" {
			t.Fatalf("casino.example: %v %v", r, err)
		}
		if ok, err := inSet(netip.MustParseAddr("198.51.100.66")); ok || err != nil {
			t.Errorf("the blocked name's real address is in the set (%v)", err)
		}
	})
	t.Run("a set that cannot take the address fails closed", func(t *testing.T) {
		// Removed behind the filter's back: its next new IPv6 address
		// cannot be opened, so the answer is not sent.
		if out, err := l.Run(ctx, l.Router, "ipset", "destroy", "fg-kid6"); err != nil {
			t.Fatalf("ipset destroy: %v %s", err, out)
		}
		r, err := ask("h-2001-db8-3--ffff.lab.example", dns.TypeAAAA)
		if err != nil || r.Rcode != dns.RcodeServerFailure || len(r.Answer) != 0 {
			t.Errorf("answer with its set gone: %v %v, want SERVFAIL without records", r, err)
		}
		if r, err := ask("h-10-3-0-1.lab.example", dns.TypeA); err != nil || r.Rcode != dns.RcodeSuccess {
			t.Errorf("IPv4 with its set still there: %v %v", r, err)
		}
	})

	// The filter's own count: the concurrent answers' adds were batched.
	stopFilter()
	var adds, writes int
	for _, line := range strings.Split(filterOut.String(), "\n") {
		_, _ = fmt.Sscanf(line, "strict: %d kernel adds in %d writes", &adds, &writes)
	}
	t.Logf("the filter made %d kernel adds in %d writes", adds, writes)
	if adds < 2*tries || writes >= adds {
		t.Errorf("the filter made %d kernel adds in %d writes: want at least %d adds, batched into fewer writes", adds, writes, 2*tries)
	}
}

// spread runs tries number 1 to tries on workers goroutines at once (worker
// w takes w+1, w+1+workers, …), each with the try function newWorker made
// for it (on the test's goroutine), and returns the first error; a worker
// stops at its first.
func spread(workers, tries int, newWorker func() func(i int) error) error {
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		try := newWorker()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1 + w; i <= tries; i += workers {
				if err := try(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

const strictFamily = `version: 1
timezone: Europe/Berlin
children:
  alice:
    devices: [{mac: "02:00:00:00:00:11", name: "Alice's phone"}]
    strict: true
    allow_ips: [198.51.100.0/24]
  bob:
    devices: [{mac: "02:00:00:00:00:21", name: "Bob's tablet"}]
`

// strictLab is the lab of the strict tests: the agent with strictFamily,
// the internet host answering on every address of 10.0.0.0/8 and
// 2001:db8:3::/64, and the router's resolver synthesising an address for
// every h-… name. newStrictLab returns once Alice's strict egress is in
// force.
type strictLab struct {
	f           *familyLab
	a           *agent
	dial        func(h *lab.Host, network, addr string) error
	newResolver func(t *testing.T) func(name string, qtype uint16) (netip.Addr, error)
}

func newStrictLab(t *testing.T) *strictLab {
	f := newFamilyLab(t)
	ctx := context.Background()
	// The internet host answers on every address of 10.0.0.0/8 and
	// 2001:db8:3::/64 (local routes), the router routes them there.
	for _, step := range [][]string{
		lab.InNS(f.Internet.NS, "ip", "route", "add", "local", "10.0.0.0/8", "dev", "lo"),
		lab.InNS(f.Internet.NS, "ip", "-6", "route", "add", "local", "2001:db8:3::/64", "dev", "lo"),
		lab.InNS(f.Router.NS, "ip", "route", "add", "10.0.0.0/8", "via", inet4),
		lab.InNS(f.Router.NS, "ip", "-6", "route", "add", "2001:db8:3::/64", "via", inet6),
	} {
		if out, err := exec.Command(step[0], step[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", step, err, out)
		}
	}
	// The router's resolver: every h-… name answers the address it spells.
	up := f.Cmd(ctx, f.Router, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
		"--bind-interfaces", "--listen-address=127.0.0.1", "--pid-file=", "--user=root", "--local-ttl=600",
		"--synth-domain=lab.example,10.0.0.0/8,h-", "--synth-domain=lab.example,2001:db8:3::/64,h-")
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = up.Process.Kill(); _ = up.Wait() })
	writeFile(t, filepath.Join(f.profiles, "family.yaml"), strictFamily)
	// One child asking 10,000 names in a row is far over the per-device
	// DNS limits (200/s): they are not what this test measures.
	a := startAgent(t, f.Lab, f.profiles, f.state, "2026-11-26T12:00:00+01:00", "--dns-client-rate", "0")

	dial := func(h *lab.Host, network, addr string) error {
		return inNetns(h.NS, func() error {
			c, err := net.DialTimeout(network, addr, 3*time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
	}
	// newResolver is a resolver on a socket of Alice's own.
	newResolver := func(t *testing.T) func(name string, qtype uint16) (netip.Addr, error) {
		var conn net.Conn
		if err := inNetns(f.alice.NS, func() (err error) { conn, err = net.Dial("udp", lab.RouterLAN4.String()+":53"); return err }); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		c := &dns.Conn{Conn: conn}
		return func(name string, qtype uint16) (netip.Addr, error) {
			m := new(dns.Msg)
			m.SetQuestion(dns.Fqdn(name), qtype)
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if err := c.WriteMsg(m); err != nil {
				return netip.Addr{}, err
			}
			for {
				r, err := c.ReadMsg()
				if err != nil {
					return netip.Addr{}, err
				}
				if r.Id != m.Id {
					continue
				}
				for _, rr := range r.Answer {
					switch rr := rr.(type) {
					case *dns.A:
						return netip.AddrFrom4([4]byte(rr.A.To4())), nil
					case *dns.AAAA:
						return netip.AddrFrom16([16]byte(rr.AAAA.To16())), nil
					}
				}
				return netip.Addr{}, fmt.Errorf("%s: %s without an address", name, dns.RcodeToString[r.Rcode])
			}
		}
	}
	resolve := newResolver(t)
	// Ready: Alice's strict rule refuses an address she was not answered,
	// and her answered names connect.
	deadline := time.Now().Add(20 * time.Second)
	for {
		addr, err := resolve("h-10-9-0-1.lab.example", dns.TypeA)
		if err == nil && dial(f.alice, "tcp", netip.AddrPortFrom(addr, 8080).String()) == nil &&
			dial(f.alice, "tcp", "10.9.255.1:8080") != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("strict egress not in force for alice (last: %v)\n%s", err, a.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return &strictLab{f: f, a: a, dial: dial, newResolver: newResolver}
}

// TestStrictResolveThenConnect is strict egress end to end: the agent with
// its firewall rules and DNS filter; Alice (strict) resolves a name that
// answers an address no one asked for before and at once opens a TCP
// connection to it — 10,000 times, IPv4 and IPv6 — and none may fail. An
// address she was never answered is REJECTed (connection refused, a real
// answer), while Bob (not strict) reaches it.
func TestStrictResolveThenConnect(t *testing.T) {
	l := newStrictLab(t)
	f, a, dial, newResolver := l.f, l.a, l.dial, l.newResolver
	resolve := newResolver(t)

	// try resolves name number i (odd: AAAA over IPv6, even: A over
	// IPv4; p keeps the phases' addresses apart) and at once connects to
	// the answer.
	try := func(resolve func(string, uint16) (netip.Addr, error), p, i int) (failed string, err error) {
		name, qtype, network := fmt.Sprintf("h-10-%d-%d-%d.lab.example", p, i>>8, i&255), dns.TypeA, "tcp4"
		if i%2 == 1 {
			name, qtype, network = fmt.Sprintf("h-2001-db8-3--%x-%x.lab.example", p, i), dns.TypeAAAA, "tcp6"
		}
		addr, err := resolve(name, qtype)
		if err != nil {
			return "", fmt.Errorf("try %d: %v", i, err)
		}
		if err := dial(f.alice, network, netip.AddrPortFrom(addr, 8080).String()); err != nil {
			return fmt.Sprintf("try %d: %s answered %v, first connection failed: %v", i, name, addr, err), nil
		}
		return "", nil
	}

	const tries = 10000
	failed := 0
	start := time.Now()
	for i := 1; i <= tries; i++ {
		bad, err := try(resolve, 1, i)
		if err != nil {
			t.Fatal(err)
		}
		if bad != "" {
			if failed++; failed <= 5 {
				t.Error(bad)
			}
		}
	}
	t.Logf("%d resolve-then-connect tries one at a time (half IPv4, half IPv6, each a new address) in %v: %d first connections failed",
		tries, time.Since(start).Round(time.Millisecond), failed)
	reliability(t, "strict egress", fmt.Sprintf("%d resolve-then-connect tries by a strict child (TCP, IPv4 and IPv6, each answer a new address)", tries),
		"%d failed first connections", failed)

	// The same from 8 sockets at once, as a household's devices and apps
	// resolve: concurrent answers' adds share kernel writes, and each
	// answer still waits for its own.
	const resolvers = 8
	var cfailed atomic.Int64
	start = time.Now()
	if err := spread(resolvers, tries, func() func(int) error {
		resolve := newResolver(t)
		return func(i int) error {
			bad, err := try(resolve, 2, i)
			if bad != "" && cfailed.Add(1) <= 5 {
				t.Error(bad)
			}
			return err
		}
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d resolve-then-connect tries from %d sockets at once in %v: %d first connections failed",
		tries, resolvers, time.Since(start).Round(time.Millisecond), cfailed.Load())
	reliability(t, "strict egress", fmt.Sprintf("%d resolve-then-connect tries by a strict child from %d sockets at once (adds batched)", tries, resolvers),
		"%d failed first connections", cfailed.Load())

	t.Run("not answered: refused for the strict child only", func(t *testing.T) {
		for _, to := range []string{"10.200.0.1:8080", "[2001:db8:3::dead]:8080"} {
			err := dial(f.alice, "tcp", to)
			if err == nil || !strings.Contains(err.Error(), "refused") {
				t.Errorf("alice → %s (never answered): %v, want connection refused (REJECT)", to, err)
			}
			if err := dial(f.bob, "tcp", to); err != nil {
				t.Errorf("bob (not strict) → %s: %v", to, err)
			}
		}
		// allow_ips: the internet host's own address was never answered.
		if err := dial(f.alice, "tcp", inet4+":8080"); err != nil {
			t.Errorf("alice → %s (allow_ips): %v", inet4, err)
		}
	})
	t.Run("status shows the open addresses", func(t *testing.T) {
		st := a.status()
		if st.DNS == nil || st.DNS.Strict["alice"].Open4 < tries || st.DNS.Strict["alice"].Open6 < tries {
			t.Errorf("status dns.strict = %+v", st.DNS)
		}
		human, _ := famguard(t, "status", "--state", f.state)
		if !strings.Contains(human, "strict egress for alice:") {
			t.Errorf("human status does not show strict egress:\n%s", human)
		}
	})
}

// TestStrictRefusedCount: status counts the connections strict egress
// refused, per child (acceptance 5 of issue 9): Alice opens connections to
// addresses she was never answered, each is REJECTed and her count rises by
// as many; a rewrite of the rules (a changed profile) does not lose what
// was counted; Bob (not strict) has no count.
func TestStrictRefusedCount(t *testing.T) {
	l := newStrictLab(t)
	refused := func() uint64 {
		t.Helper()
		st := l.a.status()
		if st.DNS == nil || st.DNS.Strict["alice"].Refused == nil {
			t.Fatalf("status has no refused count for alice: %+v", st.DNS)
		}
		if _, ok := st.DNS.Strict["bob"]; ok {
			t.Errorf("bob is not strict, yet status has %+v", st.DNS.Strict["bob"])
		}
		return *st.DNS.Strict["alice"].Refused
	}
	refuse := func(to ...string) {
		t.Helper()
		for _, a := range to {
			if err := l.dial(l.f.alice, "tcp", a); err == nil || !strings.Contains(err.Error(), "refused") {
				t.Fatalf("alice → %s (never answered): %v, want connection refused (REJECT)", a, err)
			}
		}
	}
	n0 := refused()
	refuse("10.200.0.1:8080", "10.200.0.2:8080", "[2001:db8:3::dead]:8080", "[2001:db8:3::beef]:8080")
	n1 := refused()
	if n1 < n0+4 {
		t.Errorf("refused %d before 4 refused connections, %d after: want at least %d", n0, n1, n0+4)
	}
	t.Logf("refused count: %d before, %d after 4 refused connections", n0, n1)

	// A profile change rewrites the strict chain (a new allow_ips range):
	// the counters the kernel resets are kept.
	applies := l.a.status().Dataplane.Applies
	writeFile(t, filepath.Join(l.f.profiles, "family.yaml"), strings.Replace(strictFamily, "allow_ips: [198.51.100.0/24]", "allow_ips: [198.51.100.0/24, 10.99.0.0/16]", 1))
	deadline := time.Now().Add(20 * time.Second)
	for l.a.status().Dataplane.Applies == applies {
		if time.Now().After(deadline) {
			t.Fatalf("the changed profile was not applied\n%s", l.a.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n2 := refused(); n2 < n1 {
		t.Errorf("refused %d before the rules were rewritten, %d after", n1, n2)
	}
	refuse("10.200.0.3:8080", "[2001:db8:3::f00d]:8080")
	if n3 := refused(); n3 < n1+2 {
		t.Errorf("refused %d, want at least %d after 2 more", n3, n1+2)
	}
	human, _ := famguard(t, "status", "--state", l.f.state)
	if !strings.Contains(human, "connections refused") {
		t.Errorf("human status does not show the refused count:\n%s", human)
	}
}
