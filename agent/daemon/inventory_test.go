package daemon

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/famguard/famguard/agent/clock"
	"github.com/famguard/famguard/agent/netwatch"
	"github.com/famguard/famguard/agent/tz"
	"github.com/famguard/famguard/rules"
)

// syncBuffer is a log sink the test reads while the loop writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func devicesOf(t *testing.T, d *Daemon) DevicesStatus {
	t.Helper()
	return ask(t, d, "devices").(DevicesStatus)
}

// ask sends d a control request and returns its answer.
func ask(t *testing.T, d *Daemon, cmd string) any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := d.Handle(ctx, cmd, nil)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestUnknownDevicesOnTheLAN: with a LAN known, a device no profile lists
// is offline (the default with a child defined) in the rules and in status,
// named with its DHCP name and the command that assigns it; a trusted one
// is never restricted; `devices` lists both.
func TestUnknownDevicesOnTheLAN(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	prof := profile + "trusted: [{mac: \"00:1a:2b:3c:4d:31\", name: \"Mum's phone\"}]\n"
	if err := os.WriteFile(filepath.Join(dir, "family.yaml"), []byte(prof), 0o644); err != nil {
		t.Fatal(err)
	}
	leases := filepath.Join(t.TempDir(), "dhcp.leases")
	if err := os.WriteFile(leases, []byte("1764450000 da:a1:19:00:00:01 192.0.2.50 Kids-Laptop *\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	dp := newFakeDataplane()
	d := runDaemon(t, Config{ProfilesDir: dir, StateDir: state, Clock: clock.StartingAt(time.Date(2026, 11, 26, 12, 0, 0, 0, berlin)),
		Env: tz.Env{Root: t.TempDir(), Getenv: func(string) string { return "" }}, Dataplane: dp,
		Neighbours: fakeNeighbours{netwatch.Table{
			"02:00:00:00:00:11": {netip.MustParseAddr("192.0.2.11")},
			"00:1a:2b:3c:4d:31": {netip.MustParseAddr("192.0.2.31")},
			"da:a1:19:00:00:01": {netip.MustParseAddr("192.0.2.50")},
		}},
		LAN: []string{"br-lan"}, LANSource: "test", Leases: leases,
		Log: slog.New(slog.NewTextHandler(logs, nil)), HealInterval: 50 * time.Millisecond})

	// Unknown devices are one class in the kernel ("in on the LAN, no listed
	// MAC"), so a MAC made up a moment ago is covered before the agent sees
	// it; the seen device has no rule of its own.
	eventually(t, "the unknown-device class in the rules", func() bool {
		return strings.Contains(dp.get(rules.IPv4), "famguard: unknown device")
	})
	eventually(t, "the unknown device seen on the LAN", func() bool {
		for _, s := range statusOf(t, d).Devices {
			if s.MAC == "da:a1:19:00:00:01" {
				return true
			}
		}
		return false
	})
	v4 := dp.get(rules.IPv4)
	// Every listed device is in the mangle chain (its connections carry its
	// ID); neither the trusted device nor Alice (online at noon) is rejected.
	for _, line := range strings.Split(v4, "\n") {
		if (strings.Contains(line, "00:1a:2b:3c:4d:31") || strings.Contains(line, "02:00:00:00:00:11")) && strings.Contains(line, "FAMGUARD-REJECT") {
			t.Errorf("the trusted device or Alice (online at noon) is rejected: %s", line)
		}
	}
	if !strings.Contains(v4, "--mac-source 00:1a:2b:3c:4d:31 -m comment --comment \"famguard: trusted\" -j RETURN") {
		t.Errorf("the trusted device does not skip famguard's checks:\n%s", v4)
	}
	// The class is in the rules from the first pass; the seen device comes
	// with the neighbour table, a moment later.
	eventually(t, "the unknown device in status", func() bool {
		for _, s := range statusOf(t, d).Devices {
			if s.MAC == "da:a1:19:00:00:01" {
				return true
			}
		}
		return false
	})
	st := statusOf(t, d)
	kinds := map[string]string{}
	for _, s := range st.Devices {
		kinds[s.MAC] = s.Kind + map[bool]string{true: "/online", false: "/offline"}[s.Online]
		if s.MAC == "da:a1:19:00:00:01" && (s.Device != "Kids-Laptop" || !s.Randomized ||
			!strings.Contains(s.Reason, "unknown device: offline until a parent assigns it") || !strings.Contains(s.Reason, "famguard assign da:a1:19:00:00:01 CHILD|trusted")) {
			t.Errorf("unknown row = %+v", s)
		}
	}
	if want := map[string]string{"02:00:00:00:00:11": "/online", "00:1a:2b:3c:4d:31": "trusted/online", "da:a1:19:00:00:01": "unknown/offline"}; len(kinds) != 3 ||
		kinds["02:00:00:00:00:11"] != want["02:00:00:00:00:11"] || kinds["00:1a:2b:3c:4d:31"] != want["00:1a:2b:3c:4d:31"] || kinds["da:a1:19:00:00:01"] != want["da:a1:19:00:00:01"] {
		t.Errorf("status rows %v, want %v", kinds, want)
	}
	notice := "unknown device da:a1:19:00:00:01 (Kids-Laptop) is offline: if it is a parent's, run `famguard assign da:a1:19:00:00:01 trusted`; if it is alice's, `famguard assign da:a1:19:00:00:01 alice`"
	if !strings.Contains(strings.Join(st.Warnings, "\n"), notice) {
		t.Errorf("status warnings lack the upgrade notice:\n%s", strings.Join(st.Warnings, "\n"))
	}
	eventually(t, "the notice in the log", func() bool {
		return strings.Contains(logs.String(), "level=WARN msg=\"unknown device da:a1:19:00:00:01")
	})

	devs := devicesOf(t, d)
	if len(devs.Devices) != 3 || devs.Unknown == nil || devs.Unknown.Action != "offline" || !devs.Unknown.Default {
		t.Fatalf("devices = %+v", devs)
	}
	applies := map[string]string{}
	for _, e := range devs.Devices {
		applies[e.MAC] = e.Applies
	}
	if applies["02:00:00:00:00:11"] != "child alice" || applies["00:1a:2b:3c:4d:31"] != "trusted" || applies["da:a1:19:00:00:01"] != "unknown: offline" {
		t.Errorf("applies = %v", applies)
	}
	// The inventory is kept in the state directory, without addresses.
	eventually(t, "inventory file", func() bool {
		b, _ := os.ReadFile(filepath.Join(state, inventoryFile))
		return strings.Contains(string(b), "da:a1:19:00:00:01") && !strings.Contains(string(b), "192.0.2")
	})
}

// TestNoLANNoUnknownDevices: without a LAN, nothing is taken for an
// unknown device (the WAN gateway must never be one).
func TestNoLANNoUnknownDevices(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "family.yaml"), []byte(profile), 0o644); err != nil {
		t.Fatal(err)
	}
	dp := newFakeDataplane()
	d := runDaemon(t, Config{ProfilesDir: dir, Clock: clock.StartingAt(time.Date(2026, 11, 26, 22, 0, 0, 0, berlin)),
		Env: tz.Env{Root: t.TempDir(), Getenv: func(string) string { return "" }}, Dataplane: dp,
		Neighbours: fakeNeighbours{netwatch.Table{"00:1a:2b:3c:4d:01": {netip.MustParseAddr("203.0.113.1")}}},
		Log:        slog.New(slog.NewTextHandler(io.Discard, nil)), HealInterval: 50 * time.Millisecond})
	eventually(t, "bedtime rules", func() bool { return strings.Contains(dp.get(rules.IPv4), "02:00:00:00:00:11") })
	time.Sleep(200 * time.Millisecond) // the neighbour table has arrived
	if strings.Contains(dp.get(rules.IPv4), "00:1a:2b:3c:4d:01") {
		t.Error("a neighbour was restricted as an unknown device without a LAN")
	}
	if n := len(devicesOf(t, d).Devices); n != 0 {
		t.Errorf("%d devices listed without a LAN", n)
	}
}
