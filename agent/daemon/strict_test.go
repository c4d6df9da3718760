package daemon

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/famguard/famguard/agent/clock"
	"github.com/famguard/famguard/agent/dnsfilter"
	"github.com/famguard/famguard/agent/egress"
	"github.com/famguard/famguard/agent/netwatch"
	"github.com/famguard/famguard/agent/tz"
	"github.com/famguard/famguard/rules"
)

const strictProfile = `version: 1
timezone: Europe/Berlin
unknown_devices: {like: alice}
children:
  alice:
    devices:
      - {mac: "02:00:00:00:00:11", name: "Alice's phone"}
    strict: true
    allow_ips: [203.0.113.0/24, "2001:db8:42::/48"]
  bob:
    devices:
      - {mac: "02:00:00:00:00:21", name: "Bob's tablet"}
`

// dnsDaemonConfig is the configuration of a daemon with DNS filtering on
// port 5354 (class ports from 5356) and a LAN, starting at start.
func dnsDaemonConfig(t *testing.T, dir, state string, start time.Time, dp *fakeDataplane, srv *dnsfilter.Server, ports DNSPorts) Config {
	return Config{
		ProfilesDir: dir, StateDir: state,
		Clock:     clock.StartingAt(start),
		Env:       tz.Env{Root: t.TempDir(), Getenv: func(string) string { return "" }},
		Dataplane: dp, DNS: srv, DNSPort: 5354, DNSPorts: ports, LAN: []string{"br-lan"},
		Neighbours:   fakeNeighbours{netwatch.Table{}},
		Log:          slog.New(slog.NewTextHandler(io.Discard, nil)),
		HealInterval: 50 * time.Millisecond,
	}
}

// classPort is the DNS port of child's class, from the identity file in
// state.
func classPort(t *testing.T, state, child string) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(state, identityFile))
	m := regexp.MustCompile(`"` + child + `": (\d+)`).FindSubmatch(data)
	if err != nil || m == nil {
		t.Fatalf("no port of %s in the identity file: %v\n%s", child, err, data)
	}
	p, _ := strconv.Atoi(string(m[1]))
	return p
}

// answersA7 is an upstream answering every question with an A record of
// 198.51.100.7 (TTL 300).
func answersA7(_ context.Context, q []byte, _ string) ([]byte, error) {
	m := new(dns.Msg)
	_ = m.Unpack(q)
	r := new(dns.Msg)
	r.SetReply(m)
	rr, _ := dns.NewRR(m.Question[0].Name + " 300 IN A 198.51.100.7")
	r.Answer = []dns.RR{rr}
	return r.Pack()
}

// recordingOpener is the DNS filter's Opener in the test: what was opened.
type recordingOpener struct {
	mu     sync.Mutex
	opened []string
}

func (o *recordingOpener) AddAll(set string, addrs []egress.Entry) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, a := range addrs {
		o.opened = append(o.opened, set+" "+a.Addr.String())
	}
	return nil
}

// TestStrictChild: a strict child's devices (and unknown devices like the
// child) get the strict rules with the child's sets and allow_ips; its
// class port answers with strict rules (answered addresses opened in its
// set), the other child's does not; status reports the child's sets.
func TestStrictChild(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "family.yaml"), []byte(strictProfile), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := dnsfilter.NewServer(answersA7, dnsfilter.NullIP)
	opener := &recordingOpener{}
	srv.SetOpener(opener)
	fake := &egress.Fake{}
	sets := egress.New(fake)
	if err := sets.EnsureSets(egress.SetBase("alice")); err != nil {
		t.Fatal(err)
	}
	_ = sets.Add(egress.SetBase("alice"), netip.MustParseAddr("198.51.100.9"), time.Minute)
	dp, ports := newFakeDataplane(), &fakePorts{}
	cfg := dnsDaemonConfig(t, dir, state, time.Date(2026, 11, 26, 12, 0, 0, 0, berlin), dp, srv, ports)
	cfg.StrictSets = sets
	d := runDaemon(t, cfg)

	eventually(t, "strict rules applied", func() bool {
		return strings.Contains(dp.get(rules.IPv4), "--match-set fg-alice4 dst") && strings.Contains(dp.get(rules.IPv6), "--match-set fg-alice6 dst")
	})
	v4, v6 := dp.get(rules.IPv4), dp.get(rules.IPv6)
	for _, want := range []string{"-d 203.0.113.0/24 -j RETURN", "alice/Alices phone: strict", "unknown/any other device, like alice: strict"} {
		if !strings.Contains(v4, want) {
			t.Errorf("IPv4 rules lack %q:\n%s", want, v4)
		}
	}
	if !strings.Contains(v6, "-d 2001:db8:42::/48 -j RETURN") {
		t.Errorf("IPv6 rules lack alice's allow_ips:\n%s", v6)
	}
	if strings.Contains(v4, "bob/Bobs tablet: strict") {
		t.Errorf("bob is not strict:\n%s", v4)
	}

	// The class ports: ask each what it answers for a name.
	q, _ := (&dns.Msg{Question: []dns.Question{{Name: "www.example.org.", Qtype: dns.TypeA, Qclass: dns.ClassINET}}}).Pack()
	for _, child := range []string{"alice", "bob"} {
		if resp := srv.Answer(context.Background(), q, classPort(t, state, child), netip.MustParseAddr("192.0.2.99"), "udp"); len(resp) == 0 {
			t.Fatalf("%s's port answered nothing", child)
		}
	}
	opener.mu.Lock()
	if got := strings.Join(opener.opened, ","); got != "fg-alice 198.51.100.7" {
		t.Errorf("opened %q, want alice's answer only, in her set", got)
	}
	opener.mu.Unlock()

	v, err := d.Handle(context.Background(), "status", nil)
	if err != nil {
		t.Fatal(err)
	}
	st := v.(Status)
	if st.DNS == nil || st.DNS.Strict["alice"].Open4 != 1 || len(st.DNS.Strict) != 1 {
		t.Errorf("status strict = %+v", st.DNS)
	}
}

// refusingDataplane is the fake dataplane with the kernel's strict reject
// counters (rules.RefusedCounter), set by the test.
type refusingDataplane struct {
	*fakeDataplane
	counts map[uint16]uint64
	asked  int
}

func (r *refusingDataplane) Refused() (map[uint16]uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.asked++
	return r.counts, nil
}

// TestStrictRefusedStatus: status counts the connections strict egress
// refused per strict child, from the dataplane's counters by device ID
// (with the unknown devices that follow her rules); the counters are read
// when the status is asked for, not at every event of the loop.
func TestStrictRefusedStatus(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "family.yaml"), []byte(strictProfile), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := dnsfilter.NewServer(answersA7, dnsfilter.NullIP)
	srv.SetOpener(&recordingOpener{})
	fake := &egress.Fake{}
	sets := egress.New(fake)
	if err := sets.EnsureSets(egress.SetBase("alice")); err != nil {
		t.Fatal(err)
	}
	dp := &refusingDataplane{fakeDataplane: newFakeDataplane()}
	cfg := dnsDaemonConfig(t, dir, state, time.Date(2026, 11, 26, 12, 0, 0, 0, berlin), dp.fakeDataplane, srv, &fakePorts{})
	cfg.Dataplane, cfg.StrictSets = dp, sets
	var sinks int
	var sinkMu sync.Mutex
	cfg.StatusSink = func(Status) {
		sinkMu.Lock()
		defer sinkMu.Unlock()
		sinks++
	}
	d := runDaemon(t, cfg)
	eventually(t, "strict rules applied", func() bool { return strings.Contains(dp.get(rules.IPv4), "--match-set fg-alice4 dst") })
	// Alice's phone's ID from the rules (its strict reject rule's mark).
	var alice uint16
	for _, line := range strings.Split(dp.get(rules.IPv4), "\n") {
		if strings.Contains(line, "alice/Alices phone: strict") {
			f := strings.Fields(line)
			for i := range f {
				if f[i] == "--mark" {
					v, _, _ := strings.Cut(f[i+1], "/")
					n, _ := strconv.ParseUint(v, 0, 32)
					alice = rules.MarkDevice(uint32(n))
				}
			}
		}
	}
	if alice == 0 {
		t.Fatalf("no strict rule of alice's phone:\n%s", dp.get(rules.IPv4))
	}
	dp.mu.Lock()
	dp.counts = map[uint16]uint64{alice: 5, rules.DefaultUnknownID: 2, alice + 100: 9}
	dp.mu.Unlock()
	st := statusOf(t, d)
	got := st.DNS.Strict["alice"]
	if got.Refused == nil || *got.Refused != 5+2 {
		t.Errorf("alice: refused %v, want 7 (her phone's 5 and the unknown devices' 2)", got.Refused)
	}
	if _, ok := st.DNS.Strict["bob"]; ok {
		t.Errorf("bob is not strict: %+v", st.DNS.Strict)
	}
	dp.mu.Lock()
	asked := dp.asked
	dp.mu.Unlock()
	sinkMu.Lock()
	defer sinkMu.Unlock()
	if asked != 1 || sinks == 0 {
		t.Errorf("counters read %d times for one status request (%d loop events)", asked, sinks)
	}
}
