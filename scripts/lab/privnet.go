package lab

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// privateEnv marks a test binary that already runs in its own namespace.
const privateEnv = "FAMGUARD_TEST_NETNS"

// MainInPrivateNetns is a TestMain for packages whose tests call iptables or
// netlink directly (not through a lab): as root, it re-runs the test binary
// under `unshare -n`, in a fresh and empty network namespace, so nothing the
// tests do can reach the host's own firewall, links or conntrack table.
func MainInPrivateNetns(m *testing.M) {
	if os.Geteuid() == 0 && os.Getenv(privateEnv) == "" {
		cmd := exec.Command("unshare", append([]string{"-n", os.Args[0]}, os.Args[1:]...)...)
		cmd.Env = append(os.Environ(), privateEnv+"=1")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			if ee, ok := err.(*exec.ExitError); ok {
				os.Exit(ee.ExitCode())
			}
			fmt.Fprintln(os.Stderr, "unshare -n:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// RequirePrivateNetns skips (or, with CI=true, fails) a test that needs the
// private namespace MainInPrivateNetns provides only to root.
func RequirePrivateNetns(t testing.TB) {
	t.Helper()
	if os.Getenv(privateEnv) != "" {
		return
	}
	msg := "needs root (runs inside a private network namespace; try `sudo make test`)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + "; CI must run it, not skip it")
	}
	t.Skip(msg)
}
