package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/famguard/famguard/agent/daemon"
	"github.com/famguard/famguard/agent/overrides"
	"github.com/famguard/famguard/agent/policy"
	"github.com/famguard/famguard/agent/tz"
)

// planOutput is `famguard plan --json`.
type planOutput struct {
	At     time.Time         `json:"at"`
	Zone   daemon.ZoneStatus `json:"zone"`
	Policy string            `json:"policy"`
	// CategoriesDir is where the lists were looked for ("" with
	// --categories ""); each device's categories_without_list names the
	// blocked categories that have none there, i.e. block nothing.
	CategoriesDir string       `json:"categories_dir"`
	Devices       []planDevice `json:"devices"`
	// UnknownDevices is what applies to a device no profile lists (one row,
	// and one more for randomised MACs when randomized_devices differs).
	UnknownDevices []policy.DeviceState `json:"unknown_devices"`
	// Children is each child's pauses, extra time and budget as they
	// stand at At (from the agent's saved overrides), and Budgets what the
	// running agent says now (with when a budget runs out at the current
	// rate); null when no agent answers.
	Children []overrides.ChildStatus `json:"children"`
	Budgets  []overrides.ChildStatus `json:"budgets_now"`
	// Layers: the operator and parents' layers (digest, serial); Floors:
	// what no parent can lower. Each device's `decided` says which layer
	// decided each of its child's settings.
	Layers []policy.LayerInfo `json:"layers"`
	Floors policy.Settings    `json:"floors"`
}

// planDevice is a device's state plus its child's standing DNS rules.
type planDevice struct {
	policy.DeviceState
	SafeSearch            bool     `json:"safe_search"`
	Allow                 []string `json:"allow"` // domains that beat any block
	Deny                  []string `json:"deny"`  // domains blocked at all times
	CategoriesWithoutList []string `json:"categories_without_list"`
}

func cmdPlan(args []string, out io.Writer) error {
	fs := newFlagSet("plan")
	at := fs.String("at", "", `the instant to evaluate, in the family's zone: "2026-11-30 16:30", "16:30" (today), "mon 16:30" (the next Monday, today if it is one), or RFC 3339; default now`)
	asJSON := fs.Bool("json", false, "machine-readable output")
	state := fs.String("state", defaultState, "the agent's --state directory (its overrides are shown)")
	ovPath := fs.String("overrides", defaultOverrides, "the agent's --overrides file")
	catDir := fs.String("categories", defaultCategories, `the category lists; blocked categories without one are marked ("": not checked)`)
	opFlag := operatorFlag(fs)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	path, err := oneProfileSet("plan", pos)
	if err != nil {
		return err
	}
	pol, err := loadLayered(path, *opFlag)
	if printProblems(os.Stderr, err) {
		return fmt.Errorf("%s is not valid; fix the problems above (famguard check %s)", path, path)
	}
	if err != nil {
		return err
	}
	zone, err := tz.Resolve(pol.Timezone, tz.Env{})
	if err != nil {
		return err
	}
	when := time.Now()
	if *at != "" {
		if when, err = parseAt(*at, when, zone.Loc); err != nil {
			return err
		}
	}
	listed := map[string]bool{}
	if *catDir != "" {
		if listed, err = listedCategories(*catDir); err != nil {
			return fmt.Errorf("--categories: %w", err)
		}
	}
	children := map[string]policy.Child{}
	for _, c := range pol.Children {
		children[c.Name] = c
	}
	eval := policy.At(when, zone.Loc)
	states := pol.EvaluateSeen(nil, eval)
	classes := pol.UnknownClasses(eval)
	states, ovChildren, live := planOverrides(pol, states, when, zone.Loc, *state, *ovPath)
	res := planOutput{At: when.In(zone.Loc), Zone: daemon.ZoneStatus{Name: zone.Name, Source: zone.Source}, Policy: pol.Digest,
		CategoriesDir: *catDir, Devices: []planDevice{}, UnknownDevices: classes, Children: ovChildren, Budgets: live,
		Layers: pol.Layers, Floors: pol.Floors}
	unlisted := map[string]bool{}
	for _, s := range states {
		c := children[s.Child]
		d := planDevice{DeviceState: s, SafeSearch: c.SafeSearch, Allow: nonNil(c.Allow), Deny: nonNil(c.Deny), CategoriesWithoutList: []string{}}
		if *catDir != "" {
			for _, cat := range s.BlockedCategories {
				if !listed[cat] {
					d.CategoriesWithoutList = append(d.CategoriesWithoutList, cat)
					unlisted[cat] = true
				}
			}
		}
		res.Devices = append(res.Devices, d)
	}
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	fmt.Fprintf(out, "Policy %s at %s (zone %s, from %s)\n\n", pol.Digest, res.At.Format("Mon 2006-01-02 15:04:05 MST"), zone.Name, zone.Source)
	// Categories without a list carry a "!" in the table.
	rows := append(append([]policy.DeviceState(nil), states...), classes...)
	shown := make([]policy.DeviceState, len(rows))
	for i, s := range rows {
		shown[i] = s
		shown[i].BlockedCategories = nil
		for _, cat := range s.BlockedCategories {
			if unlisted[cat] {
				cat += "!"
			}
			shown[i].BlockedCategories = append(shown[i].BlockedCategories, cat)
		}
	}
	printDevices(out, shown, nil, zone.Loc, res.At)
	if len(unlisted) > 0 {
		var names []string
		for c := range unlisted {
			names = append(names, c)
		}
		sort.Strings(names)
		fmt.Fprintf(out, "\n! no list: nothing is blocked for %s until a list is installed at %s\n",
			strings.Join(names, ", "), filepath.Join(*catDir, "<category>.txt"))
	}
	printPlanChildren(out, ovChildren, live, res.At)
	printDNSRules(out, pol.Children)
	printLayers(out, pol.Layers, pol.Floors, states)
	return nil
}

// printDNSRules lists each child's standing DNS rules under the table.
func printDNSRules(out io.Writer, children []policy.Child) {
	var lines []string
	for _, c := range children {
		var parts []string
		if c.SafeSearch {
			parts = append(parts, "safe search on")
		}
		if len(c.Allow) > 0 {
			parts = append(parts, "always allowed: "+strings.Join(c.Allow, ", "))
		}
		if len(c.Deny) > 0 {
			parts = append(parts, "always blocked: "+strings.Join(c.Deny, ", "))
		}
		if len(parts) > 0 {
			lines = append(lines, fmt.Sprintf("  %s: %s", c.Name, strings.Join(parts, "; ")))
		}
	}
	if len(lines) > 0 {
		fmt.Fprintf(out, "\nDNS rules:\n%s\n", strings.Join(lines, "\n"))
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// parseAt reads plan's --at in the family's zone loc: a date and a time, a
// time today, a weekday and a time (the next such day, today included), or
// an RFC 3339 instant (which carries its own offset).
func parseAt(s string, now time.Time, loc *time.Location) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02 15:04", "2006-01-02 15:04:05", "2006-01-02T15:04", "2006-01-02T15:04:05"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	now = now.In(loc)
	day, clock := "", s
	if f := strings.Fields(s); len(f) == 2 {
		day, clock = f[0], f[1]
	}
	hm, err := time.Parse("15:04", clock)
	if err != nil {
		return time.Time{}, fmt.Errorf(`--at %q: expected "2026-11-30 16:30", "16:30" (today), "mon 16:30" (the next Monday) in the family's zone (%s), or RFC 3339 like 2026-11-30T16:30:00+01:00`, s, loc)
	}
	date := now
	if day != "" {
		wd, ok := weekday(day)
		if !ok {
			return time.Time{}, fmt.Errorf("--at %q: %q is not a day of the week (mon, tue, wed, thu, fri, sat, sun)", s, day)
		}
		date = now.AddDate(0, 0, (int(wd)-int(now.Weekday())+7)%7)
	}
	y, m, d := date.Date()
	return time.Date(y, m, d, hm.Hour(), hm.Minute(), 0, 0, loc), nil
}

// weekday reads "mon", "Monday", "MON".
func weekday(s string) (time.Weekday, bool) {
	s = strings.ToLower(s)
	for d := time.Sunday; d <= time.Saturday; d++ {
		full := strings.ToLower(d.String())
		if s == full || s == full[:3] {
			return d, true
		}
	}
	return 0, false
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
		line := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s", whose(s), name, orDash(s.MAC), state, until, cats, s.Reason)
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

// whose is the CHILD column: the child, "trusted", or "unknown" (with the
// child whose rules it gets).
func whose(s policy.DeviceState) string {
	switch {
	case s.Kind == policy.KindTrusted:
		return "(trusted)"
	case s.Kind == policy.KindUnknown && s.Child != "":
		return "(unknown) like " + s.Child
	case s.Kind == policy.KindUnknown:
		return "(unknown)"
	}
	return s.Child
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
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
