package rules

import (
	"fmt"
	"slices"
	"strings"
)

// Incremental writes. A full write flushes every famguard chain and adds
// every rule again: iptables-restore (iptables-nft above all) spends time in
// proportion to the rules it adds, so with 1000 devices (about 3000 rules a
// family) one reload took some 400 ms, almost all of it re-adding rules that
// had not changed. When the kernel is known to hold the previous input, the
// Kernel writes only the difference instead: for each chain, the shortest
// edit script between its old and its new rules (Myers' diff), as
// positional `-D CHAIN N` and `-I CHAIN N rule` lines in one --noflush
// transaction; chains that did not change are not mentioned, and a chain
// that changed mostly is rewritten whole. The cost then grows with the
// changed devices, not with all of them.
//
// Positions are only right if the kernel holds exactly what famguard wrote
// last. So the Kernel uses a delta only while its last read-back matched
// (see Kernel.Snapshot), and checks the read-back after each delta: every
// rule the delta kept must be there, unchanged and in order (an inserted
// rule is only counted: iptables-save prints it in its own canonical form).
// When that check fails, or a delta is refused, the next write is a full
// one, as it always was.

// maxEdits bounds the diff of one chain; beyond it (or beyond half the
// chain) the chain is rewritten whole, which is then no slower.
const maxEdits = 256

// restoreDoc is a Render output read back: per table (in order) its
// declared chains (in order) and each chain's rules (the text after "-A
// CHAIN ").
type restoreDoc struct {
	tables []string
	chains map[string][]string            // table → declared chains
	rules  map[string]map[string][]string // table → chain → rules
}

func parseRestore(text string) (*restoreDoc, bool) {
	d := &restoreDoc{chains: map[string][]string{}, rules: map[string]map[string][]string{}}
	tbl := ""
	for _, line := range strings.Split(text, "\n") {
		switch {
		case line == "" || line == "COMMIT" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "*"):
			tbl = line[1:]
			d.tables = append(d.tables, tbl)
			d.rules[tbl] = map[string][]string{}
		case strings.HasPrefix(line, ":") && tbl != "":
			f := strings.Fields(line[1:])
			if len(f) == 0 {
				return nil, false
			}
			d.chains[tbl] = append(d.chains[tbl], f[0])
			d.rules[tbl][f[0]] = []string{}
		case strings.HasPrefix(line, "-A ") && tbl != "":
			chain, rule, ok := strings.Cut(line[3:], " ")
			if _, declared := d.rules[tbl][chain]; !ok || !declared {
				return nil, false // a rule in a chain not declared here: not ours to diff
			}
			d.rules[tbl][chain] = append(d.rules[tbl][chain], rule)
		default:
			return nil, false // anything else (-I, -D, -X...): not a Render output
		}
	}
	return d, true
}

// snapshotRules are the rule lines of each of our chains in a Snapshot,
// keyed "table:chain".
func snapshotRules(snap string) map[string][]string {
	out := map[string][]string{}
	for _, line := range strings.Split(snap, "\n") {
		tbl, rest, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(rest, "-A ") {
			continue
		}
		f := strings.Fields(rest)
		if len(f) > 1 {
			out[tbl+":"+f[1]] = append(out[tbl+":"+f[1]], line)
		}
	}
	return out
}

// expectation is what a read-back must show after a delta: per chain, the
// snapshot line of each rule in order ("" for a rule the delta inserted).
type expectation map[string][]string

// holds reports whether snap shows what the delta promised.
func (e expectation) holds(snap string) bool {
	got := snapshotRules(snap)
	for key, want := range e {
		have := got[key]
		if len(have) != len(want) {
			return false
		}
		for i, w := range want {
			if w != "" && have[i] != w {
				return false
			}
		}
	}
	return true
}

// delta returns the restore input that turns the kernel from prev (the last
// input written, which base, its read-back, showed in place) into next,
// and what the read-back must show afterwards. ok is false when only a full
// write will do: different tables or chains, or a base that does not match
// prev. An empty delta means nothing changed.
func delta(prev, next, base string) (out string, exp expectation, ok bool) {
	p, ok1 := parseRestore(prev)
	n, ok2 := parseRestore(next)
	if !ok1 || !ok2 || strings.Join(p.tables, " ") != strings.Join(n.tables, " ") {
		return "", nil, false
	}
	have := snapshotRules(base)
	exp = expectation{}
	var b strings.Builder
	for _, tbl := range n.tables {
		if strings.Join(p.chains[tbl], " ") != strings.Join(n.chains[tbl], " ") {
			return "", nil, false
		}
		var decl, cmds strings.Builder
		for _, chain := range n.chains[tbl] {
			key := tbl + ":" + chain
			old, cur, lines := p.rules[tbl][chain], n.rules[tbl][chain], have[key]
			if len(lines) != len(old) {
				return "", nil, false // the read-back does not match prev
			}
			ops := diff(old, cur, min(maxEdits, len(cur)/2+8))
			if ops == nil && !slices.Equal(old, cur) {
				// Too different: rewrite the chain (the declaration flushes it).
				fmt.Fprintf(&decl, ":%s - [0:0]\n", chain)
				for _, r := range cur {
					fmt.Fprintf(&cmds, "-A %s %s\n", chain, r)
				}
				exp[key] = make([]string, len(cur))
				continue
			}
			want := make([]string, 0, len(cur))
			pos, i := 1, 0 // pos: 1-based position in the chain as edited so far; i: index in old
			for _, op := range ops {
				switch op.kind {
				case keep:
					want = append(want, lines[i])
					pos, i = pos+1, i+1
				case del:
					fmt.Fprintf(&cmds, "-D %s %d\n", chain, pos)
					i++
				case ins:
					fmt.Fprintf(&cmds, "-I %s %d %s\n", chain, pos, cur[op.j])
					want = append(want, "")
					pos++
				}
			}
			exp[key] = want
		}
		if decl.Len()+cmds.Len() > 0 {
			fmt.Fprintf(&b, "*%s\n%s%sCOMMIT\n", tbl, decl.String(), cmds.String())
		}
	}
	return b.String(), exp, true
}

type opKind uint8

const (
	keep opKind = iota
	del
	ins
)

// op is one step of an edit script: keep or delete the next rule of a, or
// insert b[j].
type op struct {
	kind opKind
	j    int
}

// diff is Myers' O((N+M)D) shortest edit script from a to b, nil when it
// needs more than maxD insertions and deletions. The common head and tail
// are matched first, so a few changed devices cost a few operations.
func diff(a, b []string, maxD int) []op {
	head := 0
	for head < len(a) && head < len(b) && a[head] == b[head] {
		head++
	}
	tail := 0
	for tail < len(a)-head && tail < len(b)-head && a[len(a)-1-tail] == b[len(b)-1-tail] {
		tail++
	}
	var ops []op
	for j := 0; j < head; j++ {
		ops = append(ops, op{keep, j})
	}
	mid := myers(a[head:len(a)-tail], b[head:len(b)-tail], maxD)
	if mid == nil && (len(a)-tail > head || len(b)-tail > head) {
		return nil
	}
	for _, o := range mid {
		if o.kind != del {
			o.j += head
		}
		ops = append(ops, o)
	}
	for j := len(b) - tail; j < len(b); j++ {
		ops = append(ops, op{keep, j})
	}
	return ops
}

func myers(a, b []string, maxD int) []op {
	n, m := len(a), len(b)
	if n == 0 && m == 0 {
		return nil
	}
	if n+m > 0 && min(n, m) == 0 {
		if n+m > maxD {
			return nil
		}
		var ops []op
		for i := 0; i < n; i++ {
			ops = append(ops, op{del, 0})
		}
		for j := 0; j < m; j++ {
			ops = append(ops, op{ins, j})
		}
		return ops
	}
	off := maxD + 1
	v := make([]int, 2*off+1)
	var trace [][]int
	for d := 0; d <= maxD; d++ {
		trace = append(trace, append([]int(nil), v...))
		for k := -d; k <= d; k += 2 {
			var x int
			if k == -d || (k != d && v[off+k-1] < v[off+k+1]) {
				x = v[off+k+1] // down: an insertion
			} else {
				x = v[off+k-1] + 1 // right: a deletion
			}
			y := x - k
			for x < n && y < m && a[x] == b[y] {
				x, y = x+1, y+1
			}
			v[off+k] = x
			if x >= n && y >= m {
				return backtrack(trace, off, d, n, m)
			}
		}
	}
	return nil
}

// backtrack walks the saved frontiers from (n, m) back to (0, 0).
func backtrack(trace [][]int, off, d, n, m int) []op {
	var rev []op
	x, y := n, m
	for ; d > 0; d-- {
		v := trace[d] // the frontier before step d
		k := x - y
		var pk int
		if k == -d || (k != d && v[off+k-1] < v[off+k+1]) {
			pk = k + 1
		} else {
			pk = k - 1
		}
		px := v[off+pk]
		py := px - pk
		for x > px && y > py && x > 0 && y > 0 {
			rev = append(rev, op{keep, y - 1})
			x, y = x-1, y-1
		}
		if x == px {
			rev = append(rev, op{ins, y - 1})
		} else {
			rev = append(rev, op{del, 0})
		}
		x, y = px, py
	}
	for x > 0 && y > 0 {
		rev = append(rev, op{keep, y - 1})
		x, y = x-1, y-1
	}
	ops := make([]op, len(rev))
	for i, o := range rev {
		ops[len(rev)-1-i] = o
	}
	return ops
}
