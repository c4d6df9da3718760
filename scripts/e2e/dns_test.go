package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/famguard/famguard/scripts/lab"
)

// The DNS family: Alice has gambling blocked always, an allow and a deny
// entry and safe search; Bob has games blocked during homework (Thu
// 16:00–18:00). The parent's laptop is trusted.
const dnsProfile = `version: 1
timezone: Europe/Berlin
children:
  alice:
    devices: [{mac: "02:00:00:00:00:11", name: "Alice's phone"}]
    block: [gambling]
    safe_search: true
    allow: [ok.casino.example]
    deny: [example-game.com]
  bob:
    devices: [{mac: "02:00:00:00:00:21", name: "Bob's tablet"}]
    schedules:
      - {name: homework, days: [thu], from: "16:00", to: "18:00", block: [games]}
` + parentTrusted

// Thursday, five seconds before Bob's homework starts.
var beforeHomework = time.Date(2026, 11, 26, 15, 59, 55, 0, mustZone("Europe/Berlin"))

// startDnsmasq runs dnsmasq in h answering every name with v4 and v6.
func startDnsmasq(t *testing.T, f *familyLab, h *lab.Host, listen, v4, v6 string) {
	t.Helper()
	cmd := f.Cmd(context.Background(), h, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
		"--bind-interfaces", "--listen-address="+listen, "--pid-file=", "--user=root",
		"--address=/#/"+v4, "--address=/#/"+v6)
	buf := &lab.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = buf, buf
	if err := cmd.Start(); err != nil {
		t.Fatalf("dnsmasq: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("dnsmasq in %s:\n%s", h.Name, buf.String())
		}
	})
}

// dig asks server for name from h and returns the first answer line of
// +short output (or "status: X" when there is no answer).
func (f *familyLab) dig(t *testing.T, h *lab.Host, server, name, qtype string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, _ := f.Run(ctx, h, "dig", "+time=2", "+tries=1", "@"+server, name, qtype)
	status := ""
	for _, line := range strings.Split(out, "\n") {
		if i := strings.Index(line, "status: "); i >= 0 {
			status = strings.TrimSuffix(strings.Fields(line[i:])[1], ",")
		}
	}
	short, _ := f.Run(ctx, h, "dig", "+short", "+time=2", "+tries=1", "@"+server, name, qtype)
	if first := strings.SplitN(strings.TrimSpace(short), "\n", 2)[0]; first != "" && status == "NOERROR" {
		return first
	}
	return "status: " + status
}

func TestDNSFiltering(t *testing.T) {
	f := newFamilyLab(t)
	startDnsmasq(t, f, f.Router, "127.0.0.1,192.0.2.1,2001:db8:1::1", "198.51.100.10", "2001:db8:2::10") // the router's resolver
	startDnsmasq(t, f, f.Internet, "198.51.100.10,2001:db8:2::10", "198.51.100.66", "2001:db8:2::66")    // another DNS server
	cats := filepath.Join(f.profiles, "..", "categories")
	if err := os.MkdirAll(cats, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(cats, "gambling.txt"), "# test list\ncasino.example\n")
	writeFile(t, filepath.Join(cats, "games.txt"), "||game.example^\n")
	writeFile(t, filepath.Join(f.profiles, "family.yaml"), dnsProfile)
	// DoT (853) and HTTPS (443) servers on the internet host, which the
	// lab's DoH list names as a DNS-over-HTTPS resolver.
	for _, port := range []string{"853", "443"} {
		srv := f.Cmd(context.Background(), f.Internet, binary(t, "labhost"), "serve", "--addr", "[::]:"+port, "--stream-addr", "[::]:9"+port)
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	}
	dohList := filepath.Join(f.profiles, "..", "doh.txt")
	writeFile(t, dohList, "# lab DoH resolvers\ndoh.example\n"+inet4+"\n"+inet6+"\n")

	a := startAgent(t, f.Lab, f.profiles, f.state, beforeHomework.Format(time.RFC3339), "--doh-list", dohList)
	deadline := time.Now().Add(5 * time.Second)
	for st := a.status(); st.DNS == nil || st.DNS.Domains != 2; st = a.status() {
		if time.Now().After(deadline) {
			t.Fatalf("category lists not loaded: %+v", st.DNS)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// First, while the simulated clock is still before homework.
	t.Run("category inside a window", func(t *testing.T) {
		if got := f.dig(t, f.bob, "192.0.2.1", "game.example", "A"); got != "198.51.100.10" {
			t.Errorf("before homework: game.example = %q, want it to resolve", got)
		}
		clk := a.clock()
		time.Sleep(time.Until(clk.realAt(time.Date(2026, 11, 26, 16, 0, 0, 0, beforeHomework.Location()))) + 300*time.Millisecond)
		if got := f.dig(t, f.bob, "192.0.2.1", "www.game.example", "A"); got != "0.0.0.0" {
			t.Errorf("during homework: www.game.example = %q, want 0.0.0.0", got)
		}
		if got := f.dig(t, f.alice, "192.0.2.1", "game.example", "A"); got != "198.51.100.10" {
			t.Errorf("Alice has no homework window: game.example = %q", got)
		}
	})
	t.Run("child", func(t *testing.T) {
		for _, tc := range []struct{ server, name, qtype, want string }{
			{"192.0.2.1", "casino.example", "A", "0.0.0.0"},
			{"192.0.2.1", "casino.example", "AAAA", "::"},
			{"192.0.2.1", "www.casino.example", "A", "0.0.0.0"},               // subdomain
			{"192.0.2.1", "ok.casino.example", "A", "198.51.100.10"},          // allow-listed subdomain
			{"192.0.2.1", "example-game.com", "A", "0.0.0.0"},                 // deny list
			{"192.0.2.1", "ordinary.example", "A", "198.51.100.10"},           // ordinary names resolve
			{"198.51.100.10", "casino.example", "A", "0.0.0.0"},               // another DNS server: intercepted
			{"198.51.100.10", "ordinary.example", "A", "198.51.100.10"},       // ... and answered by the router's resolver
			{"2001:db8:1::1", "casino.example", "AAAA", "::"},                 // over IPv6 transport
			{"2001:db8:2::10", "casino.example", "A", "0.0.0.0"},              // another server over IPv6
			{"192.0.2.1", "use-application-dns.net", "A", "status: NXDOMAIN"}, // Firefox DoH canary
			{"192.0.2.1", "mask.icloud.com", "A", "status: NXDOMAIN"},         // iCloud Private Relay
			{"192.0.2.1", "www.google.com", "A", "forcesafesearch.google.com."},
			{"192.0.2.1", "www.youtube.com", "A", "restrict.youtube.com."},
		} {
			if got := f.dig(t, f.alice, tc.server, tc.name, tc.qtype); got != tc.want {
				t.Errorf("alice: dig @%s %s %s = %q, want %q", tc.server, tc.name, tc.qtype, got, tc.want)
			}
		}
	})
	t.Run("parent untouched", func(t *testing.T) {
		for _, tc := range []struct{ server, name, qtype, want string }{
			{"192.0.2.1", "casino.example", "A", "198.51.100.10"},
			{"198.51.100.10", "casino.example", "A", "198.51.100.66"}, // not intercepted
			{"192.0.2.1", "use-application-dns.net", "A", "198.51.100.10"},
			{"192.0.2.1", "doh.example", "A", "198.51.100.10"},
			{"192.0.2.1", "www.google.com", "A", "198.51.100.10"},
		} {
			if got := f.dig(t, f.parent, tc.server, tc.name, tc.qtype); got != tc.want {
				t.Errorf("parent: dig @%s %s %s = %q, want %q", tc.server, tc.name, tc.qtype, got, tc.want)
			}
		}
	})
	t.Run("DNS over TLS and HTTPS to listed resolvers refused for the child only", func(t *testing.T) {
		for _, to := range []string{inet4 + ":853", "[" + inet6 + "]:853", inet4 + ":443", "[" + inet6 + "]:443"} {
			for _, who := range []struct {
				h  *lab.Host
				ok bool
			}{{f.alice, false}, {f.parent, true}} {
				out, _ := f.Run(context.Background(), who.h, binary(t, "labhost"), "probe", "--to", to, "--every", "50ms", "--for", "300ms")
				if got := len(okLines(out)) > 0; got != who.ok {
					t.Errorf("%s reaching %s: %v, want %v\n%s", who.h.Name, to, got, who.ok, out)
				}
			}
		}
		// Ordinary HTTP to the same host still works: only DoH is refused.
		f.expectReach(t, f.alice, true, "DoH refused")
	})
	// Waits for the effect (up to editEffect) and logs the time it took;
	// the time is not asserted (it would flake on a loaded machine).
	t.Run("a new list line is in force without a restart", func(t *testing.T) {
		writeFile(t, filepath.Join(cats, "gambling.txt"), "# test list\ncasino.example\nnewbet.example\n")
		start := time.Now()
		for f.dig(t, f.alice, "192.0.2.1", "newbet.example", "A") != "0.0.0.0" {
			if time.Since(start) > editEffect {
				t.Fatalf("newbet.example still not blocked %v after it was added to the list: the list edit never took effect", editEffect)
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("new list line in force after %v", time.Since(start).Round(time.Millisecond))
	})
	t.Run("the filter port answers only redirected queries", func(t *testing.T) {
		answers := func(h *lab.Host, server string) bool {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			// A reply of any kind: the base port serves no class since
			// issue 9 (whose rules answer is told by the class ports), so
			// what reaches it gets REFUSED; what is dropped gets nothing.
			out, _ := f.Run(ctx, h, "dig", "+time=1", "+tries=1", "-p", "5354", "@"+server, "example.org", "A")
			return strings.Contains(out, "status: ") && !strings.Contains(out, "timed out") && !strings.Contains(out, "no servers")
		}
		for _, tc := range []struct {
			who    *lab.Host
			server string
			want   bool
		}{
			{f.parent, "192.0.2.1", false},       // a LAN device not in any profile, straight to the port
			{f.alice, "192.0.2.1", false},        // a protected device, straight to the port (not redirected)
			{f.alice, "2001:db8:1::1", false},    // the same over IPv6
			{f.Internet, "198.51.100.1", false},  // the WAN side
			{f.Internet, "2001:db8:2::1", false}, // the WAN side over IPv6
			{f.Router, "127.0.0.1", true},        // the router itself (REFUSED: no class on the base port)
		} {
			if got := answers(tc.who, tc.server); got != tc.want {
				t.Errorf("%s → %s:5354 answered = %v, want %v", tc.who.Name, tc.server, got, tc.want)
			}
		}
		reliability(t, "attack surface", "DNS filter port queried directly from the parent, a child (IPv4, IPv6) and the WAN (IPv4, IPv6)", "no answer; the router's loopback and the child's redirected queries are answered")
		// The same protected device's port-53 query, redirected, is answered.
		if got := f.dig(t, f.alice, "192.0.2.1", "example.org", "A"); got != "198.51.100.10" {
			t.Errorf("alice's redirected query: %q", got)
		}
	})
	t.Run("status explains blocks", func(t *testing.T) {
		st := a.status()
		if st.DNS.Counters[aliceMAC]["gambling"] == 0 || st.DNS.Counters[aliceMAC]["deny"] == 0 || st.DNS.Counters[aliceMAC]["bypass"] == 0 {
			t.Errorf("counters = %v", st.DNS.Counters)
		}
		found := false
		for _, r := range st.DNS.Recent {
			if r.Name == "casino.example" && r.Reason == "casino.example: gambling (casino.example)" && r.Child == "alice" {
				found = true
			}
		}
		if !found {
			t.Errorf("recent blocks do not explain casino.example: %+v", st.DNS.Recent)
		}
		human, code := famguard(t, "status", "--state", f.state)
		if code != 0 || !strings.Contains(human, "for alice: casino.example: gambling (casino.example)") {
			t.Errorf("human status does not explain the block:\n%s", human)
		}
	})
}
