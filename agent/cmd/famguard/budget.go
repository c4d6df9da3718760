package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/famguard/famguard/agent/control"
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

// planOverrides lays the agent's saved overrides (both copies, as the
// agent would load them) over plan's states at `when`, and asks the running
// agent, if any, for the budgets now (only it knows the current rate of use).
func planOverrides(pol *policy.Policy, states []policy.DeviceState, when time.Time, loc *time.Location, stateDir, flashPath string) ([]policy.DeviceState, []overrides.ChildStatus, []overrides.ChildStatus) {
	st, _ := overrides.NewStore(flashPath, filepath.Join(stateDir, "overrides.json"), 0).Load()
	// The instant asked about is taken as a trusted time: plan answers
	// "what if the clock said this".
	states, children := st.Apply(pol, states, overrides.Now{T: when, Loc: loc, Trusted: true})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var live daemon.OverridesResult
	if control.Do(ctx, stateDir, "budget", nil, &live) != nil {
		return states, children, nil
	}
	return states, children, live.Children
}

// printPlanChildren shows the children's controls at the planned instant,
// and the budgets' projection from now when the agent answered.
func printPlanChildren(out io.Writer, children, live []overrides.ChildStatus, at time.Time) {
	if len(children) == 0 {
		return
	}
	fmt.Fprintln(out)
	printChildren(out, children, at)
	for _, c := range live {
		b := c.Budget
		if b == nil {
			continue
		}
		switch {
		case b.Exhausted:
			fmt.Fprintf(out, "%s: today's budget is used up (%s of %s).\n", c.Child, minutes(b.Used), minutes(b.Total))
		case b.RunsOutAt != nil:
			line := fmt.Sprintf("%s: in use now, %s left: runs out at %s at the earliest (used without a break)", c.Child, minutes(b.Left), b.RunsOutAt.In(at.Location()).Format("15:04"))
			if b.RunsOutAtRecentRate != nil {
				line += fmt.Sprintf(", about %s at the last hour's rate (%d of 60 minutes)", b.RunsOutAtRecentRate.In(at.Location()).Format("15:04"), b.RecentMinutes)
			}
			if (b.ResetsAt.IsZero() || at.Before(b.ResetsAt)) && !at.Before(*b.RunsOutAt) {
				line += fmt.Sprintf("; at %s %s may be offline for the budget", at.Format("15:04"), c.Child)
			}
			fmt.Fprintln(out, line+".")
		default:
			fmt.Fprintf(out, "%s: not in use now, %s of today's budget left (no run-out time to project).\n", c.Child, minutes(b.Left))
		}
	}
}
