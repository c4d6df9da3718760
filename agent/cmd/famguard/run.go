package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/famguard/famguard/agent/clock"
	"github.com/famguard/famguard/agent/control"
	"github.com/famguard/famguard/agent/daemon"
	"github.com/famguard/famguard/agent/dnsfilter"
	"github.com/famguard/famguard/agent/egress"
	"github.com/famguard/famguard/agent/inventory"
	"github.com/famguard/famguard/agent/netwatch"
	"github.com/famguard/famguard/agent/opstatus"
	"github.com/famguard/famguard/agent/overrides"
	"github.com/famguard/famguard/agent/overrides/ctacct"
	"github.com/famguard/famguard/agent/policy"
	"github.com/famguard/famguard/agent/savedstate"
	"github.com/famguard/famguard/rules"
)

func cmdRun(args []string) error {
	fs := newFlagSet("run")
	profiles := fs.String("profiles", defaultProfiles, "directory of YAML profiles")
	operator := operatorFlag(fs)
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
	lanFlag := fs.String("lan", "", "LAN interfaces, comma separated (e.g. br-lan,wlan1): only packets coming in on them can be a device's, and only devices seen there can be unknown devices; default: the lan interface of /etc/config/network, else br-lan")
	leases := fs.String("dhcp-leases", inventory.DefaultLeases, "dnsmasq's DHCP lease file, for device names in famguard devices; empty: none")
	overridesPath := fs.String("overrides", defaultOverrides, "file keeping pauses, extra time and today's usage across reboots (on flash; usage written at most every --usage-flush); empty: kept only until a reboot")
	usageFlush := fs.Duration("usage-flush", overrides.DefaultFlushEvery, "how often at most today's usage is written to the --overrides file (a power cut loses at most this much counted use)")
	accountEvery := fs.Duration("account-every", time.Minute, "how often use is sampled for daily budgets; each sample counts as one minute (labs shorten it to run minutes in seconds)")
	budgetThreshold := fs.Int("budget-threshold", overrides.DefaultThreshold>>10, "KiB a child's devices must move (both ways) in a minute for it to count against a daily budget; below it is background chatter")
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
	log := slog.New(newSplitHandler(os.Stdout, os.Stderr, lvl))

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

	lan, lanSource := netwatch.DefaultLAN(netwatch.DefaultNetworkConfig, nil)
	if *lanFlag != "" {
		if lan, err = netwatch.ParseLANFlag(*lanFlag); err != nil {
			return err
		}
		lanSource = "--lan"
	}
	neighbours := netwatch.NewNeighbours(log)
	neighbours.SetLAN(lan)

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
	var dnsPorts *dnsfilter.Ports
	if *dnsPort <= 0 {
		log.Warn("DNS filtering is off (--dns-port 0): category blocks, allow/deny lists, safe search and DNS bypass prevention are not enforced; schedules are")
	}
	if *dnsPort > 0 {
		dns = dnsfilter.NewServer(dnsfilter.UpstreamExchange(*upstream), mode)
		dns.SetLimits(dnsfilter.Limits{Rate: *clientRate, Burst: *clientBurst, InFlight: *clientInFlight})
		// One listener per policy class and one refusing offline devices'
		// queries: the daemon binds them (dnsPorts) before it redirects to
		// them. The base port is bound here, so a port in use is found now.
		dnsPorts = dns.NewPorts(ctx, "::")
		if err := dnsPorts.Ensure([]int{*dnsPort}); err != nil {
			log.Error("DNS filter cannot listen; category blocks, safe search and DNS bypass prevention are OFF", "port", *dnsPort, "err", err)
			dns, dnsPorts = nil, nil
		} else {
			log.Info("DNS filter listening", "port", *dnsPort, "upstream", *upstream, "blocked_answer", *blockedAnswer,
				"client_rate", *clientRate, "client_burst", *clientBurst, "client_inflight", *clientInFlight)
		}
	}
	// Strict egress: the filter opens every address it answers a strict
	// child in the child's sets before the answer leaves. Without the
	// netlink socket, strict children's answers fail closed (SERVFAIL).
	// The same netlink socket keeps the inbound guard's sets; without it
	// a connection opened from outside can reach an offline device's
	// address at its first packet.
	var strictSets *egress.Sets
	var inbound daemon.InboundSets
	if k, err := egress.NewNetlink(); err != nil {
		log.Error("ipset netlink unusable: strict children get no DNS answers; no inbound guard", "err", err)
	} else {
		defer k.Close()
		inbound = k
		dp.SetSets(kernelSets{k}) // created before a restore names them
		if dns != nil {
			strictSets = egress.New(k)
			dns.SetOpener(strictSets)
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

	if *budgetThreshold < 1 || *usageFlush < time.Minute {
		return fmt.Errorf("--budget-threshold must be at least 1 (KiB) and --usage-flush at least 1m")
	}
	if on, err := ctacct.Enabled(); err != nil || !on {
		log.Warn("the kernel keeps no byte counters on connections (nf_conntrack_acct is off); daily budgets will not count use until it is on: sysctl -w net.netfilter.nf_conntrack_acct=1", "err", err)
	}

	report := &opstatus.Writer{Path: filepath.Join(*state, opstatus.FileName), StateDir: *state, CategoriesDir: *categories}
	d := daemon.New(daemon.Config{
		StatusSink:       func(st daemon.Status) { report.Update(st, time.Now()) },
		ProfilesDir:      *profiles,
		OperatorDir:      operatorDir(*operator, *profiles),
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
		DNSPorts:         portsOrNil(dnsPorts),
		StrictSets:       strictOrNil(strictSets),
		Inbound:          inbound,
		DNSPort:          *dnsPort,
		DoH:              doh,
		Neighbours:       neighbours,
		LAN:              lan,
		LANSource:        lanSource,
		Leases:           *leases,
		Conntrack:        rules.NetlinkConntrack{},
		WallJumps:        clock.WallJumps(ctx),
		RulesChanged:     rulesChanged,
		Reload:           reload,
		Log:              log,
		HealInterval:     *heal,
		EventHealing:     events,
		WatchFiles:       true,
		Overrides:        overrides.NewStore(*overridesPath, filepath.Join(*state, "overrides.json"), *usageFlush),
		Accounting:       ctacct.New(nil),
		BudgetThreshold:  uint64(*budgetThreshold) << 10,
		AccountEvery:     *accountEvery,
	})
	srv, err := control.Listen(*state, d.HandleRequest)
	switch {
	case errors.Is(err, control.ErrAlreadyRunning):
		return err // two agents would fight over the same chains
	case err != nil:
		// An unwritable or full state directory must not stop enforcement:
		// the rules are applied and kept up to date anyway; only status and
		// notify are unavailable until the socket can be created.
		log.Error("control socket unavailable: enforcing anyway, without status or notify, until it can be created; retrying", "err", err)
		go serveControlWhenPossible(ctx, *state, d.HandleRequest, log)
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

// portsOrNil keeps a nil *Ports a nil interface.
// strictOrNil keeps a nil *egress.Sets a nil interface.
func strictOrNil(s *egress.Sets) daemon.StrictSets {
	if s == nil {
		return nil
	}
	return s
}

func portsOrNil(p *dnsfilter.Ports) daemon.DNSPorts {
	if p == nil {
		return nil
	}
	return p
}

// splitHandler writes debug and info lines to one stream (stdout) and warn
// and error lines to another (stderr). procd logs a service's stdout at
// info and its stderr at err, so on OpenWrt each line reaches the system log
// (`logread`) with its real severity instead of every routine line showing
// as daemon.err. Each line is one write, so the two never interleave within
// a line; their relative order holds for a reader of both, like a terminal.
type splitHandler struct {
	low, high slog.Handler
}

func newSplitHandler(low, high io.Writer, lvl slog.Level) splitHandler {
	opts := &slog.HandlerOptions{Level: lvl}
	return splitHandler{low: slog.NewTextHandler(low, opts), high: slog.NewTextHandler(high, opts)}
}

func (h splitHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.low.Enabled(ctx, l) }

func (h splitHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		return h.high.Handle(ctx, r)
	}
	return h.low.Handle(ctx, r)
}

func (h splitHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return splitHandler{low: h.low.WithAttrs(as), high: h.high.WithAttrs(as)}
}

func (h splitHandler) WithGroup(name string) slog.Handler {
	return splitHandler{low: h.low.WithGroup(name), high: h.high.WithGroup(name)}
}

// kernelSets creates the strict sets a restore names (rules.Sets) through
// egress's netlink socket.
type kernelSets struct{ n *egress.Netlink }

func (s kernelSets) Ensure(name string, fam rules.Family) error {
	return s.n.Create(name, fam == rules.IPv6, egress.MaxElem)
}
