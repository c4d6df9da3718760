// Command famguard-demo is `make demo`: it builds a network-namespace lab
// (a router, Alice's phone, Bob's tablet, a parent's laptop and an
// "internet" host), runs the real agent in the router on a simulated clock
// that starts 15 seconds before Alice's bedtime, and prints a live timeline:
// every second, which device reaches the internet over IPv4 and IPv6 and
// why, as the agent explains it. Along the way it opens a TCP stream from
// Alice's phone (cut at bedtime), edits the profile as a parent would (Bob's
// bedtime moves earlier, live within a second) and flushes the whole
// firewall as `service firewall stop` would (healed within seconds).
//
// The lab is removed at the end, on Ctrl-C and on any failure.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/famguard/famguard/agent/control"
	"github.com/famguard/famguard/agent/daemon"
	"github.com/famguard/famguard/agent/tz"
	"github.com/famguard/famguard/scripts/lab"
)

var (
	agentBin   = flag.String("agent", "bin/famguard", "the famguard binary")
	labhostBin = flag.String("labhost", "bin/labhost", "the labhost binary")
	seconds    = flag.Int("seconds", 50, "how long the timeline runs")
)

const profileTemplate = `# The demo family. The parent's laptop is trusted: famguard leaves it alone
# (a device in no list would be an unknown device: offline until assigned).
version: 1
timezone: Europe/Berlin
children:
  alice:
    devices:
      - {mac: "02:00:00:00:00:11", name: "Alice's phone"}
    schedules:
      - {name: bedtime, days: [daily], from: "21:00", to: "07:00", action: offline}
  bob:
    devices:
      - {mac: "02:00:00:00:00:21", name: "Bob's tablet"}
    block: [adult]
    schedules:
      - {name: homework, days: [mon-fri], from: "20:00", to: "21:00", block: [games, social]}
      - {name: bedtime, days: [daily], from: "BOBTIME", to: "07:00", action: offline}
trusted:
  - {mac: "02:00:00:00:00:31", name: "Parent's laptop"}
`

// A Thursday evening in Berlin, 15 s before Alice's bedtime.
var start = time.Date(2026, 11, 26, 20, 59, 45, 0, mustZone("Europe/Berlin"))

func mustZone(name string) *time.Location {
	l, err := tz.Load(name)
	if err != nil {
		panic(err)
	}
	return l
}

type palette struct{ green, red, yellow, dim, bold, reset string }

var colour palette

func main() {
	flag.Parse()
	if fi, err := os.Stdout.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 && os.Getenv("NO_COLOR") == "" {
		colour = palette{"\033[32m", "\033[31m", "\033[33m", "\033[2m", "\033[1m", "\033[0m"}
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "famguard demo: needs root to create network namespaces (run `sudo make demo`)")
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Println("\ninterrupted; the lab has been removed")
			os.Exit(130)
		}
		fmt.Fprintln(os.Stderr, "famguard demo failed:", err)
		os.Exit(1)
	}
}

// procs are the processes the demo started, ended by PID on the way out.
type procs struct {
	mu   sync.Mutex
	list []*exec.Cmd
}

func (p *procs) start(c *exec.Cmd) error {
	if err := c.Start(); err != nil {
		return err
	}
	p.mu.Lock()
	p.list = append(p.list, c)
	p.mu.Unlock()
	return nil
}

func (p *procs) stopAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.list) - 1; i >= 0; i-- {
		c := p.list[i]
		_ = c.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			_ = c.Process.Kill()
		}
	}
	p.list = nil
}

func run(ctx context.Context) (err error) {
	agent, err := filepath.Abs(*agentBin)
	if err != nil {
		return err
	}
	labhost, err := filepath.Abs(*labhostBin)
	if err != nil {
		return err
	}
	for _, b := range []string{agent, labhost} {
		if _, err := os.Stat(b); err != nil {
			return fmt.Errorf("%s is missing: run `make build` first", b)
		}
	}
	tmp, err := os.MkdirTemp("", "famguard-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	fmt.Printf("%sBuilding the lab%s: a router, Alice's phone, Bob's tablet, a parent's laptop, an internet host …\n", colour.bold, colour.reset)
	prefix := fmt.Sprintf("fgdemo%d", os.Getpid()%10000)
	l, err := lab.New(ctx, prefix, []lab.DeviceSpec{
		{Name: "alice", MAC: "02:00:00:00:00:11"},
		{Name: "bob", MAC: "02:00:00:00:00:21"},
		{Name: "parent", MAC: "02:00:00:00:00:31"},
	})
	if err != nil {
		return err
	}
	var ps procs
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
		ps.stopAll()
		if cerr := l.Close(); cerr != nil {
			fmt.Fprintln(os.Stderr, "removing the lab:", cerr)
		} else {
			fmt.Printf("%sLab removed.%s\n", colour.dim, colour.reset)
		}
	}()
	if err := ps.start(l.Cmd(ctx, l.Internet, labhost, "serve")); err != nil {
		return err
	}

	profiles := filepath.Join(tmp, "profiles.d")
	state := filepath.Join(tmp, "state")
	catsDir := filepath.Join(tmp, "categories.d")
	for _, dir := range []string{profiles, catsDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	// A tiny category list, so Bob's always-on block has something to use.
	if err := os.WriteFile(filepath.Join(catsDir, "adult.txt"), []byte("adult.example\n"), 0o644); err != nil {
		return err
	}
	profile := filepath.Join(profiles, "family.yaml")
	if err := writeAtomic(profile, strings.Replace(profileTemplate, "BOBTIME", "21:30", 1)); err != nil {
		return err
	}
	fmt.Printf("Profile %s:\n%s%s%s\n", profile, colour.dim, strings.Replace(profileTemplate, "BOBTIME", "21:30", 1), colour.reset)

	agentCmd := l.Cmd(ctx, l.Router, agent, "run", "--profiles", profiles, "--state", state,
		"--categories", catsDir, "--clock", start.Format(time.RFC3339), "--heal-interval", "1s")
	agentLog, err := agentCmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := ps.start(agentCmd); err != nil {
		return err
	}
	events := make(chan string, 100)
	go relayEvents(agentLog, events)
	if err := waitAgent(ctx, state); err != nil {
		return err
	}
	fmt.Printf("%sAgent running in the router namespace; its clock starts at %s (Alice's bedtime is 21:00).%s\n\n",
		colour.bold, start.Format("Mon 15:04:05 MST"), colour.reset)

	// Alice opens a long-lived TCP stream before bedtime.
	stream := l.Cmd(ctx, l.Devices["alice"], labhost, "stream", "--to", lab.InternetIPv4.String()+":9000", "--timeout", "1s")
	streamOut, _ := stream.StdoutPipe()
	stream.Stderr = stream.Stdout
	if err := ps.start(stream); err != nil {
		return err
	}
	streamState := &streamWatch{state: "open"}
	go streamState.follow(streamOut)

	hosts := []*lab.Host{l.Devices["alice"], l.Devices["bob"], l.Devices["parent"]}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for i := 0; i < *seconds; i++ {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		switch i {
		case 25:
			say(events, "parent edits the profile: Bob's bedtime moves from 21:30 to 21:00 tonight")
			if err := writeAtomic(profile, strings.Replace(profileTemplate, "BOBTIME", "21:00", 1)); err != nil {
				return err
			}
		case 35:
			say(events, "someone runs `nft flush ruleset` (what `service firewall stop` does)")
			if _, err := l.Run(ctx, l.Router, "nft", "flush", "ruleset"); err != nil {
				return err
			}
		}
		if err := printTick(ctx, l, hosts, state, streamState, events); err != nil {
			return err
		}
	}
	fmt.Printf("\n%sDone.%s The agent keeps its rules on SIGTERM; `famguard cleanup` removes them. Stopping and removing the lab …\n", colour.bold, colour.reset)
	return nil
}

func say(events chan<- string, s string) {
	select {
	case events <- "demo: " + s:
	default:
	}
}

// relayEvents passes the agent's log lines that a parent cares about.
func relayEvents(r interface{ Read([]byte) (int, error) }, events chan<- string) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		msg := line
		if i := strings.Index(line, `msg="`); i >= 0 {
			msg = line[i+5:]
			if j := strings.Index(msg, `"`); j >= 0 {
				msg = msg[:j]
			}
		}
		for _, key := range []string{"is now offline", "is online again", "restoring", "loaded", "rejected", "cut live connections"} {
			if strings.Contains(msg, key) {
				select {
				case events <- "agent: " + strings.ReplaceAll(msg, `\"`, `"`):
				default:
				}
				break
			}
		}
	}
}

func waitAgent(ctx context.Context, state string) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var st daemon.Status
		c, cancel := context.WithTimeout(ctx, time.Second)
		err := control.Call(c, state, "status", &st)
		cancel()
		if err == nil && st.Policy != nil && st.Dataplane.Applies > 0 {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("the agent did not come up within 10 s")
}

type streamWatch struct {
	mu    sync.Mutex
	state string
}

func (s *streamWatch) follow(r interface{ Read([]byte) (int, error) }) {
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		line := sc.Text()
		s.mu.Lock()
		if strings.Contains(line, "stream") && !strings.Contains(line, "chunk") {
			s.state = "cut: " + strings.TrimSpace(line[strings.Index(line, "stream"):])
		} else {
			n++
			s.state = fmt.Sprintf("open, %d chunks received", n)
		}
		s.mu.Unlock()
	}
}

func (s *streamWatch) get() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// reach tries an HTTP request from h to the internet host.
func reach(ctx context.Context, l *lab.Lab, h *lab.Host, v6 bool) bool {
	url := "http://" + lab.InternetIPv4.String() + ":8080/"
	if v6 {
		url = "http://[" + lab.InternetIPv6.String() + "]:8080/"
	}
	c, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	out, err := l.Run(c, h, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "1", url)
	return err == nil && strings.TrimSpace(out) == "200"
}

func printTick(ctx context.Context, l *lab.Lab, hosts []*lab.Host, state string, stream *streamWatch, events <-chan string) error {
	for {
		select {
		case e := <-events:
			fmt.Printf("          %s▶ %s%s\n", colour.yellow, e, colour.reset)
			continue
		default:
		}
		break
	}
	var st daemon.Status
	c, cancel := context.WithTimeout(ctx, 2*time.Second)
	err := control.Call(c, state, "status", &st)
	cancel()
	if err != nil {
		return fmt.Errorf("asking the agent: %w", err)
	}
	byMAC := map[string]daemon.DeviceStatus{}
	for _, d := range st.Devices {
		byMAC[d.MAC] = d
	}
	type result struct{ v4, v6 bool }
	res := make([]result, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		go func(i int, h *lab.Host) {
			defer wg.Done()
			res[i] = result{reach(ctx, l, h, false), reach(ctx, l, h, true)}
		}(i, h)
	}
	wg.Wait()
	loc := mustZone("Europe/Berlin")
	fmt.Printf("%s%s%s\n", colour.bold, st.Clock.Now.In(loc).Format("15:04:05"), colour.reset)
	for i, h := range hosts {
		why := "not in any profile: famguard leaves it alone"
		if d, ok := byMAC[h.MAC]; ok {
			why = d.Reason
			if d.Until != nil {
				why += ", until " + d.Until.In(loc).Format("Mon 15:04")
			}
		}
		extra := ""
		if h.Name == "alice" {
			extra = fmt.Sprintf("   %s[TCP stream opened before bedtime: %s]%s", colour.dim, stream.get(), colour.reset)
		}
		fmt.Printf("  %-7s IPv4 %s  IPv6 %s  %s%s\n", h.Name, mark(res[i].v4), mark(res[i].v6), why, extra)
	}
	return nil
}

func mark(ok bool) string {
	if ok {
		return colour.green + "✓ online " + colour.reset
	}
	return colour.red + "✗ blocked" + colour.reset
}

func writeAtomic(path, content string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
