package rules

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"unicode"
)

// Fake is a stateful, in-memory filter table per family that really applies
// iptables-restore --noflush input, with the kernel's all-or-nothing
// transaction semantics. Tests assert its iptables-save text (golden files)
// and trace packets through it; the helpers below play "another program"
// changing the firewall under the agent.
type Fake struct {
	// Sets are the ipsets; Apply creates those a restore refers to first,
	// as Kernel does, and a restore naming one that does not exist fails.
	Sets *FakeSets
	mu   sync.Mutex
	t    [2]tables
	used [2]map[string]bool // tables the last Apply wrote, as Kernel tracks
}

// tables are one family's tables by name.
type tables map[string]*fakeTable

// tableOrder is the order Save prints tables in.
var tableOrder = []string{"filter", "nat", "mangle"}

type fakeTable struct {
	order  []string // chain creation order (built-ins first)
	chains map[string]*fakeChain
	used   bool // printed by Save: filter from the start, nat once written
}

type fakeChain struct {
	policy string // "ACCEPT" for built-ins, "-" for user chains
	rules  []string
}

var builtins = map[string][]string{
	"filter": {"INPUT", "FORWARD", "OUTPUT"},
	"nat":    {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
	"mangle": {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"},
}

func newTables() tables {
	ts := tables{}
	for name, chains := range builtins {
		t := &fakeTable{chains: map[string]*fakeChain{}, used: name == "filter"}
		for _, c := range chains {
			t.order = append(t.order, c)
			t.chains[c] = &fakeChain{policy: "ACCEPT"}
		}
		ts[name] = t
	}
	return ts
}

func (ts tables) clone() tables {
	c := tables{}
	for name, t := range ts {
		c[name] = t.clone()
	}
	return c
}

func (t *fakeTable) clone() *fakeTable {
	c := &fakeTable{order: append([]string(nil), t.order...), chains: map[string]*fakeChain{}, used: t.used}
	for name, ch := range t.chains {
		c.chains[name] = &fakeChain{policy: ch.policy, rules: append([]string(nil), ch.rules...)}
	}
	return c
}

// NewFake returns empty tables with the built-in chains.
func NewFake() *Fake { return &Fake{t: [2]tables{newTables(), newTables()}, Sets: NewFakeSets()} }

// Apply applies restore input, then makes the jump first in FORWARD, once.
func (f *Fake) Apply(fam Family, restore string) error {
	if f.Sets != nil {
		if err := ensureSets(f.Sets, fam, restore); err != nil {
			return err
		}
	}
	for _, name := range StrictSets(restore) {
		if f.Sets == nil || !f.Sets.Has(name) {
			return fmt.Errorf("Set %s doesn't exist", name)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	next := f.t[fam].clone()
	if err := next.restore(restore); err != nil {
		return err
	}
	used := tablesIn(restore)
	for tn := range f.used[fam] {
		if !used[tn] {
			for _, h := range hooks {
				if h.table == tn {
					next[tn].chains[h.builtin].removeJumps(h.chain)
				}
			}
			if err := next.restore(RenderCleanup(tn)); err != nil {
				return err
			}
		}
	}
	next.ensureJumps(used)
	f.t[fam] = next
	f.used[fam] = used
	return nil
}

// Snapshot is famguard's part of the table, as Runner.Snapshot reports it.
func (f *Fake) Snapshot(fam Family) (string, error) { return ourLines(f.Save(fam)), nil }

// Cleanup removes every jump to our chain, then our chains.
func (f *Fake) Cleanup(fam Family) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	ts := f.t[fam].clone()
	var ours []string
	for _, tn := range tableOrder {
		if !ts[tn].used {
			continue
		}
		for _, h := range hooks {
			if h.table == tn {
				ts[tn].chains[h.builtin].removeJumps(h.chain)
			}
		}
		for _, c := range ourChains[tn] {
			if _, ok := ts[tn].chains[c]; ok {
				ours = append(ours, tn)
				break
			}
		}
	}
	if err := ts.restore(RenderCleanup(ours...)); err != nil {
		return err
	}
	for _, tn := range ours {
		if tn != "filter" && ts[tn].empty() {
			ts[tn].used = false // as Runner.dropIfEmpty deletes it
		}
	}
	f.t[fam] = ts
	return nil
}

// empty: only built-in chains, without rules.
func (t *fakeTable) empty() bool {
	for _, c := range t.chains {
		if c.policy == "-" || len(c.rules) > 0 {
			return false
		}
	}
	return true
}

// Backend names the fake.
func (f *Fake) Backend() string { return "fake" }

// Save prints the table like iptables-save -t filter (without the comment
// and counter noise).
func (f *Fake) Save(fam Family) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	for _, tn := range tableOrder {
		t := f.t[fam][tn]
		if !t.used {
			continue
		}
		b.WriteString("*" + tn + "\n")
		for _, name := range t.order {
			fmt.Fprintf(&b, ":%s %s [0:0]\n", name, t.chains[name].policy)
		}
		for _, name := range t.order {
			// iptables accepts chain names with quotes and prints them raw,
			// which no restore reads back; the fake quotes them like any
			// argument, so its save text always restores.
			quoted := quoteRule([]string{name})
			for _, r := range t.chains[name].rules {
				fmt.Fprintf(&b, "-A %s %s\n", quoted, r)
			}
		}
		b.WriteString("COMMIT\n")
	}
	return b.String()
}

// Run applies one rule command as another program would: "-I FORWARD 1 -j
// ACCEPT", "-F FAMGUARD", "-D FORWARD ...".
func (f *Fake) Run(fam Family, command string) error {
	return f.runIn(fam, "filter", command)
}

// runIn is Run in another table ("nat").
func (f *Fake) runIn(fam Family, table, command string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	next := f.t[fam].clone()
	if err := next.restore("*" + table + "\n" + command + "\nCOMMIT\n"); err != nil {
		return err
	}
	f.t[fam] = next
	return nil
}

// FlushRuleset empties everything, like `nft flush ruleset`.
func (f *Fake) FlushRuleset(fam Family) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.t[fam] = newTables()
}

// restore applies restore input (which the caller discards on error).
func (ts tables) restore(input string) error {
	var t *fakeTable
	inTable := false
	for i, line := range strings.Split(input, "\n") {
		n := i + 1
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fail := func(format string, args ...any) error {
			return fmt.Errorf("line %d failed: %s (%q)", n, fmt.Sprintf(format, args...), line)
		}
		switch {
		case strings.HasPrefix(line, "*"):
			var ok bool
			if t, ok = ts[line[1:]]; !ok {
				return fail("unsupported table")
			}
			t.used = true
			inTable = true
			continue
		case line == "COMMIT":
			inTable = false
			continue
		case !inTable:
			return fail("rule outside a table")
		case strings.HasPrefix(line, ":"):
			f := strings.Fields(line[1:])
			if len(f) < 2 {
				return fail("bad chain declaration")
			}
			if c, ok := t.chains[f[0]]; ok {
				c.rules = nil // --noflush: declaring a chain flushes it
				if f[1] != "-" {
					c.policy = f[1]
				}
			} else {
				t.order = append(t.order, f[0])
				t.chains[f[0]] = &fakeChain{policy: f[1]}
			}
			continue
		}
		args, err := Tokenize(line)
		if err != nil || len(args) < 2 {
			return fail("cannot parse")
		}
		op, chain, rest := args[0], args[1], args[2:]
		c, ok := t.chains[chain]
		if !ok && op != "-N" {
			return fail("no chain %s", chain)
		}
		switch op {
		case "-A", "-I", "-D":
			pos := -1
			if op == "-I" && len(rest) > 0 {
				if p, err := strconv.Atoi(rest[0]); err == nil {
					pos, rest = p-1, rest[1:]
				}
			}
			rule := quoteRule(rest)
			if target := targetOf(rest); target != "" && !isStandardTarget(target) {
				if _, ok := t.chains[target]; !ok {
					return fail("no chain/target/match by that name: %s", target)
				}
			}
			switch op {
			case "-A":
				c.rules = append(c.rules, rule)
			case "-I":
				if pos < 0 {
					pos = 0
				}
				if pos > len(c.rules) {
					return fail("index of insertion too big")
				}
				c.rules = append(c.rules[:pos], append([]string{rule}, c.rules[pos:]...)...)
			case "-D":
				if len(rest) == 1 {
					if p, err := strconv.Atoi(rest[0]); err == nil {
						// -D CHAIN N: by position, as iptables does.
						if p < 1 || p > len(c.rules) {
							return fail("index of deletion too big")
						}
						c.rules = append(c.rules[:p-1], c.rules[p:]...)
						break
					}
				}
				found := false
				for j, r := range c.rules {
					if r == rule {
						c.rules = append(c.rules[:j], c.rules[j+1:]...)
						found = true
						break
					}
				}
				if !found {
					return fail("rule does not exist")
				}
			}
		case "-F":
			c.rules = nil
		case "-N":
			if ok {
				return fail("chain already exists")
			}
			t.order = append(t.order, chain)
			t.chains[chain] = &fakeChain{policy: "-"}
		case "-X":
			if c.policy != "-" {
				return fail("cannot delete built-in chain")
			}
			if len(c.rules) > 0 {
				return fail("directory not empty: flush %s first", chain)
			}
			for _, other := range t.order {
				for _, r := range t.chains[other].rules {
					if targetOf(ruleArgs(r)) == chain {
						return fail("chain %s is still referenced from %s", chain, other)
					}
				}
			}
			delete(t.chains, chain)
			for j, name := range t.order {
				if name == chain {
					t.order = append(t.order[:j], t.order[j+1:]...)
					break
				}
			}
		default:
			return fail("unsupported command %s", op)
		}
	}
	if inTable {
		return fmt.Errorf("input ends without COMMIT")
	}
	return nil
}

// ensureJumps mirrors Runner.EnsureJumps: each jump first, once, in the
// tables the restore wrote.
func (ts tables) ensureJumps(used map[string]bool) {
	for _, h := range hooks {
		if !used[h.table] {
			continue
		}
		c := ts[h.table].chains[h.builtin]
		c.removeJumps(h.chain)
		c.rules = append([]string{quoteRule(h.spec)}, c.rules...)
	}
}

func (c *fakeChain) removeJumps(chain string) {
	var keep []string
	for _, r := range c.rules {
		if !isJumpTo("-A X "+r, chain) {
			keep = append(keep, r)
		}
	}
	c.rules = keep
}

// quoteRule joins arguments as iptables-save prints them: an argument that
// is empty or holds white space, a quote or a backslash goes in double
// quotes, with double quotes, backslashes and apostrophes escaped by a
// backslash (libxtables' xtables_save_string), so Tokenize gives the
// arguments back exactly. (iptables-save also quotes comments with other
// punctuation; famguard's golden files keep the plain form, which reads
// the same.)
func quoteRule(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, "\"\\'") || strings.ContainsFunc(a, unicode.IsSpace) {
			a = quoted(a)
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

// targetOf finds a rule's target: the argument of the first -j or -g that is
// an option, not the text of a comment ("--comment -j" is a comment "-j").
func targetOf(args []string) string {
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "--comment":
			i++
		case "-j", "-g":
			return args[i+1]
		}
	}
	return ""
}

// ruleArgs splits a stored rule back into its arguments.
func ruleArgs(rule string) []string {
	args, err := Tokenize(rule)
	if err != nil {
		return strings.Fields(rule)
	}
	return args
}

func isStandardTarget(t string) bool {
	switch t {
	case "ACCEPT", "DROP", "REJECT", "RETURN", "LOG", "REDIRECT", "DNAT", "MASQUERADE", "CONNMARK", "MARK", "SET":
		return true
	}
	return false
}

// quoted puts s in double quotes as iptables-save does, with double quotes,
// backslashes and apostrophes escaped by a backslash.
func quoted(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if strings.IndexByte("\"\\'", s[i]) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}
