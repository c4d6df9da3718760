// Command iperf-bench measures what famguard costs on the packet path: the
// forwarded TCP throughput of a device through the lab router, with iperf3,
// in three configurations measured alternately in one run:
//
//   - none:      the router's own firewall only (as on OpenWrt: fw4 accepts
//     established and related flows first, so connection tracking is on);
//   - famguard:  the agent with 250 protected devices configured (249 of
//     them offline, so 249 per-device rules exist; the measuring device is
//     online);
//   - naive:     the same 249 MAC rules written straight into FORWARD,
//     the way a simple tool would, for comparison.
//
// famguard lets only packets outside established flows into its chain, so
// its cost must not grow with the number of devices; the naive layout makes
// every packet walk every rule. The "bare" line (no firewall at all, so no
// connection tracking) is printed for scale only: no real router runs so.
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

func profile(n int) string {
	var b strings.Builder
	b.WriteString("version: 1\ntimezone: UTC\nchildren:\n  tester:\n    devices: [{mac: \"02:00:00:00:00:11\"}]\n    schedules: [{name: never, days: [sat], from: \"00:00\", to: \"00:01\", action: offline}]\n  others:\n    schedules: [{name: all-day, days: daily, from: \"00:00\", to: \"24:00\", action: offline}]\n    devices:\n")
	for i := 1; i < n; i++ {
		fmt.Fprintf(&b, "      - {mac: \"%s\"}\n", mac(i))
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
	profiles, state := filepath.Join(tmp, "profiles.d"), filepath.Join(tmp, "state")
	if err := os.MkdirAll(profiles, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(profiles, "bench.yaml"), []byte(profile(*devices)), 0o644); err != nil {
		return err
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

	configs := []string{"none", "famguard", "naive"}
	results := map[string][]float64{}
	for r := 0; r < *rounds; r++ {
		// Rotate the order every round so that no configuration always
		// runs right after another (the machine is noisy and stateful).
		order := append(append([]string(nil), configs[r%len(configs):]...), configs[:r%len(configs)]...)
		for _, c := range order {
			var agentCmd *exec.Cmd
			switch c {
			case "famguard":
				// --boot-policy schedule: trust the clock at once. The
				// default (saved) waits for an NTP sync signal that the lab
				// never sends, and meanwhile puts devices with an offline
				// window offline — the tester too, which then measured 0.
				agentCmd = l.Cmd(ctx, l.Router, agent, "run", "--profiles", profiles, "--state", state, "--categories", tmp, "--boot-policy", "schedule")
				if err := agentCmd.Start(); err != nil {
					return err
				}
				if err := waitRules(ctx, l, *devices-1); err != nil {
					return err
				}
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
			results[c] = append(results[c], gbps)
			fmt.Printf("round %d %-9s %6.2f Gbit/s\n", r+1, c, gbps)
			switch c {
			case "famguard":
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
	}
	base := median(results["none"])
	fmt.Printf("\nForwarded TCP throughput, tester → internet host, median of %d × %d s (iperf3, one stream):\n", *rounds, *secs)
	for _, c := range configs {
		m := median(results[c])
		lo, hi := spread(results[c])
		fmt.Printf("  %-9s %6.2f Gbit/s (runs %.2f–%.2f)  ratio vs none %.3f×\n", c, m, lo, hi, m/base)
	}
	fmt.Printf("  (none: the router's own conntrack rule only; famguard: %d devices configured, %d offline with rules;\n   naive: %d MAC rules at the top of FORWARD; bare, no firewall at all, for scale: %.2f Gbit/s)\n", *devices, *devices-1, *devices-1, bare)
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
	out, err := l.Cmd(ctx, h, "iperf3", "-c", lab.InternetIPv4.String(), "-t", fmt.Sprint(*secs), "-J").Output()
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
