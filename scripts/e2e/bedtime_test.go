package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/famguard/famguard/agent/tz"
	"github.com/famguard/famguard/scripts/lab"
)

// The lab family: Alice (bedtime 21:00) and Bob (bedtime 22:00) are
// children; the parent's laptop is trusted (with a child defined, a device
// in no list is an unknown device, offline by default).
const (
	aliceMAC  = "02:00:00:00:00:11"
	bobMAC    = "02:00:00:00:00:21"
	parentMAC = "02:00:00:00:00:31"

	inet4 = "198.51.100.10"
	inet6 = "2001:db8:2::10"
)

// A Thursday in Berlin; bedtime is 21:00.
var bedtime = time.Date(2026, 11, 26, 21, 0, 0, 0, mustZone("Europe/Berlin"))

func mustZone(name string) *time.Location {
	loc, err := tz.Load(name)
	if err != nil {
		panic(err)
	}
	return loc
}

const familyProfile = `version: 1
timezone: Europe/Berlin
children:
  alice:
    devices:
      - {mac: "02:00:00:00:00:11", name: "Alice's phone"}
    block: [adult, gambling]
    schedules:
      - {name: bedtime, days: [daily], from: "21:00", to: "07:00", action: offline}
  bob:
    devices:
      - {mac: "02:00:00:00:00:21", name: "Bob's tablet"}
    schedules:
      - {name: bedtime, days: [daily], from: "22:00", to: "07:00", action: offline}
` + parentTrusted

// parentTrusted lists the parent's laptop as trusted.
const parentTrusted = `trusted:
  - {mac: "02:00:00:00:00:31", name: "Parent's laptop"}
`

// familyLab is a lab with the family's three devices, a web and stream
// server on the internet host, and a profile directory.
type familyLab struct {
	*lab.Lab
	alice, bob, parent *lab.Host
	profiles, state    string
}

var labSeq atomic.Int32

func newFamilyLab(t *testing.T) *familyLab {
	t.Helper()
	lab.RequireRoot(t)
	prefix := fmt.Sprintf("fge%d%d", os.Getpid()%1000, labSeq.Add(1))
	ctx := context.Background()
	l, err := lab.New(ctx, prefix, []lab.DeviceSpec{
		{Name: "alice", MAC: aliceMAC},
		{Name: "bob", MAC: bobMAC},
		{Name: "parent", MAC: parentMAC},
	})
	if err != nil {
		t.Fatalf("building the lab: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("removing the lab: %v", err)
		}
	})
	srv := l.Cmd(ctx, l.Internet, binary(t, "labhost"), "serve", "--addr", "[::]:8080", "--stream-addr", "[::]:9000")
	if err := srv.Start(); err != nil {
		t.Fatalf("starting the internet host's server: %v", err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })

	dir := t.TempDir()
	f := &familyLab{Lab: l, alice: l.Devices["alice"], bob: l.Devices["bob"], parent: l.Devices["parent"],
		profiles: filepath.Join(dir, "profiles.d"), state: filepath.Join(dir, "state")}
	if err := os.MkdirAll(f.profiles, 0o755); err != nil {
		t.Fatal(err)
	}
	// Wait for the server to listen.
	deadline := time.Now().Add(5 * time.Second)
	for !f.reaches(f.parent, inet4) {
		if time.Now().After(deadline) {
			t.Fatal("internet host's server never answered the parent")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return f
}

// reaches reports whether host h can open a TCP connection to the internet
// host's web server at addr (IPv4 or IPv6) and get an answer.
func (f *familyLab) reaches(h *lab.Host, addr string) bool {
	url := "http://" + addr + ":8080/"
	if strings.Contains(addr, ":") {
		url = "http://[" + addr + "]:8080/"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	out, err := f.Run(ctx, h, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "1", url)
	return err == nil && strings.TrimSpace(out) == "200"
}

// expectReach asserts reachability for a host over both families.
func (f *familyLab) expectReach(t *testing.T, h *lab.Host, want bool, when string) {
	t.Helper()
	for _, addr := range []string{inet4, inet6} {
		if got := f.reaches(h, addr); got != want {
			t.Errorf("%s: %s reaching %s = %v, want %v", when, h.Name, addr, got, want)
		}
	}
}

// TestBedtime: at bedtime the child's device goes offline over IPv4 and IPv6
// while the other child and the parent stay online, and a TCP stream opened
// before bedtime is cut within 2 s.
func TestBedtime(t *testing.T) {
	f := newFamilyLab(t)
	writeFile(t, filepath.Join(f.profiles, "family.yaml"), familyProfile)
	a := startAgent(t, f.Lab, f.profiles, f.state, bedtime.Add(-6*time.Second).Format(time.RFC3339))

	f.expectReach(t, f.alice, true, "before bedtime")
	f.expectReach(t, f.parent, true, "before bedtime")

	// A stream opened before bedtime, over IPv6 (IPv4 is shown by the demo
	// and the kill test): established flows skip the rules, so only the
	// conntrack deletion at bedtime can cut it.
	lastChunk := f.startStream(t, f.alice, "["+inet6+"]:9000")

	clk := a.clock()
	realBedtime := clk.realAt(bedtime)
	if d := time.Until(realBedtime); d < time.Second {
		t.Fatalf("test started too late: bedtime in %v", d)
	}
	time.Sleep(time.Until(realBedtime) + 2500*time.Millisecond)

	select {
	case last := <-lastChunk:
		if last.IsZero() {
			t.Fatal("the stream never delivered anything before bedtime")
		}
		if cut := last.Sub(realBedtime); cut > 2*time.Second {
			t.Errorf("stream opened before bedtime still delivered data %v after bedtime; want cut within 2s", cut)
		} else {
			t.Logf("stream's last data %v after bedtime", cut.Round(time.Millisecond))
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the stream opened before bedtime is still running 5s after bedtime")
	}

	f.expectReach(t, f.alice, false, "after bedtime")
	f.expectReach(t, f.bob, true, "after Alice's bedtime, before Bob's")
	f.expectReach(t, f.parent, true, "after bedtime")

	d := a.device(aliceMAC)
	if d.Online || !strings.Contains(d.Reason, "bedtime") {
		t.Errorf("status for Alice: online=%v reason=%q; want offline because of bedtime", d.Online, d.Reason)
	}
	wantUntil := time.Date(2026, 11, 27, 7, 0, 0, 0, bedtime.Location())
	if d.Until == nil || !d.Until.Equal(wantUntil) {
		t.Errorf("Alice's until = %v, want %v", d.Until, wantUntil)
	}
	if !d.Seen || len(d.Addresses) == 0 {
		t.Errorf("Alice's device should be seen with addresses, got seen=%v %v", d.Seen, d.Addresses)
	}
	if b := a.device(bobMAC); !b.Online {
		t.Errorf("Bob should be online until 22:00, status says %q", b.Reason)
	}
}

// startStream opens a long TCP stream from h to the internet host's stream
// server at to (host:port) and returns a channel that receives, when the
// stream ends, the time its last data arrived (zero if none did). The
// stream is killed when the test ends.
func (f *familyLab) startStream(t *testing.T, h *lab.Host, to string) <-chan time.Time {
	t.Helper()
	stream := f.Cmd(context.Background(), h, binary(t, "labhost"), "stream", "--to", to, "--timeout", "1s")
	out, _ := stream.StdoutPipe()
	if err := stream.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stream.Process.Signal(syscall.SIGKILL); _ = stream.Wait() })
	lastChunk := make(chan time.Time, 1)
	go func() {
		var last time.Time
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			last = time.Now()
		}
		lastChunk <- last
	}()
	return lastChunk
}
