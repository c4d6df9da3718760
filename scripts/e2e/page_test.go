package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/famguard/famguard/scripts/lab"
)

// The parents' page, end to end, in a real browser: Debian's headless
// Chromium driven by playwright-core (scripts/pagetest/flows.mjs) loads the
// page from openwrt/famguard/www, logs in through ubusemu (the stand-in for
// uhttpd-mod-ubus and rpcd: JSON-RPC, sessions, the package's real acl.d
// file, rpcd's plugin convention), which runs the package's real rpcd plugin
// command (`famguard rpcd`) against a real agent in a lab. Each flow checks
// the kernel's effect from the child's own namespace: a tap on "Pause" must
// cut the child's internet (a real REJECT, never a timeout).
//
// Screenshots at phone and desktop width land in dist/page-screenshots/.
const pageProfile = `version: 1
timezone: Europe/Berlin
children:
  alice:
    devices:
      - {mac: "02:00:00:00:00:11", name: "Alice's phone"}
    schedules:
      - {name: bedtime, days: [daily], from: "23:00", to: "07:00", action: offline}
  bob:
    devices:
      - {mac: "02:00:00:00:00:21", name: "Bob's tablet"}
    schedules:
      - {name: bedtime, days: [daily], from: "20:00", to: "07:00", action: offline}
trusted:
  - {mac: "02:00:00:00:00:31", name: "Parent's laptop"}
`

// Three rpcd logins: the parent (famguard read + write; "$1$" hash of
// "secret", as `uhttpd -m secret` writes it), a viewer (read only) and
// another account without famguard's groups.
const pageRPCDConfig = `config login
	option username 'parent'
	option password '$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1'
	list read 'famguard'
	list write 'famguard'

config login
	option username 'viewer'
	option password 'viewer-pw'
	list read 'famguard-read'

config login
	option username 'other'
	option password 'other-pw'
	list read 'luci-*'
	list write 'luci-*'
`

const guestMAC = "02:00:00:00:00:41"

func TestParentsPage(t *testing.T) {
	lab.RequireRoot(t)
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("the page test needs Node.js (scripts/install-deps.sh installs it)")
	}
	if _, err := os.Stat("/usr/bin/chromium"); err != nil {
		t.Fatal("the page test needs Debian's chromium (scripts/install-deps.sh installs it)")
	}
	pagetest := repoFile(t, "scripts/pagetest")
	if _, err := os.Stat(filepath.Join(pagetest, "node_modules", "playwright-core")); err != nil {
		npm := exec.Command("npm", "ci", "--no-audit", "--no-fund")
		npm.Dir = pagetest
		if out, err := npm.CombinedOutput(); err != nil {
			t.Fatalf("npm ci in scripts/pagetest: %v\n%s", err, out)
		}
	}

	prefix := fmt.Sprintf("fgp%d%d", os.Getpid()%1000, labSeq.Add(1))
	ctx := context.Background()
	l, err := lab.New(ctx, prefix, []lab.DeviceSpec{
		{Name: "alice", MAC: aliceMAC}, {Name: "bob", MAC: bobMAC}, {Name: "parent", MAC: parentMAC}, {Name: "guest", MAC: guestMAC},
	})
	if err != nil {
		t.Fatalf("building the lab: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("removing the lab: %v", err)
		}
	})
	srv := l.Cmd(ctx, l.Internet, binary(t, "labhost"), "serve", "--addr", "[::]:8080")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })

	dir := t.TempDir()
	profiles, state := filepath.Join(dir, "profiles.d"), filepath.Join(dir, "state")
	for _, d := range []string{profiles, filepath.Join(dir, "acl.d"), filepath.Join(dir, "libexec-rpcd")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(profiles, "family.yaml"), pageProfile)
	// Thursday 21:00 in Berlin: Alice is online, Bob is in bedtime.
	a := startAgent(t, l, profiles, state, "2026-11-26T21:00:00+01:00", "--lan", "br-lan")
	// The guest device must have been seen on the LAN to be listed.
	_, _ = l.Run(ctx, l.Devices["guest"], "ping", "-c", "1", "-W", "1", lab.RouterLAN4.String())

	// The rpcd side: the package's ACL file, a UCI login file, and the
	// plugin wrapper pointing at this agent.
	aclDir, plugins := filepath.Join(dir, "acl.d"), filepath.Join(dir, "libexec-rpcd")
	acl, err := os.ReadFile(repoFile(t, "openwrt/famguard/files/rpcd-acl.json"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(aclDir, "famguard.json"), string(acl))
	writeFile(t, filepath.Join(dir, "rpcd.uci"), pageRPCDConfig)
	writeFile(t, filepath.Join(plugins, "famguard"), fmt.Sprintf("#!/bin/sh\nexec %s rpcd --state %s --profiles %s \"$@\"\n",
		binary(t, "famguard"), state, profiles))
	if err := os.Chmod(filepath.Join(plugins, "famguard"), 0o755); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	emu := exec.Command(binary(t, "ubusemu"), "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--www", repoFile(t, "openwrt/famguard/www"),
		"--acl", aclDir, "--rpcd-config", filepath.Join(dir, "rpcd.uci"), "--plugins", plugins)
	emuLog := &lab.SyncBuffer{}
	emu.Stdout, emu.Stderr = emuLog, emuLog
	if err := emu.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emu.Process.Kill(); _ = emu.Wait() })
	waitListening(t, port)

	// FG_CHECK: "online" on an HTTP 200 from the internet host, "blocked"
	// only when the connection was refused (a REJECT), anything else is
	// unclear and fails the flow.
	check := filepath.Join(dir, "check.sh")
	writeFile(t, check, fmt.Sprintf(`#!/bin/sh
case "$1" in
alice) ns=%s ;; bob) ns=%s ;; *) echo "unknown child $1"; exit 1 ;;
esac
code=$(nsenter --net=%s/$ns -- curl -s -o /dev/null -w '%%{http_code}' --max-time 2 http://%s:8080/)
rc=$?
if [ "$code" = 200 ]; then echo online; elif [ $rc = 7 ]; then echo blocked; else echo "unclear (curl $rc)"; fi
`, l.Devices["alice"].NS, l.Devices["bob"].NS, lab.NetnsDir, lab.InternetIPv4))
	// FG_STEP_CMD: the flows ask the test to change the world between
	// phases (restart the agent with an untrusted clock).
	fifo := filepath.Join(dir, "step.fifo")
	if out, err := exec.Command("mkfifo", fifo).CombinedOutput(); err != nil {
		t.Fatalf("mkfifo: %v %s", err, out)
	}
	step := filepath.Join(dir, "step.sh")
	writeFile(t, step, fmt.Sprintf("#!/bin/sh\necho \"$1\" > %s\nwhile [ ! -e %s/step.\"$1\".done ]; do sleep 0.1; done\n", fifo, dir))
	for _, f := range []string{check, step} {
		if err := os.Chmod(f, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	stepErr := make(chan error, 1)
	go func() {
		data, err := os.ReadFile(fifo) // blocks until the flows ask
		if err != nil {
			stepErr <- err
			return
		}
		name := strings.TrimSpace(string(data))
		var serr error
		if name == "untrusted-clock" {
			// A router that booted without a clock: real time, not
			// synchronised, only the ntp hotplug signal will say so.
			a.stop()
			a.extra = append(a.extra, "--boot-policy", "saved", "--clock-trust", "signal")
			a.launch("")
			serr = waitUntrusted(a)
		}
		_ = os.WriteFile(filepath.Join(dir, "step."+name+".done"), nil, 0o644)
		stepErr <- serr
	}()

	shots := repoFile(t, "dist/page-screenshots")
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	flows := exec.Command(node, "flows.mjs")
	flows.Dir = pagetest
	flows.Env = append(os.Environ(),
		fmt.Sprintf("FG_URL=http://127.0.0.1:%d/famguard/", port), "FG_SHOTS="+shots, "FG_CHECK="+check, "FG_STEP_CMD="+step,
		"FG_PARENT=parent:secret", "FG_VIEWER=viewer:viewer-pw", "FG_OTHER=other:other-pw",
		"FG_DAY_CHILD=alice", "FG_BEDTIME_CHILD=bob", "FG_UNKNOWN_MAC="+guestMAC)
	out, runErr := flows.CombinedOutput()
	passed := 0
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line := sc.Text()
		t.Log(line)
		switch {
		case strings.HasPrefix(line, "PASS "):
			passed++
		case strings.HasPrefix(line, "FAIL "):
			t.Error(line)
		}
	}
	if runErr != nil || passed < 20 {
		t.Errorf("flows: %v, %d passed; agent log:\n%s\nubusemu log:\n%s", runErr, passed, a.log.String(), emuLog.String())
	}
	select {
	case err := <-stepErr:
		if err != nil {
			t.Errorf("restarting the agent with an untrusted clock: %v", err)
		}
	default:
		t.Error("the flows never reached the untrusted-clock phase")
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func waitListening(t *testing.T, port int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return
		}
	}
	t.Fatalf("nothing listens on 127.0.0.1:%d", port)
}

// waitUntrusted waits for a restarted agent to answer with an untrusted
// clock (and a policy in force).
func waitUntrusted(a *agent) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if st, err := a.statusErr(); err == nil && st.Policy != nil && !st.Clock.Trusted {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("the restarted agent never reported an untrusted clock; log:\n%s", a.log.String())
}
