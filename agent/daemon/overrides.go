package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/famguard/famguard/agent/control"
	"github.com/famguard/famguard/agent/overrides"
	"github.com/famguard/famguard/agent/policy"
	"github.com/famguard/famguard/rules"
)

// The everyday controls (pause, extra time, daily budgets) on the loop.
//
// The overrides.State is owned by the loop goroutine like everything else:
// control requests change it and save it at once; evaluate() lays it over
// the schedule's states (see package overrides for the precedence), so a
// pause goes through the same path as bedtime — rules rewritten in one
// transaction, the newly offline devices' connections cut. The accounting
// goroutine only reads the kernel's byte counters; what they mean (whose
// minute, does it count) is decided here, on the loop.

// Accounting reads the kernel's per-device byte counters: for each device
// ID (rules.MarkDevice of the conntrack mark) the bytes its connections
// moved, both directions, since the previous Sample. netwatch's conntrack
// reader in production, a fake in tests.
type Accounting interface {
	Sample() (map[uint16]uint64, error)
}

// overridesState is the daemon's part for overrides (loop-owned).
type overridesState struct {
	st       overrides.State
	loaded   bool
	digest   string            // policy the state was last pruned against
	trusted  bool              // the clock was trusted at the last evaluation
	ids      map[uint16]string // device ID → child, from the last desired state
	children []overrides.ChildStatus
	saveErr  string
	minutes  int // accounting passes
	lastPass time.Duration
}

// startOverrides loads the saved overrides and starts the accounting
// goroutine; the returned function flushes usage to flash (on stop).
func (d *Daemon) startOverrides(ctx context.Context) func() {
	if s := d.cfg.Overrides; s != nil {
		st, err := s.Load()
		if err != nil {
			d.ov.saveErr = err.Error()
			d.log.Error("saved overrides (pauses, extra time, usage) partly unusable", "err", err)
		}
		d.ov.st = st
		if len(st.Pauses)+len(st.Grants) > 0 {
			d.log.Info("overrides restored", "pauses", len(st.Pauses), "grants", len(st.Grants))
		}
	}
	d.ov.loaded = true
	if d.cfg.Accounting != nil {
		go d.account(ctx)
	}
	return func() {
		if d.cfg.Overrides != nil {
			if err := d.cfg.Overrides.Flush(d.ov.st); err != nil {
				d.log.Error("could not save today's usage on stop", "err", err)
			}
		}
	}
}

func (d *Daemon) ovNow() overrides.Now {
	return overrides.Now{T: d.cfg.Clock.Now(), Loc: d.zone.Loc, Trusted: d.trusted}
}

// applyOverrides is evaluate()'s hook: it lays the overrides over the
// schedule's (or boot policy's) states.
func (d *Daemon) applyOverrides(states []policy.DeviceState) []policy.DeviceState {
	if d.pol == nil || d.zone.Loc == nil {
		return states
	}
	now := d.ovNow()
	changed := false
	if d.ov.digest != d.pol.Digest {
		d.ov.digest = d.pol.Digest
		for _, line := range d.ov.st.Prune(d.pol) {
			d.log.Warn(line)
			changed = true
		}
	}
	if now.Trusted && !d.ov.trusted && d.ov.st.ClockTrusted(now.T) {
		d.log.Info("pauses made before the clock was synchronised start counting now")
		changed = true
	}
	d.ov.trusted = now.Trusted
	pauses, grants := d.ov.st.Expire(now)
	for _, p := range pauses {
		d.log.Info(fmt.Sprintf("pause of %s ended", overrides.Target{Child: p.Child, Device: p.Device, DeviceName: p.DeviceName}), "by", p.By)
		changed = true
	}
	for _, g := range grants {
		d.log.Info(fmt.Sprintf("extra time of %s ended", g.Child), "by", g.By)
		changed = true
	}
	if changed {
		d.saveOverrides()
	}
	out, children := d.ov.st.Apply(d.pol, states, now)
	d.ov.children = children
	return out
}

// noteDesired records the device IDs the dataplane was given, so the
// accounting can map a conntrack mark back to a child. (The unknown class's
// shared ID is no child's: unknown devices do not use a child's budget.)
func (d *Daemon) noteDesired(desired rules.Desired) {
	ids := make(map[uint16]string, len(desired.Devices))
	for _, dev := range desired.Devices {
		if dev.ID != 0 && dev.Child != "" {
			ids[dev.ID] = dev.Child
		}
	}
	d.ov.ids = ids
}

func (d *Daemon) saveOverrides() {
	if d.cfg.Overrides == nil {
		return
	}
	if err := d.cfg.Overrides.SaveNow(d.ov.st); err != nil {
		if d.ov.saveErr != err.Error() {
			d.log.Error("cannot save overrides; they hold until the agent restarts", "err", err)
		}
		d.ov.saveErr = err.Error()
		return
	}
	d.ov.saveErr = ""
}

// account samples the kernel's counters once a minute, off the loop, and
// hands each sample to the loop.
func (d *Daemon) account(ctx context.Context) {
	every := d.cfg.AccountEvery
	if every <= 0 {
		every = time.Minute
	}
	t := time.NewTicker(every)
	defer t.Stop()
	if _, err := d.cfg.Accounting.Sample(); err != nil { // the baseline
		d.log.Warn("usage accounting cannot read the connection counters; budgets will not count", "err", err)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		bytes, err := d.cfg.Accounting.Sample()
		took := time.Since(start)
		if err != nil {
			d.log.Warn("usage accounting: reading the connection counters failed; this minute is not counted", "err", err)
			continue
		}
		r := request{cmd: "account", do: func() (any, error) { d.countMinute(bytes, took); return nil, nil }, reply: make(chan response, 1)}
		select {
		case d.requests <- r:
		case <-ctx.Done():
			return
		}
	}
}

// countMinute attributes one minute of bytes to children and counts it
// where it may count (see package overrides).
func (d *Daemon) countMinute(bytesByID map[uint16]uint64, took time.Duration) {
	d.ov.minutes++
	d.ov.lastPass = took
	if d.pol == nil || d.zone.Loc == nil {
		return
	}
	now := d.ovNow()
	byChild := map[string]uint64{}
	for id, b := range bytesByID {
		if child, ok := d.ov.ids[id]; ok {
			byChild[child] += b
		}
	}
	// A minute may count when the child was online by its schedule (no
	// offline window) and not paused as a whole. Before the clock is
	// trusted the schedule is unknown: the states in force decide.
	scheduleOnline := map[string]bool{}
	var sched []policy.DeviceState
	if d.trusted {
		sched = d.pol.Evaluate(now.T, d.zone.Loc)
	} else {
		sched = d.states
	}
	for _, s := range sched {
		if s.Online {
			scheduleOnline[s.Child] = true
		}
	}
	threshold := d.cfg.BudgetThreshold
	if threshold == 0 {
		threshold = overrides.DefaultThreshold
	}
	changed, flipped := false, false
	for _, c := range d.pol.Children {
		if c.Budget == nil {
			continue
		}
		before := d.ov.st.BudgetOf(c, now)
		eligible := scheduleOnline[c.Name]
		for _, cs := range d.ov.children {
			if cs.Child == c.Name && cs.Paused != nil {
				eligible = false
			}
		}
		dayBefore := ""
		if before != nil {
			dayBefore = before.Day
		}
		if d.ov.st.CountMinute(c.Name, byChild[c.Name], eligible, threshold, now) {
			changed = true
		}
		after := d.ov.st.BudgetOf(c, now)
		if after != nil && (before == nil || dayBefore != after.Day) {
			changed = true
		}
		if (before != nil && before.Exhausted) != (after != nil && after.Exhausted) {
			flipped = true
			if after != nil && after.Exhausted {
				d.log.Info(fmt.Sprintf("%s's daily budget is used up (%s); their devices go offline", c.Name, after.Source))
			}
		}
	}
	if d.cfg.Overrides != nil {
		if err := d.cfg.Overrides.SaveUsage(d.ov.st, changed); err != nil && d.ov.saveErr != err.Error() {
			d.ov.saveErr = err.Error()
			d.log.Error("cannot save today's usage", "err", err)
		}
	}
	if flipped {
		d.reconcile("daily budget")
	}
}

// Arguments of the override commands (PROTOCOL.md).
type pauseArgs struct {
	Target string `json:"target"` // a child's name, else a device's MAC or name
	Child  string `json:"child"`
	Device string `json:"device"`
	For    string `json:"for"`
	Until  string `json:"until"`
	By     string `json:"by"`
}

type grantArgs struct {
	Child  string `json:"child"`
	For    string `json:"for"`
	Budget string `json:"budget"` // "+30m" / "-15m": today's budget only
	Cancel bool   `json:"cancel"`
	By     string `json:"by"`
}

type childArgs struct {
	Child string `json:"child"`
}

// PauseResult is the answer to pause.
type PauseResult struct {
	Pause   overrides.Pause `json:"pause"`
	Devices []string        `json:"devices"` // MACs now offline by it
	Message string          `json:"message"`
}

// ResumeResult is the answer to resume.
type ResumeResult struct {
	Lifted  []overrides.Pause `json:"lifted"`
	Message string            `json:"message"`
}

// GrantResult is the answer to grant.
type GrantResult struct {
	Grant   *overrides.Grant        `json:"grant,omitempty"`
	Budget  *overrides.BudgetStatus `json:"budget,omitempty"`
	Message string                  `json:"message"`
}

// OverridesResult is the answer to overrides and budget: every child's view.
type OverridesResult struct {
	Now      time.Time               `json:"now"`
	Zone     string                  `json:"zone"`
	Trusted  bool                    `json:"clock_trusted"`
	Children []overrides.ChildStatus `json:"children"`
}

func (d *Daemon) needPolicy() error {
	if d.pol == nil || d.zone.Loc == nil {
		return control.Errorf("no-policy", "no valid profiles are loaded yet, so there is no child to pause or grant time to; fix the profiles (famguard check)")
	}
	return nil
}

// answerOverrides handles the override commands; ok is false for a
// command that is not one of them.
func (d *Daemon) answerOverrides(r request) (v any, err error, ok bool) {
	switch r.cmd {
	case "pause":
		v, err = d.pause(r.raw)
	case "resume":
		v, err = d.resume(r.raw)
	case "grant":
		v, err = d.grant(r.raw)
	case "overrides", "budget":
		v, err = d.overridesView(r.raw)
	default:
		return nil, nil, false
	}
	return v, err, true
}

func (d *Daemon) pause(raw json.RawMessage) (any, error) {
	var a pauseArgs
	if err := control.DecodeArgs(raw, &a); err != nil {
		return nil, err
	}
	if err := d.needPolicy(); err != nil {
		return nil, err
	}
	t, err := d.resolve(a)
	if err != nil {
		return nil, err
	}
	now := d.ovNow()
	pa := overrides.PauseArgs{Target: t, By: a.By} // "" shows as "a parent"
	if a.For != "" {
		if pa.For, err = overrides.ParseDuration("for", a.For); err != nil {
			return nil, err
		}
	}
	if a.Until != "" {
		if pa.Until, err = overrides.ParseUntil(a.Until, now); err != nil {
			return nil, err
		}
	}
	p, err := d.ov.st.Pause(pa, now)
	if err != nil {
		return nil, err
	}
	d.saveOverrides()
	d.reconcile("pause")
	res := PauseResult{Pause: p, Devices: []string{}}
	for _, s := range d.states {
		if s.Child == t.Child && (t.Device == "" || s.MAC == t.Device) && !s.Online {
			res.Devices = append(res.Devices, s.MAC)
		}
	}
	switch {
	case p.Until != nil:
		res.Message = fmt.Sprintf("%s is paused until %s", t, p.Until.In(d.zone.Loc).Format("Mon 15:04"))
	case p.PendingFor != 0:
		res.Message = fmt.Sprintf("%s is paused; the %s start once the router's clock is synchronised", t, time.Duration(p.PendingFor))
	default:
		res.Message = fmt.Sprintf("%s is paused until resumed (famguard resume %s)", t, resumeName(t))
	}
	return res, nil
}

// resolve finds what a pause or resume names. "target" is what a CLI or a
// page passes on from a parent: a child's name, else a device.
func (d *Daemon) resolve(a pauseArgs) (overrides.Target, error) {
	if a.Target == "" {
		return overrides.Resolve(d.pol, a.Child, a.Device)
	}
	if a.Child != "" || a.Device != "" {
		return overrides.Target{}, &overrides.Error{Code: control.CodeBadArgs, Field: "target", Msg: "give target, or child or device, not both"}
	}
	if t, err := overrides.Resolve(d.pol, a.Target, ""); err == nil {
		return t, nil
	}
	t, err := overrides.Resolve(d.pol, "", a.Target)
	if err != nil {
		var names []string
		for _, c := range d.pol.Children {
			names = append(names, c.Name)
		}
		return t, &overrides.Error{Code: overrides.CodeUnknownChild, Field: "target",
			Msg: fmt.Sprintf("%q is neither a child (children: %s) nor a child's device (by MAC address or name; see famguard status)", a.Target, strings.Join(names, ", "))}
	}
	return t, nil
}

func resumeName(t overrides.Target) string {
	if t.Device != "" {
		return t.Device
	}
	return t.Child
}

func (d *Daemon) resume(raw json.RawMessage) (any, error) {
	var a pauseArgs
	if err := control.DecodeArgs(raw, &a); err != nil {
		return nil, err
	}
	if a.For != "" || a.Until != "" {
		return nil, control.Errorf(control.CodeBadArgs, "resume takes no duration or time")
	}
	if err := d.needPolicy(); err != nil {
		return nil, err
	}
	t, err := d.resolve(a)
	if err != nil {
		return nil, err
	}
	lifted, err := d.ov.st.Resume(t)
	if err != nil {
		return nil, err
	}
	d.saveOverrides()
	d.reconcile("resume")
	msg := fmt.Sprintf("%s is no longer paused", t)
	for _, s := range d.states {
		if s.Child == t.Child && (t.Device == "" || s.MAC == t.Device) && !s.Online {
			msg += fmt.Sprintf("; still offline: %s", s.Reason)
			break
		}
	}
	return ResumeResult{Lifted: lifted, Message: msg}, nil
}

func (d *Daemon) grant(raw json.RawMessage) (any, error) {
	var a grantArgs
	if err := control.DecodeArgs(raw, &a); err != nil {
		return nil, err
	}
	if err := d.needPolicy(); err != nil {
		return nil, err
	}
	if a.Child == "" {
		return nil, &overrides.Error{Code: control.CodeBadArgs, Field: "child", Msg: "name the child to give extra time to"}
	}
	if _, err := overrides.Resolve(d.pol, a.Child, ""); err != nil {
		return nil, err
	}
	now := d.ovNow()
	if a.Cancel {
		if a.For != "" || a.Budget != "" {
			return nil, control.Errorf(control.CodeBadArgs, "cancel takes no duration")
		}
		g, err := d.ov.st.EndGrant(a.Child)
		if err != nil {
			return nil, err
		}
		d.saveOverrides()
		d.reconcile("extra time cancelled")
		return GrantResult{Grant: &g, Message: fmt.Sprintf("%s's extra time is cancelled", a.Child)}, nil
	}
	ga := overrides.GrantArgs{Child: a.Child, By: a.By}
	var err error
	if a.For != "" {
		if ga.For, err = overrides.ParseDuration("for", a.For); err != nil {
			return nil, err
		}
	}
	if a.Budget != "" {
		if ga.Budget, err = parseBudgetChange(a.Budget); err != nil {
			return nil, err
		}
	}
	v, err := d.ov.st.Grant(d.pol, ga, now)
	if err != nil {
		return nil, err
	}
	d.saveOverrides()
	d.reconcile("extra time")
	res := GrantResult{}
	if g, ok := v.(overrides.Grant); ok {
		res.Grant = &g
		res.Message = fmt.Sprintf("%s has extra time until %s", a.Child, g.Until.In(d.zone.Loc).Format("Mon 15:04"))
		for _, s := range d.states {
			if s.Child == a.Child && !s.Online {
				// A pause beats extra time: say so rather than let the
				// parent wonder why nothing changed.
				res.Message += fmt.Sprintf("; but still offline: %s", s.Reason)
				break
			}
		}
	}
	for _, c := range d.pol.Children {
		if c.Name == a.Child {
			res.Budget = d.ov.st.BudgetOf(c, d.ovNow())
		}
	}
	if ga.Budget != 0 && res.Budget != nil {
		res.Message = fmt.Sprintf("%s's budget today is now %s (%s left)", a.Child,
			policy.FormatMinutes(time.Duration(res.Budget.Total)*time.Minute), policy.FormatMinutes(time.Duration(res.Budget.Left)*time.Minute))
	}
	return res, nil
}

// parseBudgetChange reads "+30m" or "-15m".
func parseBudgetChange(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	sign := time.Duration(1)
	switch {
	case strings.HasPrefix(t, "+"):
		t = t[1:]
	case strings.HasPrefix(t, "-"):
		t, sign = t[1:], -1
	}
	v, err := time.ParseDuration(t)
	if err != nil || v <= 0 {
		return 0, &overrides.Error{Code: overrides.CodeBadDuration, Field: "budget", Msg: fmt.Sprintf("%q is not a budget change: write it like +30m or -15m", s)}
	}
	return sign * v, nil
}

func (d *Daemon) overridesView(raw json.RawMessage) (any, error) {
	var a childArgs
	if err := control.DecodeArgs(raw, &a); err != nil {
		return nil, err
	}
	if err := d.needPolicy(); err != nil {
		return nil, err
	}
	if a.Child != "" {
		if _, err := overrides.Resolve(d.pol, a.Child, ""); err != nil {
			return nil, err
		}
	}
	d.states = d.evaluate()
	res := OverridesResult{Now: d.cfg.Clock.Now().In(d.zone.Loc), Zone: d.zone.Name, Trusted: d.trusted, Children: []overrides.ChildStatus{}}
	for _, c := range d.ov.children {
		if a.Child == "" || c.Child == a.Child {
			res.Children = append(res.Children, c)
		}
	}
	return res, nil
}

// OverridesStatus is status's view of the overrides machinery.
type OverridesStatus struct {
	FlashPath      string `json:"flash_path,omitempty"`
	RAMPath        string `json:"ram_path,omitempty"`
	FlushEvery     string `json:"usage_flush_every"`
	FlashWrites    int    `json:"flash_writes"`
	RAMWrites      int    `json:"ram_writes"`
	Error          string `json:"error,omitempty"`
	Accounting     bool   `json:"accounting"`
	Threshold      uint64 `json:"threshold_bytes_per_minute"`
	Passes         int    `json:"accounting_passes"`
	LastPass       string `json:"last_accounting_pass,omitempty"`
	MaxLossMinutes int    `json:"power_cut_max_loss_minutes"`
}

func (d *Daemon) overridesStatus() *OverridesStatus {
	os := &OverridesStatus{Error: d.ov.saveErr, Accounting: d.cfg.Accounting != nil, Threshold: d.cfg.BudgetThreshold, Passes: d.ov.minutes}
	if os.Threshold == 0 {
		os.Threshold = overrides.DefaultThreshold
	}
	if d.ov.lastPass > 0 {
		os.LastPass = d.ov.lastPass.String()
	}
	if s := d.cfg.Overrides; s != nil {
		os.FlashPath, os.RAMPath = s.Paths()
		os.FlashWrites, os.RAMWrites = s.Writes()
		os.FlushEvery = s.FlushEvery().String()
		os.MaxLossMinutes = int(s.FlushEvery()/time.Minute) + 1
	}
	return os
}
