package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/famguard/famguard/agent/daemon"
	"github.com/famguard/famguard/agent/opstatus"
	"github.com/famguard/famguard/agent/policy"
	"github.com/famguard/famguard/agent/tz"
)

func cmdStatus(args []string, out io.Writer) error {
	fs := newFlagSet("status")
	asJSON := fs.Bool("json", false, "machine-readable output")
	state := fs.String("state", defaultState, "the running agent's --state directory")
	report := fs.Bool("report", false, "print the operator report (what the agent keeps in STATE/status.json: no sites, no addresses)")
	catDir := fs.String("categories", defaultCategories, "with --report: the category lists directory (for the lists' bundle serial)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	var st daemon.Status
	if done, err := askAgent(*state, "status", *asJSON && !*report, out, &st); done || err != nil {
		return err
	}
	if *report {
		r := opstatus.Build(st, *state, *catDir)
		r.UpdatedAt = time.Now()
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	printStatus(out, st)
	printBundleStatus(out, *state)
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
	printReload(out, st.LastReload, st.LastChange)
	fw := fmt.Sprintf("%s, %d applies, %d heals", st.Dataplane.Backend, st.Dataplane.Applies, st.Dataplane.Heals)
	if st.Dataplane.LastError != "" {
		fw += ", last error: " + st.Dataplane.LastError
	}
	if st.Dataplane.ConsecutiveFailures > 0 && st.Dataplane.NextRetry != nil {
		fw += fmt.Sprintf(" (%d failed in a row; the rules in force stay; next retry at %s, backoff %s)",
			st.Dataplane.ConsecutiveFailures, st.Dataplane.NextRetry.Format(time.RFC3339), st.Dataplane.RetryBackoff)
	}
	fmt.Fprintf(out, "Firewall: %s\n", fw)
	if in := st.Inbound; in != nil && in.Guard {
		fmt.Fprintf(out, "          inbound guard: %d IPv4, %d IPv6 LAN addresses reachable from outside\n", in.Open4, in.Open6)
	}
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
		strict := make([]string, 0, len(st.DNS.Strict))
		for child := range st.DNS.Strict {
			strict = append(strict, child)
		}
		sort.Strings(strict)
		for _, child := range strict {
			e := st.DNS.Strict[child]
			refused := ""
			if e.Refused != nil {
				refused = fmt.Sprintf("; %d connections refused", *e.Refused)
			}
			fmt.Fprintf(out, "          strict egress for %s: %d IPv4 and %d IPv6 addresses open (%.1f KiB of kernel memory)%s\n",
				child, e.Open4, e.Open6, float64(e.MemBytes)/1024, refused)
		}
	} else {
		fmt.Fprintln(out, "DNS:      filter off (category blocks, safe search and DNS bypass prevention are not enforced)")
	}
	if o := st.Overrides; o != nil {
		acct := "usage accounting off"
		if o.Accounting {
			acct = fmt.Sprintf("a minute counts above %d KiB, %d passes", o.Threshold>>10, o.Passes)
			if o.LastPass != "" {
				acct += ", last took " + o.LastPass
			}
		}
		fmt.Fprintf(out, "Controls: kept in %s (%d writes; usage at most every %s, a power cut loses at most %d min) and %s; %s\n",
			o.FlashPath, o.FlashWrites, o.FlushEvery, o.MaxLossMinutes, o.RAMPath, acct)
		if o.Error != "" {
			fmt.Fprintf(out, "          %s\n", o.Error)
		}
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
	if len(st.Children) > 0 {
		fmt.Fprintln(out)
		printChildren(out, st.Children, now)
	}
	if st.Policy != nil {
		for _, w := range st.Policy.Warnings {
			fmt.Fprintf(out, "Warning:  %s\n", w)
		}
		printLayers(out, st.Policy.Layers, st.Policy.Floors, states)
	}
}

// printReload shows the last change of policy (or failed reload) first, so a
// re-read that found the profiles unchanged (every SIGHUP, every `reload`)
// does not hide it, then that re-read.
func printReload(out io.Writer, last, change daemon.ReloadResult) {
	shown := last
	if !change.At.IsZero() {
		shown = change
	}
	fmt.Fprintf(out, "Reload:   %s at %s (%s)\n", shown.Message, shown.At.Format(time.RFC3339), shown.Trigger)
	for _, p := range shown.Problems {
		fmt.Fprintf(out, "          %s\n", p)
	}
	if !last.At.Equal(shown.At) {
		fmt.Fprintf(out, "          since then re-read at %s (%s): %s\n", last.At.Format(time.RFC3339), last.Trigger, last.Message)
	}
}
