package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/famguard/famguard/agent/control"
	"github.com/famguard/famguard/agent/daemon"
	"github.com/famguard/famguard/agent/policy"
	"github.com/famguard/famguard/agent/tz"
)

// cmdRPCD is the rpcd exec plugin behind the "famguard" ubus object
// (/usr/libexec/rpcd/famguard runs `famguard rpcd ... list|call METHOD`).
// rpcd calls `list` once for the methods and their arguments, then
// `call METHOD` with the arguments as a JSON object on stdin; the answer is
// one JSON object on stdout. Who may call which method is rpcd's business
// (acl.d/famguard.json: status and devices read, the rest write), so this
// only translates: each method becomes one control-protocol request to the
// running agent, and a refusal becomes {"error": {"code", "message",
// "field"}} with the agent's parent-readable message (exit 0, so that rpcd
// passes it to the page instead of a bare ubus status).
//
// Why the binary itself and not a shell script: the arguments come from a
// web page, so they are decoded and checked by the same code as the CLI's,
// and nothing is ever passed through a shell.
func cmdRPCD(args []string, stdin io.Reader, out io.Writer) error {
	fs := newFlagSet("rpcd")
	state := fs.String("state", defaultState, "the running agent's --state directory")
	profiles := fs.String("profiles", defaultProfiles, "the profile directory (for assign)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) == 1 && pos[0] == "list":
		return json.NewEncoder(out).Encode(rpcdSignatures)
	case len(pos) == 2 && pos[0] == "call":
		res := rpcdCall(pos[1], stdin, *state, *profiles)
		return json.NewEncoder(out).Encode(res)
	}
	return fmt.Errorf("usage: famguard rpcd [--state DIR] [--profiles DIR] list | call METHOD (rpcd's plugin convention)")
}

// rpcdSignatures is the answer to `list`: each method's arguments with an
// example value of their type, as rpcd reads it (strings, 32-bit integers,
// booleans).
var rpcdSignatures = map[string]map[string]any{
	"status":  {},
	"devices": {},
	"pause":   {"child": "str", "device": "str", "minutes": 30, "until": "str"},
	"resume":  {"child": "str", "device": "str"},
	"grant":   {"child": "str", "minutes": 30},
	"budget":  {"child": "str", "add_minutes": 30},
	"assign":  {"mac": "str", "to": "str", "name": "str"},
}

// rpcdArgs are every method's arguments (each uses some).
type rpcdArgs struct {
	Child      string `json:"child"`
	Device     string `json:"device"`
	Minutes    *int   `json:"minutes"`
	AddMinutes *int   `json:"add_minutes"`
	Until      string `json:"until"`
	MAC        string `json:"mac"`
	To         string `json:"to"`
	Name       string `json:"name"`
}

// maxRPCDInput bounds what is read from stdin: a page's arguments are a few
// dozen bytes.
const maxRPCDInput = 16 << 10

// rpcdBy is what status shows as the source of a page's pause or grant.
const rpcdBy = "the parents' page"

func rpcdError(code, format string, a ...any) map[string]any {
	return map[string]any{"error": control.Errorf(code, format, a...)}
}

func rpcdCall(method string, stdin io.Reader, state, profiles string) any {
	if _, ok := rpcdSignatures[method]; !ok {
		return rpcdError(control.CodeUnknownCommand, "unknown method %q", method)
	}
	data, err := io.ReadAll(io.LimitReader(stdin, maxRPCDInput+1))
	if err != nil || len(data) > maxRPCDInput {
		return rpcdError(control.CodeBadRequest, "the request's arguments are too long or unreadable")
	}
	var a rpcdArgs
	if len(bytes.TrimSpace(data)) > 0 {
		if err := json.Unmarshal(data, &a); err != nil {
			return rpcdError(control.CodeBadArgs, "the arguments are not a JSON object of the expected types: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	do := func(cmd string, args map[string]any) any {
		var res json.RawMessage
		if err := control.Do(ctx, state, cmd, args, &res); err != nil {
			return rpcdFailure(err)
		}
		return json.RawMessage(res)
	}
	target := func() (map[string]any, *control.Error) {
		switch {
		case a.Child != "" && a.Device != "":
			return nil, control.Errorf(control.CodeBadArgs, "give a child or a device, not both")
		case a.Child != "":
			return map[string]any{"child": a.Child}, nil
		case a.Device != "":
			return map[string]any{"device": a.Device}, nil
		}
		return nil, control.Errorf(control.CodeBadArgs, "say which child (or device)")
	}
	switch method {
	case "status":
		var st daemon.Status
		if err := control.Do(ctx, state, "status", nil, &st); err != nil {
			return rpcdFailure(err)
		}
		return parentsView(st)
	case "devices":
		return do("devices", nil)
	case "pause":
		args, e := target()
		if e != nil {
			return map[string]any{"error": e}
		}
		switch {
		case a.Minutes != nil && a.Until != "":
			return rpcdError(control.CodeBadArgs, "give minutes or until, not both")
		case a.Minutes != nil:
			args["for"] = strconv.Itoa(*a.Minutes) + "m"
		case a.Until == "morning":
			args["until"] = morning(ctx, state)
		case a.Until != "":
			args["until"] = a.Until
		}
		args["by"] = rpcdBy
		return do("pause", args)
	case "resume":
		args, e := target()
		if e != nil {
			return map[string]any{"error": e}
		}
		return do("resume", args)
	case "grant":
		if a.Minutes == nil {
			return rpcdError(control.CodeBadArgs, "say how many minutes")
		}
		return do("grant", map[string]any{"child": a.Child, "for": strconv.Itoa(*a.Minutes) + "m", "by": rpcdBy})
	case "budget":
		if a.AddMinutes == nil {
			return rpcdError(control.CodeBadArgs, "say how many minutes to add (or take away, negative)")
		}
		return do("grant", map[string]any{"child": a.Child, "budget": fmt.Sprintf("%+dm", *a.AddMinutes), "by": rpcdBy})
	case "assign":
		path, pol, err := policy.Assign(profiles, a.MAC, a.To, a.Name)
		if err != nil {
			return rpcdError("bad-assign", "%v", err)
		}
		var res daemon.ReloadResult
		if err := control.Call(ctx, state, "reload", &res); err != nil && !errors.Is(err, control.ErrNotRunning) {
			return rpcdFailure(err)
		}
		return map[string]any{"file": path, "policy": pol.Digest, "message": "saved; in force now"}
	}
	return rpcdError(control.CodeUnknownCommand, "unknown method %q", method)
}

// rpcdFailure is a control error as the page shows it.
func rpcdFailure(err error) map[string]any {
	var ce *control.Error
	if errors.As(err, &ce) {
		return map[string]any{"error": ce}
	}
	if errors.Is(err, control.ErrNotRunning) {
		return rpcdError("not-running", "famguard is not running on the router (its service may be stopped: /etc/init.d/famguard start)")
	}
	return rpcdError(control.CodeFailed, "%v", err)
}

// morning is "until tomorrow morning" as the agent's `until` understands
// it: 07:00 next, in the family's zone (today's when it is still night).
func morning(ctx context.Context, state string) string {
	var st daemon.Status
	if err := control.Do(ctx, state, "status", nil, &st); err == nil && st.Clock.Now.Hour() < 5 {
		return "07:00"
	}
	return "tomorrow 07:00"
}

// parentsView is what the page shows: per child whether they are online,
// why and until when, their pause, extra time and budget; the unknown
// devices seen on the LAN; and whether the clock can be trusted yet.
func parentsView(st daemon.Status) map[string]any {
	loc := time.Local
	if l, err := tz.Load(st.Zone.Name); err == nil {
		loc = l
	}
	type child struct {
		Name         string           `json:"name"`
		Online       bool             `json:"online"`
		Reason       string           `json:"reason"`
		Until        *time.Time       `json:"until"`
		Paused       map[string]any   `json:"paused"`
		GrantedUntil *time.Time       `json:"granted_until"`
		Budget       map[string]int   `json:"budget"`
		Devices      []map[string]any `json:"devices"`
	}
	var children []*child
	byName := map[string]*child{}
	for _, c := range st.Children {
		ch := &child{Name: c.Child, Online: !c.Offline, Reason: c.Why}
		if c.Paused != nil {
			ch.Paused = map[string]any{"until": c.Paused.Until, "by": c.Paused.By}
		}
		if c.Grant != nil {
			u := c.Grant.Until
			ch.GrantedUntil = &u
		}
		if b := c.Budget; b != nil {
			ch.Budget = map[string]int{"limit_min": b.Total, "used_min": b.Used, "left_min": b.Left}
		}
		children = append(children, ch)
		byName[c.Child] = ch
	}
	var unknown []map[string]any
	for _, d := range st.Devices {
		switch d.Kind {
		case "":
			ch := byName[d.Child]
			if ch == nil {
				ch = &child{Name: d.Child, Online: true}
				children = append(children, ch)
				byName[d.Child] = ch
			}
			ch.Devices = append(ch.Devices, map[string]any{"mac": d.MAC, "name": d.Device, "online": d.Online, "seen": d.Seen})
			if !d.Online && ch.Reason == "" {
				ch.Reason = d.Reason
			}
			if ch.Online && d.Online && d.Reason != "" && ch.Reason == "" {
				ch.Reason = d.Reason
			}
			if d.Until != nil && (ch.Until == nil || d.Until.Before(*ch.Until)) {
				u := d.Until.In(loc)
				ch.Until = &u
			}
		case policy.KindUnknown:
			if d.Seen {
				// The reason without its hint for the command line (the
				// page's buttons are the parent's way to assign it).
				applies, _, _ := strings.Cut(d.Reason, " (")
				unknown = append(unknown, map[string]any{"mac": d.MAC, "name": d.Device, "randomized": d.Randomized, "applies": applies})
			}
		}
	}
	if children == nil {
		children = []*child{}
	}
	if unknown == nil {
		unknown = []map[string]any{}
	}
	return map[string]any{
		"clock":    map[string]any{"now": st.Clock.Now.In(loc), "zone": st.Zone.Name, "trusted": st.Clock.Trusted},
		"children": children,
		"unknown":  unknown,
	}
}
