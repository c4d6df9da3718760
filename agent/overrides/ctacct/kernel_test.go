package ctacct

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/famguard/famguard/rules"
	"github.com/famguard/famguard/scripts/lab"
)

// TestKernelCost measures one accounting pass on the real kernel at 250
// devices × N connections: the test re-runs itself inside a network
// namespace of its own (lab.InNS), turns on conntrack byte counters
// there (never on the host), inserts marked entries over netlink and times
// Sample. Figures go to the log (and README's Tests and measurements).
func TestKernelCost(t *testing.T) {
	if os.Getenv("FG_CTACCT_IN_NS") == "1" {
		kernelCost(t)
		return
	}
	lab.RequireRoot(t)
	ns := fmt.Sprintf("fgct%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	defer exec.Command("ip", "netns", "del", ns).Run()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// lab.InNS, not `ip netns exec`: that fails where "/" is not a mount
	// point (a chroot or container).
	argv := lab.InNS(ns, os.Args[0], "-test.run", "^TestKernelCost$", "-test.v", "-test.count=1")
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "FG_CTACCT_IN_NS=1")
	out, err := cmd.CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "kernel_test.go") || strings.Contains(line, "FAIL") {
			t.Log(strings.TrimSpace(line))
		}
	}
	if err != nil {
		t.Fatalf("inside the namespace: %v\n%s", err, out)
	}
}

func kernelCost(t *testing.T) {
	if err := os.WriteFile(AcctSysctl, []byte("1\n"), 0o644); err != nil {
		t.Fatalf("turning on conntrack accounting in the lab namespace: %v", err)
	}
	if on, err := Enabled(); err != nil || !on {
		t.Fatalf("Enabled() = %v, %v after turning it on", on, err)
	}
	const devices = 250
	for _, perDevice := range []int{4, 20, 40} {
		if err := netlink.ConntrackTableFlush(netlink.ConntrackTable); err != nil {
			t.Fatal(err)
		}
		n := 0
		for d := 1; d <= devices; d++ {
			for c := 0; c < perDevice; c++ {
				src := net.IPv4(10, byte(d>>8), byte(d), byte(c%250+1)).To4()
				dst := net.IPv4(198, 51, 100, 10).To4()
				f := &netlink.ConntrackFlow{
					FamilyType: unix.AF_INET,
					Forward:    netlink.IPTuple{Protocol: 6, SrcIP: src, DstIP: dst, SrcPort: uint16(20000 + c), DstPort: 443},
					Reverse:    netlink.IPTuple{Protocol: 6, SrcIP: dst, DstIP: src, SrcPort: 443, DstPort: uint16(20000 + c)},
					Mark:       rules.DeviceMark(uint16(d)),
					TimeOut:    600,
					ProtoInfo:  &netlink.ProtoInfoTCP{State: 3}, // established
				}
				if err := netlink.ConntrackCreate(netlink.ConntrackTable, unix.AF_INET, f); err != nil {
					t.Fatalf("inserting entry %d: %v", n, err)
				}
				n++
			}
		}
		r := New(nil)
		if _, err := r.Sample(); err != nil {
			t.Fatal(err)
		}
		if r.Entries != n {
			flows, _ := netlink.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
			for i, f := range flows {
				if i < 3 {
					t.Logf("%d of %d: %s", i, len(flows), f)
				}
			}
			t.Fatalf("Sample saw %d marked entries, inserted %d", r.Entries, n)
		}
		const passes = 5
		var ru0, ru1 unix.Rusage
		runtime.GC()
		unix.Getrusage(unix.RUSAGE_SELF, &ru0)
		start := time.Now()
		for i := 0; i < passes; i++ {
			if _, err := r.Sample(); err != nil {
				t.Fatal(err)
			}
		}
		wall := time.Since(start) / passes
		unix.Getrusage(unix.RUSAGE_SELF, &ru1)
		cpu := (time.Duration(ru1.Utime.Nano()-ru0.Utime.Nano()) + time.Duration(ru1.Stime.Nano()-ru0.Stime.Nano())) / passes
		t.Logf("accounting pass, %d devices × %d connections (%d entries): %v wall, %v CPU (user+sys) per pass = %.3f%% of a core at one pass a minute",
			devices, perDevice, n, wall.Round(10*time.Microsecond), cpu.Round(10*time.Microsecond), 100*cpu.Seconds()/60)
	}
}
