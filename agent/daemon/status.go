package daemon

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/famguard/famguard/agent/control"
	"github.com/famguard/famguard/agent/dnsfilter"
	"github.com/famguard/famguard/agent/egress"
	"github.com/famguard/famguard/agent/overrides"
	"github.com/famguard/famguard/agent/policy"
	"github.com/famguard/famguard/rules"
)

// Status is what `famguard status --json` prints: the running agent's view.
// Field names are a contract for scripts and operators; add, never rename.
type Status struct {
	Version    string        `json:"version"`
	PID        int           `json:"pid"`
	Started    time.Time     `json:"started"`
	Clock      ClockStatus   `json:"clock"`
	Zone       ZoneStatus    `json:"zone"`
	Policy     *PolicyStatus `json:"policy"` // null until a valid policy was loaded
	LastReload ReloadResult  `json:"last_reload"`
	// LastChange is the last reload that loaded a new policy or failed;
	// equal to LastReload unless the profiles were re-read unchanged since.
	LastChange ReloadResult    `json:"last_change"`
	Dataplane  DataplaneStatus `json:"dataplane"`
	// Inbound is the inbound guard (inbound.go, rules/INBOUND.md); absent
	// without a LAN or the ipset netlink socket.
	Inbound    *InboundStatus    `json:"inbound,omitempty"`
	Warnings   []string          `json:"warnings"`
	SavedState *SavedStateStatus `json:"saved_state"` // null when states are not persisted
	DNS        *DNSStatus        `json:"dns"`         // null when DNS filtering is off
	Devices    []DeviceStatus    `json:"devices"`
	Runtime    RuntimeStatus     `json:"runtime"`
	// Children is each child's pauses, extra time and budget today (add,
	// never rename: see agent/overrides.ChildStatus).
	Children  []overrides.ChildStatus `json:"children"`
	Overrides *OverridesStatus        `json:"overrides"`
}

// RuntimeStatus is the agent process's own footprint, so an operator (and
// the reload soak) can see that it stays flat over weeks of reloads.
type RuntimeStatus struct {
	Goroutines int    `json:"goroutines"`
	OpenFDs    int    `json:"open_fds"`       // -1 when /proc/self/fd cannot be read
	RSSBytes   uint64 `json:"rss_bytes"`      // VmRSS; 0 when /proc/self/status cannot be read
	HeapBytes  uint64 `json:"heap_bytes"`     // live heap objects
	HeapSys    uint64 `json:"heap_sys_bytes"` // heap memory obtained from the OS
	GCCycles   uint32 `json:"gc_cycles"`
}

func runtimeStatus() RuntimeStatus {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rs := RuntimeStatus{Goroutines: runtime.NumGoroutine(), OpenFDs: -1, HeapBytes: ms.HeapAlloc, HeapSys: ms.HeapSys, GCCycles: ms.NumGC}
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		rs.OpenFDs = len(fds) - 1 // less the directory being read
	}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
				if kib, err := strconv.ParseUint(f[1], 10, 64); err == nil {
					rs.RSSBytes = kib << 10
				}
			}
		}
	}
	return rs
}

// DNSStatus reports the DNS filter: its lists and its counters. Only
// counters and the last few blocks are kept, in memory: no browsing history.
type DNSStatus struct {
	Port          int       `json:"port"`
	Categories    int       `json:"categories"`
	Domains       int       `json:"domains"`
	ListsLoadedAt time.Time `json:"lists_loaded_at"`
	ListsError    string    `json:"lists_error,omitempty"`
	// ListsPending: the lists are still loading after start; until then
	// queries they could decide are REFUSED (counted in lists_not_ready).
	ListsPending bool `json:"lists_pending,omitempty"`
	dnsfilter.Stats
	// Strict is each strict child's egress sets: how many addresses its
	// devices may open connections to now, and the sets' kernel memory.
	// Answers that could not open their addresses are the "strict-failed"
	// counters of blocked_by_device; connections refused are counted by
	// the firewall's reject rule.
	Strict map[string]StrictStatus `json:"strict,omitempty"`
}

// StrictStatus is one strict child's strict egress: its sets, and how many
// new connections strict egress refused since the agent started — the
// packet counters of the firewall's strict reject rules, read from the
// kernel when someone asks for the status (famguard status, the control
// socket's status), never at the loop's other events: status.json carries
// the count of the last such request, or none.
//
// Refused counts the child's devices and the unknown devices that follow
// the child's rules (unknown_devices: {like: child}): they share its sets.
type StrictStatus struct {
	egress.Stats
	Refused *uint64 `json:"refused,omitempty"`
}

// ClockStatus says which time the agent evaluates schedules at, and whether
// that time is trusted yet.
type ClockStatus struct {
	Now        time.Time  `json:"now"`
	Simulated  bool       `json:"simulated"` // started with --clock
	NextChange *time.Time `json:"next_change"`
	// Trusted is false until NTP has synchronised the clock since boot;
	// meanwhile BootPolicy applies instead of the schedule.
	Trusted     bool       `json:"trusted"`
	TrustSource string     `json:"trust_source"`         // why it is trusted ("" while not)
	TrustedAt   *time.Time `json:"trusted_at,omitempty"` // when it became trusted while running
	BootPolicy  string     `json:"boot_policy"`
}

// SavedStateStatus reports the device states persisted for the next boot.
type SavedStateStatus struct {
	Path    string    `json:"path"`
	SavedAt time.Time `json:"saved_at"`
	Devices int       `json:"devices"`
	Writes  int       `json:"writes"` // by this agent, since it started
	Error   string    `json:"error,omitempty"`
}

// ZoneStatus names the zone schedules are evaluated in and where it came from.
type ZoneStatus struct {
	Name   string `json:"name"`
	Source string `json:"source"`
}

// PolicyStatus identifies the policy in force, so an operator can read back
// which push is live.
type PolicyStatus struct {
	Digest   string          `json:"digest"`
	Dir      string          `json:"dir"`
	LoadedAt time.Time       `json:"loaded_at"`
	Sources  []policy.Source `json:"sources"`
	// Layers: each layer's directory and digest (operator, parents);
	// Floors: what no parent can lower; Warnings: cross-layer conflicts
	// resolved in the parents' favour.
	Layers   []policy.LayerInfo `json:"layers"`
	Floors   policy.Settings    `json:"floors"`
	Warnings []string           `json:"warnings,omitempty"`
}

// ReloadResult is the outcome of the last attempt to load the profiles.
type ReloadResult struct {
	At       time.Time `json:"at"`
	Trigger  string    `json:"trigger"`
	OK       bool      `json:"ok"`
	Message  string    `json:"message"`
	Policy   string    `json:"policy,omitempty"`
	Problems []string  `json:"problems"`
}

// DataplaneStatus reports the firewall side.
type DataplaneStatus struct {
	Backend           string    `json:"backend"`
	Applies           int       `json:"applies"`
	Failures          int       `json:"failures"`
	Heals             int       `json:"heals"`
	LastApply         time.Time `json:"last_apply"`
	LastApplyDuration string    `json:"last_apply_duration"`
	LastError         string    `json:"last_error,omitempty"`
	// After failed applies: how many in a row, the current backoff and when
	// the next retry runs (cleared by the next successful apply).
	ConsecutiveFailures int        `json:"consecutive_failures"`
	RetryBackoff        string     `json:"retry_backoff,omitempty"`
	NextRetry           *time.Time `json:"next_retry,omitempty"`
	// LastPass is where the last pass that wrote rules spent its time, step
	// by step in order (pass.go): what a slow reload is slow at.
	LastPass []PassStep `json:"last_pass,omitempty"`
}

// DeviceStatus is plan's per-device view plus what the network shows.
type DeviceStatus struct {
	policy.DeviceState
	Seen      bool     `json:"seen"`
	Addresses []string `json:"addresses"`
}

func (d *Daemon) answer(r request) (any, error) {
	if r.do != nil { // the daemon's own goroutines (accounting)
		return r.do()
	}
	if v, err, ok := d.answerOverrides(r); ok {
		return v, err
	}
	switch r.cmd {
	case "status":
		// Evaluate afresh so `until` and reasons are exact at this instant.
		if d.pol != nil {
			d.states = d.evaluate()
		}
		st := d.status()
		d.countRefused(&st)
		return st, nil
	case "devices":
		return d.devices(), nil
	case "reload":
		d.reload("control socket")
		return d.lastReload, nil
	case "clock-synced":
		// The ntp hotplug signal (`famguard notify clock-synced`).
		d.clockTrusted("the ntp hotplug signal")
		return d.status().Clock, nil
	case "heal":
		// The firewall include (`famguard notify firewall`): fw4 was
		// reloaded; compare and restore now rather than at the next tick.
		d.heal()
		return d.dp, nil
	case "shutdown":
		return "bye", nil
	case "clock-step":
		// For lab tests only: step a simulated clock (--clock) by a duration,
		// the way NTP or `date -s` steps the real one, and handle it like a
		// wall-clock step signal. Refused with the real clock: the agent
		// never sets the system time.
		var a struct {
			By string `json:"by"`
		}
		if err := control.DecodeArgs(r.raw, &a); err != nil {
			return nil, err
		}
		if a.By != "" {
			r.args = []string{a.By}
		}
		return d.stepClock(r.args)
	default:
		return nil, control.Errorf(control.CodeUnknownCommand, "unknown command %q (known: status, devices, reload, pause, resume, grant, budget, overrides, clock-synced, heal, shutdown)", r.cmd)
	}
}

func (d *Daemon) status() Status {
	st := Status{
		Version: d.cfg.Version,
		PID:     os.Getpid(),
		Started: d.started,
		Clock: ClockStatus{Now: d.cfg.Clock.Now(), Simulated: d.cfg.ClockSimulated,
			Trusted: d.trusted, BootPolicy: string(d.cfg.BootPolicy)},
		Zone:       ZoneStatus{Name: d.zone.Name, Source: d.zone.Source},
		LastReload: d.lastReload,
		LastChange: d.lastChange,
		Dataplane:  d.dp,
		Inbound:    d.inboundStatus(),
		Warnings:   append(append([]string{}, d.missingCats...), d.restrictedWarnings()...),
		Devices:    []DeviceStatus{},
		Runtime:    runtimeStatus(),
		Children:   append([]overrides.ChildStatus{}, d.ov.children...),
		Overrides:  d.overridesStatus(),
	}
	if d.trusted {
		st.Clock.TrustSource = d.trustSource
		if !d.trustedAt.IsZero() {
			t := d.trustedAt
			st.Clock.TrustedAt = &t
		}
	}
	if d.cfg.SavedState != nil {
		st.SavedState = &SavedStateStatus{Path: d.cfg.SavedState.Path(), SavedAt: d.saved.SavedAt,
			Devices: len(d.saved.Devices), Writes: d.cfg.SavedState.Writes(), Error: d.savedErr}
	}
	if st.LastReload.Problems == nil {
		st.LastReload.Problems = []string{}
	}
	if !d.next.IsZero() {
		n := d.next
		st.Clock.NextChange = &n
	}
	if d.zone.Loc != nil {
		st.Clock.Now = st.Clock.Now.In(d.zone.Loc)
	}
	if d.cfg.DNS != nil {
		st.DNS = &DNSStatus{Port: d.cfg.DNSPort, Categories: d.cats.stats.Categories, Domains: d.cats.stats.Domains,
			ListsLoadedAt: d.cats.at, ListsPending: d.catsPending, Stats: d.cfg.DNS.Stats()}
		if d.cats.err != nil {
			st.DNS.ListsError = d.cats.err.Error()
		}
		st.DNS.Strict = d.strictStats()
	}
	if d.pol != nil {
		st.Policy = &PolicyStatus{Digest: d.pol.Digest, Dir: d.cfg.ProfilesDir, LoadedAt: d.polLoadedAt, Sources: d.pol.Sources,
			Layers: d.pol.Layers, Floors: d.pol.Floors}
		for _, w := range d.pol.Warnings {
			st.Policy.Warnings = append(st.Policy.Warnings, w.String())
		}
	}
	for _, s := range d.states {
		ds := DeviceStatus{DeviceState: s, Addresses: []string{}}
		for _, a := range d.neigh[s.MAC] {
			ds.Addresses = append(ds.Addresses, a.String())
		}
		ds.Seen = len(ds.Addresses) > 0
		st.Devices = append(st.Devices, ds)
	}
	return st
}

// stepper is a clock that can be stepped (clock.Simulated).
type stepper interface{ Step(time.Duration) }

func (d *Daemon) stepClock(args []string) (any, error) {
	st, ok := d.cfg.Clock.(stepper)
	if !ok || !d.cfg.ClockSimulated {
		return nil, fmt.Errorf("clock-step works only with a simulated clock (--clock); the agent never sets the system time")
	}
	if len(args) != 1 {
		return nil, fmt.Errorf("clock-step: expected one duration, e.g. 3h or -3h")
	}
	by, err := time.ParseDuration(args[0])
	if err != nil {
		return nil, fmt.Errorf("clock-step: %w", err)
	}
	st.Step(by)
	d.log.Info("simulated clock stepped; re-evaluating schedules", "by", by, "now", d.cfg.Clock.Now().Format(time.RFC3339))
	d.reconcile("clock step")
	return d.status().Clock, nil
}

// strictStats reads every strict child's sets (nil when there are none).
func (d *Daemon) strictStats() map[string]StrictStatus {
	if d.cfg.StrictSets == nil || d.pol == nil {
		return nil
	}
	var out map[string]StrictStatus
	for _, c := range d.pol.Children {
		if !c.Strict {
			continue
		}
		st, err := d.cfg.StrictSets.Stats(strictSet(c))
		if err != nil {
			// Not created yet (no device of the child seen), or gone: the
			// firewall's rules would fail without it, so it shows there.
			continue
		}
		if out == nil {
			out = map[string]StrictStatus{}
		}
		out[c.Name] = StrictStatus{Stats: st}
	}
	return out
}

// countRefused adds to st the connections strict egress refused, per child,
// from the kernel's counters (rules.RefusedCounter): two iptables-save
// execs, so only when the status is asked for, never per packet or event.
func (d *Daemon) countRefused(st *Status) {
	rc, ok := d.cfg.Dataplane.(rules.RefusedCounter)
	if !ok || st.DNS == nil || len(st.DNS.Strict) == 0 {
		return
	}
	counts, err := rc.Refused()
	if err != nil {
		d.log.Warn("cannot read the strict reject counters", "err", err)
		return
	}
	per := map[string]uint64{d.kid.unknownStrict: counts[rules.DefaultUnknownID]}
	for id, c := range counts {
		if child, ok := d.ov.ids[id]; ok {
			per[child] += c
		}
	}
	for child, s := range st.DNS.Strict {
		n := per[child]
		s.Refused = &n
		st.DNS.Strict[child] = s
	}
}
