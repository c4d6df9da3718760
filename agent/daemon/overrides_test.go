package daemon

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/famguard/famguard/agent/clock"
	"github.com/famguard/famguard/agent/control"
	"github.com/famguard/famguard/agent/overrides"
	"github.com/famguard/famguard/rules"
)

var updateProtocol = flag.Bool("update", false, "rewrite testdata/protocol.golden")

const budgetProfile = `version: 1
timezone: Europe/Berlin
children:
  alice:
    devices:
      - {mac: "02:00:00:00:00:11", name: "Alice's phone"}
    block: [adult]
    budget: {mon-fri: 2m, sat-sun: 4h}
    schedules:
      - {name: bedtime, days: [daily], from: "21:00", to: "07:00", action: offline}
  bob:
    devices:
      - {mac: "02:00:00:00:00:21", name: "Bob's tablet"}
`

// seconds hides what moves while the test runs (the simulated clock runs
// in real time): seconds and their fractions of RFC 3339 instants.
var seconds = regexp.MustCompile(`(T\d\d:\d\d):\d\d(\.\d+)?`)

// TestProtocolGolden pins version 1 of the control protocol with the real
// daemon behind it: each request of testdata/protocol.golden and the
// agent's answer, in order (the requests build on each other). PROTOCOL.md
// quotes these lines. Run with -update after a deliberate change.
func TestProtocolGolden(t *testing.T) {
	dir := profileDir(t, budgetProfile)
	d := runDaemon(t, Config{ProfilesDir: dir, Clock: clock.StartingAt(time.Date(2026, 11, 26, 19, 40, 0, 0, berlin)), ClockSimulated: true,
		Dataplane: newFakeDataplane(), Log: slog.New(slog.NewTextHandler(io.Discard, nil)), HealInterval: time.Hour})
	requests := []string{
		`{"v":1,"cmd":"pause","args":{"child":"alice","for":"30m","by":"famguard pause alice --for 30m"}}`,
		`{"v":1,"cmd":"pause","args":{"device":"Bob's tablet","until":"21:15"}}`,
		`{"v":1,"cmd":"overrides"}`,
		`{"v":1,"cmd":"resume","args":{"target":"alice"}}`,
		`{"v":1,"cmd":"resume","args":{"target":"alice"}}`,
		`{"v":1,"cmd":"resume","args":{"device":"02:00:00:00:00:21"}}`,
		`{"v":1,"cmd":"grant","args":{"child":"bob","for":"45m","by":"famguard grant bob 45m"}}`,
		`{"v":1,"cmd":"grant","args":{"child":"bob","cancel":true}}`,
		`{"v":1,"cmd":"grant","args":{"child":"alice","budget":"+30m","by":"famguard budget alice +30m"}}`,
		`{"v":1,"cmd":"budget","args":{"child":"alice"}}`,
		`{"v":1,"cmd":"pause","args":{"target":"carol"}}`,
		`{"v":1,"cmd":"pause","args":{"child":"alice","for":"0s"}}`,
		`{"v":1,"cmd":"pause","args":{"child":"alice","for":"200h"}}`,
		`{"v":1,"cmd":"pause","args":{"child":"alice","until":"19:30"}}`,
		`{"v":1,"cmd":"pause","args":{"child":"alice","for":"30m","until":"21:00"}}`,
		`{"v":1,"cmd":"pause","args":{"child":"alice","minutes":30}}`,
		`{"v":1,"cmd":"grant","args":{"child":"bob","budget":"+30m"}}`,
		`{"v":1,"cmd":"grant","args":{"child":"bob"}}`,
		`{"v":1,"cmd":"clock-step","args":{"by":"soon"}}`,
		`{"v":1,"cmd":"dance"}`,
	}
	var b strings.Builder
	for _, req := range requests {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		out, err := json.Marshal(control.Answer(ctx, d.HandleRequest, []byte(req)))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("> " + req + "\n< " + seconds.ReplaceAllString(string(out), "$1:SS") + "\n")
	}
	path := filepath.Join("testdata", "protocol.golden")
	if *updateProtocol {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.String(); got != string(want) {
		gl, wl := strings.Split(got, "\n"), strings.Split(string(want), "\n")
		for i := range max(len(gl), len(wl)) {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Errorf("line %d differs from %s (run with -update if deliberate, and update PROTOCOL.md):\nwant: %s\ngot:  %s", i+1, path, w, g)
			}
		}
	}
}

// fakeAccounting hands the daemon what the test puts in next.
type fakeAccounting struct {
	mu   sync.Mutex
	next map[uint16]uint64
}

func (f *fakeAccounting) Sample() (map[uint16]uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.next
	f.next = nil
	return out, nil
}

func (f *fakeAccounting) set(m map[uint16]uint64) {
	f.mu.Lock()
	f.next = m
	f.mu.Unlock()
}

// TestBudgetRunsOut: minutes above the threshold count, idle chatter does
// not; when the budget is used up the child goes offline with the reason,
// and a budget extra brings her back; usage is kept in the store.
func TestBudgetRunsOut(t *testing.T) {
	dir := profileDir(t, budgetProfile)
	dp := newFakeDataplane()
	acct := &fakeAccounting{}
	stateDir := t.TempDir()
	store := overrides.NewStore(filepath.Join(stateDir, "flash.json"), filepath.Join(stateDir, "ram.json"), time.Hour)
	d := runDaemon(t, Config{ProfilesDir: dir, Clock: clock.StartingAt(time.Date(2026, 11, 26, 19, 0, 0, 0, berlin)), ClockSimulated: true,
		Dataplane: dp, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), HealInterval: time.Hour,
		Overrides: store, Accounting: acct, AccountEvery: 5 * time.Millisecond})
	ctx := context.Background()
	eventually(t, "loaded", func() bool { return strings.Contains(dp.get(rules.IPv4), ":FAMGUARD ") })
	// The device IDs the dataplane allocated (the conntrack marks the
	// accounting reads back).
	var alice, bob uint16
	if _, err := d.send(ctx, request{cmd: "test", reply: make(chan response, 1), do: func() (any, error) {
		alice, bob = d.kid.ids.Devices["02:00:00:00:00:11"], d.kid.ids.Devices["02:00:00:00:00:21"]
		return nil, nil
	}}); err != nil {
		t.Fatal(err)
	}
	if alice == 0 || bob == 0 || alice == bob {
		t.Fatalf("device IDs alice %d bob %d", alice, bob)
	}
	rejected := func(mac string) bool {
		for _, line := range strings.Split(dp.get(rules.IPv4), "\n") {
			if strings.Contains(line, mac) && strings.Contains(line, "FAMGUARD-REJECT") {
				return true
			}
		}
		return false
	}
	used := func() int {
		for _, c := range statusOf(t, d).Children {
			if c.Child == "alice" && c.Budget != nil {
				return c.Budget.Used
			}
		}
		return -1
	}
	passes := func() int { return statusOf(t, d).Overrides.Passes }
	feed := func(m map[uint16]uint64) {
		p := passes()
		acct.set(m)
		eventually(t, "an accounting pass", func() bool { acct.mu.Lock(); defer acct.mu.Unlock(); return acct.next == nil && passes() > p })
	}
	feed(map[uint16]uint64{alice: 4 << 10, bob: 50 << 20}) // Alice: push chatter; Bob: heavy but no budget
	if u := used(); u != 0 {
		t.Fatalf("chatter counted: used %d min", u)
	}
	feed(map[uint16]uint64{alice: 5 << 20})
	if u := used(); u != 1 {
		t.Fatalf("used %d min after one busy minute", u)
	}
	if rejected("02:00:00:00:00:11") {
		t.Fatal("Alice blocked with a minute left")
	}
	feed(map[uint16]uint64{alice: 5 << 20})
	eventually(t, "Alice offline when the budget is used up", func() bool { return rejected("02:00:00:00:00:11") })
	st := statusOf(t, d)
	for _, dev := range st.Devices {
		if dev.MAC == "02:00:00:00:00:11" && !strings.Contains(dev.Reason, "daily budget used up: 2m of 2m used today (mon-fri: 2m); online again at Fri 00:00") {
			t.Errorf("reason %q", dev.Reason)
		}
	}
	if f, _ := overrides.NewStore("", filepath.Join(stateDir, "ram.json"), 0).Load(); f.Usage["alice"].Minutes != 2 {
		t.Errorf("RAM copy holds %+v", f.Usage)
	}
	// Minutes past the budget while offline are not Alice's use (no
	// traffic gets through), but a budget extra brings her back.
	if _, err := d.HandleRequest(ctx, control.Request{V: 1, Cmd: "grant", Args: json.RawMessage(`{"child":"alice","budget":"+1m"}`)}); err != nil {
		t.Fatal(err)
	}
	if rejected("02:00:00:00:00:11") {
		t.Error("Alice still blocked after +1m")
	}

	// Grant, budget and window interplay: minutes while she is paused, in
	// bedtime, and in extra time inside bedtime never count; the next day
	// starts afresh (and today's +1m is gone).
	do := func(cmd, args string) {
		t.Helper()
		if _, err := d.HandleRequest(ctx, control.Request{V: 1, Cmd: cmd, Args: json.RawMessage(args)}); err != nil {
			t.Fatalf("%s %s: %v", cmd, args, err)
		}
	}
	do("pause", `{"child":"alice"}`)
	feed(map[uint16]uint64{alice: 5 << 20})
	do("resume", `{"child":"alice"}`)
	do("clock-step", `{"by":"2h30m"}`) // 21:30, bedtime
	feed(map[uint16]uint64{alice: 5 << 20})
	do("grant", `{"child":"alice","for":"30m"}`)
	if rejected("02:00:00:00:00:11") {
		t.Error("Alice blocked during extra time in bedtime")
	}
	feed(map[uint16]uint64{alice: 5 << 20})
	if u := used(); u != 2 {
		t.Errorf("used %d min after minutes paused, in bedtime and in extra time inside bedtime; want still 2", u)
	}
	do("clock-step", `{"by":"10h"}`) // Friday 07:30
	feed(map[uint16]uint64{alice: 5 << 20})
	for _, c := range statusOf(t, d).Children {
		if b := c.Budget; c.Child == "alice" && (b == nil || b.Day != "2026-11-27" || b.Used != 1 || b.Extra != 0 || b.Left != 1) {
			t.Errorf("Friday's budget %+v; want 1 of 2 minutes used, no extra", b)
		}
	}
}
