package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/famguard/famguard/agent/daemon"
	"github.com/famguard/famguard/agent/overrides"
	"github.com/famguard/famguard/agent/policy"
)

// budget: show each child's daily budget today (used, left, when it runs
// out at the current rate), or adjust today's (`budget alice +30m`, the
// same as `grant alice --budget +30m`).
func cmdBudget(args []string, out io.Writer) error {
	fs := newFlagSet("budget")
	state := fs.String("state", defaultState, "the running agent's --state directory")
	asJSON := fs.Bool("json", false, "print the agent's answer (protocol version 1) as JSON")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	switch len(pos) {
	case 2:
		var res struct{ Message string }
		return agentCall(out, *state, *asJSON, "grant", map[string]string{"child": pos[0], "budget": pos[1], "by": commandLine()}, &res,
			func() string { return res.Message })
	case 0, 1:
		req := map[string]string{}
		if len(pos) == 1 {
			req["child"] = pos[0]
		}
		var res daemon.OverridesResult
		return agentCall(out, *state, *asJSON, "budget", req, &res, func() string {
			printChildren(out, res.Children, res.Now)
			return ""
		})
	}
	return fmt.Errorf("usage: famguard budget [CHILD] | famguard budget CHILD +30m|-15m")
}

// printChildren is the per-child table of overrides shared by budget,
// status and plan.
func printChildren(out io.Writer, children []overrides.ChildStatus, now time.Time) {
	if len(children) == 0 {
		return
	}
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHILD\tPAUSED\tEXTRA TIME\tBUDGET TODAY\tWHY OFFLINE")
	for _, c := range children {
		paused := "-"
		switch {
		case c.Paused != nil && c.Paused.Until != nil:
			paused = fmt.Sprintf("until %s by %s", humanUntil(c.Paused.Until.In(now.Location()), now), c.Paused.By)
		case c.Paused != nil:
			paused = "until resumed, by " + c.Paused.By
		}
		if n := len(c.DevicePauses); n > 0 {
			if paused == "-" {
				paused = ""
			} else {
				paused += "; "
			}
			paused += fmt.Sprintf("%d device(s) paused", n)
		}
		grant := "-"
		if c.Grant != nil {
			grant = fmt.Sprintf("until %s by %s", humanUntil(c.Grant.Until.In(now.Location()), now), c.Grant.By)
		}
		budget := "no budget"
		if b := c.Budget; b != nil {
			budget = fmt.Sprintf("%s of %s used, %s left (%s", minutes(b.Used), minutes(b.Total), minutes(b.Left), b.Source)
			if b.Extra != 0 {
				budget += fmt.Sprintf(", %s today", signed(time.Duration(b.Extra)*time.Minute))
			}
			budget += ")"
			if b.RunsOutAt != nil {
				budget += fmt.Sprintf("; in use: runs out at %s if used without a break", humanUntil(b.RunsOutAt.In(now.Location()), now))
				if b.RunsOutAtRecentRate != nil {
					budget += fmt.Sprintf(", about %s at the last hour's rate (%d of 60 min)", humanUntil(b.RunsOutAtRecentRate.In(now.Location()), now), b.RecentMinutes)
				}
			}
		}
		why := "-"
		if c.Offline {
			why = c.Why
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Child, paused, grant, budget, why)
	}
	tw.Flush()
}

func minutes(m int) string { return policy.FormatMinutes(time.Duration(m) * time.Minute) }

func signed(d time.Duration) string {
	if d > 0 {
		return "+" + policy.FormatMinutes(d)
	}
	return policy.FormatMinutes(d)
}
