package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/famguard/famguard/agent/daemon"
	"github.com/famguard/famguard/agent/policy"
	"github.com/famguard/famguard/agent/tz"
)

// planOutput is `famguard plan --json`.
type planOutput struct {
	At      time.Time            `json:"at"`
	Zone    daemon.ZoneStatus    `json:"zone"`
	Policy  string               `json:"policy"`
	Devices []policy.DeviceState `json:"devices"`
	Layers  []policy.LayerInfo   `json:"layers"`
	Floors  policy.Settings      `json:"floors"`
}

func cmdPlan(args []string, out io.Writer) error {
	fs := newFlagSet("plan")
	at := fs.String("at", "", "the instant to evaluate (RFC3339); default now")
	asJSON := fs.Bool("json", false, "machine-readable output")
	opFlag := operatorFlag(fs)
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
	pol, err := loadPolicy(operatorDir(*opFlag, dir), dir, os.Stderr)
	if err != nil {
		var probs policy.Problems
		if errors.As(err, &probs) {
			return fmt.Errorf("%s is not valid; fix the problems above (famguard check %s)", dir, dir)
		}
		return err
	}
	zone, err := tz.Resolve(pol.Timezone, tz.Env{})
	if err != nil {
		return err
	}
	states := pol.Evaluate(when, zone.Loc)
	res := planOutput{At: when.In(zone.Loc), Zone: daemon.ZoneStatus{Name: zone.Name, Source: zone.Source}, Policy: pol.Digest, Devices: states,
		Layers: pol.Layers, Floors: pol.Floors}
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
	printLayers(out, pol.Layers, pol.Floors, states)
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
