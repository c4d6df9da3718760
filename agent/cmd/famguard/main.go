// Command famguard is the agent's single binary: the daemon (`run`) and the
// tools around it (`check`, `plan`, `status`, `cleanup`).
//
// The sub-commands, their flags and their JSON are a contract that scripts,
// operators' management daemons and the lab tests rely on: add to them, never
// rename. Everything is in one binary because a router's flash is small and a
// second Go binary would cost megabytes.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/famguard/famguard/agent/categories"
	"github.com/famguard/famguard/agent/clock"
	"github.com/famguard/famguard/agent/control"
	"github.com/famguard/famguard/agent/daemon"
	"github.com/famguard/famguard/agent/dnsfilter"
	"github.com/famguard/famguard/agent/netwatch"
	"github.com/famguard/famguard/agent/policy"
	"github.com/famguard/famguard/agent/savedstate"
	"github.com/famguard/famguard/agent/tz"
	"github.com/famguard/famguard/rules"
)

// version is stamped at build time: -ldflags "-X main.version=...".
var version = "dev"

const (
	defaultProfiles   = "/etc/famguard/profiles.d"
	defaultCategories = "/etc/famguard/categories.d"
	defaultState      = "/var/run/famguard"
	// On flash, so it survives reboots; written only when a device's state
	// changes (a few times a day).
	defaultSavedState = "/etc/famguard/device-state.json"
)

const usage = `famguard — parental-control agent for home routers

Usage:
  famguard run     [--profiles DIR] [--categories DIR] [--state DIR] [--clock RFC3339] [--log-level LEVEL]
                   [--dns-port N] [--upstream HOST:PORT] [--blocked-answer null|nxdomain] [--doh-list FILE]
                   [--dns-client-rate N] [--dns-client-burst N] [--dns-client-inflight N]
                   [--saved-state FILE] [--boot-policy saved|offline|schedule] [--clock-trust auto|signal]
                   [--memory-limit MiB] [--restore-timeout DURATION]
  famguard check   [--categories DIR] DIR
  famguard plan    [--at RFC3339] [--json] DIR
  famguard status  [--json] [--state DIR]
  famguard notify  clock-synced|firewall [--state DIR]
  famguard cleanup [--state DIR]
  famguard version

run      enforce the profiles in the foreground, logging to stderr
check    validate a profile directory; exit 1 and one FILE:LINE:COL line per problem
plan     show what the policy means at an instant, per device
status   show the running agent's view: devices, reasons, policy, last reload
notify   tell the agent the clock is synchronised (ntp hotplug) or the firewall was reloaded (fw4 include)
cleanup  stop the agent on --state (if running) and remove all its firewall rules
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "run":
		err = cmdRun(args)
	case "check":
		err = cmdCheck(args, os.Stdout)
	case "plan":
		err = cmdPlan(args, os.Stdout)
	case "status":
		err = cmdStatus(args, os.Stdout)
	case "notify":
		err = cmdNotify(args)
	case "cleanup":
		err = cmdCleanup(args)
	case "version", "--version", "-v":
		fmt.Println("famguard", version)
	case "help", "--help", "-h":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "famguard: unknown command %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
	var ee exitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		os.Exit(int(ee))
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	default:
		fmt.Fprintf(os.Stderr, "famguard %s: %v\n", cmd, err)
		os.Exit(1)
	}
}

// exitError ends the program with that status after the command has already
// printed what it had to say.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// parseInterleaved lets flags and positional arguments come in any order
// (`famguard plan DIR --json` as well as `famguard plan --json DIR`).
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	return fs
}

func oneDir(name string, pos []string) (string, error) {
	if len(pos) != 1 {
		return "", fmt.Errorf("expected one profile directory, got %d arguments (usage: famguard %s [flags] DIR)", len(pos), name)
	}
	return pos[0], nil
}

func cmdRun(args []string) error {
	fs := newFlagSet("run")
	profiles := fs.String("profiles", defaultProfiles, "directory of YAML profiles")
	categories := fs.String("categories", defaultCategories, "directory of category lists (<category>.txt)")
	state := fs.String("state", defaultState, "directory for the control socket and runtime files")
	clockFlag := fs.String("clock", "", "start the agent's clock at this RFC3339 instant (labs, demos, tests)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	dnsPort := fs.Int("dns-port", 5354, "port of the DNS filter that protected devices' DNS is redirected to; 0 turns DNS filtering off")
	upstream := fs.String("upstream", "127.0.0.1:53", "resolver the DNS filter forwards allowed queries to (the router's own, so local names keep working)")
	blockedAnswer := fs.String("blocked-answer", "null", "how blocked names are answered: null (0.0.0.0 and ::) or nxdomain")
	dohList := fs.String("doh-list", "/etc/famguard/doh.txt", "DNS-over-HTTPS resolvers (names and addresses) refused to protected devices; the built-in list when the file does not exist")
	clientRate := fs.Int("dns-client-rate", dnsfilter.DefaultLimits.Rate, "DNS queries per second one device may make, sustained (over it, UDP queries are dropped and TCP ones REFUSED); 0: no rate limit")
	clientBurst := fs.Int("dns-client-burst", dnsfilter.DefaultLimits.Burst, "DNS queries one device may make at once above --dns-client-rate after a quiet spell")
	clientInFlight := fs.Int("dns-client-inflight", dnsfilter.DefaultLimits.InFlight, "DNS queries of one device being answered at once (waiting on the upstream); 0: no bound")
	heal := fs.Duration("heal-interval", 0, "how often to compare the kernel with famguard's rules (default: 30s when nf_tables announces changes, else 2s)")
	savedPath := fs.String("saved-state", defaultSavedState, "file keeping each device's state across reboots (written only on change); empty: not kept")
	bootFlag := fs.String("boot-policy", "saved", "what applies until the clock is known to be right: saved (each device keeps its saved state; offline if none and it has an offline window), offline (devices with an offline window are offline), schedule (trust the clock at once)")
	trustFlag := fs.String("clock-trust", "auto", "when the clock counts as right: auto (the kernel reports NTP sync, or `famguard notify clock-synced`; a --clock is trusted) or signal (only the notify)")
	toolTimeout := fs.Duration("restore-timeout", rules.DefaultToolTimeout, "kill an iptables-restore or iptables-save run that takes longer, report the failure and retry with backoff (it waits up to 10 s for the xtables lock, so keep this above that)")
	memLimit := fs.Int("memory-limit", 0, "Go soft memory limit in MiB; 0: a quarter of the router's RAM, between 32 and 256 MiB (GOMEMLIMIT, when set, wins)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("unexpected argument %q (the profile directory is given with --profiles)", pos[0])
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("--log-level %q: use debug, info, warn or error", *level)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))

	bootPolicy, err := policy.ParseBootPolicy(*bootFlag)
	if err != nil {
		return fmt.Errorf("--boot-policy: %w", err)
	}
	if *trustFlag != "auto" && *trustFlag != "signal" {
		return fmt.Errorf("--clock-trust %q: use auto or signal", *trustFlag)
	}
	if limit, why := memoryLimit(*memLimit); limit > 0 {
		debug.SetMemoryLimit(limit)
		log.Info("memory limit set", "MiB", limit>>20, "why", why)
	}

	clk, simulated := clock.System(), false
	if *clockFlag != "" {
		t, err := time.Parse(time.RFC3339, *clockFlag)
		if err != nil {
			return fmt.Errorf("--clock %q: expected an RFC3339 instant like 2026-11-26T20:59:30+01:00", *clockFlag)
		}
		clk, simulated = clock.StartingAt(t), true
	}

	dp, err := rules.NewKernel()
	if err != nil {
		return fmt.Errorf("firewall: %w (famguard needs iptables and ip6tables with the nf_tables or legacy backend, run as root)", err)
	}
	if *toolTimeout <= 0 {
		return fmt.Errorf("--restore-timeout %v: must be positive", *toolTimeout)
	}
	dp.SetTimeout(*toolTimeout)

	mode := dnsfilter.NullIP
	switch *blockedAnswer {
	case "null":
	case "nxdomain":
		mode = dnsfilter.NXDomain
	default:
		return fmt.Errorf("--blocked-answer %q: use null or nxdomain", *blockedAnswer)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	// The DNS filter is bound before anything is redirected to it: if the
	// port is taken, DNS filtering stays off (and says so) rather than
	// sending every child's DNS into a closed port.
	var dns *dnsfilter.Server
	if *dnsPort <= 0 {
		log.Warn("DNS filtering is off (--dns-port 0): category blocks, allow/deny lists, safe search and DNS bypass prevention are not enforced; schedules are")
	}
	if *dnsPort > 0 {
		dns = dnsfilter.NewServer(dnsfilter.UpstreamExchange(*upstream), mode)
		dns.SetLimits(dnsfilter.Limits{Rate: *clientRate, Burst: *clientBurst, InFlight: *clientInFlight})
		ln, err := dns.Listen(fmt.Sprintf("[::]:%d", *dnsPort))
		if err != nil {
			log.Error("DNS filter cannot listen; category blocks, safe search and DNS bypass prevention are OFF", "port", *dnsPort, "err", err)
			dns = nil
		} else {
			go func() {
				if err := ln.Serve(ctx); err != nil {
					log.Error("DNS filter stopped", "err", err)
				}
			}()
			log.Info("DNS filter listening", "port", *dnsPort, "upstream", *upstream, "blocked_answer", *blockedAnswer,
				"client_rate", *clientRate, "client_burst", *clientBurst, "client_inflight", *clientInFlight)
		}
	}
	doh, err := dnsfilter.LoadDoH(*dohList)
	if err != nil {
		log.Error("DoH list unusable; using the built-in list", "err", err)
		doh, _ = dnsfilter.LoadDoH("")
	}
	// With iptables-nft every ruleset change is announced and healing is
	// event-driven; the periodic comparison (two iptables-save execs) is then
	// only a safety net and can be rare, which matters on a router's CPU.
	// The legacy backend announces nothing: compare often.
	rulesChanged, events := rules.WatchChanges(ctx)
	if *heal == 0 {
		*heal = 2 * time.Second
		if events && strings.Contains(dp.Backend(), "nf_tables") {
			*heal = 30 * time.Second
		}
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default:
			}
		}
	}()

	waitSync, trustSource, clockSynced := clockTrust(ctx, bootPolicy, *trustFlag, simulated, *state)
	var saved *savedstate.Store
	if *savedPath != "" {
		saved = savedstate.New(*savedPath)
	}

	d := daemon.New(daemon.Config{
		ProfilesDir:      *profiles,
		CategoriesDir:    *categories,
		Version:          version,
		Clock:            clk,
		ClockSimulated:   simulated,
		WaitForClockSync: waitSync,
		TrustSource:      trustSource,
		ClockSynced:      clockSynced,
		BootPolicy:       bootPolicy,
		SavedState:       saved,
		StateDir:         *state,
		Dataplane:        dp,
		DNS:              dns,
		DNSPort:          *dnsPort,
		DoH:              doh,
		Neighbours:       netwatch.NewNeighbours(log),
		DeleteFlows:      netwatch.DeleteFlows,
		WallJumps:        clock.WallJumps(ctx),
		RulesChanged:     rulesChanged,
		Reload:           reload,
		Log:              log,
		HealInterval:     *heal,
		EventHealing:     events,
		WatchFiles:       true,
	})
	srv, err := control.Listen(*state, d.Handle)
	switch {
	case errors.Is(err, control.ErrAlreadyRunning):
		return err // two agents would fight over the same chains
	case err != nil:
		// An unwritable or full state directory must not stop enforcement:
		// the rules are applied and kept up to date anyway; only status and
		// notify are unavailable until the socket can be created.
		log.Error("control socket unavailable: enforcing anyway, without status or notify, until it can be created; retrying", "err", err)
		go serveControlWhenPossible(ctx, *state, d.Handle, log)
	default:
		go srv.Serve(ctx)
	}
	err = d.Run(ctx)
	if errors.Is(err, daemon.ErrShutdownRequested) {
		return nil
	}
	return err
}

// serveControlWhenPossible retries creating the control socket (1 s, doubling
// to 30 s) and serves it once it exists.
func serveControlWhenPossible(ctx context.Context, state string, h control.Handler, log *slog.Logger) {
	wait := time.Second
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		srv, err := control.Listen(state, h)
		if err == nil {
			log.Info("control socket created; status and notify work again", "state", state)
			srv.Serve(ctx)
			return
		}
		if errors.Is(err, control.ErrAlreadyRunning) {
			log.Error("control socket: giving up", "err", err)
			return
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// clockTrust decides whether the clock is right from the start and, if not,
// what will say so. A simulated --clock is trusted under "auto": the kernel's
// sync state is about the real clock, not the simulated one.
func clockTrust(ctx context.Context, bp policy.BootPolicy, trust string, simulated bool, stateDir string) (wait bool, source string, synced <-chan struct{}) {
	switch {
	case bp == policy.BootSchedule:
		return false, "boot policy schedule: the clock is assumed right", nil
	case simulated && trust == "auto":
		return false, "simulated clock (--clock)", nil
	case clock.SyncedThisBoot(stateDir):
		return false, "the ntp hotplug signal, earlier this boot", nil
	case trust == "auto":
		if ok, _ := clock.KernelSynced(); ok {
			return false, "the kernel reports NTP synchronisation", nil
		}
		return true, "", clock.WhenSynced(ctx, 5*time.Second, clock.KernelSynced)
	}
	return true, "", nil
}

// memoryLimit picks the Go soft memory limit. Why one is set at all: Go lets
// the heap grow to twice the live data before collecting, and routers have
// no swap; Go DNS filters have been OOM-killed on 256 MB routers. A quarter
// of RAM leaves room for dnsmasq, the kernel's conntrack table and the rest
// of the router, while staying above what 1.4 M listed domains need
// (about 32 MiB), so the collector does not thrash.
func memoryLimit(mib int) (int64, string) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return 0, "GOMEMLIMIT"
	}
	if mib > 0 {
		return int64(mib) << 20, "--memory-limit"
	}
	total := memTotal()
	if total == 0 {
		return 64 << 20, "default (RAM size unknown)"
	}
	limit := min(max(total/4, 32<<20), 256<<20)
	return limit, fmt.Sprintf("a quarter of %d MiB RAM, between 32 and 256 MiB", total>>20)
}

// memTotal reads MemTotal from /proc/meminfo (bytes; 0 if unknown).
func memTotal() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// cmdNotify is what OpenWrt's hooks call: the ntp hotplug script
// (clock-synced) and the fw4 firewall include (firewall). Both exit 0 when no
// agent runs, so they never fail a hotplug run or a firewall reload; a clock
// sync is then remembered for the agent's start.
func cmdNotify(args []string) error {
	fs := newFlagSet("notify")
	state := fs.String("state", defaultState, "the agent's --state directory")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || (pos[0] != "clock-synced" && pos[0] != "firewall") {
		return fmt.Errorf("expected clock-synced or firewall (usage: famguard notify clock-synced|firewall [--state DIR])")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req := map[string]string{"clock-synced": "clock-synced", "firewall": "heal"}[pos[0]]
	err = control.Call(ctx, *state, req, nil)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, control.ErrNotRunning) && pos[0] == "clock-synced":
		if err := clock.MarkSynced(*state); err != nil {
			return fmt.Errorf("no agent is running and the sync cannot be remembered in %s: %w", *state, err)
		}
		fmt.Fprintln(os.Stderr, "no famguard agent is running; the clock sync is remembered for when it starts")
		return nil
	case errors.Is(err, control.ErrNotRunning):
		fmt.Fprintln(os.Stderr, "no famguard agent is running; nothing to restore")
		return nil
	}
	return err
}

func cmdCheck(args []string, out io.Writer) error {
	fs := newFlagSet("check")
	catDir := fs.String("categories", "", "also report categories that have no list in this directory")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	dir, err := oneDir("check", pos)
	if err != nil {
		return err
	}
	pol, err := policy.LoadDir(dir)
	if err != nil {
		var probs policy.Problems
		if errors.As(err, &probs) {
			for _, p := range probs {
				fmt.Fprintln(out, p.String())
			}
			return exitError(1)
		}
		return err
	}
	if _, err := tz.Resolve(pol.Timezone, tz.Env{}); err != nil {
		return err
	}
	if *catDir != "" {
		avail, err := categories.Available(*catDir)
		if err != nil {
			return fmt.Errorf("--categories: %w", err)
		}
		for _, p := range pol.MissingCategories(avail) {
			fmt.Fprintln(out, "warning: "+p.String())
		}
	}
	children, devices := len(pol.Children), 0
	for _, c := range pol.Children {
		devices += len(c.Devices)
	}
	fmt.Fprintf(os.Stderr, "%s: valid (%d children, %d devices, policy %s)\n", dir, children, devices, pol.Digest)
	return nil
}

// planOutput is `famguard plan --json`.
type planOutput struct {
	At      time.Time            `json:"at"`
	Zone    daemon.ZoneStatus    `json:"zone"`
	Policy  string               `json:"policy"`
	Devices []policy.DeviceState `json:"devices"`
}

func cmdPlan(args []string, out io.Writer) error {
	fs := newFlagSet("plan")
	at := fs.String("at", "", "the instant to evaluate (RFC3339); default now")
	asJSON := fs.Bool("json", false, "machine-readable output")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	dir, err := oneDir("plan", pos)
	if err != nil {
		return err
	}
	when := time.Now()
	if *at != "" {
		if when, err = time.Parse(time.RFC3339, *at); err != nil {
			return fmt.Errorf("--at %q: expected an RFC3339 instant like 2026-11-26T21:30:00+01:00", *at)
		}
	}
	pol, err := policy.LoadDir(dir)
	if err != nil {
		var probs policy.Problems
		if errors.As(err, &probs) {
			for _, p := range probs {
				fmt.Fprintln(os.Stderr, p.String())
			}
			return fmt.Errorf("%s is not valid; fix the problems above (famguard check %s)", dir, dir)
		}
		return err
	}
	zone, err := tz.Resolve(pol.Timezone, tz.Env{})
	if err != nil {
		return err
	}
	states := pol.Evaluate(when, zone.Loc)
	res := planOutput{At: when.In(zone.Loc), Zone: daemon.ZoneStatus{Name: zone.Name, Source: zone.Source}, Policy: pol.Digest, Devices: states}
	if res.Devices == nil {
		res.Devices = []policy.DeviceState{}
	}
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	fmt.Fprintf(out, "Policy %s at %s (zone %s, from %s)\n\n", pol.Digest, res.At.Format("Mon 2006-01-02 15:04:05 MST"), zone.Name, zone.Source)
	printDevices(out, states, nil, zone.Loc, res.At)
	return nil
}

// printDevices renders the per-device table shared by plan and status.
func printDevices(out io.Writer, states []policy.DeviceState, addrs map[string][]string, loc *time.Location, now time.Time) {
	if len(states) == 0 {
		fmt.Fprintln(out, "No protected devices.")
		return
	}
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	head := "CHILD\tDEVICE\tMAC\tINTERNET\tUNTIL\tBLOCKED CATEGORIES\tWHY"
	if addrs != nil {
		head += "\tADDRESSES"
	}
	fmt.Fprintln(tw, head)
	for _, s := range states {
		state := "online"
		if !s.Online {
			state = "OFFLINE"
		}
		until := "-"
		if s.Until != nil {
			until = humanUntil(s.Until.In(loc), now)
		}
		cats := strings.Join(s.BlockedCategories, ",")
		if cats == "" {
			cats = "-"
		}
		name := s.Device
		if name == "" {
			name = "-"
		}
		line := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s", s.Child, name, s.MAC, state, until, cats, s.Reason)
		if addrs != nil {
			a := addrs[s.MAC]
			if len(a) == 0 {
				line += "\tnot seen"
			} else {
				line += "\t" + strings.Join(a, " ")
			}
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
}

// humanUntil says when, relative to now, in the family's zone.
func humanUntil(t, now time.Time) string {
	y1, m1, d1 := t.Date()
	y2, m2, d2 := now.Date()
	if y1 == y2 && m1 == m2 && d1 == d2 {
		return t.Format("15:04")
	}
	if t.Sub(now) < 6*24*time.Hour {
		return t.Format("Mon 15:04")
	}
	return t.Format("2006-01-02 15:04")
}

// parseNoArgs parses flags for commands that take no positional argument.
func parseNoArgs(fs *flag.FlagSet, args []string) error {
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("unexpected argument %q (see famguard help)", pos[0])
	}
	return nil
}

func cmdStatus(args []string, out io.Writer) error {
	fs := newFlagSet("status")
	asJSON := fs.Bool("json", false, "machine-readable output")
	state := fs.String("state", defaultState, "the running agent's --state directory")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var raw json.RawMessage
	if err := control.Call(ctx, *state, "status", &raw); err != nil {
		return err
	}
	if *asJSON {
		_, err := out.Write(append(raw, '\n'))
		return err
	}
	var st daemon.Status
	if err := json.Unmarshal(raw, &st); err != nil {
		return err
	}
	printStatus(out, st)
	return nil
}

func printStatus(out io.Writer, st daemon.Status) {
	loc := st.Clock.Now.Location()
	if l, err := tz.Load(st.Zone.Name); err == nil {
		loc = l
	}
	now := st.Clock.Now.In(loc)
	clk := now.Format("Mon 2006-01-02 15:04:05 MST")
	if st.Clock.Simulated {
		clk += " (simulated clock)"
	}
	fmt.Fprintf(out, "famguard %s, pid %d, up since %s\n", st.Version, st.PID, st.Started.Format(time.RFC3339))
	fmt.Fprintf(out, "Clock:    %s, zone %s (%s)\n", clk, st.Zone.Name, st.Zone.Source)
	if st.Clock.Trusted {
		fmt.Fprintf(out, "          trusted: %s\n", st.Clock.TrustSource)
	} else {
		fmt.Fprintf(out, "          NOT YET SYNCHRONISED: boot policy %q applies instead of the schedule until NTP answers\n", st.Clock.BootPolicy)
	}
	if st.Policy != nil {
		fmt.Fprintf(out, "Policy:   %s from %s, loaded %s (%d files)\n", st.Policy.Digest, st.Policy.Dir, st.Policy.LoadedAt.Format(time.RFC3339), len(st.Policy.Sources))
	} else {
		fmt.Fprintln(out, "Policy:   none loaded yet — rules in the kernel were left as they were")
	}
	fmt.Fprintf(out, "Reload:   %s at %s (%s)\n", st.LastReload.Message, st.LastReload.At.Format(time.RFC3339), st.LastReload.Trigger)
	for _, p := range st.LastReload.Problems {
		fmt.Fprintf(out, "          %s\n", p)
	}
	fw := fmt.Sprintf("%s, %d applies, %d heals", st.Dataplane.Backend, st.Dataplane.Applies, st.Dataplane.Heals)
	if st.Dataplane.LastError != "" {
		fw += ", last error: " + st.Dataplane.LastError
	}
	if st.Dataplane.ConsecutiveFailures > 0 && st.Dataplane.NextRetry != nil {
		fw += fmt.Sprintf(" (%d failed in a row; the rules in force stay; next retry at %s, backoff %s)",
			st.Dataplane.ConsecutiveFailures, st.Dataplane.NextRetry.Format(time.RFC3339), st.Dataplane.RetryBackoff)
	}
	fmt.Fprintf(out, "Firewall: %s\n", fw)
	if st.DNS != nil {
		lists := fmt.Sprintf("%d categories, %d domains", st.DNS.Categories, st.DNS.Domains)
		if st.DNS.ListsError != "" {
			lists += " (last reload failed: " + st.DNS.ListsError + ")"
		}
		fmt.Fprintf(out, "DNS:      filter on port %d, %d queries; lists: %s\n", st.DNS.Port, st.DNS.Queries, lists)
		if st.DNS.RateLimited > 0 {
			var by []string
			for c, n := range st.DNS.RateLimitedBy {
				by = append(by, fmt.Sprintf("%s %d", c, n))
			}
			sort.Strings(by)
			fmt.Fprintf(out, "          %d queries over the per-device limits (%d/s, burst %d, %d in flight) refused: %s\n",
				st.DNS.RateLimited, st.DNS.Limits.Rate, st.DNS.Limits.Burst, st.DNS.Limits.InFlight, strings.Join(by, ", "))
		}
		for _, r := range st.DNS.Recent {
			fmt.Fprintf(out, "          blocked %s for %s: %s\n", r.At.In(loc).Format("15:04:05"), r.Child, r.Reason)
		}
	} else {
		fmt.Fprintln(out, "DNS:      filter off (category blocks, safe search and DNS bypass prevention are not enforced)")
	}
	for _, w := range st.Warnings {
		fmt.Fprintf(out, "Warning:  %s\n", w)
	}
	fmt.Fprintln(out)
	states := make([]policy.DeviceState, 0, len(st.Devices))
	addrs := map[string][]string{}
	for _, d := range st.Devices {
		states = append(states, d.DeviceState)
		a := append([]string(nil), d.Addresses...)
		sort.Strings(a)
		addrs[d.MAC] = a
	}
	printDevices(out, states, addrs, loc, now)
}

func cmdCleanup(args []string) error {
	fs := newFlagSet("cleanup")
	state := fs.String("state", defaultState, "the agent's --state directory")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	// A running agent would restore its rules within seconds: ask it to
	// exit first (it leaves its rules, which we then remove).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := control.Call(ctx, *state, "shutdown", nil); err == nil {
		fmt.Fprintln(os.Stderr, "asked the running agent to stop")
		waitGone(*state, 5*time.Second)
	}
	dp, err := rules.NewKernel()
	if err != nil {
		return err
	}
	var errs []error
	for _, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
		if err := dp.Cleanup(fam); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", fam, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "famguard rules removed (IPv4 and IPv6); devices are no longer protected")
	return nil
}

// waitGone waits until nobody answers on the control socket any more.
func waitGone(stateDir string, max time.Duration) {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := control.Call(ctx, stateDir, "status", nil)
		cancel()
		if errors.Is(err, control.ErrNotRunning) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
