package policy

// Layered policy: an operator layer beside the parents' profiles.
//
// An ISP (or whoever preinstalls famguard) owns /etc/famguard/operator.d/;
// the parents own /etc/famguard/profiles.d/. Both hold files of the same
// format (version 1; the same schema.json), so an operator's tooling, the
// checker and the editor support are shared, and a version-1 parents' file
// keeps loading unchanged: the two new file-level keys are optional.
//
//	defaults: {block: [...], safe_search: bool, bypass_prevention: bool}
//	    what applies to a child that does not set the key itself
//	floors:   {block: [...], safe_search: true, bypass_prevention: true}
//	    minimums for every child that no file can lower
//
// Precedence, for each child and each key (block, safe_search,
// bypass_prevention, allow, deny, schedules), first match wins:
//
//  1. the child's own key in a parents' file            ("parents")
//  2. the child's own key in an operator file           ("operator")
//  3. defaults: in a parents' file                      ("parents default")
//  4. defaults: in an operator file                     ("operator default")
//  5. famguard's built-in default                       ("built-in")
//
// then floors of both layers are applied on top: floor categories are added
// to the child's block list, safe search and bypass prevention are forced
// on ("operator floor" / "parents floor"). Parents can thus change every
// operator default, and raise but never lower a floor.
//
// A child defined in both layers is not an error (an ACS provisions a
// child, the parents refine it): the keys merge as above, and the devices
// are the union of both layers' lists (parents add devices; a device both
// list keeps the parents' name). A MAC the operator lists for one child and
// the parents for another belongs to the parents' child: the household
// knows its devices; the operator's entry is dropped with a warning that
// check and status show. Within one layer the old rules stay: a child, a
// MAC, a time zone or a default in one place only, or the whole set is
// rejected. The time zone: the parents' if set, else the operator's. The
// unknown-device policy (the file-level key "unknown_devices" of issue 9)
// follows the same rule: a parents' file beats the operator layer's value,
// which is thus a default.
//
// Either layer's problems reject the whole policy, so the daemon keeps the
// last good one. A missing or empty operator directory is no layer at all.
//
// The digest: each layer's digest is over its files' base names and
// SHA-256s (digest in policy.go), never the directory's path. Without an
// operator layer the policy digest is the parents' layer digest (what
// version-1 setups always printed, minus the path); with one, it is the
// SHA-256 of "operator <op digest>\nparents <parents digest>\n", cut to 12
// hex digits like the layer digests.

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Layer names, as status, plan and Source.Layer print them.
const (
	LayerOperator = "operator"
	LayerParents  = "parents"
)

// OperatorDirName is the operator layer's directory beside profiles.d.
const OperatorDirName = "operator.d"

// OperatorDirFor is the default operator layer for a profile directory:
// operator.d beside it (/etc/famguard/profiles.d → /etc/famguard/operator.d),
// so `famguard check /etc/famguard/profiles.d` sees what the daemon sees.
func OperatorDirFor(profilesDir string) string {
	return filepath.Join(filepath.Dir(filepath.Clean(profilesDir)), OperatorDirName)
}

func init() {
	// The layering keys are added here rather than in parse.go's table so
	// that the layering code stays in this file; Keys is initialised before
	// init runs, and the schema test checks the resulting table.
	Keys["file"] = append(Keys["file"], "defaults", "floors")
	Keys["defaults"] = []string{"block", "safe_search", "bypass_prevention"}
	Keys["floors"] = []string{"block", "safe_search", "bypass_prevention"}
}

// layeredKeys are the child keys that merge by precedence (devices merge
// by union).
var layeredKeys = []string{"block", "safe_search", "bypass_prevention", "allow", "deny", "schedules", "budget"}

// Settings is a defaults: or floors: mapping.
type Settings struct {
	Block            []string `json:"block,omitempty"`
	HasBlock         bool     `json:"-"` // block: given (an empty list is a choice)
	SafeSearch       *bool    `json:"safe_search,omitempty"`
	BypassPrevention *bool    `json:"bypass_prevention,omitempty"`
}

func (s Settings) empty() bool {
	return !s.HasBlock && s.SafeSearch == nil && s.BypassPrevention == nil
}

// LayerInfo is what one layer contributed, for check, status and plan.
type LayerInfo struct {
	Name   string `json:"name"`
	Dir    string `json:"dir"`
	Digest string `json:"digest"`
	Files  int    `json:"files"`
	// Serial of the signed bundle that wrote the directory (agent/bundle);
	// 0 when the files were written by hand.
	Serial uint64 `json:"serial,omitempty"`
}

// BundleManifestName is where agent/bundle keeps the installed manifest in
// a directory it wrote: hidden, so it is never read as a profile.
const BundleManifestName = ".bundle-manifest.json"

// bundleSerial reads the serial of the bundle installed in dir, if any.
func bundleSerial(dir string) uint64 {
	b, err := os.ReadFile(filepath.Join(dir, BundleManifestName))
	if err != nil || len(b) > 1<<20 {
		return 0
	}
	var m struct {
		Serial uint64 `json:"serial"`
	}
	if json.Unmarshal(b, &m) != nil {
		return 0
	}
	return m.Serial
}

// layerSettings is one layer's defaults, floors and children's keys, kept
// from parsing until the layers are resolved.
type layerSettings struct {
	defaults, floors Settings
	defaultAt        map[string]position        // where each default was set
	childSet         map[string]map[string]bool // child → keys its file sets
	childAt          map[string]position        // child → where it is defined
	macAt            map[string]macRef          // MAC → child and where
}

// layerKeys reads the defaults: and floors: of one file.
func (p *parser) layerKeys(fields map[string]*yaml.Node) {
	if n, ok := fields["defaults"]; ok {
		p.layer.defaults, p.layer.defaultAt = p.settings(n, "defaults")
	}
	if n, ok := fields["floors"]; ok {
		p.layer.floors, _ = p.settings(n, "floors")
	}
}

func (p *parser) settings(n *yaml.Node, kind string) (Settings, map[string]position) {
	var s Settings
	at := map[string]position{}
	if n.Kind != yaml.MappingNode {
		p.problem(n, kind, "expected a mapping like {block: [security], safe_search: true}, got %s", kindName(n))
		return s, at
	}
	f := p.mapping(n, kind, kind)
	if b, ok := f["block"]; ok {
		s.Block, s.HasBlock = p.categories(b, kind+".block"), true
		at["block"] = p.pos(b, kind+".block")
	}
	for _, k := range []string{"safe_search", "bypass_prevention"} {
		v, ok := f[k]
		if !ok {
			continue
		}
		before := len(p.problems)
		b := p.boolean(v, kind+"."+k)
		if len(p.problems) > before {
			continue
		}
		if kind == "floors" && !b {
			p.problem(v, kind+"."+k, "false lowers nothing: a floor can only force %s on; leave the key out (or use defaults: to suggest a value parents may change)", k)
			continue
		}
		if k == "safe_search" {
			s.SafeSearch = &b
		} else {
			s.BypassPrevention = &b
		}
		at[k] = p.pos(v, kind+"."+k)
	}
	return s, at
}

// keySet is the set of keys a mapping gave.
func keySet(f map[string]*yaml.Node) map[string]bool {
	out := make(map[string]bool, len(f))
	for k := range f {
		out[k] = true
	}
	return out
}

// mergeLayerSettings combines the defaults and floors of one layer's files
// into pol: a default set in two files is a problem (like the time zone);
// floors add up.
func mergeLayerSettings(pol *Policy, parsers []*parser) Problems {
	var probs Problems
	l := layerSettings{defaultAt: map[string]position{}, childSet: map[string]map[string]bool{},
		childAt: map[string]position{}, macAt: map[string]macRef{}}
	floorCats := map[string]bool{}
	for _, p := range parsers {
		d := p.layer.defaults
		for _, k := range Keys["defaults"] {
			at, ok := p.layer.defaultAt[k]
			if !ok {
				continue
			}
			if prev, dup := l.defaultAt[k]; dup {
				probs = append(probs, Problem{File: at.file, Line: at.line, Col: at.col, Field: at.field,
					Msg: fmt.Sprintf("already set at %s:%d; set each default in one file only", prev.file, prev.line)})
				continue
			}
			l.defaultAt[k] = at
			switch k {
			case "block":
				l.defaults.Block, l.defaults.HasBlock = d.Block, true
			case "safe_search":
				l.defaults.SafeSearch = d.SafeSearch
			case "bypass_prevention":
				l.defaults.BypassPrevention = d.BypassPrevention
			}
		}
		f := p.layer.floors
		for _, c := range f.Block {
			floorCats[c] = true
		}
		l.floors.HasBlock = l.floors.HasBlock || f.HasBlock
		if f.SafeSearch != nil {
			l.floors.SafeSearch = f.SafeSearch
		}
		if f.BypassPrevention != nil {
			l.floors.BypassPrevention = f.BypassPrevention
		}
		for _, c := range p.children {
			if _, dup := l.childSet[c.child.Name]; !dup {
				l.childSet[c.child.Name] = c.set
				l.childAt[c.child.Name] = c.pos
			}
		}
		for _, m := range p.macs {
			if _, dup := l.macAt[m.mac]; !dup {
				l.macAt[m.mac] = m
			}
		}
	}
	if l.floors.HasBlock {
		l.floors.Block = sortedKeys(floorCats)
	}
	pol.layer = l
	return probs
}

// Load reads the operator layer (opDir; "" or a directory without profile
// files: no operator layer) and the parents' layer (profilesDir), and
// resolves them into one policy (see the package comment of this file).
// Problems of both layers are reported together.
func Load(opDir, profilesDir string) (*Policy, error) {
	var op *Policy
	var probs Problems
	if opDir != "" && hasProfileFiles(opDir) {
		p, err := loadDir(opDir, nil)
		switch e := err.(type) {
		case nil:
			op = p
		case Problems:
			probs = append(probs, e...)
		default:
			return nil, fmt.Errorf("operator layer: %w", err)
		}
	}
	par, err := loadDir(profilesDir, nil)
	if err != nil {
		e, ok := err.(Problems)
		if !ok {
			return nil, err
		}
		probs = append(probs, e...)
	}
	if len(probs) > 0 {
		return nil, probs
	}
	for i := range par.Sources {
		par.Sources[i].Layer = LayerParents
	}
	info := []LayerInfo{{Name: LayerParents, Dir: profilesDir, Digest: par.Digest, Files: len(par.Sources), Serial: bundleSerial(profilesDir)}}
	if op != nil {
		for i := range op.Sources {
			op.Sources[i].Layer = LayerOperator
		}
		info = append([]LayerInfo{{Name: LayerOperator, Dir: opDir, Digest: op.Digest, Files: len(op.Sources), Serial: bundleSerial(opDir)}}, info...)
	}
	pol := resolveLayers(op, par)
	pol.Layers = info
	return pol, nil
}

// hasProfileFiles says whether dir exists and holds at least one profile
// file: an absent or empty operator directory means no operator layer.
func hasProfileFiles(dir string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return !os.IsNotExist(err) // unreadable: let loadLayer say why
	}
	for _, e := range entries {
		if IsProfileFile(e.Name()) {
			return true
		}
	}
	return false
}

// layersDigest combines the layer digests.
func layersDigest(op, par string) string {
	sum := sha256.Sum256([]byte("operator " + op + "\nparents " + par + "\n"))
	return hex.EncodeToString(sum[:])[:12]
}

// resolveLayers merges the operator layer (nil: none) into the parents'
// layer and applies defaults and floors. A plain version-1 set without an
// operator layer, defaults or floors comes out exactly as it went in.
func resolveLayers(op, par *Policy) *Policy {
	if op == nil && par.layer.defaults.empty() && par.layer.floors.empty() {
		return par
	}
	out := &Policy{Timezone: par.Timezone, Sources: par.Sources, Digest: par.Digest, refs: par.refs,
		Unknown: par.Unknown, Randomized: par.Randomized, Trusted: par.Trusted, Assigned: par.Assigned}
	var opChildren map[string]Child
	var opLayer layerSettings
	if op != nil {
		out.Sources = append(append([]Source(nil), op.Sources...), par.Sources...)
		out.Digest = layersDigest(op.Digest, par.Digest)
		out.refs = append(append([]categoryRef(nil), op.refs...), par.refs...)
		if out.Timezone == "" {
			out.Timezone = op.Timezone
		}
		// The unknown-device policy: the parents' choice, else the
		// operator's (an operator default). Trusted devices: both layers',
		// except a MAC the parents give a child.
		if out.Unknown.Action == UnknownUnset {
			out.Unknown = op.Unknown
		}
		if out.Randomized.Action == UnknownUnset {
			out.Randomized = op.Randomized
		}
		for _, d := range op.Trusted {
			if _, listed := par.layer.macAt[d.MAC]; !listed {
				out.Trusted = append(out.Trusted, d)
			}
		}
		opLayer = op.layer
		opChildren = map[string]Child{}
		for _, c := range op.Children {
			opChildren[c.Name] = c
		}
	}
	parChildren := map[string]Child{}
	for _, c := range par.Children {
		parChildren[c.Name] = c
	}
	names := map[string]bool{}
	for n := range opChildren {
		names[n] = true
	}
	for n := range parChildren {
		names[n] = true
	}
	for _, name := range sortedKeys(names) {
		oc, inOp := opChildren[name]
		pc, inPar := parChildren[name]
		c := Child{Name: name, BypassPrevention: true, Decided: map[string]string{}}
		for _, k := range layeredKeys {
			switch {
			case inPar && par.layer.childSet[name][k]:
				copyKey(&c, pc, k)
				c.Decided[k] = LayerParents
			case inOp && opLayer.childSet[name][k]:
				copyKey(&c, oc, k)
				c.Decided[k] = LayerOperator
			case defaultKey(&c, par.layer.defaults, k):
				c.Decided[k] = LayerParents + " default"
			case defaultKey(&c, opLayer.defaults, k):
				c.Decided[k] = LayerOperator + " default"
			}
		}
		c.Devices, out.Warnings = unionDevices(name, oc.Devices, pc.Devices, op, par, out.Warnings)
		switch {
		case inOp && inPar:
			c.Decided["devices"] = LayerOperator + " + " + LayerParents
		case inOp:
			c.Decided["devices"] = LayerOperator
		}
		applyFloors(&c, opLayer.floors, LayerOperator+" floor")
		applyFloors(&c, par.layer.floors, LayerParents+" floor")
		out.Children = append(out.Children, c)
	}
	out.Floors = unionFloors(opLayer.floors, par.layer.floors)
	return out
}

// copyKey copies one layered key from a child definition.
func copyKey(dst *Child, src Child, k string) {
	switch k {
	case "block":
		dst.Block = src.Block
	case "safe_search":
		dst.SafeSearch = src.SafeSearch
	case "bypass_prevention":
		dst.BypassPrevention = src.BypassPrevention
	case "allow":
		dst.Allow = src.Allow
	case "deny":
		dst.Deny = src.Deny
	case "schedules":
		dst.Schedules = src.Schedules
	case "budget":
		dst.Budget = src.Budget
	}
}

// defaultKey applies a default for key k if the settings have one.
func defaultKey(dst *Child, d Settings, k string) bool {
	switch {
	case k == "block" && d.HasBlock:
		dst.Block = d.Block
	case k == "safe_search" && d.SafeSearch != nil:
		dst.SafeSearch = *d.SafeSearch
	case k == "bypass_prevention" && d.BypassPrevention != nil:
		dst.BypassPrevention = *d.BypassPrevention
	default:
		return false
	}
	return true
}

// applyFloors raises a child to a layer's floors and notes it in Decided.
func applyFloors(c *Child, f Settings, label string) {
	var added []string
	have := map[string]bool{}
	for _, b := range c.Block {
		have[b] = true
	}
	for _, b := range f.Block {
		if !have[b] {
			have[b] = true
			added = append(added, b)
		}
	}
	if len(added) > 0 {
		c.Block = sortedKeys(have)
		c.Decided["block"] = joinDecision(c.Decided["block"], fmt.Sprintf("%s (%s)", label, strings.Join(added, ", ")))
	}
	if f.SafeSearch != nil && *f.SafeSearch && !c.SafeSearch {
		c.SafeSearch = true
		c.Decided["safe_search"] = label
	} else if f.SafeSearch != nil && *f.SafeSearch {
		c.Decided["safe_search"] = joinDecision(c.Decided["safe_search"], label)
	}
	if f.BypassPrevention != nil && *f.BypassPrevention && !c.BypassPrevention {
		c.BypassPrevention = true
		c.Decided["bypass_prevention"] = label
	} else if f.BypassPrevention != nil && *f.BypassPrevention {
		c.Decided["bypass_prevention"] = joinDecision(c.Decided["bypass_prevention"], label)
	}
}

func joinDecision(prev, add string) string {
	if prev == "" {
		return add
	}
	return prev + " + " + add
}

// unionDevices merges a child's devices from both layers. A MAC the
// parents list for another child is dropped from the operator's list, with
// a warning.
func unionDevices(name string, opDevs, parDevs []Device, op, par *Policy, warn Problems) ([]Device, Problems) {
	byMAC := map[string]Device{}
	for _, d := range opDevs {
		if m, ok := par.layer.macAt[d.MAC]; ok && m.owner != name {
			at := op.layer.macAt[d.MAC].pos
			whose := fmt.Sprintf("for child %q", m.owner)
			if m.owner == AssignTrusted {
				whose = "as trusted"
			}
			warn = append(warn, Problem{File: at.file, Line: at.line, Col: at.col, Field: at.field,
				Msg: fmt.Sprintf("MAC %s is also listed %s at %s:%d; the parents' file wins, so it is not %q's here", d.MAC, whose, m.pos.file, m.pos.line, name)})
			continue
		}
		byMAC[d.MAC] = d
	}
	for _, d := range parDevs {
		byMAC[d.MAC] = d
	}
	out := make([]Device, 0, len(byMAC))
	for _, d := range byMAC {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].MAC < out[j].MAC })
	return out, warn
}

func unionFloors(a, b Settings) Settings {
	cats := map[string]bool{}
	for _, c := range append(append([]string(nil), a.Block...), b.Block...) {
		cats[c] = true
	}
	out := Settings{HasBlock: a.HasBlock || b.HasBlock}
	if len(cats) > 0 {
		out.Block = sortedKeys(cats)
	}
	t := true
	if (a.SafeSearch != nil && *a.SafeSearch) || (b.SafeSearch != nil && *b.SafeSearch) {
		out.SafeSearch = &t
	}
	if (a.BypassPrevention != nil && *a.BypassPrevention) || (b.BypassPrevention != nil && *b.BypassPrevention) {
		out.BypassPrevention = &t
	}
	return out
}
