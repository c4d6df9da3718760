package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func namespaces(t *testing.T, prefix string) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	var ns []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], prefix) {
			ns = append(ns, f[0])
		}
	}
	return ns
}

func TestLabBuildsAndCleansUp(t *testing.T) {
	RequireRoot(t)
	prefix := fmt.Sprintf("fgl%d", os.Getpid()%10000)
	ctx := context.Background()
	l, err := New(ctx, prefix, []DeviceSpec{{"kid", "02:00:00:00:00:11"}, {"mum", "02:00:00:00:00:31"}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := len(namespaces(t, prefix)); got != 4 {
		t.Errorf("%d namespaces, want 4 (router, internet, 2 devices)", got)
	}
	// Through netlink: /sys is the caller's (lab.InNS switches only the
	// network namespace).
	out, err := l.Run(ctx, l.Devices["kid"], "ip", "-o", "link", "show", "dev", "eth0")
	if err != nil || !strings.Contains(out, "link/ether 02:00:00:00:00:11 ") {
		t.Errorf("kid's MAC = %q, %v", out, err)
	}
	for _, target := range []string{"198.51.100.10", "2001:db8:2::10"} {
		if _, err := l.Run(ctx, l.Devices["mum"], "ping", "-c1", "-W1", target); err != nil {
			t.Errorf("mum cannot reach %s: %v", target, err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if left := namespaces(t, prefix); len(left) != 0 {
		t.Errorf("namespaces left after Close: %v", left)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestLabFailureCleansUp(t *testing.T) {
	RequireRoot(t)
	prefix := fmt.Sprintf("fgf%d", os.Getpid()%10000)
	// An invalid MAC makes the second device fail halfway.
	_, err := New(context.Background(), prefix, []DeviceSpec{{"a", "02:00:00:00:00:11"}, {"b", "not-a-mac"}})
	if err == nil {
		t.Fatal("New with a bad MAC succeeded")
	}
	if left := namespaces(t, prefix); len(left) != 0 {
		t.Errorf("namespaces left after a failed New: %v", left)
	}
}
