// Command famguard-demo is `make demo`: it builds a network-namespace lab
// (a router, Alice's phone, Bob's tablet, a parent's laptop and an
// "internet" host), runs the real agent in the router on a simulated clock
// that starts shortly before Alice's bedtime, and tells a parent what
// happens, in a parent's words:
//
//   - blocked sites and safe search: DNS answers for Alice (a site on the
//     gambling list refused with 0.0.0.0, Google sent to its safe-search
//     address) next to the same questions from the parent's laptop;
//   - a timeline: one line per device whenever its access changes (real
//     HTTP requests over IPv4 and IPv6, with famguard's reason), and a
//     heartbeat line every 10 s when nothing changes;
//   - bedtime: Alice's phone goes offline at 21:00 and the video stream she
//     had open is cut; a parent edits the profile and Bob's bedtime moves
//     earlier, live;
//   - another program wipes the whole firewall (what `service firewall
//     stop` does on OpenWrt) and famguard restores its rules, measured;
//   - a summary of what was shown, each point checked (exit 1 if one did
//     not happen: CI runs the demo).
//
// It needs no terminal, ends by itself, and removes the lab at the end, on
// Ctrl-C and on any failure.
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
	seconds    = flag.Int("seconds", 40, "how long the timeline runs")
)

const profileTemplate = `# The demo family. The parent's laptop is trusted: famguard leaves it alone
# (a device in no list would be an unknown device: offline until assigned).
version: 1
timezone: Europe/Berlin
children:
  alice:
    devices:
      - {mac: "02:00:00:00:00:11", name: "Alice's phone"}
    block: [gambling]
    safe_search: true
    schedules:
      - {name: bedtime, days: [daily], from: "21:00", to: "07:00", action: offline}
  bob:
    devices:
      - {mac: "02:00:00:00:00:21", name: "Bob's tablet"}
    block: [adult]
    schedules:
      - {name: bedtime, days: [daily], from: "BOBTIME", to: "07:00", action: offline}
trusted:
  - {mac: "02:00:00:00:00:31", name: "Parent's laptop"}
`

// When things happen, in seconds of the timeline.
const (
	editAt = 16 // the parent moves Bob's bedtime to now
	wipeAt = 26 // another program wipes the firewall
)

// A Thursday evening in Berlin. The agent's clock starts well before
// Alice's bedtime, so the DNS part has time on a slow machine; the timeline
// then steps the clock to evening, 8 s before bedtime (the test-only
// control request clock-step of a --clock agent).
var (
	start   = time.Date(2026, 11, 26, 20, 50, 0, 0, berlin)
	evening = time.Date(2026, 11, 26, 20, 59, 52, 0, berlin)
)

var berlin = mustZone("Europe/Berlin")

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

// shown collects what the demo showed, for the summary; each point is
// checked, not assumed.
type shown struct {
	dnsBlocked, dnsParent, safeSearch, safeParent string // the answers seen
	aliceOffline, streamCut                       bool
	aliceOfflineAt                                time.Time // family time
	bobOffline                                    bool
	editApplied                                   time.Duration // profile written → Bob offline
	healed                                        time.Duration // firewall wiped → restored (0: not seen)
	parentAlwaysOnline                            bool
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

	fmt.Printf("%sBuilding a pretend home network%s: a router, Alice's phone, Bob's tablet, a parent's laptop, and \"the internet\" …\n", colour.bold, colour.reset)
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
	agentLog := &lab.SyncBuffer{}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
		ps.stopAll()
		if err != nil && !errors.Is(err, context.Canceled) {
			fmt.Fprintf(os.Stderr, "the agent's log:\n%s", agentLog.String())
		}
		if cerr := l.Close(); cerr != nil {
			fmt.Fprintln(os.Stderr, "removing the lab:", cerr)
		} else {
			fmt.Printf("%sLab removed.%s\n", colour.dim, colour.reset)
		}
	}()
	// The internet host serves web pages and a long stream; the router's own
	// DNS resolver (dnsmasq, as on OpenWrt) answers every name with it.
	if err := ps.start(l.Cmd(ctx, l.Internet, labhost, "serve")); err != nil {
		return err
	}
	if err := ps.start(l.Cmd(ctx, l.Router, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
		"--bind-interfaces", "--listen-address=127.0.0.1,192.0.2.1,2001:db8:1::1", "--pid-file=", "--user=root",
		"--address=/#/"+lab.InternetIPv4.String(), "--address=/#/"+lab.InternetIPv6.String())); err != nil {
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
	// Tiny category lists (a real one holds thousands of domains).
	for name, domains := range map[string]string{"gambling": "casino.example\n", "adult": "adult.example\n"} {
		if err := os.WriteFile(filepath.Join(catsDir, name+".txt"), []byte(domains), 0o644); err != nil {
			return err
		}
	}
	profile := filepath.Join(profiles, "family.yaml")
	first := strings.Replace(profileTemplate, "BOBTIME", "21:30", 1)
	if err := writeAtomic(profile, first); err != nil {
		return err
	}
	fmt.Printf("The family's profile (%s):\n%s%s%s\n", "family.yaml", colour.dim, first, colour.reset)

	agentCmd := l.Cmd(ctx, l.Router, agent, "run", "--profiles", profiles, "--state", state,
		"--categories", catsDir, "--saved-state", filepath.Join(tmp, "device-state.json"),
		"--clock", start.Format(time.RFC3339))
	agentCmd.Stdout, agentCmd.Stderr = agentLog, agentLog
	if err := ps.start(agentCmd); err != nil {
		return err
	}
	if err := waitAgent(ctx, state); err != nil {
		return err
	}
	fmt.Printf("%sfamguard is running on the router.%s Its clock is set to a Thursday evening; Alice's bedtime is 21:00.\n\n",
		colour.bold, colour.reset)

	var sh shown
	if err := showDNS(ctx, l, &sh); err != nil {
		return err
	}

	// Alice starts watching a video (a long-lived stream) before bedtime.
	stream := l.Cmd(ctx, l.Devices["alice"], labhost, "stream", "--to", lab.InternetIPv4.String()+":9000", "--timeout", "1s")
	streamOut, _ := stream.StdoutPipe()
	stream.Stderr = stream.Stdout
	if err := ps.start(stream); err != nil {
		return err
	}
	streamState := &streamWatch{state: "open"}
	go streamState.follow(streamOut)

	now, err := familyNow(ctx, state)
	if err != nil {
		return err
	}
	if now.Before(evening) {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := control.Call(c, state, "clock-step "+evening.Sub(now).Round(time.Second).String(), nil)
		cancel()
		if err != nil {
			return fmt.Errorf("setting the agent's clock to %s: %w", evening.Format("15:04:05"), err)
		}
	}
	fmt.Printf("%sThe evening%s (a line when something changes for a device, otherwise one every 10 s):\n", colour.bold, colour.reset)
	hosts := []*lab.Host{l.Devices["alice"], l.Devices["bob"], l.Devices["parent"]}
	last := map[string]string{}
	sh.parentAlwaysOnline = true
	var edited time.Time
	quiet := 0
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for i := 0; i < *seconds; i++ {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		switch i {
		case editAt:
			note("A parent edits the profile: Bob's bedtime moves from 21:30 to now.")
			now, err := familyNow(ctx, state)
			if err != nil {
				return err
			}
			if err := writeAtomic(profile, strings.Replace(profileTemplate, "BOBTIME", now.Add(-time.Minute).Format("15:04"), 1)); err != nil {
				return err
			}
			edited = time.Now()
		case wipeAt:
			took, err := wipeFirewall(ctx, l, state)
			if err != nil {
				return err
			}
			sh.healed = took
			note(fmt.Sprintf("Another program wiped the router's whole firewall (as \"service firewall stop\" does on OpenWrt); famguard restored its rules in %d ms.", took.Milliseconds()))
			quiet = 0
		}
		st, lines, err := observe(ctx, l, hosts, state, streamState)
		if err != nil {
			return err
		}
		clock := st.Clock.Now.In(berlin).Format("15:04:05")
		changed := false
		for _, h := range hosts {
			ln := lines[h.Name]
			if ln.text == last[h.Name] {
				continue
			}
			last[h.Name] = ln.text
			changed = true
			fmt.Printf("  %s  %-7s %s\n", clock, h.Name, ln.render())
		}
		a, b, p := lines["alice"], lines["bob"], lines["parent"]
		if a.offline() && !sh.aliceOffline && !st.Clock.Now.Before(time.Date(2026, 11, 26, 21, 0, 0, 0, berlin)) {
			sh.aliceOffline, sh.aliceOfflineAt = true, st.Clock.Now.In(berlin)
		}
		if strings.HasPrefix(streamState.get(), "cut") {
			sh.streamCut = true
		}
		if !edited.IsZero() && b.offline() && !sh.bobOffline {
			sh.bobOffline, sh.editApplied = true, time.Since(edited)
		}
		if p.v4 == refused || p.v6 == refused {
			sh.parentAlwaysOnline = false
		}
		if changed {
			quiet = 0
			continue
		}
		if quiet++; quiet%10 == 0 {
			fmt.Printf("  %s%s  no change: %s%s\n", colour.dim, clock, heartbeat(lines, hosts), colour.reset)
		}
	}
	return summary(sh)
}

// line is what one device can do now.
type line struct {
	v4, v6 access
	why    string
	text   string // what is printed; a change of it prints a line
}

func (l line) render() string { return l.text }
func (l line) online() bool   { return l.v4 == works && l.v6 == works }
func (l line) offline() bool  { return l.v4 == refused && l.v6 == refused }

// observe asks the agent for its view and tries a real web request from
// each device over IPv4 and IPv6.
func observe(ctx context.Context, l *lab.Lab, hosts []*lab.Host, state string, stream *streamWatch) (daemon.Status, map[string]line, error) {
	type result struct{ v4, v6 access }
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
	// The agent's explanation after the requests, so that a change during
	// them is explained, not contradicted.
	var st daemon.Status
	c, cancel := context.WithTimeout(ctx, 2*time.Second)
	err := control.Call(c, state, "status", &st)
	cancel()
	if err != nil {
		return st, nil, fmt.Errorf("asking the agent: %w", err)
	}
	byMAC := map[string]daemon.DeviceStatus{}
	for _, d := range st.Devices {
		byMAC[d.MAC] = d
	}
	out := map[string]line{}
	for i, h := range hosts {
		ln := line{v4: res[i].v4, v6: res[i].v6, why: "not in famguard's view"}
		if d, ok := byMAC[h.MAC]; ok {
			ln.why = d.Reason
			if d.Until != nil {
				ln.why += ", until " + d.Until.In(berlin).Format("Mon 15:04")
			}
			if (d.Online && ln.offline()) || (!d.Online && ln.online()) {
				ln.why += " (changing this very second)"
			}
		}
		var shown string
		switch {
		case ln.online():
			shown = colour.green + "online " + colour.reset
		case ln.offline():
			shown = colour.red + "offline" + colour.reset
		default: // a moment of change between the two requests, or a slow lab: say what was seen
			shown = fmt.Sprintf("%sIPv4 %s, IPv6 %s%s", colour.yellow, ln.v4, ln.v6, colour.reset)
		}
		ln.text = shown + "  " + ln.why
		if h.Name == "alice" {
			if s := stream.get(); strings.HasPrefix(s, "cut") {
				ln.text += "; her video stream was cut"
			} else {
				ln.text += "; she is watching a video"
			}
		}
		out[h.Name] = ln
	}
	return st, out, nil
}

func (a access) String() string {
	return [...]string{"works", "refused", "no answer"}[a]
}

func heartbeat(lines map[string]line, hosts []*lab.Host) string {
	var parts []string
	for _, h := range hosts {
		state := "online"
		switch ln := lines[h.Name]; {
		case ln.offline():
			state = "offline"
		case !ln.online():
			state = "IPv4 " + ln.v4.String() + ", IPv6 " + ln.v6.String()
		}
		parts = append(parts, h.Name+" "+state)
	}
	return strings.Join(parts, ", ")
}

func note(s string) {
	fmt.Printf("          %s▶ %s%s\n", colour.yellow, s, colour.reset)
}

// familyNow is the agent's (simulated) clock in the family's zone.
func familyNow(ctx context.Context, state string) (time.Time, error) {
	var st daemon.Status
	c, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := control.Call(c, state, "status", &st); err != nil {
		return time.Time{}, err
	}
	return st.Clock.Now.In(berlin), nil
}

// showDNS asks the router's DNS, as every device does, from Alice's phone
// and from the parent's laptop: a site on the gambling list, and Google.
func showDNS(ctx context.Context, l *lab.Lab, sh *shown) error {
	ask := func(h *lab.Host, name string) string {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		out, err := l.Run(c, h, "dig", "+short", "+time=2", "+tries=2", "@"+lab.RouterLAN4.String(), name, "A")
		if err != nil {
			return "no answer"
		}
		first := strings.SplitN(strings.TrimSpace(out), "\n", 2)[0]
		if first == "" {
			return "no answer"
		}
		return strings.TrimSuffix(first, ".")
	}
	alice, parent := l.Devices["alice"], l.Devices["parent"]
	// The agent attributes a query to a device through the neighbour table;
	// give it a moment to have seen Alice's phone.
	deadline := time.Now().Add(10 * time.Second)
	for sh.dnsBlocked = ask(alice, "casino.example"); sh.dnsBlocked != "0.0.0.0" && time.Now().Before(deadline); sh.dnsBlocked = ask(alice, "casino.example") {
		time.Sleep(200 * time.Millisecond)
	}
	sh.dnsParent = ask(parent, "casino.example")
	sh.safeSearch = ask(alice, "www.google.com")
	sh.safeParent = ask(parent, "www.google.com")
	fmt.Printf("%sBlocked sites and safe search%s (each device asks the router for a site's address):\n", colour.bold, colour.reset)
	verdict := func(answer, blocked, open string) string {
		if answer == "0.0.0.0" {
			return colour.red + blocked + colour.reset
		}
		return open
	}
	fmt.Printf("  alice   casino.example  → %-27s %s\n", sh.dnsBlocked, verdict(sh.dnsBlocked, "blocked: it is on the gambling list", "answered"))
	fmt.Printf("  parent  casino.example  → %-27s %s\n", sh.dnsParent, verdict(sh.dnsParent, "blocked", "answered: the parent's laptop is trusted"))
	ss := "answered"
	if sh.safeSearch == "forcesafesearch.google.com" {
		ss = colour.green + "Google's safe-search address: explicit results are filtered" + colour.reset
	}
	fmt.Printf("  alice   www.google.com  → %-27s %s\n", sh.safeSearch, ss)
	fmt.Printf("  parent  www.google.com  → %-27s %s\n\n", sh.safeParent, "answered as usual")
	return nil
}

// wipeFirewall empties the router's whole firewall, as `service firewall
// stop` or `nft flush ruleset` does, and measures how long famguard takes to
// put its rules back (its count of restorations goes up).
func wipeFirewall(ctx context.Context, l *lab.Lab, state string) (time.Duration, error) {
	heals := func() (int, error) {
		var st daemon.Status
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		err := control.Call(c, state, "status", &st)
		return st.Dataplane.Heals, err
	}
	before, err := heals()
	if err != nil {
		return 0, err
	}
	if _, err := l.Run(ctx, l.Router, "nft", "flush", "ruleset"); err != nil {
		return 0, err
	}
	wiped := time.Now()
	for time.Since(wiped) < 20*time.Second {
		if n, err := heals(); err == nil && n > before {
			return time.Since(wiped), nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0, errors.New("famguard did not restore the firewall within 20 s")
}

// summary says what was shown; a point that did not happen fails the demo.
func summary(sh shown) error {
	fmt.Printf("\n%sWhat you saw%s\n", colour.bold, colour.reset)
	var failed []string
	point := func(ok bool, text, missing string) {
		if ok {
			fmt.Printf("  %s✓%s %s\n", colour.green, colour.reset, text)
		} else {
			fmt.Printf("  %s✗%s %s\n", colour.red, colour.reset, missing)
			failed = append(failed, missing)
		}
	}
	point(sh.dnsBlocked == "0.0.0.0" && sh.dnsParent != "0.0.0.0" && sh.dnsParent != "no answer",
		"A site on the gambling list was blocked for Alice and answered for the parent.",
		fmt.Sprintf("casino.example: Alice got %q, the parent %q (expected 0.0.0.0 and an address)", sh.dnsBlocked, sh.dnsParent))
	point(sh.safeSearch == "forcesafesearch.google.com" && sh.safeParent != sh.safeSearch,
		"Alice's Google searches go to Google's safe search; the parent's do not.",
		fmt.Sprintf("www.google.com: Alice got %q, the parent %q", sh.safeSearch, sh.safeParent))
	point(sh.aliceOffline, fmt.Sprintf("At bedtime (21:00) Alice's phone went offline, IPv4 and IPv6 (seen at %s).", sh.aliceOfflineAt.Format("15:04:05")),
		"Alice's phone did not go offline at bedtime")
	point(sh.streamCut, "The video Alice had started before bedtime was cut, not left running.", "Alice's video stream was not cut")
	point(sh.bobOffline, fmt.Sprintf("A parent edited the profile and Bob's new bedtime was in force %.1f s later, without a restart.", sh.editApplied.Seconds()),
		"Bob did not go offline after the profile edit")
	point(sh.healed > 0, fmt.Sprintf("Another program wiped the firewall; famguard restored it in %d ms.", sh.healed.Milliseconds()),
		"famguard's restoration of the firewall was not seen")
	point(sh.parentAlwaysOnline, "The parent's laptop, trusted in the profile, stayed online all along.", "the parent's laptop lost access")
	fmt.Printf("\nOn a router: `famguard status` shows the same explanations; stopping famguard keeps the rules\n" +
		"in force, and `famguard cleanup` removes them.\n")
	if len(failed) > 0 {
		return fmt.Errorf("%d point(s) of the demo did not happen: %s", len(failed), strings.Join(failed, "; "))
	}
	return nil
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

// access is what a web request from a device got.
type access int

const (
	works    access = iota // the page came back
	refused                // the connection was refused (famguard's reject)
	noAnswer               // nothing came back in time: no verdict
)

// reach tries an HTTP request from h to the internet host. A device is
// offline only on a real refusal (famguard rejects, it never drops); a
// request that times out (a loaded machine) is tried again, up to three
// times, and otherwise reported as no answer, never as blocked.
func reach(ctx context.Context, l *lab.Lab, h *lab.Host, v6 bool) access {
	url := "http://" + lab.InternetIPv4.String() + ":8080/"
	if v6 {
		url = "http://[" + lab.InternetIPv6.String() + "]:8080/"
	}
	for try := 0; try < 3; try++ {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		out, err := l.Cmd(c, h, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3", url).Output()
		cancel()
		var ee *exec.ExitError
		switch {
		case err == nil && strings.TrimSpace(string(out)) == "200":
			return works
		case errors.As(err, &ee) && ee.ExitCode() == 7: // curl: failed to connect (reset, or ICMP prohibited)
			return refused
		}
	}
	return noAnswer
}

func writeAtomic(path, content string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
