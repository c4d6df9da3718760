package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/famguard/famguard/agent/control"
	"github.com/famguard/famguard/agent/overrides"
	"github.com/famguard/famguard/scripts/lab"
)

// Everyday controls on the real kernel: pause, resume and extra time, with
// real connections from the children's namespaces and the agent's
// simulated clock (a Thursday in Berlin, Alice's bedtime at 21:00).

// waitFor polls cond every 20 ms until it holds or limit passes and returns
// how long it took (limit+ when it never held).
func waitFor(limit time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for {
		if cond() {
			return time.Since(start), true
		}
		if time.Since(start) > limit {
			return time.Since(start), false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// expectCut asserts that a stream (startStream) delivered nothing more
// than 1 s after at, and ended within 5 s of it.
func expectCut(t *testing.T, lastChunk <-chan time.Time, at time.Time, what string) {
	t.Helper()
	select {
	case last := <-lastChunk:
		if cut := last.Sub(at); cut > time.Second {
			t.Errorf("the stream delivered data %v after %s; want cut within 1 s", cut, what)
		} else {
			t.Logf("stream's last data %v after %s", cut.Round(time.Millisecond), what)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("the stream is still running 5 s after %s", what)
	}
}

// childStatus is the status view of one child's overrides.
func (a *agent) child(name string) overrides.ChildStatus {
	a.t.Helper()
	for _, c := range a.status().Children {
		if c.Child == name {
			return c
		}
	}
	a.t.Fatalf("child %s not in status", name)
	return overrides.ChildStatus{}
}

// TestPauseAndResume: `famguard pause alice --for 30m` takes Alice offline,
// cutting a live stream, leaves Bob and the parent online, and says by
// which command until when; `resume` brings her back. It waits for each
// effect (up to editEffect) and logs how long it took after the command
// returned; that time is not asserted (it would flake on a loaded machine).
func TestPauseAndResume(t *testing.T) {
	f := newFamilyLab(t)
	writeFile(t, filepath.Join(f.profiles, "family.yaml"), familyProfile)
	a := startAgent(t, f.Lab, f.profiles, f.state, "2026-11-26T18:00:00+01:00")
	f.expectReach(t, f.alice, true, "before the pause")
	lastChunk := f.startStream(t, f.alice, inet4+":9000")
	time.Sleep(300 * time.Millisecond) // the stream is flowing

	out, err := cli(t, f.Lab, "pause", "alice", "--for", "30m", "--state", f.state)
	paused := time.Now()
	if err != nil {
		t.Fatalf("pause: %v\n%s", err, out)
	}
	if !strings.Contains(out, "alice is paused until Thu 18:30") {
		t.Errorf("pause said %q", out)
	}
	// The stream must be cut by the time the pause is in force (seen by a
	// new connection failing), not by a fixed time after the command.
	offline := paused
	if took, ok := waitFor(editEffect, func() bool { return !f.reaches(f.alice, inet4) }); !ok {
		t.Errorf("Alice still reached the internet %v after the pause: the pause never took effect", took.Round(time.Millisecond))
	} else {
		offline = time.Now()
		t.Logf("Alice offline %v after the pause command returned", took.Round(time.Millisecond))
	}
	expectCut(t, lastChunk, offline, "the pause was in force (seen by a new connection failing)")
	f.expectReach(t, f.alice, false, "paused")
	f.expectReach(t, f.bob, true, "Alice paused")
	f.expectReach(t, f.parent, true, "Alice paused")
	d := a.device(aliceMAC)
	if d.Online || !strings.Contains(d.Reason, "paused by `famguard pause alice --for 30m` until 18:30") {
		t.Errorf("status: online=%v reason=%q", d.Online, d.Reason)
	}
	if c := a.child("alice"); c.Paused == nil || !c.Offline || c.Paused.By != "famguard pause alice --for 30m" {
		t.Errorf("status children: %+v", c)
	}
	if out, err := cli(t, f.Lab, "status", "--state", f.state); err != nil || !strings.Contains(out, "until 18:30 by famguard pause alice --for 30m") {
		t.Errorf("famguard status does not show the pause: %v\n%s", err, out)
	}
	if out, err := cli(t, f.Lab, "budget", "--state", f.state); err != nil || !strings.Contains(out, "alice  until 18:30 by famguard pause alice --for 30m") {
		t.Errorf("famguard budget does not show the pause: %v\n%s", err, out)
	}

	out, err = cli(t, f.Lab, "resume", "alice", "--state", f.state)
	if err != nil || !strings.Contains(out, "alice is no longer paused") {
		t.Fatalf("resume: %v\n%s", err, out)
	}
	if took, ok := waitFor(editEffect, func() bool { return f.reaches(f.alice, inet4) }); !ok {
		t.Errorf("Alice still offline %v after resume: the resume never took effect", took.Round(time.Millisecond))
	} else {
		t.Logf("Alice online again %v after the resume command returned", took.Round(time.Millisecond))
	}
	f.expectReach(t, f.alice, true, "resumed")

	// One device: the MAC names it; the pause ends by itself when the
	// simulated clock passes it.
	if out, err := cli(t, f.Lab, "pause", aliceMAC, "--until", "18:45", "--state", f.state); err != nil {
		t.Fatalf("pause device: %v\n%s", err, out)
	}
	f.expectReach(t, f.alice, false, "device paused")
	if err := control.Do(context.Background(), f.state, "clock-step", map[string]string{"by": "45m"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := waitFor(2*time.Second, func() bool { return f.reaches(f.alice, inet4) }); !ok {
		t.Error("the device pause did not end when the clock passed 18:45")
	}
}

// TestGrantDuringBedtime: extra time during bedtime lets Alice's traffic
// through, keeps her category blocks, and ends on time by itself.
func TestGrantDuringBedtime(t *testing.T) {
	f := newFamilyLab(t)
	writeFile(t, filepath.Join(f.profiles, "family.yaml"), familyProfile)
	a := startAgent(t, f.Lab, f.profiles, f.state, "2026-11-26T21:30:00+01:00")
	f.expectReach(t, f.alice, false, "bedtime")

	out, err := cli(t, f.Lab, "grant", "alice", "1m", "--json", "--state", f.state)
	if err != nil {
		t.Fatalf("grant: %v\n%s", err, out)
	}
	var resp struct {
		OK     bool
		Result struct{ Grant overrides.Grant }
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil || !resp.OK {
		t.Fatalf("grant --json: %v\n%s", err, out)
	}
	end := resp.Result.Grant.Until
	if _, ok := waitFor(2*time.Second, func() bool { return f.reaches(f.alice, inet4) }); !ok {
		t.Fatal("extra time did not let Alice online")
	}
	f.expectReach(t, f.alice, true, "extra time")
	d := a.device(aliceMAC)
	if !d.Online || !strings.Contains(d.Reason, "extra time granted by `famguard grant alice 1m`") || !strings.Contains(d.Reason, "otherwise offline: bedtime") {
		t.Errorf("status during extra time: %q", d.Reason)
	}
	if len(d.BlockedCategories) == 0 {
		t.Error("category blocks dropped during extra time")
	}
	if d.Until == nil || !d.Until.Equal(end) {
		t.Errorf("until %v, want the grant's end %v", d.Until, end)
	}

	realEnd := a.clock().realAt(end)
	time.Sleep(time.Until(realEnd) - 2*time.Second)
	if !f.reaches(f.alice, inet4) {
		t.Error("extra time ended early")
	}
	took, ok := waitFor(10*time.Second, func() bool { return !f.reaches(f.alice, inet4) })
	late := time.Since(realEnd)
	if !ok || late > 1500*time.Millisecond {
		t.Errorf("Alice still online %v after the extra time ended (ok=%v)", late, ok)
	} else {
		t.Logf("offline again %v after the extra time's end (%v of polling)", late.Round(time.Millisecond), took.Round(time.Millisecond))
	}
	if d := a.device(aliceMAC); d.Online || !strings.Contains(d.Reason, "bedtime") {
		t.Errorf("after extra time: online=%v %q", d.Online, d.Reason)
	}
}

// TestOverridesSurviveRestarts: a pause and extra time hold through kill -9
// (RAM copy) and through a "reboot" (RAM copy gone: the flash copy).
func TestOverridesSurviveRestarts(t *testing.T) {
	f := newFamilyLab(t)
	writeFile(t, filepath.Join(f.profiles, "family.yaml"), familyProfile)
	a := startAgent(t, f.Lab, f.profiles, f.state, "2026-11-26T21:30:00+01:00")
	if out, err := cli(t, f.Lab, "pause", "bob", "--state", f.state); err != nil {
		t.Fatalf("pause: %v\n%s", err, out)
	}
	if out, err := cli(t, f.Lab, "grant", "alice", "2h", "--state", f.state); err != nil {
		t.Fatalf("grant: %v\n%s", err, out)
	}
	f.expectReach(t, f.alice, true, "extra time")
	f.expectReach(t, f.bob, false, "paused")

	a.kill9()
	a.start("2026-11-26T21:31:00+01:00")
	f.expectReach(t, f.alice, true, "after kill -9: extra time")
	f.expectReach(t, f.bob, false, "after kill -9: paused")
	if c := a.child("bob"); c.Paused == nil || c.Paused.By != "famguard pause bob" {
		t.Errorf("after kill -9 Bob's pause: %+v", c.Paused)
	}

	a.stop()
	if err := os.Remove(filepath.Join(f.state, "overrides.json")); err != nil {
		t.Fatal(err) // the RAM copy; a reboot empties /var/run
	}
	a.start("2026-11-26T21:32:00+01:00")
	f.expectReach(t, f.alice, true, "after reboot: extra time")
	f.expectReach(t, f.bob, false, "after reboot: paused")
	if g := a.child("alice").Grant; g == nil || g.Until.Format("15:04") != "23:30" {
		t.Errorf("after reboot Alice's extra time: %+v", g)
	}
}

// TestControlsBadInput: each bad request is refused with a clear message,
// exit status 1, and changes nothing.
func TestControlsBadInput(t *testing.T) {
	f := newFamilyLab(t)
	writeFile(t, filepath.Join(f.profiles, "family.yaml"), familyProfile)
	a := startAgent(t, f.Lab, f.profiles, f.state, "2026-11-26T19:40:00+01:00")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"pause", "carol"}, `"carol" is neither a child (children: alice, bob) nor a child's device`},
		{[]string{"pause", "02:00:00:00:00:99"}, `is neither a child`},
		{[]string{"pause", "alice", "--for", "0m"}, "a duration must be more than zero"},
		{[]string{"pause", "alice", "--for", "-30m"}, "a duration must be more than zero"},
		{[]string{"pause", "alice", "--for", "8d"}, `"8d" is not a duration`},
		{[]string{"pause", "alice", "--for", "200h"}, "more than 7 days"},
		{[]string{"pause", "alice", "--until", "19:30"}, "19:30 has already passed today (it is 19:40)"},
		{[]string{"pause", "alice", "--until", "2026-11-25 07:00"}, "is in the past"},
		{[]string{"resume", "alice"}, "alice is not paused; nothing changed"},
		{[]string{"grant", "carol", "30m"}, `there is no child named "carol"`},
		{[]string{"grant", "alice", "0s"}, "more than zero"},
		{[]string{"grant", "alice", "--budget", "+30m"}, "alice has no daily budget"},
	} {
		out, err := cli(t, f.Lab, append(tc.args, "--state", f.state)...)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("famguard %s: %v\n%s\nwant an error containing %q", strings.Join(tc.args, " "), err, out, tc.want)
		}
	}
	// --json gives the code too.
	out, _ := cli(t, f.Lab, "pause", "alice", "--for", "0m", "--json", "--state", f.state)
	if !strings.Contains(out, `"code": "bad-duration"`) {
		t.Errorf("pause --json: %s", out)
	}
	for _, c := range a.status().Children {
		if c.Paused != nil || len(c.DevicePauses) > 0 || c.Grant != nil {
			t.Errorf("a refused request changed %s: %+v", c.Child, c)
		}
	}
	f.expectReach(t, f.alice, true, "after refused requests")
}

const budgetFamily = `version: 1
timezone: Europe/Berlin
children:
  alice:
    devices:
      - {mac: "02:00:00:00:00:11", name: "Alice's phone"}
    budget: 3m
    schedules:
      - {name: bedtime, days: [daily], from: "21:00", to: "07:00", action: offline}
  bob:
    devices:
      - {mac: "02:00:00:00:00:21", name: "Bob's tablet"}
    budget: 3m
trusted:
  - {mac: "02:00:00:00:00:31", name: "Parent's laptop"}
`

// TestBudgetRunsOut: on the real kernel, with the kernel's device identity
// (conntrack marks) and byte counters: Alice's steady download uses her
// 3-minute budget in exactly three counted minutes and she goes offline
// (the download cut); Bob's background pings never count. The agent samples
// every 2 s, each sample counting as a minute (--account-every), so the
// minutes run in seconds. The usage survives kill -9.
func TestBudgetRunsOut(t *testing.T) {
	f := newFamilyLab(t)
	ctx := context.Background()
	if out, err := f.Run(ctx, f.Router, "sysctl", "-w", "net.netfilter.nf_conntrack_acct=1"); err != nil {
		t.Fatalf("turning on conntrack accounting in the lab router: %v %s", err, out)
	}
	writeFile(t, filepath.Join(f.profiles, "family.yaml"), budgetFamily)
	a := startAgent(t, f.Lab, f.profiles, f.state, "2026-11-26T18:00:00+01:00", "--account-every", "2s")

	srv := f.Cmd(ctx, f.Internet, "iperf3", "-s", "-p", "5201")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	// The download must find the server listening (a loaded machine may
	// take a while to start it).
	if _, ok := waitFor(10*time.Second, func() bool {
		out, _ := f.Run(ctx, f.Internet, "ss", "-Hltn", "sport = :5201")
		return strings.Contains(out, "5201")
	}); !ok {
		t.Fatal("iperf3 server not listening after 10 s")
	}
	ping := f.Cmd(ctx, f.bob, "ping", "-i", "1", inet4)
	if err := ping.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ping.Process.Kill(); _ = ping.Wait() })
	time.Sleep(300 * time.Millisecond)
	// 2 Mbit/s: 500 KB per 2-second sample, far over 20 KiB.
	dl := f.Cmd(ctx, f.alice, "iperf3", "-c", inet4, "-p", "5201", "-R", "-b", "2M", "-t", "60", "-i", "1", "--connect-timeout", "2000")
	var dlOut lab.SyncBuffer
	dl.Stdout, dl.Stderr = &dlOut, &dlOut
	if err := dl.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dl.Process.Kill(); _ = dl.Wait() })
	// A live stream beside the download, to see the cut when the budget
	// runs out (iperf3 itself waits out its -t on a dead connection).
	lastChunk := f.startStream(t, f.alice, inet4+":9000")

	budget := func(child string) *overrides.BudgetStatus { return a.child(child).Budget }
	// Before the third minute counts she is online.
	if _, ok := waitFor(20*time.Second, func() bool { b := budget("alice"); return b != nil && b.Used == 2 }); !ok {
		t.Fatalf("Alice's download never counted 2 minutes: %+v\niperf: %s", budget("alice"), dlOut.String())
	}
	if d := a.device(aliceMAC); !d.Online {
		t.Errorf("Alice offline with a minute of budget left: %s", d.Reason)
	}
	if _, ok := waitFor(20*time.Second, func() bool { return !a.device(aliceMAC).Online }); !ok {
		t.Fatalf("Alice never went offline: %+v", budget("alice"))
	}
	exhaustedAt := time.Now()
	b := budget("alice")
	if b.Used != 3 || !b.Exhausted || b.Left != 0 {
		t.Errorf("Alice's budget when offline: %+v; want exactly 3 of 3 minutes used", b)
	}
	if d := a.device(aliceMAC); !strings.Contains(d.Reason, "daily budget used up: 3m of 3m used today (daily: 3m); online again at Fri 00:00") {
		t.Errorf("reason %q", d.Reason)
	}
	expectCut(t, lastChunk, exhaustedAt, "the budget ran out (seen by status polling)")
	f.expectReach(t, f.alice, false, "budget used up")
	if bb := budget("bob"); bb == nil || bb.Used != 0 {
		t.Errorf("Bob's background pings counted: %+v", bb)
	}
	f.expectReach(t, f.bob, true, "Bob's budget untouched")

	a.kill9()
	a.start("2026-11-26T18:10:00+01:00")
	if b := budget("alice"); b == nil || b.Used != 3 || !b.Exhausted {
		t.Errorf("after kill -9 Alice's budget: %+v", b)
	}
	f.expectReach(t, f.alice, false, "after kill -9, budget used up")
	// Extra time (a budget change) brings her back.
	if out, err := cli(t, f.Lab, "budget", "alice", "+30m", "--state", f.state); err != nil || !strings.Contains(out, "alice's budget today is now 33m (30m left)") {
		t.Errorf("budget +30m: %v %s", err, out)
	}
	if _, ok := waitFor(3*time.Second, func() bool { return f.reaches(f.alice, inet4) }); !ok {
		t.Error("Alice not back online after +30m")
	}
}
