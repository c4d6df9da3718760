// Package tr181 maps famguard's policy to TR-181 parameters and back, so
// that a TR-069 (CWMP) or TR-369 (USP) agent on the router can bridge an
// operator's ACS or controller to famguard without either side learning
// the other's format.
//
// Export: the effective policy (both layers resolved) as
//
//	Device.Schedules.Schedule.{i}.        one per schedule window of a child
//	Device.Hosts.AccessControl.{i}.       one per child's device: its offline windows
//	Device.X_FAMGUARD_Child.{i}.          the rest: categories, safe search, allow/deny,
//	                                      category-block windows, live state
//
// Import: a parameter list (what an ACS sets) becomes one operator-layer
// profile file; the layering rules then apply as to any operator file
// (parents may change what is not a floor).
//
// Semantics chosen for the standard objects (agent/tr181/MAPPING.md has
// the table): an AccessControl entry with AccessPolicy "Deny" denies the
// host internet access during its ScheduleRef schedules (famguard's
// `action: offline` windows); "Allow" with no ScheduleRef is a host that is
// managed but never cut off. "Allow" with schedules (internet only during
// them) and InverseMode are refused on import with a clear message rather
// than approximated: famguard's windows say when a device is offline.
// A Schedule's Duration is in seconds and may run past midnight: the window
// belongs to the day it starts on, as in profiles.
//
// The round trip export → import → export gives the same parameters; the
// policy itself comes back in normal form (effective values, explicit keys).
package tr181

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/famguard/famguard/agent/policy"
	"github.com/famguard/famguard/agent/schedule"
)

// Param is one parameter: its full path and its value as text.
type Param struct {
	Path  string `json:"path"`
	Value string `json:"value"`
}

// Object paths (TR-181 writes references without the trailing dot).
const (
	schedObj  = "Device.Schedules.Schedule."
	accessObj = "Device.Hosts.AccessControl."
	childObj  = "Device.X_FAMGUARD_Child."
)

var dayNames = []string{"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"}

// Export lists the parameters of an effective policy. states (optional,
// from plan or status) add the read-only live state of each child.
func Export(pol *policy.Policy, states []policy.DeviceState) []Param {
	var out []Param
	add := func(path, value string) { out = append(out, Param{path, value}) }
	var scheds, access, children []Param
	nSched, nAccess := 0, 0
	live := map[string]policy.DeviceState{}
	for _, s := range states {
		if _, ok := live[s.Child]; !ok {
			live[s.Child] = s
		}
	}
	for ci, c := range pol.Children {
		cpath := fmt.Sprintf("%s%d", childObj, ci+1)
		var offline []string
		var blockWins [][2]string // schedule ref, categories
		for _, w := range c.Schedules {
			nSched++
			sp := fmt.Sprintf("%s%d", schedObj, nSched)
			dur := (w.To - w.From + 1440) % 1440
			if dur == 0 {
				dur = 1440
			}
			scheds = append(scheds,
				Param{sp + ".Enable", "true"},
				Param{sp + ".Alias", c.Name + "." + w.Name},
				Param{sp + ".Day", days(w.Days)},
				Param{sp + ".StartTime", schedule.FormatClock(w.From)},
				Param{sp + ".Duration", strconv.Itoa(dur * 60)},
				Param{sp + ".InverseMode", "false"})
			if w.Offline {
				offline = append(offline, sp)
			} else {
				blockWins = append(blockWins, [2]string{sp, strings.Join(w.Block, ",")})
			}
		}
		for _, d := range c.Devices {
			nAccess++
			ap := fmt.Sprintf("%s%d", accessObj, nAccess)
			pol := "Allow"
			if len(offline) > 0 {
				pol = "Deny"
			}
			access = append(access,
				Param{ap + ".Enable", "true"},
				Param{ap + ".PhysAddress", strings.ToUpper(d.MAC)},
				Param{ap + ".HostName", d.Name},
				Param{ap + ".AccessPolicy", pol},
				Param{ap + ".ScheduleRef", strings.Join(offline, ",")},
				Param{ap + ".X_FAMGUARD_ChildRef", cpath})
		}
		children = append(children,
			Param{cpath + ".Name", c.Name},
			Param{cpath + ".Block", strings.Join(c.Block, ",")},
			Param{cpath + ".SafeSearch", strconv.FormatBool(c.SafeSearch)},
			Param{cpath + ".BypassPrevention", strconv.FormatBool(c.BypassPrevention)},
			Param{cpath + ".Allow", strings.Join(c.Allow, ",")},
			Param{cpath + ".Deny", strings.Join(c.Deny, ",")},
			Param{cpath + ".BlockWindowNumberOfEntries", strconv.Itoa(len(blockWins))})
		for j, bw := range blockWins {
			bp := fmt.Sprintf("%s.BlockWindow.%d", cpath, j+1)
			children = append(children, Param{bp + ".ScheduleRef", bw[0]}, Param{bp + ".Categories", bw[1]})
		}
		if s, ok := live[c.Name]; ok {
			until := ""
			if s.Until != nil {
				until = s.Until.UTC().Format(time.RFC3339)
			}
			children = append(children,
				Param{cpath + ".Status.Online", strconv.FormatBool(s.Online)},
				Param{cpath + ".Status.Until", until},
				Param{cpath + ".Status.BlockedCategories", strings.Join(s.BlockedCategories, ",")},
				Param{cpath + ".Status.Reason", s.Reason})
		}
	}
	add("Device.Schedules.ScheduleNumberOfEntries", strconv.Itoa(nSched))
	out = append(out, scheds...)
	add("Device.Hosts.AccessControlNumberOfEntries", strconv.Itoa(nAccess))
	out = append(out, access...)
	add("Device.X_FAMGUARD_ChildNumberOfEntries", strconv.Itoa(len(pol.Children)))
	out = append(out, children...)
	add("Device.X_FAMGUARD_Policy.Digest", pol.Digest)
	for _, l := range pol.Layers {
		name := strings.ToUpper(l.Name[:1]) + l.Name[1:]
		add("Device.X_FAMGUARD_Policy."+name+"Digest", l.Digest)
		add("Device.X_FAMGUARD_Policy."+name+"Serial", strconv.FormatUint(l.Serial, 10))
	}
	return out
}

func days(d schedule.Days) string {
	var out []string
	for i := 1; i <= 7; i++ { // Monday first, as people write weeks
		w := time.Weekday(i % 7)
		if d.Has(w) {
			out = append(out, dayNames[w])
		}
	}
	return strings.Join(out, ",")
}

// Format writes parameters one per line, Path=Value (the form CWMP tools
// and `obuspa -c get` print; values are not quoted).
func Format(w io.Writer, params []Param) error {
	bw := bufio.NewWriter(w)
	for _, p := range params {
		fmt.Fprintf(bw, "%s=%s\n", p.Path, p.Value)
	}
	return bw.Flush()
}

// MaxParams bounds an imported list.
const MaxParams = 20000

// Parse reads Path=Value lines (blank lines and # comments skipped; a value
// may be wrapped in double quotes). Paths must start with "Device.".
func Parse(r io.Reader) ([]Param, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 64<<10)
	var out []Param
	line := 0
	for sc.Scan() {
		line++
		t := strings.TrimSpace(sc.Text())
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		path, value, ok := strings.Cut(t, "=")
		path = strings.TrimSpace(path)
		if !ok || !strings.HasPrefix(path, "Device.") || strings.ContainsAny(path, " \t") {
			return nil, fmt.Errorf("line %d: expected Device.Path=Value, got %q", line, truncate(t))
		}
		value = strings.TrimSpace(value)
		if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
			value = value[1 : len(value)-1]
		}
		out = append(out, Param{path, value})
		if len(out) > MaxParams {
			return nil, fmt.Errorf("more than %d parameters", MaxParams)
		}
	}
	return out, sc.Err()
}

func truncate(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}

// objects groups parameters by instance: "Device.Hosts.AccessControl.3"
// → {"PhysAddress": ...}. Only the named table's direct instances.
func objects(params []Param, table string) (map[int]map[string]string, []int) {
	objs := map[int]map[string]string{}
	for _, p := range params {
		rest, ok := strings.CutPrefix(p.Path, table)
		if !ok {
			continue
		}
		idx, name, ok := strings.Cut(rest, ".")
		i, err := strconv.Atoi(idx)
		if !ok || err != nil || i <= 0 {
			continue
		}
		if objs[i] == nil {
			objs[i] = map[string]string{}
		}
		objs[i][name] = p.Value
	}
	keys := make([]int, 0, len(objs))
	for k := range objs {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	return objs, keys
}
