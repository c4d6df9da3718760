package tr181

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/famguard/famguard/agent/schedule"
)

// The profile Import writes. It is written by hand (render) rather than
// with yaml.v3's encoder, which the router binary does not otherwise link
// (about 100 KB on mips); every string is double-quoted, so no value can be
// misread.
type yFile struct {
	Children map[string]yChild
}

type yChild struct {
	Devices          []yDevice
	Block            []string
	SafeSearch       bool
	BypassPrevention bool
	Schedules        []ySchedule
	Allow            []string
	Deny             []string
}

type yDevice struct {
	MAC  string
	Name string
}

type ySchedule struct {
	Name   string
	Days   []string
	From   string
	To     string
	Action string
	Block  []string
	idx    int // the Schedule instance: windows keep the ACS's order
}

var childName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// Import turns a parameter list into the text of one operator-layer
// profile. Every problem is reported with the parameter's path; the caller
// validates the result like any profile (with the rest of the policy)
// before writing it.
func Import(params []Param) ([]byte, error) {
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	scheds, _ := objects(params, schedObj)
	access, accessKeys := objects(params, accessObj)
	childs, childKeys := objects(params, childObj)

	out := yFile{Children: map[string]yChild{}}
	byRef := map[string]string{} // "Device.X_FAMGUARD_Child.1" → name
	for _, i := range childKeys {
		o := childs[i]
		path := fmt.Sprintf("%s%d", childObj, i)
		name := o["Name"]
		if !childName.MatchString(name) {
			fail("%s.Name %q: a child's name is lower-case letters, digits, - or _ (at most 32)", path, name)
			continue
		}
		if _, dup := out.Children[name]; dup {
			fail("%s.Name %q: another child has that name", path, name)
			continue
		}
		c := yChild{Block: list(o["Block"]), Allow: list(o["Allow"]), Deny: list(o["Deny"]), BypassPrevention: true}
		var err error
		if v, ok := o["SafeSearch"]; ok {
			if c.SafeSearch, err = parseBool(v); err != nil {
				fail("%s.SafeSearch: %v", path, err)
			}
		}
		if v, ok := o["BypassPrevention"]; ok {
			if c.BypassPrevention, err = parseBool(v); err != nil {
				fail("%s.BypassPrevention: %v", path, err)
			}
		}
		bws, bwKeys := objects(params, path+".BlockWindow.")
		for _, j := range bwKeys {
			bw := bws[j]
			bp := fmt.Sprintf("%s.BlockWindow.%d", path, j)
			cats := list(bw["Categories"])
			if len(cats) == 0 {
				fail("%s.Categories: empty; a block window names the categories it blocks", bp)
				continue
			}
			s, ok, err := window(scheds, bw["ScheduleRef"], name)
			if err != nil {
				fail("%s.ScheduleRef: %v", bp, err)
			} else if ok {
				s.Block = cats
				c.Schedules = append(c.Schedules, s)
			}
		}
		out.Children[name] = c
		byRef[path] = name
	}
	offlineOf := map[string]string{} // child → ScheduleRef its devices share
	for _, i := range accessKeys {
		o := access[i]
		path := fmt.Sprintf("%s%d", accessObj, i)
		if v, ok := o["Enable"]; ok {
			if on, err := parseBool(v); err != nil {
				fail("%s.Enable: %v", path, err)
				continue
			} else if !on {
				continue // a disabled rule restricts nothing
			}
		}
		name, ok := byRef[strings.TrimSuffix(o["X_FAMGUARD_ChildRef"], ".")]
		if !ok {
			// A standard-only entry: one child per host.
			name = hostChild(o["HostName"], i)
			if _, taken := out.Children[name]; !taken {
				out.Children[name] = yChild{Block: []string{}, BypassPrevention: true}
			}
		}
		c := out.Children[name]
		mac := o["PhysAddress"]
		if mac == "" {
			fail("%s.PhysAddress: missing; an access control entry names the device by MAC", path)
			continue
		}
		c.Devices = append(c.Devices, yDevice{MAC: strings.ToLower(mac), Name: o["HostName"]})
		refs := strings.Join(list(o["ScheduleRef"]), ",")
		switch o["AccessPolicy"] {
		case "Deny":
		case "Allow", "":
			if refs != "" {
				fail("%s.AccessPolicy: Allow with schedules (internet only during them) is not supported; famguard windows say when a device is offline: use Deny with the offline schedules", path)
				continue
			}
		default:
			fail("%s.AccessPolicy %q: use Allow or Deny", path, o["AccessPolicy"])
			continue
		}
		if prev, seen := offlineOf[name]; seen && prev != refs {
			fail("%s.ScheduleRef %q: another device of child %q refers to %q; famguard's schedules are per child, so a child's devices share them", path, refs, name, prev)
			continue
		} else if !seen {
			offlineOf[name] = refs
			for _, r := range list(refs) {
				s, ok, err := window(scheds, r, name)
				if err != nil {
					fail("%s.ScheduleRef: %v", path, err)
				} else if ok {
					s.Action = "offline"
					c.Schedules = append(c.Schedules, s)
				}
			}
		}
		out.Children[name] = c
	}
	if len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, "\n"))
	}
	for name, c := range out.Children {
		sort.SliceStable(c.Schedules, func(a, b int) bool { return c.Schedules[a].idx < c.Schedules[b].idx })
		out.Children[name] = c
	}
	return render(out), nil
}

// window reads one referenced schedule. ok is false for a disabled one.
func window(scheds map[int]map[string]string, ref, child string) (ySchedule, bool, error) {
	var s ySchedule
	n, ok := strings.CutPrefix(strings.TrimSuffix(ref, "."), schedObj)
	i, err := strconv.Atoi(n)
	o := scheds[i]
	if !ok || err != nil || o == nil {
		return s, false, fmt.Errorf("%q is not a Device.Schedules.Schedule.{i} in the list", ref)
	}
	path := fmt.Sprintf("%s%d", schedObj, i)
	if v, ok := o["Enable"]; ok {
		if on, err := parseBool(v); err != nil {
			return s, false, fmt.Errorf("%s.Enable: %v", path, err)
		} else if !on {
			return s, false, nil
		}
	}
	if inv, _ := parseBool(o["InverseMode"]); inv {
		return s, false, fmt.Errorf("%s.InverseMode true is not supported: write the window when the device is offline", path)
	}
	for _, d := range list(o["Day"]) {
		idx := -1
		for k, name := range dayNames {
			if strings.EqualFold(d, name) {
				idx = k
			}
		}
		if idx < 0 {
			return s, false, fmt.Errorf("%s.Day %q: use Monday … Sunday", path, d)
		}
		s.Days = append(s.Days, strings.ToLower(dayNames[idx][:3]))
	}
	if len(s.Days) == 0 {
		return s, false, fmt.Errorf("%s.Day: empty", path)
	}
	from, err := schedule.ParseClock(o["StartTime"])
	if err != nil || from == 1440 {
		return s, false, fmt.Errorf("%s.StartTime %q: expected hh:mm", path, o["StartTime"])
	}
	secs, err := strconv.Atoi(o["Duration"])
	if err != nil || secs <= 0 || secs > 86400 || secs%60 != 0 {
		return s, false, fmt.Errorf("%s.Duration %q: expected whole minutes in seconds, 60 to 86400", path, o["Duration"])
	}
	to := (from + secs/60) % 1440
	s.From, s.To = schedule.FormatClock(from), schedule.FormatClock(to)
	if from+secs/60 == 1440 {
		s.To = "24:00"
	}
	s.idx = i
	s.Name = o["Alias"]
	if c, n, ok := strings.Cut(s.Name, "."); ok && c == child {
		s.Name = n
	}
	if s.Name == "" {
		s.Name = fmt.Sprintf("schedule-%d", i)
	}
	return s, true, nil
}

func hostChild(host string, i int) string {
	n := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '-'
	}, host)
	n = strings.Trim(n, "-_")
	if len(n) > 32 {
		n = n[:32]
	}
	if !childName.MatchString(n) {
		return fmt.Sprintf("host-%d", i)
	}
	return n
}

func list(v string) []string {
	out := []string{}
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func parseBool(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "1":
		return true, nil
	case "false", "0":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean (true, false, 1, 0)", v)
}

// render writes the profile: version 1, children in name order.
func render(f yFile) []byte {
	var b bytes.Buffer
	b.WriteString("# Written by `famguard tr181 import` from TR-181 parameters; the next import replaces it.\nversion: 1\n")
	names := make([]string, 0, len(f.Children))
	for n := range f.Children {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) > 0 {
		b.WriteString("children:\n")
	}
	for _, n := range names {
		c := f.Children[n]
		fmt.Fprintf(&b, "  %s:\n", n) // child names are [a-z0-9_-]: plain
		if len(c.Devices) > 0 {
			b.WriteString("    devices:\n")
			for _, d := range c.Devices {
				fmt.Fprintf(&b, "      - {mac: %s", strconv.Quote(d.MAC))
				if d.Name != "" {
					fmt.Fprintf(&b, ", name: %s", strconv.Quote(d.Name))
				}
				b.WriteString("}\n")
			}
		}
		fmt.Fprintf(&b, "    block: %s\n    safe_search: %t\n    bypass_prevention: %t\n", flow(c.Block), c.SafeSearch, c.BypassPrevention)
		if len(c.Schedules) > 0 {
			b.WriteString("    schedules:\n")
			for _, s := range c.Schedules {
				fmt.Fprintf(&b, "      - {name: %s, days: %s, from: %q, to: %q", strconv.Quote(s.Name), flow(s.Days), s.From, s.To)
				if s.Action != "" {
					fmt.Fprintf(&b, ", action: %s", s.Action)
				}
				if len(s.Block) > 0 {
					fmt.Fprintf(&b, ", block: %s", flow(s.Block))
				}
				b.WriteString("}\n")
			}
		}
		if len(c.Allow) > 0 {
			fmt.Fprintf(&b, "    allow: %s\n", flow(c.Allow))
		}
		if len(c.Deny) > 0 {
			fmt.Fprintf(&b, "    deny: %s\n", flow(c.Deny))
		}
	}
	return b.Bytes()
}

// flow is a YAML flow list of double-quoted strings.
func flow(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
