// Command iperf-bench measures what famguard costs on the packet path: the
// forwarded TCP throughput of a device through the lab router, with iperf3,
// in four configurations measured interleaved in one run (the order rotates
// every round, and each round's figures are divided by that round's "none",
// so the load of other programs on the machine cancels out as far as it can):
//
//   - none:        the router's own firewall only (as on OpenWrt: fw4
//     accepts established and related flows first, so connection tracking
//     is on);
//   - famguard-10: the agent with 250 managed devices, 10 of them offline
//     (the everyday case; the measuring device is online), LAN br-lan, DNS
//     filtering on (a port per class), unknown devices offline;
//   - famguard-all: the same with 249 of the 250 offline (the stress case);
//   - naive:       249 MAC rules written straight into FORWARD, the way a
//     simple tool would, for comparison;
//   - acct:        famguard-10 with daily-budget accounting on: the kernel's
//     per-connection byte counters (nf_conntrack_acct=1, in the lab router
//     only) and the agent dumping them every second (--account-every 1s,
//     60 times its default).
//
// Every packet of an established connection costs famguard one connmark
// test in mangle PREROUTING, a jump and two tests in filter FORWARD (the
// offline mark, then the established shortcut): the cost must not grow with
// the number of devices. The naive layout makes every packet walk every
// rule. The "bare" line (no firewall at all, so no connection tracking) is
// printed for scale only: no real router runs so.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/famguard/famguard/scripts/lab"
)

var (
	agentBin = flag.String("agent", "bin/famguard", "the famguard binary")
	rounds   = flag.Int("rounds", 6, "measurements per configuration (alternating, order rotated)")
	secs     = flag.Int("seconds", 3, "iperf3 duration per measurement")
	devices  = flag.Int("devices", 250, "protected devices configured")
	settle   = flag.Duration("settle", 2*time.Second, "pause between the agent's rules being in place and the measurement")
	debug    = flag.Bool("debug", false, "print the router's rules with counters after each famguard measurement")
	reverse  = flag.Bool("reverse", false, "measure internet host → tester (iperf3 -R): the data comes in from the WAN, past the inbound guard's -o LAN test")
)

func main() {
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "iperf-bench: needs root for the network-namespace lab")
		os.Exit(1)
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "iperf-bench:", err)
		os.Exit(1)
	}
}

func mac(i int) string { return fmt.Sprintf("02:00:00:01:%02x:%02x", i>>8, i&0xff) }

// profile is n managed devices: the tester (online: its one offline window
// is a minute a week) and n-1 others, of which offline are offline all day.
func profile(n, offline int) string {
	var b strings.Builder
	b.WriteString("version: 1\ntimezone: UTC\nchildren:\n  tester:\n    devices: [{mac: \"02:00:00:00:00:11\"}]\n    schedules: [{name: never, days: [sat], from: \"00:00\", to: \"00:01\", action: offline}]\n")
	if offline > 0 {
		b.WriteString("  sleepers:\n    schedules: [{name: all-day, days: daily, from: \"00:00\", to: \"24:00\", action: offline}]\n    devices:\n")
		for i := 1; i <= offline; i++ {
			fmt.Fprintf(&b, "      - {mac: \"%s\"}\n", mac(i))
		}
	}
	if offline < n-1 {
		b.WriteString("  awake:\n    devices:\n")
		for i := offline + 1; i < n; i++ {
			fmt.Fprintf(&b, "      - {mac: \"%s\"}\n", mac(i))
		}
	}
	return b.String()
}

func run() error {
	ctx := context.Background()
	agent, err := filepath.Abs(*agentBin)
	if err != nil {
		return err
	}
	l, err := lab.New(ctx, fmt.Sprintf("fgperf%d", os.Getpid()%10000), []lab.DeviceSpec{{Name: "tester", MAC: "02:00:00:00:00:11"}})
	if err != nil {
		return err
	}
	defer l.Close()
	server := l.Cmd(ctx, l.Internet, "iperf3", "-s")
	if err := server.Start(); err != nil {
		return err
	}
	defer func() { _ = server.Process.Signal(syscall.SIGTERM); _ = server.Wait() }()
	time.Sleep(300 * time.Millisecond)

	tmp, err := os.MkdirTemp("", "famguard-iperf-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	state, cats := filepath.Join(tmp, "state"), filepath.Join(tmp, "categories")
	if err := os.MkdirAll(cats, 0o755); err != nil {
		return err
	}
	// One profile directory per famguard configuration.
	offline := map[string]int{"famguard-10": min(10, *devices-1), "famguard-all": *devices - 1, "acct": min(10, *devices-1)}
	profiles := map[string]string{}
	for c, n := range offline {
		profiles[c] = filepath.Join(tmp, c)
		if err := os.MkdirAll(profiles[c], 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(profiles[c], "bench.yaml"), []byte(profile(*devices, n)), 0o644); err != nil {
			return err
		}
	}
	tester := l.Devices["tester"]

	bare, err := iperf(ctx, l, tester)
	if err != nil {
		return fmt.Errorf("bare: %w", err)
	}
	fmt.Printf("bare (no firewall, no conntrack) %6.2f Gbit/s\n", bare)
	// The router's own firewall, as fw4 starts its forward chain.
	if _, err := l.Run(ctx, l.Router, "iptables", "-A", "FORWARD", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"); err != nil {
		return err
	}

	configs := []string{"none", "famguard-10", "famguard-all", "naive", "acct"}
	results := map[string][]float64{}
	ratios := map[string][]float64{} // each run divided by its round's "none"
	for r := 0; r < *rounds; r++ {
		// Rotate the order every round so that no configuration always
		// runs right after another (the machine is noisy and stateful).
		order := append(append([]string(nil), configs[r%len(configs):]...), configs[:r%len(configs)]...)
		round := map[string]float64{}
		for _, c := range order {
			var agentCmd *exec.Cmd
			switch c {
			case "famguard-10", "famguard-all", "acct":
				args := []string{agent, "run", "--profiles", profiles[c], "--state", state, "--categories", cats, "--saved-state", "", "--boot-policy", "schedule",
					"--overrides", filepath.Join(tmp, "overrides.json")}
				if c == "acct" {
					args = append(args, "--account-every", "1s")
				}
				if err := setAcct(ctx, l, c == "acct"); err != nil {
					return err
				}
				agentCmd = l.Cmd(ctx, l.Router, args...)
				if *debug {
					agentCmd.Stdout, agentCmd.Stderr = os.Stdout, os.Stdout
				}
				if err := agentCmd.Start(); err != nil {
					return err
				}
				if err := waitRules(ctx, l, offline[c]); err != nil {
					return err
				}
				// Let the agent finish its start (neighbour table, the
				// first heal): what is measured is the packet path, not
				// the agent's start-up work competing for the CPU.
				time.Sleep(*settle)
			case "naive":
				var b strings.Builder
				b.WriteString("*filter\n")
				for i := 1; i < *devices; i++ {
					fmt.Fprintf(&b, "-I FORWARD %d -m mac --mac-source %s -j REJECT\n", i, mac(i))
				}
				b.WriteString("COMMIT\n")
				cmd := l.Cmd(ctx, l.Router, "iptables-restore", "--noflush")
				cmd.Stdin = strings.NewReader(b.String())
				if out, err := cmd.CombinedOutput(); err != nil {
					return fmt.Errorf("naive rules: %v %s", err, out)
				}
			}
			gbps, err := iperf(ctx, l, tester)
			if err != nil {
				return fmt.Errorf("%s: %w", c, err)
			}
			if strings.HasPrefix(c, "famguard") {
				walked, forwarded, guard, err := pathCounters(ctx, l)
				if err != nil {
					return err
				}
				inbound := fmt.Sprintf("%d entered the inbound guard", guard)
				if guard < 0 {
					inbound = "no inbound guard in the rules"
				}
				fmt.Printf("        %s: %d of %d forwarded packets walked the MAC list (the rest: one connmark test), %s\n", c, walked, forwarded, inbound)
			}
			if *debug && strings.HasPrefix(c, "famguard") {
				out, _ := l.Run(ctx, l.Router, "iptables-save", "-c")
				fmt.Println(out)
				out, _ = l.Run(ctx, l.Router, "conntrack", "-L")
				fmt.Println(out)
			}
			results[c] = append(results[c], gbps)
			round[c] = gbps
			fmt.Printf("round %d %-12s %6.2f Gbit/s\n", r+1, c, gbps)
			switch c {
			case "famguard-10", "famguard-all", "acct":
				if out, err := l.Run(ctx, l.Router, agent, "cleanup", "--state", state); err != nil {
					return fmt.Errorf("cleanup: %v %s", err, out)
				}
				_ = agentCmd.Wait()
			case "naive":
				for i := 1; i < *devices; i++ {
					if _, err := l.Run(ctx, l.Router, "iptables", "-D", "FORWARD", "1"); err != nil {
						return err
					}
				}
			}
		}
		for _, c := range configs {
			ratios[c] = append(ratios[c], round[c]/round["none"])
		}
	}
	base := median(results["none"])
	dir := "tester → internet host"
	if *reverse {
		dir = "internet host → tester"
	}
	fmt.Printf("\nForwarded TCP throughput, %s, %d rounds × %d s per configuration, interleaved (iperf3, one stream):\n", dir, *rounds, *secs)
	fmt.Printf("  %-12s %14s %17s %22s %18s\n", "config", "median Gbit/s", "runs", "ratio of medians", "median of ratios")
	for _, c := range configs {
		m := median(results[c])
		lo, hi := spread(results[c])
		rlo, rhi := spread(ratios[c])
		fmt.Printf("  %-12s %14.2f %8.2f–%-8.2f %21.3f× %10.3f× (%.3f–%.3f)\n", c, m, lo, hi, m/base, median(ratios[c]), rlo, rhi)
	}
	fmt.Printf("  (none: the router's own conntrack rule only; famguard-10 / famguard-all: %d devices configured, %d / %d offline;\n   naive: %d MAC rules at the top of FORWARD; bare, no firewall at all, for scale: %.2f Gbit/s)\n",
		*devices, offline["famguard-10"], offline["famguard-all"], *devices-1, bare)
	fmt.Printf("  acct: famguard-10 with budget accounting (conntrack byte counters, a pass every second); accounting on vs off: %.3f× (ratio of medians, same run)\n",
		median(results["acct"])/median(results["famguard-10"]))
	return nil
}

// setAcct turns the kernel's per-connection byte counters on or off in the
// lab router (new connections only; each iperf3 run opens new ones).
func setAcct(ctx context.Context, l *lab.Lab, on bool) error {
	v := "0"
	if on {
		v = "1"
	}
	if out, err := l.Run(ctx, l.Router, "sysctl", "-w", "net.netfilter.nf_conntrack_acct="+v); err != nil {
		return fmt.Errorf("nf_conntrack_acct: %v %s", err, out)
	}
	return nil
}

func waitRules(ctx context.Context, l *lab.Lab, want int) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		out, _ := l.Run(ctx, l.Router, "iptables-save", "-t", "filter")
		// want offline-device rules (the online tester also has its DNS
		// bypass-prevention rules, which are not counted).
		if strings.Count(out, "-j FAMGUARD-REJECT\n") >= want && strings.Contains(out, "-j FAMGUARD") {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("agent did not install %d device rules within 10 s", want)
}

func iperf(ctx context.Context, l *lab.Lab, h *lab.Host) (float64, error) {
	args := []string{"iperf3", "-c", lab.InternetIPv4.String(), "-t", fmt.Sprint(*secs), "-J"}
	if *reverse {
		args = append(args, "-R")
	}
	out, err := l.Cmd(ctx, h, args...).Output()
	var res struct {
		Error string `json:"error"` // set (with exit status 0 or not) when the test did not run
		End   struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if jerr := json.Unmarshal(out, &res); jerr != nil && err == nil {
		err = jerr
	}
	switch {
	case res.Error != "":
		return 0, fmt.Errorf("iperf3: %s", res.Error)
	case err != nil:
		return 0, fmt.Errorf("iperf3: %v", err)
	case res.End.SumReceived.BitsPerSecond <= 0:
		// No error and no bytes: the path is blocked or the test never
		// ran. A throughput figure of 0 is never a measurement.
		return 0, fmt.Errorf("iperf3 received nothing in %d s (is the tester offline?)", *secs)
	}
	return res.End.SumReceived.BitsPerSecond / 1e9, nil
}

func spread(v []float64) (lo, hi float64) {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[0], s[len(s)-1]
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// pathCounters reads the kernel's rule counters after a measurement: how
// many packets entered famguard's MAC list (mangle PREROUTING's jump: only
// packets of connections without a device ID) and how many were forwarded
// (filter FORWARD's jump, every forwarded packet). The cost per packet does
// not depend on the machine's load: these counts show it.
func pathCounters(ctx context.Context, l *lab.Lab) (walked, forwarded uint64, guard int64, err error) {
	count := func(table, chain, target string) (uint64, error) {
		out, err := l.Run(ctx, l.Router, "iptables-save", "-c", "-t", table)
		if err != nil {
			return 0, err
		}
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, "-A "+chain+" ") && strings.HasSuffix(line, "-j "+target) {
				var pk, by uint64
				if _, err := fmt.Sscanf(line, "[%d:%d]", &pk, &by); err == nil {
					return pk, nil
				}
			}
		}
		return 0, fmt.Errorf("no counter for %s %s -j %s", table, chain, target)
	}
	if walked, err = count("mangle", "PREROUTING", "FAMGUARD-MARK"); err != nil {
		return 0, 0, 0, err
	}
	if forwarded, err = count("filter", "FORWARD", "FAMGUARD"); err != nil {
		return 0, 0, 0, err
	}
	// The inbound guard (rules/INBOUND.md): only new connections from
	// outside the LAN may enter it, never a packet of the measured flow.
	g, gerr := count("filter", "FAMGUARD", "FAMGUARD-INBOUND")
	if gerr != nil {
		return walked, forwarded, -1, nil // no guard in the rules
	}
	return walked, forwarded, int64(g), nil
}
