// Package daemon is famguard's enforcement loop.
//
// Design (after kube-proxy and Calico Felix): one goroutine, Run's loop, owns
// everything that decides what the kernel holds — the last good policy, the
// neighbour table, what was last written to each family and the snapshot read
// back after writing. Everything else only sends it messages over channels:
// the profile watcher and SIGHUP ("reload"), the neighbour watcher (new
// table), the wall-clock jump detector, the schedule timer, the heal ticker
// and control-socket requests. So there are no locks around dataplane state
// and no two writers can interleave their iptables-restore transactions.
//
// Each pass ("reconcile") is pure computation followed by a thin write:
// evaluate the policy at the agent's clock → rules.Desired → rules.Render text
// per family → if the text differs from what was last applied, one
// iptables-restore --noflush transaction per family (the two side by side,
// see apply); status dataplane.last_pass says where the pass's time went. Devices that have just
// gone offline then lose their conntrack entries, so connections that were
// open at bedtime die at once instead of riding the ESTABLISHED fast path.
//
// Safety rules the loop keeps:
//   - An invalid profile set is never applied; the last good policy stays in
//     force and the failure is reported (log, status).
//   - Before any valid policy has been loaded the loop leaves the kernel as it
//     is: after a crash or kill -9 the previous agent's rules keep protecting
//     until the restarted agent has something at least as good to write.
//   - Stopping (SIGTERM, context end) leaves the rules in place; only
//     `famguard cleanup` removes them.
//   - The loop sleeps until the next schedule transition (no minute polling);
//     a wall-clock step wakes it at once.
//   - Until the clock is known to be right (WaitForClockSync: NTP has not
//     answered since boot) the schedule is not evaluated at all: the boot
//     policy applies (policy.EvaluateUnsynced: each device keeps its saved
//     state, or is offline if it has an offline window). The moment the
//     kernel or the ntp hotplug signal says the time is good, the schedule
//     takes over. Device states are saved (on change only) while the clock
//     is trusted, never from an untrusted clock.
package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/famguard/famguard/agent/categories"
	"github.com/famguard/famguard/agent/clock"
	"github.com/famguard/famguard/agent/control"
	"github.com/famguard/famguard/agent/dnsfilter"
	"github.com/famguard/famguard/agent/netwatch"
	"github.com/famguard/famguard/agent/overrides"
	"github.com/famguard/famguard/agent/policy"
	"github.com/famguard/famguard/agent/savedstate"
	"github.com/famguard/famguard/agent/tz"
	"github.com/famguard/famguard/rules"
)

// Neighbours is the source of device addresses (netwatch.Neighbours in
// production, a channel-fed fake in tests).
type Neighbours interface {
	Run(ctx context.Context, out chan<- netwatch.Table) error
}

// Config wires the loop to its collaborators.
type Config struct {
	ProfilesDir   string
	OperatorDir   string // the operator layer (policy.Load); "" or absent: none
	CategoriesDir string // may be empty
	Version       string

	Clock          clock.Clock
	ClockSimulated bool   // --clock was given
	Env            tz.Env // where the router's zone is read from

	// Boot clock. WaitForClockSync starts the agent with the clock
	// untrusted: BootPolicy applies until ClockSynced fires (the kernel
	// reports NTP sync) or a "clock-synced" request arrives (the ntp hotplug
	// signal). False (tests, simulated clocks, --boot-policy schedule) trusts
	// the clock from the start.
	WaitForClockSync bool
	TrustSource      string            // why the clock is trusted when WaitForClockSync is false
	ClockSynced      <-chan struct{}   // nil: the kernel is not watched
	BootPolicy       policy.BootPolicy // default policy.BootSaved
	SavedState       *savedstate.Store // nil: device states are not persisted
	StateDir         string            // where the clock-sync marker is kept ("": nowhere)

	Dataplane rules.Dataplane
	// DNS, when set, is the listener that filters protected devices' DNS
	// (already bound to DNSPort): the daemon redirects their queries to it
	// and publishes what applies to each device.
	DNS     *dnsfilter.Server
	DNSPort int
	DoH     dnsfilter.DoHList // DNS-over-HTTPS resolvers refused with bypass prevention
	// DNSPorts binds the DNS filter's listeners of the class ports (and
	// the offline port) before the rules redirect to them; nil: only
	// DNSPort is listened on (tests without a network).
	DNSPorts DNSPorts
	// StrictSets reports the strict-egress sets for status (egress.Sets,
	// which the DNS filter also opens addresses in); nil: not reported.
	StrictSets StrictSets
	// Inbound keeps the inbound guard's sets (inbound.go; egress.Netlink);
	// nil: no inbound guard, a connection opened from outside reaches an
	// offline device's address the kernel has not attributed yet.
	Inbound      InboundSets
	Neighbours   Neighbours      // nil: addresses unknown
	Conntrack    rules.Conntrack // cuts connections by device ID; nil: no conntrack deletion
	WallJumps    <-chan struct{} // nil: none
	RulesChanged <-chan struct{} // the ruleset changed (nf_tables events); nil: rely on HealInterval
	Reload       <-chan struct{} // SIGHUP
	// StatusSink, when set, receives the status after every event the loop
	// handles (agent/opstatus keeps status.json current with it).
	StatusSink func(Status)
	Log        *slog.Logger

	HealInterval time.Duration // how often the kernel state is compared with what was written; default 2s
	// A failed apply is retried after RetryBase, then after twice as long
	// each time it fails again, up to RetryMax (defaults 1 s and 30 s).
	RetryBase, RetryMax time.Duration
	EventHealing        bool          // RulesChanged delivers nf_tables change events (logged)
	Debounce            time.Duration // quiet time after a profile change before reloading; default 20ms
	WatchFiles          bool          // watch ProfilesDir with fsnotify (true in production)

	// LAN are the interfaces the family's devices are on (--lan, OpenWrt's
	// lan interface, br-lan); LANSource says where that came from. Only
	// packets that come in on them are a device's (rules.Desired.LAN), and
	// only devices seen there can be unknown devices; empty: none is.
	LAN       []string
	LANSource string
	Leases    string // DHCP lease file for device names (dnsmasq format); "": none
	// Overrides keeps pauses, extra time and budget usage (nil: in memory
	// only). Accounting reads per-device byte counters for daily budgets
	// (nil: budgets do not count), every AccountEvery (default 1 min); a
	// minute counts above BudgetThreshold bytes (default 20 KiB).
	Overrides       *overrides.Store
	Accounting      Accounting
	AccountEvery    time.Duration
	BudgetThreshold uint64
}

// Daemon is the running agent. Create it with New and start it with Run.
type Daemon struct {
	cfg      Config
	log      *slog.Logger
	requests chan request
	started  time.Time

	// Owned by the loop goroutine only.
	pol         *policy.Policy
	polLoadedAt time.Time
	zone        tz.Zone
	lastReload  ReloadResult
	// lastChange is the last reload that loaded a new policy or failed: an
	// unchanged re-read (every SIGHUP, every `reload`) must not hide it.
	lastChange  ReloadResult
	neigh       netwatch.Table
	states      []policy.DeviceState
	offline     map[string]bool // MAC → offline in the last applied state
	applied     [2]string       // restore text last applied per family ("" = must apply)
	snapshot    [2]string       // kernel state read back after the last apply
	dp          DataplaneStatus
	missingCats []string
	next        time.Time
	cats        catResult // the category lists in use (DNS only)
	catsPending bool      // the first load of the category lists since start has not finished

	trusted     bool            // the clock is known to be right
	trustSource string          // why
	trustedAt   time.Time       // when it became trusted (zero: from the start)
	saved       savedstate.File // loaded at start: what applies before the clock is trusted
	savedErr    string          // the last load or save problem, for status
	saveFailed  bool            // the last save failed: retried at each heal tick

	pass     passTimer // the steps of the current pass (status: dataplane.last_pass)
	inReload bool      // reconcile runs inside reload: the pass began there

	retryDelay time.Duration // the current backoff after failed applies (0: none failed)
	retryAt    time.Time     // when the next retry runs (zero: none pending)

	devs devicesState   // devices seen on the LAN (inventory.go)
	in   inboundState   // the inbound guard's sets (inbound.go)
	kid  kernelIdentity // device IDs, class ports, installed redirects (identity.go, dataplane.go)
	ov   overridesState // pauses, extra time, budgets (overrides.go)
}

// catResult is one load of the category lists.
type catResult struct {
	store *categories.Store
	stats categories.Stats
	err   error
	at    time.Time
}

type request struct {
	cmd   string
	args  []string        // text form (Handle)
	raw   json.RawMessage // the version-1 args object (HandleRequest)
	do    func() (any, error)
	reply chan response
}

type response struct {
	v   any
	err error
}

// New prepares a daemon; nothing runs until Run.
func New(cfg Config) *Daemon {
	if cfg.HealInterval <= 0 {
		cfg.HealInterval = 2 * time.Second
	}
	if cfg.Debounce <= 0 {
		// Short enough that a parent's edit is live in well under 100 ms,
		// long enough to fold an editor's write+rename or a multi-file push
		// into one reload.
		cfg.Debounce = 20 * time.Millisecond
	}
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = time.Second
	}
	if cfg.RetryMax < cfg.RetryBase {
		cfg.RetryMax = max(30*time.Second, cfg.RetryBase)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.System()
	}
	if cfg.BootPolicy == "" {
		cfg.BootPolicy = policy.BootSaved
	}
	if cfg.TrustSource == "" {
		cfg.TrustSource = "assumed right"
	}
	return &Daemon{
		cfg:      cfg,
		log:      cfg.Log,
		requests: make(chan request),
		offline:  map[string]bool{},
		started:  time.Now(),
	}
}

// Handle is the control-socket handler: it forwards the request to the loop
// goroutine, which owns the state, and waits for its answer.
func (d *Daemon) Handle(ctx context.Context, cmd string, args []string) (any, error) {
	return d.send(ctx, request{cmd: cmd, args: args, reply: make(chan response, 1)})
}

func (d *Daemon) send(ctx context.Context, r request) (any, error) {
	select {
	case d.requests <- r:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case resp := <-r.reply:
		return resp.v, resp.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// HandleRequest is the control-socket handler (protocol version 1).
func (d *Daemon) HandleRequest(ctx context.Context, req control.Request) (any, error) {
	return d.send(ctx, request{cmd: req.Cmd, raw: req.Args, reply: make(chan response, 1)})
}

// ErrShutdownRequested is returned by Run when a client asked the agent to
// exit (what `famguard cleanup` does before removing the rules).
var ErrShutdownRequested = fmt.Errorf("shutdown requested over the control socket")

// Run is the loop. It returns when ctx ends (nil) or a client requests a
// shutdown; the rules stay in the kernel either way.
func (d *Daemon) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	d.dp.Backend = d.cfg.Dataplane.Backend()
	d.trusted, d.trustSource = !d.cfg.WaitForClockSync, d.cfg.TrustSource
	d.loadSaved()
	defer d.startOverrides(ctx)()
	d.log.Info("famguard starting", "version", d.cfg.Version, "profiles", d.cfg.ProfilesDir,
		"firewall_backend", d.dp.Backend, "heal", healMode(d.cfg), "clock", d.cfg.Clock.Now().Format(time.RFC3339), "simulated_clock", d.cfg.ClockSimulated)
	if !d.trusted {
		d.log.Warn("the clock is not known to be right yet (no NTP sync since boot); until it is, the boot policy applies instead of the schedule",
			"boot_policy", d.cfg.BootPolicy, "saved_devices", len(d.saved.Devices), "saved_at", d.saved.SavedAt.Format(time.RFC3339))
	}

	fsChanged := make(chan struct{}, 1)
	if d.cfg.WatchFiles {
		ready := make(chan struct{})
		go watchDir(ctx, d.cfg.ProfilesDir, d.cfg.Debounce, isProfile, d.log, fsChanged, ready)
		<-ready
		if d.cfg.OperatorDir != "" {
			opReady := make(chan struct{})
			go watchDir(ctx, d.cfg.OperatorDir, d.cfg.Debounce, isProfile, d.log, fsChanged, opReady)
			<-opReady
		}
	}
	neighCh := make(chan netwatch.Table, 1)
	if d.cfg.Neighbours != nil {
		go func() {
			if err := d.cfg.Neighbours.Run(ctx, neighCh); err != nil && ctx.Err() == nil {
				d.log.Error("neighbour watch stopped; device addresses will no longer be updated", "err", err)
			}
		}()
	}

	catCh := make(chan catResult, 1)
	if d.cfg.DNS != nil && d.cfg.CategoriesDir != "" {
		catChanged := make(chan struct{}, 1)
		if d.cfg.WatchFiles {
			ready := make(chan struct{})
			go watchDir(ctx, d.cfg.CategoriesDir, d.cfg.Debounce, nil, d.log, catChanged, ready)
			<-ready
		}
		// Until the first load finishes, the DNS filter refuses what the
		// lists could decide instead of answering it unfiltered: the
		// redirects go in at start, before the lists are read.
		d.catsPending = true
		go loadCategories(ctx, loadLists, d.cfg.CategoriesDir, catChanged, catCh)
	}

	d.loadInventory()
	d.reload("start")

	schedTimer := time.NewTimer(time.Hour)
	defer schedTimer.Stop()
	retryTimer := time.NewTimer(time.Hour)
	defer retryTimer.Stop()
	heal := time.NewTicker(d.cfg.HealInterval)
	defer heal.Stop()

	// Optional event sources close when they stop (or could not start); a
	// closed channel is always ready, so each is set to nil once closed.
	wallJumps, rulesChanged, sighup := d.cfg.WallJumps, d.cfg.RulesChanged, d.cfg.Reload
	clockSynced := d.cfg.ClockSynced

	reported := false // the status sink already has this iteration's status
	for {
		if d.cfg.StatusSink != nil && !reported {
			d.cfg.StatusSink(d.status())
		}
		reported = false
		d.armTimer(schedTimer)
		var retry <-chan time.Time
		if !d.retryAt.IsZero() {
			resetTimer(retryTimer, max(time.Until(d.retryAt), 0))
			retry = retryTimer.C
		}
		select {
		case <-ctx.Done():
			d.log.Info("famguard stopping; the rules stay in force (run `famguard cleanup` to remove them)")
			return nil
		case <-fsChanged:
			d.reload("profile directory changed")
		case _, ok := <-sighup:
			if !ok {
				sighup = nil
				continue
			}
			d.reload("SIGHUP")
		case t := <-neighCh:
			d.neigh = t
			d.observe(t)
			// While a failed apply waits for its retry, a new table only
			// updates what the retry will write. The table changes every
			// few seconds on a busy LAN, and each attempt against a failing
			// or hung iptables-restore can hold the loop for
			// --restore-timeout: without this the backoff would be
			// bypassed, and status and the parents' verbs would queue
			// behind back-to-back attempts.
			if d.retryAt.IsZero() {
				d.reconcile("neighbour table changed")
			}
			d.noticeRestricted(false)
		case c := <-catCh:
			d.categoriesLoaded(c)
		case _, ok := <-wallJumps:
			if !ok {
				wallJumps = nil
				continue
			}
			d.log.Info("wall clock was stepped; re-evaluating schedules", "now", d.cfg.Clock.Now().Format(time.RFC3339))
			d.reconcile("clock step")
		case _, ok := <-clockSynced:
			clockSynced = nil // one signal is all it takes
			if ok {
				d.clockTrusted("the kernel reports NTP synchronisation")
			}
		case <-schedTimer.C:
			d.reconcile("schedule")
		case <-retry:
			d.retryAt = time.Time{}
			d.reconcile("retry after a failed apply")
		case <-heal.C:
			d.heal()
			d.retrySave()
		case _, ok := <-rulesChanged:
			if !ok {
				rulesChanged = nil
				continue
			}
			d.heal()
		case r := <-d.requests:
			v, err := d.answer(r)
			r.reply <- response{v, err}
			if st, ok := v.(Status); ok && r.cmd == "status" && r.do == nil && d.cfg.StatusSink != nil {
				// The status just answered is the loop's state now:
				// hand it over instead of building it again (at 1000
				// devices that is milliseconds, and a page polling
				// status would keep the loop busy with it).
				d.cfg.StatusSink(st)
				reported = true
			}
			if r.cmd == "shutdown" && err == nil {
				d.log.Info("shutdown requested over the control socket")
				return ErrShutdownRequested
			}
		}
	}
}

// isProfile says whether a watched path is a profile the loader reads.
func isProfile(path string) bool { return policy.IsProfileFile(filepath.Base(path)) }

func healMode(c Config) string {
	if c.EventHealing {
		return "on nf_tables change events, and every " + c.HealInterval.String()
	}
	return "every " + c.HealInterval.String()
}

// loadLists loads the category lists: categories.Load, replaced by tests
// that need to hold a load in progress. Read once per Run.
var loadLists = categories.Load

// loadCategories (re)loads the category lists off the loop goroutine — a
// full load of 1.4 M domains takes a few hundred milliseconds — and hands
// each complete store over; the old lists keep answering meanwhile.
func loadCategories(ctx context.Context, load func(string) (*categories.Store, categories.Stats, error),
	dir string, changed <-chan struct{}, out chan<- catResult) {
	for {
		start := time.Now()
		store, stats, err := load(dir)
		select {
		case out <- catResult{store: store, stats: stats, err: err, at: start}:
		case <-ctx.Done():
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// categoriesLoaded takes one load's result. The first one, whatever it is,
// ends the start-up wait (catsPending): after a failed first load the
// categories are not enforced (and status says why) rather than every
// query of a blocking class refused, so a router without lists keeps DNS.
func (d *Daemon) categoriesLoaded(c catResult) {
	wasPending := d.catsPending
	d.catsPending = false
	if c.err != nil {
		msg := "category lists could not be loaded; the previous lists stay in use"
		if d.cats.store == nil {
			msg = "category lists could not be loaded; category blocks are not enforced until they can be"
		}
		d.log.Error(msg, "dir", d.cfg.CategoriesDir, "err", c.err)
		d.cats.err = c.err
		if wasPending {
			d.publishDNS()
		}
		return
	}
	d.cats = c
	d.log.Info(fmt.Sprintf("category lists loaded: %d categories, %d domains", c.stats.Categories, c.stats.Domains),
		"took", time.Since(c.at).Round(time.Millisecond), "bad_lines", c.stats.BadLines)
	d.missingCats = d.missingCategories()
	d.publishDNS()
}

// publishDNS hands the DNS listener what applies to each device right now.
func (d *Daemon) publishDNS() {
	if d.cfg.DNS == nil || d.pol == nil {
		return
	}
	children := map[string]policy.Child{}
	for _, c := range d.pol.Children {
		children[c.Name] = c
	}
	perMAC := map[string]dnsfilter.Rules{}
	for _, s := range d.states {
		c := children[s.Child]
		perMAC[s.MAC] = dnsfilter.Rules{Child: s.Child, Device: s.Device, Categories: s.BlockedCategories,
			Allow: c.Allow, Deny: c.Deny, SafeSearch: c.SafeSearch, BypassPrevention: c.BypassPrevention,
			DoHNames: d.cfg.DoH.Names, Strict: c.Strict, StrictSet: strictSet(c)}
	}
	offline := 0
	if d.cfg.DNSPort > 0 {
		offline = d.cfg.DNSPort + offlinePortOffset
	}
	d.cfg.DNS.Publish(dnsfilter.NewSnapshot(perMAC, d.neigh, d.cats.store).WithPorts(d.classRules(perMAC), offline).
		WithListsPending(d.catsPending))
}

// armTimer points the schedule timer at the next transition. A Go timer runs
// on the monotonic clock, so a wall-clock step is handled by WallJumps; the
// one-hour cap is a safety net for platforms without that signal.
func (d *Daemon) armTimer(t *time.Timer) {
	wait := time.Hour
	if !d.next.IsZero() {
		wait = d.next.Sub(d.cfg.Clock.Now())
		if wait < 0 {
			wait = 0
		}
		if wait > time.Hour {
			wait = time.Hour
		}
	}
	resetTimer(t, wait)
}

// resetTimer re-arms t, dropping a value it may already hold.
func resetTimer(t *time.Timer, wait time.Duration) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(wait)
}

// reload reads and validates the whole profile set; only a valid set replaces
// the policy in force.
func (d *Daemon) reload(why string) {
	now := time.Now()
	d.pass.begin()
	d.inReload = true
	defer func() { d.inReload = false }()
	pol, err := policy.Load(d.cfg.OperatorDir, d.cfg.ProfilesDir)
	d.pass.mark("load")
	res := ReloadResult{At: now, Trigger: why}
	if err != nil {
		res.OK = false
		if probs, ok := err.(policy.Problems); ok {
			for _, p := range probs {
				res.Problems = append(res.Problems, p.String())
			}
			res.Message = fmt.Sprintf("profiles rejected: %d problem(s)", len(probs))
		} else {
			res.Message = "profiles could not be read: " + err.Error()
		}
		if d.pol != nil {
			res.Message += fmt.Sprintf("; still enforcing policy %s loaded at %s", d.pol.Digest, d.polLoadedAt.Format(time.RFC3339))
		} else {
			res.Message += "; no valid policy loaded yet, firewall rules left as they are"
		}
		d.lastReload, d.lastChange = res, res
		d.log.Error(res.Message, "trigger", why, "problems", strings.Join(res.Problems, "\n"))
		return
	}
	zone, zerr := tz.Resolve(pol.Timezone, d.cfg.Env)
	if zerr != nil {
		// The loader validated the profile zone already; reaching here means
		// the zone database itself failed, so keep the old policy.
		res.OK = false
		res.Message = "time zone: " + zerr.Error() + "; keeping the previous policy"
		d.lastReload, d.lastChange = res, res
		d.log.Error(res.Message)
		return
	}
	unchanged := d.pol != nil && d.pol.Digest == pol.Digest && d.zone.Name == zone.Name
	d.pol, d.zone = pol, zone
	d.polLoadedAt = now
	d.missingCats = d.missingCategories()
	res.OK = true
	res.Policy = pol.Digest
	if unchanged {
		res.Message = fmt.Sprintf("profiles unchanged (policy %s)", pol.Digest)
		d.lastReload = res
		d.log.Debug(res.Message, "trigger", why)
		return
	}
	children, devices := 0, 0
	for _, c := range pol.Children {
		children++
		devices += len(c.Devices)
	}
	res.Message = fmt.Sprintf("policy %s loaded: %d children, %d devices, zone %s (%s)", pol.Digest, children, devices, zone.Name, zone.Source)
	d.lastReload, d.lastChange = res, res
	d.log.Info(res.Message, "trigger", why, "files", len(pol.Sources))
	for _, w := range pol.Warnings {
		d.log.Warn(w.String())
	}
	for _, m := range d.missingCats {
		d.log.Warn(m)
	}
	d.reconcile("policy loaded")
	d.noticeRestricted(true)
}

// missingCategories reports categories named in profiles that have no list in
// the categories directory. They do not stop the rest of the policy.
func (d *Daemon) missingCategories() []string {
	if d.cfg.CategoriesDir == "" || d.pol == nil {
		return nil
	}
	avail, err := categories.Available(d.cfg.CategoriesDir)
	if errors.Is(err, os.ErrNotExist) {
		// A fresh install without lists: each category says so below.
		avail, err = map[string]bool{}, nil
	}
	if err != nil {
		if len(d.pol.Categories()) == 0 {
			return nil
		}
		return []string{fmt.Sprintf("categories directory %s cannot be read (%v): category blocks are listed but not enforced", d.cfg.CategoriesDir, err)}
	}
	var out []string
	for _, p := range d.pol.MissingCategories(d.cfg.CategoriesDir, avail) {
		out = append(out, p.String())
	}
	return out
}

// reconcile evaluates the policy now and brings the kernel to match.
func (d *Daemon) reconcile(why string) {
	if d.pol == nil {
		return
	}
	if !d.inReload {
		d.pass.begin()
	}
	applies := d.dp.Applies
	states := d.evaluate()
	d.states = states
	if next, ok := policy.NextChange(states); ok {
		d.next = next
	} else {
		d.next = time.Time{}
	}
	d.pass.mark("evaluate")

	desired, err := d.desired(states)
	d.pass.mark("desired")
	if err != nil {
		d.dp.LastError = err.Error()
		d.log.Error("cannot prepare the rules; keeping the current ones", "err", err)
		d.scheduleRetry()
		return
	}
	d.prepareInbound(&desired)
	d.noteDesired(desired)
	// The DNS filter learns the new state before the firewall changes, so
	// a redirected query never meets stale rules.
	d.publishDNS()
	d.pass.mark("dns snapshot")
	if !d.apply(desired) {
		d.scheduleRetry()
		return
	}
	d.applySucceeded()
	d.inboundApplied()

	// Conntrack: cut what the newly offline devices had open, by the
	// device IDs in the connection marks.
	nowOffline := map[string]bool{}
	for _, s := range states {
		if s.Online {
			if d.offline[s.MAC] {
				d.log.Info(fmt.Sprintf("%s is online again: %s", deviceLabel(s), s.Reason), "until", untilText(s.Until, d.zone.Loc))
			}
			continue
		}
		nowOffline[s.MAC] = true
		if !d.offline[s.MAC] {
			d.log.Info(fmt.Sprintf("%s is now offline: %s", deviceLabel(s), s.Reason), "until", untilText(s.Until, d.zone.Loc), "trigger", why)
		}
	}
	d.offline = nowOffline
	d.saveStates(states)
	d.cutOffline(d.newlyOfflineIDs(desired))
	d.cutDNS(desired)
	d.pass.mark("conntrack")
	if d.dp.Applies > applies {
		d.dp.LastPass = d.pass.result()
	}
}

// evaluate is the device states now: the schedule when the clock is trusted,
// the boot policy otherwise (evaluator); with trusted devices and the
// unknown devices on the LAN (inventory.go).
func (d *Daemon) evaluate() []policy.DeviceState {
	return d.withSeen(d.seen(), d.evaluator())
}

// clockTrusted switches from the boot policy to the schedule.
func (d *Daemon) clockTrusted(source string) {
	if d.trusted {
		return
	}
	d.trusted, d.trustSource, d.trustedAt = true, source, time.Now()
	if d.cfg.StateDir != "" {
		if err := clock.MarkSynced(d.cfg.StateDir); err != nil {
			d.log.Warn("cannot remember the clock sync for a restart of the agent", "err", err)
		}
	}
	d.log.Info("clock synchronised; schedules now follow the clock", "source", source, "now", d.cfg.Clock.Now().Format(time.RFC3339))
	d.reconcile("clock synchronised")
}

// loadSaved reads the device states saved before the last shutdown.
func (d *Daemon) loadSaved() {
	d.saved = savedstate.File{Devices: map[string]policy.Saved{}}
	if d.cfg.SavedState == nil {
		return
	}
	f, err := d.cfg.SavedState.Load()
	if err != nil {
		d.savedErr = err.Error()
		d.log.Error("saved device states unusable; until the clock is synchronised devices with an offline window are offline", "err", err)
		return
	}
	d.saved = f
}

// saveStates persists the states just applied, when they come from a
// trusted clock (the store writes only on change).
func (d *Daemon) saveStates(states []policy.DeviceState) {
	if !d.trusted || d.cfg.SavedState == nil {
		return
	}
	saved := policy.SavedOf(states)
	wrote, err := d.cfg.SavedState.Save(saved, d.cfg.Clock.Now())
	if err != nil {
		if d.savedErr != err.Error() {
			d.log.Error("cannot save device states; enforcement goes on, the save is retried", "err", err)
		}
		d.savedErr, d.saveFailed = err.Error(), true
		return
	}
	if d.saveFailed {
		d.log.Info("device states saved again", "path", d.cfg.SavedState.Path())
	}
	d.savedErr, d.saveFailed = "", false
	if wrote {
		d.saved = savedstate.File{Version: savedstate.FormatVersion, SavedAt: d.cfg.Clock.Now(), Devices: saved}
		d.log.Debug("device states saved", "path", d.cfg.SavedState.Path(), "devices", len(saved))
	}
}

// retrySave tries again to save the device states after a failed save (a
// full or read-only file system): otherwise the file would stay stale until
// the next change of state, and a reboot in between would restore old
// states. Only the current states are written, and only while saving fails.
func (d *Daemon) retrySave() {
	if d.saveFailed && d.pol != nil && d.states != nil {
		d.saveStates(d.states)
	}
}

// scheduleRetry arms the retry after a failed apply with exponential backoff:
// RetryBase, doubling at each consecutive failure, capped at RetryMax. A tool
// that fails fast is not hammered, and one that hangs (each run killed after
// the runner's timeout) does not keep the loop busy back to back.
func (d *Daemon) scheduleRetry() {
	if d.retryDelay == 0 {
		d.retryDelay = d.cfg.RetryBase
	} else {
		d.retryDelay = min(2*d.retryDelay, d.cfg.RetryMax)
	}
	d.retryAt = time.Now().Add(d.retryDelay)
	d.dp.ConsecutiveFailures++
	at := d.retryAt
	d.dp.NextRetry = &at
	d.dp.RetryBackoff = d.retryDelay.String()
	d.log.Warn("firewall rules not (fully) applied; retrying", "in", d.retryDelay, "consecutive_failures", d.dp.ConsecutiveFailures)
}

// applySucceeded ends a run of failures.
func (d *Daemon) applySucceeded() {
	if d.dp.ConsecutiveFailures > 0 {
		d.log.Info("firewall rules applied again after failures", "consecutive_failures", d.dp.ConsecutiveFailures)
	}
	d.retryDelay, d.retryAt = 0, time.Time{}
	d.dp.ConsecutiveFailures, d.dp.NextRetry, d.dp.RetryBackoff = 0, nil, ""
}

// apply writes the desired state for both families if it changed, then
// reads both back (the snapshots heal compares against). It reports whether
// the kernel now holds the desired state.
//
// The two families are independent tables, each written in its own
// transaction, so their renders, restores and read-backs run side by side
// (eachFamily): at 1000 devices a restore or a read-back is tens of
// milliseconds of a tool's CPU, and a router has two cores more often than
// not. The loop still owns all of it: it waits for both before going on,
// and each family's state is only ever touched by that family's goroutine.
func (d *Daemon) apply(desired rules.Desired) bool {
	var texts [2]string
	var errs [2]error
	eachFamily(allFamilies, func(fam rules.Family) { texts[fam], errs[fam] = rules.Render(desired, fam) })
	d.pass.mark("render")
	for _, fam := range allFamilies {
		if errs[fam] != nil {
			// Render only fails on data the loader should have rejected.
			d.dp.LastError = errs[fam].Error()
			d.log.Error("cannot render rules; keeping the current ones", "family", fam, "err", errs[fam])
			return false
		}
	}
	var changed []rules.Family
	for _, fam := range allFamilies {
		if texts[fam] != d.applied[fam] {
			changed = append(changed, fam)
		}
	}
	start := time.Now()
	eachFamily(changed, func(fam rules.Family) { errs[fam] = d.cfg.Dataplane.Apply(fam, texts[fam]) })
	d.pass.mark("write")
	ok := true
	var written []rules.Family
	for _, fam := range changed {
		if err := errs[fam]; err != nil {
			d.applied[fam] = ""
			d.dp.LastError = fmt.Sprintf("%s: %v", fam, err)
			d.dp.Failures++
			d.log.Error("applying firewall rules failed; the previous rules stay in force and the agent retries", "family", fam, "err", err)
			ok = false
			continue
		}
		d.applied[fam] = texts[fam]
		d.dp.LastApply = time.Now()
		d.dp.LastApplyDuration = time.Since(start).String()
		d.dp.Applies++
		written = append(written, fam)
	}
	if ok && len(written) > 0 {
		d.dp.LastError = ""
	}
	var snaps [2]string
	eachFamily(written, func(fam rules.Family) { snaps[fam], errs[fam] = d.cfg.Dataplane.Snapshot(fam) })
	if len(written) > 0 {
		d.pass.mark("read-back")
	}
	for _, fam := range written {
		snap, err := snaps[fam], errs[fam]
		if err != nil {
			d.log.Warn("reading rules back failed", "family", fam, "err", err)
		}
		d.snapshot[fam] = snap
		if err == nil && !rules.Holds(d.applied[fam], snap) {
			// Another program changed the rules between our write and the
			// read-back: this is not a baseline to heal against. Write
			// again at the next heal.
			d.log.Warn("famguard's rules changed right after they were written; writing them again", "family", fam)
			d.applied[fam] = ""
			d.dp.Heals++ // another program's change, repaired like any other
			ok = false
		}
	}
	if ok && len(written) > 0 {
		// The write announced itself on the nf_tables event channel, and
		// the read-back just taken already covers it (and whatever else
		// changed before it). The heal that event would start reads both
		// families back again for nothing: at 1000 devices that is some
		// 200 ms during which the next change waits. A change after the
		// read-back signals anew (or the periodic check sees it).
		select {
		case <-d.cfg.RulesChanged:
		default:
		}
	}
	return ok
}

// allFamilies are the families famguard writes, in the order it reports them.
var allFamilies = []rules.Family{rules.IPv4, rules.IPv6}

// eachFamily runs f for each of fams side by side and returns when all
// have returned. f may only touch its own family's state.
func eachFamily(fams []rules.Family, f func(rules.Family)) {
	if len(fams) == 1 {
		f(fams[0])
		return
	}
	var wg sync.WaitGroup
	for _, fam := range fams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(fam)
		}()
	}
	wg.Wait()
}

// heal compares the kernel with the snapshot taken after the last write and
// rewrites everything if another program changed or removed our chains or
// the jump (firewall restart, `nft flush ruleset`, a manual flush).
func (d *Daemon) heal() {
	if d.pol == nil {
		return
	}
	var check []rules.Family
	for _, fam := range allFamilies {
		if d.applied[fam] != "" { // else a failed apply: retried below through reconcile
			check = append(check, fam)
		}
	}
	var snaps [2]string
	var errs [2]error
	eachFamily(check, func(fam rules.Family) { snaps[fam], errs[fam] = d.cfg.Dataplane.Snapshot(fam) })
	for _, fam := range check {
		if err := errs[fam]; err != nil {
			d.log.Warn("reading rules back failed", "family", fam, "err", err)
			continue
		}
		if snaps[fam] == d.snapshot[fam] {
			continue
		}
		d.log.Warn("famguard's rules were changed or removed by another program (firewall restart or flush?); restoring them", "family", fam)
		d.applied[fam] = ""
		d.dp.Heals++
	}
	// Re-run the whole pass: it re-applies what is missing. After failed
	// applies the retry timer does that, with its backoff.
	if (d.applied[rules.IPv4] == "" || d.applied[rules.IPv6] == "") && d.retryAt.IsZero() {
		d.reconcile("heal")
	}
}

func deviceLabel(s policy.DeviceState) string {
	if s.Kind == policy.KindUnknown {
		return fmt.Sprintf("unknown device %s", s.MAC)
	}
	if s.Device != "" {
		return fmt.Sprintf("%s (%s, %s)", s.Device, s.Child, s.MAC)
	}
	return fmt.Sprintf("%s's device %s", s.Child, s.MAC)
}

func untilText(t *time.Time, loc *time.Location) string {
	if t == nil {
		return "no change scheduled"
	}
	return t.In(loc).Format("Mon 15:04 MST")
}
