// Package lab builds famguard's network-namespace lab on the real kernel: a
// router namespace with a LAN bridge, one namespace per device (each with
// its own MAC), and an "internet" host behind the router's WAN link. The end
// to end tests, the demo and the benchmarks all use it, so they all exercise
// the same topology.
//
//	device ns (eth0, MAC) ──veth── br-lan [router ns] wan ──veth── eth0 [inet ns]
//	192.0.2.(10+i)/24                192.0.2.1        198.51.100.1   198.51.100.10
//	2001:db8:1::(10+i)/64            2001:db8:1::1    2001:db8:2::1  2001:db8:2::10
//
// Only documentation address ranges are used, forwarding is enabled inside
// the router namespace only, and everything the lab creates is a namespace
// named with its prefix, so Close (or Sweep after a crash) removes it all:
// the host's own network is never touched.
package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// DeviceSpec describes one LAN device.
type DeviceSpec struct {
	Name string // short: it becomes part of namespace and interface names
	MAC  string
}

// Host is one namespace of the lab.
type Host struct {
	Name, NS, MAC string
	IPv4, IPv6    netip.Addr
}

// Lab is a built lab.
type Lab struct {
	Prefix   string
	Router   *Host
	Internet *Host
	Devices  map[string]*Host
	Order    []*Host // devices in the order given
	made     []string
}

// Addresses of the fixed hosts.
var (
	RouterLAN4   = netip.MustParseAddr("192.0.2.1")
	RouterLAN6   = netip.MustParseAddr("2001:db8:1::1")
	InternetIPv4 = netip.MustParseAddr("198.51.100.10")
	InternetIPv6 = netip.MustParseAddr("2001:db8:2::10")
)

// New builds a lab; on any error it removes what it made.
func New(ctx context.Context, prefix string, devices []DeviceSpec) (_ *Lab, err error) {
	if len(devices) > 200 {
		return nil, errors.New("lab: at most 200 devices")
	}
	l := &Lab{Prefix: prefix, Devices: map[string]*Host{}}
	defer func() {
		if err != nil {
			_ = l.Close()
		}
	}()
	l.Router = &Host{Name: "router", NS: prefix + "-router", IPv4: RouterLAN4, IPv6: RouterLAN6}
	l.Internet = &Host{Name: "internet", NS: prefix + "-inet", IPv4: InternetIPv4, IPv6: InternetIPv6}
	for _, h := range []*Host{l.Router, l.Internet} {
		if err := l.addNS(ctx, h.NS); err != nil {
			return nil, err
		}
	}
	r, in := l.Router.NS, l.Internet.NS
	steps := [][]string{
		InNS(r, "ip", "link", "add", "br-lan", "type", "bridge"),
		InNS(r, "ip", "link", "set", "br-lan", "up"),
		InNS(r, "ip", "addr", "add", "192.0.2.1/24", "dev", "br-lan"),
		InNS(r, "ip", "addr", "add", "2001:db8:1::1/64", "dev", "br-lan", "nodad"),
		InNS(r, "ip", "link", "add", "wan", "type", "veth", "peer", "name", "eth0", "netns", in),
		InNS(r, "ip", "link", "set", "wan", "up"),
		InNS(r, "ip", "addr", "add", "198.51.100.1/24", "dev", "wan"),
		InNS(r, "ip", "addr", "add", "2001:db8:2::1/64", "dev", "wan", "nodad"),
		InNS(r, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"),
		InNS(in, "ip", "link", "set", "eth0", "up"),
		InNS(in, "ip", "addr", "add", "198.51.100.10/24", "dev", "eth0"),
		InNS(in, "ip", "addr", "add", "2001:db8:2::10/64", "dev", "eth0", "nodad"),
		InNS(in, "ip", "route", "add", "192.0.2.0/24", "via", "198.51.100.1"),
		InNS(in, "ip", "-6", "route", "add", "2001:db8:1::/64", "via", "2001:db8:2::1"),
	}
	if err := run(ctx, steps); err != nil {
		return nil, err
	}
	for i, d := range devices {
		h := &Host{Name: d.Name, NS: prefix + "-" + d.Name, MAC: strings.ToLower(d.MAC),
			IPv4: netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)}),
			IPv6: netip.MustParseAddr(fmt.Sprintf("2001:db8:1::%x", 0x10+i))}
		if err := l.addNS(ctx, h.NS); err != nil {
			return nil, err
		}
		port := fmt.Sprintf("lan%d", i)
		steps := [][]string{
			InNS(r, "ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", h.NS),
			InNS(r, "ip", "link", "set", port, "master", "br-lan"),
			InNS(r, "ip", "link", "set", port, "up"),
			InNS(h.NS, "ip", "link", "set", "eth0", "address", h.MAC),
			InNS(h.NS, "ip", "link", "set", "eth0", "up"),
			InNS(h.NS, "ip", "addr", "add", h.IPv4.String()+"/24", "dev", "eth0"),
			InNS(h.NS, "ip", "addr", "add", h.IPv6.String()+"/64", "dev", "eth0", "nodad"),
			InNS(h.NS, "ip", "route", "add", "default", "via", "192.0.2.1"),
			InNS(h.NS, "ip", "-6", "route", "add", "default", "via", "2001:db8:1::1"),
		}
		if err := run(ctx, steps); err != nil {
			return nil, err
		}
		l.Devices[d.Name] = h
		l.Order = append(l.Order, h)
	}
	// Wait until every device reaches the internet host over both families
	// (bridge ports need a moment to forward).
	for _, h := range l.Order {
		if err := l.waitPing(ctx, h); err != nil {
			return nil, err
		}
	}
	return l, nil
}

func (l *Lab) addNS(ctx context.Context, ns string) error {
	if err := run(ctx, [][]string{{"ip", "netns", "add", ns}}); err != nil {
		return err
	}
	l.made = append(l.made, ns)
	return run(ctx, [][]string{
		InNS(ns, "ip", "link", "set", "lo", "up"),
		// DAD would hold IPv6 addresses back for a second or two.
		InNS(ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"),
	})
}

func (l *Lab) waitPing(ctx context.Context, h *Host) error {
	deadline := time.Now().Add(10 * time.Second)
	for _, target := range []string{InternetIPv4.String(), InternetIPv6.String()} {
		for {
			if _, err := l.Run(ctx, h, "ping", "-c1", "-W1", "-q", target); err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("lab: %s cannot ping %s after 10s", h.Name, target)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

func run(ctx context.Context, steps [][]string) error {
	for _, s := range steps {
		if out, err := exec.CommandContext(ctx, s[0], s[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("lab: %s: %v: %s", strings.Join(s, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// Close removes every namespace the lab made (their links go with them). It
// is idempotent.
func (l *Lab) Close() error {
	var errs []error
	for i := len(l.made) - 1; i >= 0; i-- {
		out, err := exec.Command("ip", "netns", "del", l.made[i]).CombinedOutput()
		if err != nil && !strings.Contains(string(out), "No such file") {
			errs = append(errs, fmt.Errorf("ip netns del %s: %v: %s", l.made[i], err, out))
		}
	}
	l.made = nil
	return errors.Join(errs...)
}

// NetnsDir is where `ip netns add` binds the lab's namespaces.
const NetnsDir = "/var/run/netns"

// InNS is the command line that runs args inside the named network
// namespace: `nsenter --net=/var/run/netns/NS -- args...`. Not `ip netns
// exec NS` nor `ip -n NS`: both first make "/" a recursive slave mount
// (`mount --make-rslave /`), which fails in a chroot or container whose "/"
// is not a mount point, where many people run the lab first. nsenter
// switches only the network namespace; the lab needs nothing else (sysctls
// under /proc/sys/net follow the network namespace of the process that
// opens them; /sys stays the caller's, so read links through netlink, e.g.
// `ip link`), and like `ip netns exec` it execs the command, so signals
// reach it directly.
func InNS(ns string, args ...string) []string {
	return append([]string{"nsenter", "--net=" + NetnsDir + "/" + ns, "--"}, args...)
}

// Cmd prepares a command inside h's namespace.
func (l *Lab) Cmd(ctx context.Context, h *Host, args ...string) *exec.Cmd {
	argv := InNS(h.NS, args...)
	return exec.CommandContext(ctx, argv[0], argv[1:]...)
}

// Run runs a command inside h's namespace and returns its combined output.
func (l *Lab) Run(ctx context.Context, h *Host, args ...string) (string, error) {
	out, err := l.Cmd(ctx, h, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s in %s: %v: %s", strings.Join(args, " "), h.Name, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Sweep removes leftover namespaces whose names start with prefix (after a
// test binary was killed before its cleanup ran).
func Sweep(prefix string) error {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return err
	}
	var errs []error
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], prefix) {
			if out, err := exec.Command("ip", "netns", "del", f[0]).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("%s: %v: %s", f[0], err, out))
			}
		}
	}
	return errors.Join(errs...)
}

// RequireRoot skips a test that needs root, with a clear message; in CI
// (CI=true) it fails instead, because a skipped lab test there would hide a
// broken lab.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		if _, err := exec.LookPath("ip"); err != nil {
			t.Fatal("the lab needs iproute2 (`ip`): run scripts/install-deps.sh")
		}
		return
	}
	msg := "needs root to create network namespaces (run `sudo make test`)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + "; CI must run these tests, not skip them")
	}
	t.Skip(msg)
}

// ProcMemory reads a process's resident memory and its peak (VmRSS and
// VmHWM from /proc/PID/status), in KiB; zeros when the process is gone.
func ProcMemory(pid int) (rssKiB, peakKiB int) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.Atoi(f[1])
		switch f[0] {
		case "VmRSS:":
			rssKiB = v
		case "VmHWM:":
			peakKiB = v
		}
	}
	return rssKiB, peakKiB
}

// SyncBuffer collects a process's output (stdout and stderr written from
// two goroutines) so that it can be shown when something fails.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
