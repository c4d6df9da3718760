package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/famguard/famguard/agent/schedule"
	"github.com/famguard/famguard/agent/tz"
)

// Keys is the one table of what each mapping may contain. The parser checks
// against it and a test checks the JSON Schema against it, so they cannot
// drift apart.
var Keys = map[string][]string{
	"file":     {"version", "timezone", "children", "unknown_devices", "randomized_devices", "trusted", "assigned"},
	"child":    {"devices", "block", "safe_search", "bypass_prevention", "schedules", "allow", "deny", "budget", "strict", "allow_ips"},
	"device":   {"mac", "name"},
	"schedule": {"name", "days", "from", "to", "action", "block", "enabled"},
	"unknown":  {"like"},              // the mapping form of unknown_devices / randomized_devices
	"assigned": {"mac", "to", "name"}, // what famguard assign writes
}

// SupportedVersion is the profile schema version this agent reads.
const SupportedVersion = 1

// MaxFileSize bounds one profile file; real ones are a few kilobytes. Parsing
// allocates about 8 times a file's size (yaml.v3 keeps comments and scanner
// buffers), so this also bounds the loader's peak memory: about 7 MiB.
const MaxFileSize = 256 << 10

// MaxSeparators bounds how many YAML nodes one file can make. Why: yaml.v3
// builds the whole node tree first, at about 240 bytes of allocation a node,
// so a 1 MiB file of `[a,a,a,…]` would cost 127 MiB — enough to kill the agent on
// a 128 MB router before validation can even say no. Every node after the
// first is introduced by a separator (`,` `:` `-` `[` `{` `?` or a line
// break), so counting them, in one pass and with no allocation, bounds the
// tree at about 5 MiB. A family with 250 devices uses about 3 000.
const MaxSeparators = 20000

// separators counts the bytes that can introduce a YAML node.
func separators(data []byte) int {
	n := 0
	for _, b := range data {
		switch b {
		case ',', ':', '-', '[', '{', '?', '\n':
			n++
		}
	}
	return n
}

var (
	childName    = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)
	categoryName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	domainLabel  = regexp.MustCompile(`^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$`)
)

// parser collects problems for one file.
type parser struct {
	file     string
	problems Problems
	refs     []categoryRef
	macs     []macRef
	children []childRef
	tz       *zoneRef

	unknown, randomized *unknownRef
	trusted             []Device
	assigned            []assignRef
	layer               layerSettings // defaults: and floors: (layer.go)
}

type macRef struct {
	mac   string
	owner string // the child's name, or AssignTrusted
	// assigned: from an `assigned:` entry. Those are checked after every
	// other MAC, so a clash blames the newer assignment, not the profile
	// a parent wrote.
	assigned bool
	pos      position
}

type childRef struct {
	child Child
	pos   position
	set   map[string]bool // the keys the file sets (layers merge key by key)
}

type zoneRef struct {
	name string
	pos  position
}

func (p *parser) problem(n *yaml.Node, field, format string, args ...any) {
	pr := Problem{File: p.file, Field: field, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		pr.Line, pr.Col = n.Line, n.Column
	}
	p.problems = append(p.problems, pr)
}

func (p *parser) pos(n *yaml.Node, field string) position {
	return position{file: p.file, line: n.Line, col: n.Column, field: field}
}

// ParseFile reads one profile file on its own (what LoadDir does for each
// file, plus the checks within one file). It never panics, whatever the
// input; the fuzz target holds it to that.
func ParseFile(name string, data []byte) (*Policy, Problems) {
	p := &parser{file: name}
	p.parse(data)
	return merge([]*parser{p})
}

func (p *parser) parse(data []byte) {
	if len(data) > MaxFileSize {
		p.problem(nil, "", "file is %d bytes; a profile may be at most %d (is this the right file?)", len(data), MaxFileSize)
		return
	}
	if n := separators(data); n > MaxSeparators {
		p.problem(nil, "", "file has %d lines and separators (`,` `:` `-` `[` `{`); a profile may have at most %d, real ones a few hundred (is this the right file? split a huge household into several files)", n, MaxSeparators)
		return
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	err := dec.Decode(&doc)
	if errors.Is(err, io.EOF) {
		err = nil // no document at all: reported as an empty file below
	}
	if err == nil {
		// yaml.Unmarshal would read the first document and silently drop
		// the rest: `version: 1`, `---`, then the children would load as a
		// family without children. Refuse it instead.
		var next yaml.Node
		if derr := dec.Decode(&next); derr == nil {
			p.problems = append(p.problems, Problem{File: p.file, Line: next.Line,
				Msg: "a second YAML document (after `---`): a profile file holds one document; remove the `---` or put the rest in its own file"})
			return
		} else if !errors.Is(derr, io.EOF) {
			err = derr
		}
	}
	if err != nil {
		line := 0
		msg := err.Error()
		if m := regexp.MustCompile(`line (\d+):\s*(.*)`).FindStringSubmatch(msg); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = m[2]
		}
		msg = strings.TrimPrefix(msg, "yaml: ")
		// yaml.v3 reports where the enclosing construct starts for some
		// errors, so the mistake can be on the next lines: say so.
		p.problems = append(p.problems, Problem{File: p.file, Line: line, Msg: "not valid YAML: " + msg + " (at or just after this line; check brackets, quotes and indentation — tabs are not allowed)"})
		return
	}
	// A document with nothing in it ("---" alone, or with comments) is an
	// empty file too; yaml.v3 puts its implicit null after the end of the
	// file, a position no editor shows.
	if doc.Kind == 0 || len(doc.Content) == 0 || (doc.Content[0].Kind == yaml.ScalarNode && doc.Content[0].Tag == "!!null" && doc.Content[0].Value == "") {
		p.problem(nil, "", "file is empty: a profile starts with `version: 1`")
		return
	}
	if bad := findAlias(&doc, 0); bad != nil {
		p.problem(bad, "", "YAML anchors, aliases and merge keys are not supported in profiles: write the values out")
		return
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		p.problem(root, "", "a profile is a mapping with version, timezone and children; got %s", kindName(root))
		return
	}
	fields := p.mapping(root, "", "file")
	v, ok := fields["version"]
	if !ok {
		p.problem(root, "version", "missing: add `version: %d` at the top of the file", SupportedVersion)
	} else if n, err := strconv.Atoi(v.Value); v.Kind != yaml.ScalarNode || err != nil {
		p.problem(v, "version", "expected a number like %d, got %s", SupportedVersion, describe(v))
	} else if n != SupportedVersion {
		p.problem(v, "version", "version %d is not supported by this famguard (it reads version %d): upgrade famguard or write the profile for version %d", n, SupportedVersion, SupportedVersion)
	}
	if z, ok := fields["timezone"]; ok {
		if name, ok := p.str(z, "timezone"); ok {
			if _, err := tz.Load(name); err != nil || name == "" || name == "Local" {
				p.problem(z, "timezone", "unknown time zone %q: use an IANA name like Europe/Berlin, or leave it out to use the router's zone", name)
			} else {
				p.tz = &zoneRef{name: name, pos: p.pos(z, "timezone")}
			}
		}
	}
	if c, ok := fields["children"]; ok {
		p.childrenNode(c)
	}
	p.deviceKeys(fields)
	p.layerKeys(fields)
}

// findAlias returns the first alias/anchor/merge node, depth-bounded so deep
// nesting cannot exhaust the stack.
func findAlias(n *yaml.Node, depth int) *yaml.Node {
	if depth > 64 {
		return n
	}
	if n.Kind == yaml.AliasNode || n.Anchor != "" || n.Tag == "!!merge" {
		return n
	}
	for _, c := range n.Content {
		if bad := findAlias(c, depth+1); bad != nil {
			return bad
		}
	}
	return nil
}

// mapping checks a mapping's keys against Keys[kind] and returns the values
// by key. Unknown and duplicate keys are problems.
func (p *parser) mapping(n *yaml.Node, path, kind string) map[string]*yaml.Node {
	out := map[string]*yaml.Node{}
	valid := Keys[kind]
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		field := join(path, k.Value)
		if k.Kind != yaml.ScalarNode {
			p.problem(k, path, "keys must be plain words")
			continue
		}
		if !contains(valid, k.Value) {
			hint := ""
			if s := closest(k.Value, valid); s != "" {
				hint = fmt.Sprintf(" (did you mean %q?)", s)
			}
			p.problem(k, field, "unknown key %q%s; valid keys here: %s", k.Value, hint, strings.Join(valid, ", "))
			continue
		}
		if _, dup := out[k.Value]; dup {
			p.problem(k, field, "%q appears twice in the same mapping; keep one", k.Value)
			continue
		}
		out[k.Value] = v
	}
	return out
}

func (p *parser) childrenNode(n *yaml.Node) {
	if n.Kind != yaml.MappingNode {
		p.problem(n, "children", "expected a mapping of child names to their rules, got %s", kindName(n))
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		path := "children." + k.Value
		if k.Kind != yaml.ScalarNode || !childName.MatchString(k.Value) {
			p.problem(k, path, "child name %q: use lower-case letters, digits, - or _ (at most 32), e.g. alice", k.Value)
			continue
		}
		if v.Kind != yaml.MappingNode {
			p.problem(v, path, "expected the child's rules (devices, schedules, block, ...), got %s", kindName(v))
			continue
		}
		p.child(k, v, path)
	}
}

func (p *parser) child(key, n *yaml.Node, path string) {
	c := Child{Name: key.Value, BypassPrevention: true}
	f := p.mapping(n, path, "child")
	if d, ok := f["devices"]; ok {
		for i, dn := range p.seq(d, path+".devices") {
			dpath := fmt.Sprintf("%s.devices[%d]", path, i)
			if dn.Kind != yaml.MappingNode {
				p.problem(dn, dpath, "expected a device like {mac: \"02:00:00:00:00:11\", name: \"Alice's phone\"}, got %s", kindName(dn))
				continue
			}
			c.Devices = append(c.Devices, p.macEntry(dn, dpath, p.mapping(dn, dpath, "device"), c.Name, false))
		}
	}
	if b, ok := f["block"]; ok {
		c.Block = p.categories(b, path+".block")
	}
	if s, ok := f["safe_search"]; ok {
		c.SafeSearch = p.boolean(s, path+".safe_search")
	}
	if b, ok := f["bypass_prevention"]; ok {
		c.BypassPrevention = p.boolean(b, path+".bypass_prevention")
	}
	if a, ok := f["allow"]; ok {
		c.Allow = p.domains(a, path+".allow")
	}
	if d, ok := f["deny"]; ok {
		c.Deny = p.domains(d, path+".deny")
	}
	if b, ok := f["budget"]; ok {
		c.Budget = p.budget(b, path+".budget")
	}
	p.strict(&c, f, path)
	if s, ok := f["schedules"]; ok {
		names := map[string]*yaml.Node{}
		for i, sn := range p.seq(s, path+".schedules") {
			spath := fmt.Sprintf("%s.schedules[%d]", path, i)
			w, ok := p.window(sn, spath, i)
			if !ok {
				continue
			}
			if prev, dup := names[w.Name]; dup {
				p.problem(sn, spath+".name", "schedule name %q is already used at line %d; give each schedule its own name", w.Name, prev.Line)
				continue
			}
			names[w.Name] = sn
			c.Schedules = append(c.Schedules, w)
		}
	}
	p.children = append(p.children, childRef{child: c, pos: p.pos(key, path), set: keySet(f)})
}

func (p *parser) window(n *yaml.Node, path string, index int) (schedule.Window, bool) {
	w := schedule.Window{Name: fmt.Sprintf("schedule-%d", index+1)}
	if n.Kind != yaml.MappingNode {
		p.problem(n, path, "expected a schedule like {name: bedtime, days: [mon-fri], from: \"21:00\", to: \"07:00\", action: offline}, got %s", kindName(n))
		return w, false
	}
	before := len(p.problems)
	f := p.mapping(n, path, "schedule")
	if v, ok := f["name"]; ok {
		if s, ok := p.str(v, path+".name"); ok {
			if s == "" {
				p.problem(v, path+".name", "empty name: name the schedule, e.g. bedtime")
			}
			w.Name = s
		}
	}
	enabled := true
	if v, ok := f["enabled"]; ok {
		enabled = p.boolean(v, path+".enabled")
	}
	if v, ok := f["days"]; ok {
		var items []string
		if v.Kind == yaml.ScalarNode {
			items = []string{v.Value}
		} else {
			for i, it := range p.seq(v, path+".days") {
				if s, ok := p.str(it, fmt.Sprintf("%s.days[%d]", path, i)); ok {
					items = append(items, s)
				}
			}
		}
		if d, err := schedule.ParseDays(items); err != nil {
			p.problem(v, path+".days", "%v", err)
		} else {
			w.Days = d
		}
	} else {
		p.problem(n, path+".days", "missing: say on which days, e.g. days: [mon-fri] or days: daily")
	}
	for _, k := range []string{"from", "to"} {
		v, ok := f[k]
		if !ok {
			p.problem(n, path+"."+k, "missing: give a time like \"21:00\"")
			continue
		}
		s, ok := p.str(v, path+"."+k)
		if !ok {
			continue
		}
		m, err := schedule.ParseClock(s)
		if err == nil && k == "from" && m == 1440 {
			err = fmt.Errorf("a window cannot start at 24:00; use \"00:00\" on the next day")
		}
		if err != nil {
			p.problem(v, path+"."+k, "%v", err)
			continue
		}
		if k == "from" {
			w.From = m
		} else {
			w.To = m
		}
	}
	if v, ok := f["block"]; ok {
		w.Block = p.categories(v, path+".block")
	}
	action := ""
	if v, ok := f["action"]; ok {
		if s, ok := p.str(v, path+".action"); ok {
			switch s {
			case "offline":
				w.Offline = true
			case "block":
			default:
				p.problem(v, path+".action", "unknown action %q: use offline (no internet) or block (with a block: list of categories)", s)
			}
			action = s
		}
	}
	if action != "offline" && len(w.Block) == 0 && len(p.problems) == before {
		p.problem(n, path, "this schedule does nothing: add action: offline, or block: [categories]")
	}
	if len(p.problems) == before {
		if err := w.Validate(); err != nil {
			p.problem(n, path, "%v", err)
		}
	}
	return w, len(p.problems) == before && enabled
}

func (p *parser) seq(n *yaml.Node, path string) []*yaml.Node {
	if n.Kind != yaml.SequenceNode {
		p.problem(n, path, "expected a list like [a, b], got %s", kindName(n))
		return nil
	}
	return n.Content
}

func (p *parser) str(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!str" && n.Tag != "!!int" && n.Tag != "!!float" && n.Tag != "!!bool") {
		p.problem(n, path, "expected text, got %s", kindName(n))
		return "", false
	}
	return n.Value, true
}

func (p *parser) boolean(n *yaml.Node, path string) bool {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		p.problem(n, path, "expected true or false, got %s", describe(n))
		return false
	}
	return n.Value == "true" || n.Value == "True" || n.Value == "TRUE"
}

// textList reads a list of text items; norm cleans one item or reports why
// it is wrong. The result is sorted and without duplicates.
func (p *parser) textList(n *yaml.Node, path string, norm func(item *yaml.Node, field, s string) (string, bool)) []string {
	seen := map[string]bool{}
	for i, it := range p.seq(n, path) {
		f := fmt.Sprintf("%s[%d]", path, i)
		s, ok := p.str(it, f)
		if !ok {
			continue
		}
		if v, ok := norm(it, f, s); ok {
			seen[v] = true
		}
	}
	return sortedKeys(seen)
}

func (p *parser) categories(n *yaml.Node, path string) []string {
	return p.textList(n, path, func(it *yaml.Node, f, s string) (string, bool) {
		s = strings.ToLower(strings.TrimSpace(s))
		if !categoryName.MatchString(s) {
			p.problem(it, f, "category %q: use lower-case letters, digits and -, e.g. gambling", s)
			return "", false
		}
		p.refs = append(p.refs, categoryRef{name: s, pos: p.pos(it, f)})
		return s, true
	})
}

func (p *parser) domains(n *yaml.Node, path string) []string {
	return p.textList(n, path, func(it *yaml.Node, f, s string) (string, bool) {
		d, err := normaliseDomain(s)
		if err != nil {
			p.problem(it, f, "%v", err)
			return "", false
		}
		return d, true
	})
}

// normaliseDomain accepts a host name and returns it lower-cased without a
// trailing dot; it explains the usual mistakes.
func normaliseDomain(s string) (string, error) {
	d := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(s), "."))
	switch {
	case strings.Contains(d, "://") || strings.Contains(d, "/"):
		return "", fmt.Errorf("%q: write only the host name, e.g. khanacademy.org (no https:// or path)", s)
	case strings.HasPrefix(d, "*."):
		return "", fmt.Errorf("%q: a domain already covers its subdomains; write %s", s, d[2:])
	case len(d) == 0 || len(d) > 253 || !strings.Contains(d, "."):
		return "", fmt.Errorf("%q is not a domain name like example.com", s)
	}
	for _, l := range strings.Split(d, ".") {
		if !domainLabel.MatchString(l) {
			return "", fmt.Errorf("%q is not a domain name like example.com (bad part %q)", s, l)
		}
	}
	return d, nil
}

// parseMAC accepts 02:00:00:00:00:11, 02-00-00-00-00-11 and upper case, and
// returns the canonical lower-case colon form.
func parseMAC(s string) (string, error) {
	hw, err := net.ParseMAC(strings.TrimSpace(s))
	if err != nil || len(hw) != 6 {
		return "", fmt.Errorf("%q is not a MAC address like 02:00:00:00:00:11", s)
	}
	if hw[0]&1 == 1 {
		return "", fmt.Errorf("%q is a multicast or broadcast address, not a device's MAC", s)
	}
	if hw.String() == "00:00:00:00:00:00" {
		return "", fmt.Errorf("%q is not a device's MAC", s)
	}
	return hw.String(), nil
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return describe(n)
	case yaml.AliasNode:
		return "an alias"
	}
	return "nothing"
}

func describe(n *yaml.Node) string {
	if n.Kind != yaml.ScalarNode {
		return kindName(n)
	}
	v := n.Value
	if len(v) > 40 {
		v = v[:40] + "…"
	}
	return strconv.Quote(v)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// closest returns the valid key within edit distance 2 of s, if any.
func closest(s string, valid []string) string {
	best, bestD := "", 3
	for _, v := range valid {
		if d := editDistance(strings.ToLower(s), v); d < bestD {
			best, bestD = v, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
