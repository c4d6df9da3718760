// Package policy turns a directory of family profiles (YAML) into one
// validated Policy, and evaluates it at an instant: per device, online or
// not, why, until when, and which categories are blocked.
//
// Why it is strict: parents edit these files by hand and operators push them
// by machine, and a typo must never silently open a hole. So every file is
// read through yaml.v3's node tree (to keep line and column), every key is
// checked against one table of known keys (the same table the JSON Schema is
// tested against), and one problem anywhere rejects the whole set, so the
// daemon keeps the last good policy. Problems carry FILE:LINE:COL, the field
// path, and what to write instead.
//
// Compatibility: version-1 files will keep loading. Additions (pause,
// extra time, daily budgets, the unknown-device policy and trusted devices of
// devices.go, operator defaults) are new
// optional keys, so files that do not use them are unaffected; a file that
// declares a version this agent does not know is rejected with a clear
// message rather than half-understood.
package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/famguard/famguard/agent/schedule"
)

// Policy is the merged, validated content of a profile directory.
type Policy struct {
	Timezone string   // "" = the router's zone
	Children []Child  // sorted by name
	Sources  []Source // the files it came from, sorted by path
	Digest   string   // identifies the set: operators read back which push is live
	// Layers says what each layer contributed (layer.go); Floors are the
	// minimums no file can lower; Warnings are resolved cross-layer
	// conflicts (the policy applies; check and status show them).
	Layers   []LayerInfo
	Floors   Settings
	Warnings Problems

	// Unknown is unknown_devices as a profile set it (Action UnknownUnset:
	// no file did; UnknownDevices resolves the default). Randomized is
	// randomized_devices likewise (RandomizedDevices resolves it).
	Unknown    UnknownRule
	Randomized UnknownRule
	// Trusted are parents' devices: never restricted, never unknown. It
	// includes the `assigned:` entries to trusted; entries assigned to a
	// child are in that child's Devices.
	Trusted  []Device
	Assigned []Assignment // every `assigned:` entry, in file order

	refs  []categoryRef // where each category was named (for check --categories)
	layer layerSettings // one layer's defaults, floors and keys, before resolution
}

// Source is one profile file.
type Source struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Layer  string `json:"layer,omitempty"` // "operator" or "parents"
}

// Child is one child's rules.
type Child struct {
	Name       string
	Devices    []Device
	Block      []string // categories blocked at all times, sorted
	SafeSearch bool
	// BypassPrevention (default true) refuses encrypted DNS and answers the
	// DoH canary and iCloud Private Relay hosts NXDOMAIN for the child's
	// devices, so their DNS goes through famguard's filter.
	BypassPrevention bool
	Allow            []string // domains that beat any block
	Deny             []string // domains blocked at all times
	Schedules        []schedule.Window
	Budget           *Budget // daily time budget; nil: none
	// Strict (opt-in) lets the child's devices open new connections only to
	// addresses famguard's DNS filter answered them recently, the LAN, and
	// AllowIPs (strict.go).
	Strict   bool
	AllowIPs []netip.Prefix // sorted, masked
	// Decided says which layer decided each setting ("parents",
	// "operator", "operator default", "operator floor", ...), for status
	// and plan. Empty in a policy without an operator layer, defaults or
	// floors.
	Decided map[string]string
}

// Device is a child's device, matched by MAC.
type Device struct {
	MAC  string // lower-case, colon separated
	Name string
}

type categoryRef struct {
	name string
	pos  position
}

type position struct {
	file      string
	line, col int
	field     string
}

// Problem is one thing wrong in a profile, with where and what to do.
type Problem struct {
	File  string
	Line  int
	Col   int
	Field string
	Msg   string
	// crossFile: a reference (to a child) resolved against the whole set;
	// a file read alone may lack what another file of the set defines.
	crossFile bool
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
		if p.Col > 0 {
			fmt.Fprintf(&b, ":%d", p.Col)
		}
	}
	b.WriteString(": ")
	if p.Field != "" {
		b.WriteString(p.Field + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is every problem found in a set; it is the error LoadDir returns
// when the set is invalid.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

func (ps Problems) sort() {
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
}

// Categories lists every category named anywhere in the policy.
func (p *Policy) Categories() []string {
	seen := map[string]bool{}
	for _, r := range p.refs {
		seen[r.name] = true
	}
	return sortedKeys(seen)
}

// MissingCategories reports each place that names a category without a list
// in dir (the categories directory). These are warnings: the rest of the
// policy applies regardless, but such a block blocks nothing, which a parent
// must not have to guess.
func (p *Policy) MissingCategories(dir string, available map[string]bool) Problems {
	var out Problems
	for _, r := range p.refs {
		if !available[r.name] {
			out = append(out, Problem{File: r.pos.file, Line: r.pos.line, Col: r.pos.col, Field: r.pos.field,
				Msg: fmt.Sprintf("nothing is blocked for %q until a list is installed at %s; other rules still apply", r.name, filepath.Join(dir, r.name+".txt"))})
		}
	}
	out.sort()
	return out
}

// digest identifies a set of sources by content: each file's name relative
// to its directory and the SHA-256 of its bytes, in name order. The
// directory's path is not part of it, so the same files give the same
// digest on every router and a server can compute it (`famguard check`
// prints it; OPERATORS.md has a shell one-liner).
func digest(srcs []Source) string {
	h := sha256.New()
	for _, s := range srcs {
		fmt.Fprintf(h, "%s\x00%s\n", filepath.Base(s.Path), s.SHA256)
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Horizon is how far ahead `until` is computed; schedules are weekly.
const Horizon = 8 * 24 * time.Hour
