// Package e2e proves famguard's behaviour on the real kernel: each test builds
// a network-namespace lab (scripts/lab: a router with a LAN bridge, children's
// and a parent's devices with their own MACs, an "internet" host), runs the
// real bin/famguard inside the router namespace and watches real packets over
// IPv4 and IPv6. Nothing here touches the host's own network namespace.
//
// The tests need root; they skip with a message elsewhere, and fail instead of
// skipping when CI=true, because in CI a skip would hide a broken lab.
package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/famguard/famguard/agent/control"
	"github.com/famguard/famguard/agent/daemon"
	"github.com/famguard/famguard/scripts/lab"
)

// repoFile resolves a path relative to the repository root (tests run in
// scripts/e2e).
func repoFile(t testing.TB, rel string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", rel))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func binary(t testing.TB, name string) string {
	t.Helper()
	p := repoFile(t, filepath.Join("bin", name))
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s not built: run `make build` first (make test does)", p)
	}
	return p
}

// agent is one bin/famguard run inside the lab's router namespace.
type agent struct {
	t        testing.TB
	lab      *lab.Lab
	Profiles string
	State    string
	cmd      *exec.Cmd
	log      *lab.SyncBuffer
	done     chan struct{}
	extra    []string      // more `famguard run` flags
	command  []string      // what runs famguard (nil: bin/famguard); e.g. qemu-user and a router build
	ready    time.Duration // how long the agent may take to be ready (0: 10 s)
	env      []string      // extra environment (PATH=..., XTABLES_LOCKFILE=...)
	prefix   []string      // command run before `nsenter --net` (lab.InNS) (e.g. unshare -m sh -c ...)
}

// startAgent runs the agent on profiles with its clock starting at clockAt
// ("" = real time) and waits until it has applied a policy.
func startAgent(t testing.TB, l *lab.Lab, profiles, state, clockAt string, extra ...string) *agent {
	t.Helper()
	return startAgentCommand(t, l, nil, profiles, state, clockAt, extra...)
}

// startAgentCommand is startAgent with another command for famguard: argv
// that ends with the famguard binary (`qemu-mipsel-static
// dist/famguard-linux-mipsle`), nil for bin/famguard.
func startAgentCommand(t testing.TB, l *lab.Lab, command []string, profiles, state, clockAt string, extra ...string) *agent {
	t.Helper()
	a := &agent{t: t, lab: l, Profiles: profiles, State: state, extra: extra, command: command, ready: 10 * time.Second}
	if command != nil {
		a.ready = 30 * time.Second // an emulated agent starts slower
	}
	// Registered before the start: an agent that never becomes ready
	// (start fails the test) must not outlive the test.
	t.Cleanup(func() { a.stop() })
	a.start(clockAt)
	return a
}

func (a *agent) start(clockAt string) {
	a.t.Helper()
	a.launch(clockAt)
	a.waitReady()
}

// launch starts the agent without waiting for it to be ready.
func (a *agent) launch(clockAt string) {
	a.t.Helper()
	args := append([]string{}, a.command...)
	if len(args) == 0 {
		args = []string{binary(a.t, "famguard")}
	}
	args = append(args, "run", "--profiles", a.Profiles, "--state", a.State,
		"--categories", filepath.Join(a.Profiles, "..", "categories"), "--heal-interval", "1s", "--log-level", "debug",
		// Never the router default under /etc: the test's own directory.
		"--saved-state", filepath.Join(a.State, "device-state.json"),
		// Pauses, extra time and usage: also never under /etc. In a
		// directory of its own beside the state directory, so a test can
		// drop the RAM copy (in State) to stand for a reboot.
		"--overrides", filepath.Join(a.State+"-flash", "overrides.json"))
	if clockAt != "" {
		args = append(args, "--clock", clockAt)
	}
	args = append(args, a.extra...)
	a.log = &lab.SyncBuffer{}
	a.cmd = a.lab.Cmd(context.Background(), a.lab.Router, args...)
	if len(a.prefix) > 0 {
		a.cmd = exec.Command(a.prefix[0], append(a.prefix[1:], a.cmd.Args...)...)
	}
	if len(a.env) > 0 {
		a.cmd.Env = append(os.Environ(), a.env...)
	}
	a.cmd.Stdout, a.cmd.Stderr = a.log, a.log
	if err := a.cmd.Start(); err != nil {
		a.t.Fatalf("starting the agent: %v", err)
	}
	a.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(a.cmd, a.done)
}

// waitReady waits until the agent answers and has a policy in force.
func (a *agent) waitReady() {
	a.t.Helper()
	ready := a.ready
	if ready == 0 {
		ready = 10 * time.Second
	}
	deadline := time.Now().Add(ready)
	for time.Now().Before(deadline) {
		select {
		case <-a.done:
			a.t.Fatalf("agent exited early:\n%s", a.log.String())
		default:
		}
		if st, err := a.statusErr(); err == nil && st.Policy != nil && st.Dataplane.Applies > 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.t.Fatalf("agent not ready after %v; log:\n%s", ready, a.log.String())
}

func (a *agent) statusErr() (daemon.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var st daemon.Status
	err := control.Call(ctx, a.State, "status", &st)
	return st, err
}

func (a *agent) status() daemon.Status {
	a.t.Helper()
	st, err := a.statusErr()
	if err != nil {
		a.t.Fatalf("status: %v\nagent log:\n%s", err, a.log.String())
	}
	return st
}

func (a *agent) device(mac string) daemon.DeviceStatus {
	a.t.Helper()
	for _, d := range a.status().Devices {
		if d.MAC == mac {
			return d
		}
	}
	a.t.Fatalf("device %s not in status", mac)
	return daemon.DeviceStatus{}
}

// kill9 kills the agent the hard way: no chance to clean anything up.
func (a *agent) kill9() {
	if a.cmd == nil || a.cmd.Process == nil {
		return
	}
	_ = a.cmd.Process.Signal(syscall.SIGKILL)
	<-a.done
	a.cmd = nil
}

// stop ends the agent with SIGTERM (rules stay, as in production).
func (a *agent) stop() {
	if a.cmd == nil || a.cmd.Process == nil {
		return
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(5 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.done
	}
	a.cmd = nil
	if a.t.Failed() {
		a.t.Logf("agent log:\n%s", a.log.String())
	}
}

// cli runs a famguard sub-command inside the router namespace.
func cli(t testing.TB, l *lab.Lab, args ...string) (string, error) {
	t.Helper()
	cmd := l.Cmd(context.Background(), l.Router, append([]string{binary(t, "famguard")}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// simClock maps the agent's simulated clock to real time.
type simClock struct{ offset time.Duration } // simulated = real + offset

func (a *agent) clock() simClock {
	before := time.Now()
	st := a.status()
	after := time.Now()
	mid := before.Add(after.Sub(before) / 2)
	return simClock{offset: st.Clock.Now.Sub(mid)}
}

// realAt is the real instant at which the agent's clock shows sim.
func (c simClock) realAt(sim time.Time) time.Time { return sim.Add(-c.offset) }

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	// Atomic rename, as editors and operators' pushes do.
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// famguardLines returns the lines of iptables-save (or ip6tables-save) in
// the router namespace that mention famguard's chains.
func famguardLines(t testing.TB, l *lab.Lab, save string) []string {
	t.Helper()
	out, err := l.Run(context.Background(), l.Router, save)
	if err != nil {
		t.Fatalf("%s: %v", save, err)
	}
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if strings.Contains(sc.Text(), "FAMGUARD") {
			lines = append(lines, sc.Text())
		}
	}
	return lines
}

// reliability records one row of the README's Reliability table: `make
// reliability` runs the tests verbosely and collects these lines, so the
// table always shows figures from a run anyone can repeat.
func reliability(t testing.TB, area, tried, result string, args ...any) {
	t.Helper()
	t.Logf("reliability: %s | %s | %s", area, tried, fmt.Sprintf(result, args...))
}
