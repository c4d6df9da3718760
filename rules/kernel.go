package rules

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-iptables/iptables"
)

// Dataplane is what the daemon needs from the firewall. Kernel is the real
// one; Fake is a stateful in-memory one for tests. The two families are
// independent: Apply and Snapshot of IPv4 may run at the same time as those
// of IPv6 (never two calls for the same family at once).
type Dataplane interface {
	// Apply writes a Render output in one transaction and makes sure the
	// jump from FORWARD is in place, first.
	Apply(fam Family, restore string) error
	// Snapshot returns famguard's part of the kernel state as iptables-save
	// prints it (no counters); comparing snapshots detects other programs
	// removing or changing our rules.
	Snapshot(fam Family) (string, error)
	// Cleanup removes the jump and the chains; it is idempotent.
	Cleanup(fam Family) error
	// Backend names the firewall backend in use (for logs and status).
	Backend() string
}

// Runner is the thin part that execs: iptables-restore for our chains,
// go-iptables for the single jump rule (it handles the xtables lock with
// --wait and tells apart "rule does not exist").
type Runner struct {
	fam     Family
	ipt     *iptables.IPTables
	restore string // iptables-restore or ip6tables-restore
	save    string
	bin     string // iptables or ip6tables
	backend string
	timeout time.Duration // bound on one iptables-restore or iptables-save run
}

// DefaultToolTimeout bounds one iptables-restore or iptables-save run. A
// restore legitimately waits up to 10 s for the xtables lock (--wait=10), so
// the bound is well above that; what it catches is a tool that never
// returns (a wedged kernel call, a broken wrapper script), which would
// otherwise block the daemon's single dataplane goroutine for ever.
const DefaultToolTimeout = 30 * time.Second

// NewRunner finds the tools for a family and detects the backend.
func NewRunner(fam Family) (*Runner, error) {
	proto, restore, save, bin := iptables.ProtocolIPv4, "iptables-restore", "iptables-save", "iptables"
	if fam == IPv6 {
		proto, restore, save, bin = iptables.ProtocolIPv6, "ip6tables-restore", "ip6tables-save", "ip6tables"
	}
	ipt, err := iptables.New(iptables.IPFamily(proto), iptables.Timeout(10))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", bin, err)
	}
	r := &Runner{fam: fam, ipt: ipt, bin: bin, timeout: DefaultToolTimeout}
	if r.restore, err = exec.LookPath(restore); err != nil {
		return nil, fmt.Errorf("%s not found: install the iptables package", restore)
	}
	if r.save, err = exec.LookPath(save); err != nil {
		return nil, fmt.Errorf("%s not found: install the iptables package", save)
	}
	out, _ := exec.Command(bin, "-V").CombinedOutput()
	r.backend = detectBackend(string(out))
	return r, nil
}

// detectBackend reads "iptables v1.8.9 (nf_tables)" or "(legacy)".
func detectBackend(version string) string {
	v := strings.TrimSpace(version)
	switch {
	case strings.Contains(v, "nf_tables"):
		return "iptables-nft (" + v + ")"
	case strings.Contains(v, "legacy"):
		return "iptables-legacy (" + v + ")"
	case v == "":
		return "unknown"
	}
	return v
}

// Backend names the backend.
func (r *Runner) Backend() string { return r.backend }

var restoreLine = regexp.MustCompile(`line:? (\d+)`)

// SetTimeout changes the bound on one tool run (DefaultToolTimeout).
func (r *Runner) SetTimeout(d time.Duration) {
	if d > 0 {
		r.timeout = d
	}
}

// ErrToolTimeout marks a tool run that was killed for taking longer than the
// runner's timeout.
var ErrToolTimeout = errors.New("did not finish in time and was killed")

// command prepares a bounded run of a tool: when ctx ends the tool's whole
// process group is killed (a wrapper script's children too), and Wait gives
// up on its pipes a second later, so a hung tool can never hold the caller.
func command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = time.Second
	return cmd
}

// runBounded runs cmd (made by command with ctx) and turns a deadline into
// ErrToolTimeout.
func runBounded(ctx context.Context, cmd *exec.Cmd, timeout time.Duration) error {
	err := cmd.Run()
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w after %v (%v)", ErrToolTimeout, timeout, err)
	}
	return err
}

// Apply runs iptables-restore --noflush with the given input. A failure is
// reported with the input line the tool complained about; a busy xtables
// lock is waited for (--wait) and retried. A run that takes longer than the
// runner's timeout is killed and reported: the kernel then holds whatever it
// held before (a restore commits all or nothing).
func (r *Runner) Apply(input string) error {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
		cmd := command(ctx, r.restore, "--noflush", "--wait=10")
		cmd.Stdin = strings.NewReader(input)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := runBounded(ctx, cmd, r.timeout)
		cancel()
		if err == nil {
			return nil
		}
		msg := strings.TrimSpace(stderr.String())
		if errors.Is(err, ErrToolTimeout) {
			return fmt.Errorf("%s: %w%s", r.restore, err, quoteStderr(msg))
		}
		lastErr = fmt.Errorf("%s: %v: %s%s", r.restore, err, msg, inputLine(input, msg))
		if !strings.Contains(msg, "xtables lock") && !strings.Contains(msg, "Resource temporarily unavailable") {
			return lastErr
		}
		time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
	}
	return lastErr
}

func quoteStderr(msg string) string {
	if msg == "" {
		return ""
	}
	return ": " + msg
}

// inputLine quotes the input line an iptables-restore error refers to.
func inputLine(input, msg string) string {
	m := restoreLine.FindStringSubmatch(msg)
	if m == nil {
		return ""
	}
	n, _ := strconv.Atoi(m[1])
	lines := strings.Split(input, "\n")
	if n < 1 || n > len(lines) {
		return ""
	}
	return fmt.Sprintf(" (input line %d: %q)", n, lines[n-1])
}

// EnsureJumps makes each of famguard's jumps the first rule of its built-in
// chain, exactly once. A missing jump is inserted; a jump that is not first,
// or duplicated, gets a new first copy before the others are deleted, so
// there is never a moment without one.
func (r *Runner) EnsureJumps(tables map[string]bool) error {
	for _, h := range hooks {
		if !tables[h.table] {
			continue
		}
		if err := r.ensureJump(h); err != nil {
			return err
		}
	}
	return nil
}

func (r *Runner) ensureJump(h hook) error {
	ours, exact, err := r.jumpPositions(h)
	if err != nil {
		return err
	}
	if len(ours) == 1 && ours[0] == 1 && exact {
		return nil
	}
	// A first jump that is not exactly today's (an older famguard's, e.g.
	// the FORWARD jump that skipped established traffic before offline
	// connections were rejected by their mark) is replaced like a missing one.
	if len(ours) == 0 || ours[0] != 1 || !exact {
		if err := r.ipt.Insert(h.table, h.builtin, 1, h.spec...); err != nil {
			return fmt.Errorf("inserting the jump to %s in %s %s: %w", h.chain, h.table, h.builtin, err)
		}
		for i := range ours {
			ours[i]++
		}
	} else {
		ours = ours[1:]
	}
	for i := len(ours) - 1; i >= 0; i-- {
		if err := r.ipt.DeleteById(h.table, h.builtin, ours[i]); err != nil {
			return fmt.Errorf("removing a duplicate jump from %s %s: %w", h.table, h.builtin, err)
		}
	}
	return nil
}

// jumpPositions lists the 1-based positions of jumps to h.chain in h.builtin,
// and whether the first of them is exactly h.spec.
func (r *Runner) jumpPositions(h hook) (ours []int, exact bool, err error) {
	rules, err := r.ipt.List(h.table, h.builtin)
	if err != nil {
		return nil, false, fmt.Errorf("listing %s %s: %w", h.table, h.builtin, err)
	}
	n := 0
	for _, line := range saveLines(strings.Join(rules, "\n")) {
		if !strings.HasPrefix(line, "-A "+h.builtin) {
			continue
		}
		n++
		if isJumpTo(line, h.chain) {
			if len(ours) == 0 {
				exact = isSpec(line, h)
			}
			ours = append(ours, n)
		}
	}
	return ours, exact, nil
}

// isSpec reports whether a rule as iptables -S prints it is h's jump.
func isSpec(line string, h hook) bool {
	f, err := Tokenize(line)
	if err != nil || len(f) != len(h.spec)+2 {
		return false
	}
	for i, a := range h.spec {
		if f[i+2] != a {
			return false
		}
	}
	return true
}

// isJumpTo recognises a rule that jumps to chain, as iptables-save and
// iptables -S print it: the target comes last, and a jump to a chain has no
// target options, so the rule ends in "-j CHAIN" (or "-g CHAIN"). The line
// is split as iptables-restore would, so a comment or log prefix of another
// program's rule that reads "-j FAMGUARD" is one quoted argument, never a
// jump (it would otherwise hide a missing jump, or have a foreign rule
// deleted as a duplicate of ours).
func isJumpTo(line, chain string) bool {
	f, err := Tokenize(line)
	if err != nil {
		return false // iptables-save never prints an open quote: not a rule of ours
	}
	n := len(f)
	return n >= 2 && (f[n-2] == "-j" || f[n-2] == "-g") && f[n-1] == chain
}

// Snapshot returns, for every table famguard uses, our chains' declarations,
// their rules and the jumps with their positions.
func (r *Runner) Snapshot() (string, error) {
	out, err := r.runSave()
	if err != nil {
		return "", err
	}
	return ourLines(out), nil
}

// runSave runs iptables-save (or ip6tables-save) with args, bounded by the
// runner's timeout.
func (r *Runner) runSave(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	cmd := command(ctx, r.save, args...)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := runBounded(ctx, cmd, r.timeout); err != nil {
		return "", fmt.Errorf("%s: %w", r.save, err)
	}
	return stdout.String(), nil
}

// ourLines extracts famguard's part of iptables-save output, each line
// prefixed with its table. A rule that spans lines (see saveLines) is one
// line here, its newlines written as \n.
func ourLines(save string) string {
	var b strings.Builder
	tbl := ""
	pos := map[string]int{}
	for _, line := range saveLines(save) {
		if strings.HasPrefix(line, "*") {
			tbl = line[1:]
			continue
		}
		line = strings.ReplaceAll(line, "\n", `\n`)
		for _, c := range ourChains[tbl] {
			switch {
			case strings.HasPrefix(line, ":"+c+" "):
				fmt.Fprintf(&b, "%s:%s\n", tbl, strings.Fields(line)[0])
			case strings.HasPrefix(line, "-A "+c+" "):
				fmt.Fprintf(&b, "%s:%s\n", tbl, line)
			}
		}
		for _, h := range hooks {
			if h.table == tbl && strings.HasPrefix(line, "-A "+h.builtin+" ") {
				pos[tbl+h.builtin]++
				if isJumpTo(line, h.chain) {
					fmt.Fprintf(&b, "%s:%s#%d %s\n", tbl, h.builtin, pos[tbl+h.builtin], line)
				}
			}
		}
	}
	return b.String()
}

// saveLines splits iptables-save or iptables -S output into its rules.
// iptables prints a comment in double quotes but its newlines raw, so the
// rule of another program whose comment holds a newline spans lines, and
// the text after the newline could read like a rule (even like famguard's
// jump). Lines are joined while a quote is open, as Tokenize reads quotes,
// so nothing inside a comment is ever taken for a rule. A trailing \r (a
// file edited elsewhere) is dropped, as bufio.Scanner did.
func saveLines(text string) []string {
	var out []string
	var cur strings.Builder
	open := false
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if open {
			cur.WriteByte('\n')
		}
		cur.WriteString(line)
		for i := 0; i < len(line); i++ {
			switch {
			case line[i] == '\\' && i+1 < len(line):
				i++
			case line[i] == '"':
				open = !open
			}
		}
		if !open {
			out = append(out, strings.TrimSuffix(cur.String(), "\r"))
			cur.Reset()
		}
	}
	if open {
		out = append(out, cur.String())
	}
	return out
}

// Cleanup removes every jump to our chains, then the chains, in every table.
func (r *Runner) Cleanup() error {
	return r.cleanupTables("filter", "nat", "mangle")
}

// cleanupTables removes famguard's jumps and chains from the given tables,
// touching only tables where famguard has something.
func (r *Runner) cleanupTables(tables ...string) error {
	var ours []string
	for _, tbl := range tables {
		present := false
		for _, c := range ourChains[tbl] {
			if ok, err := r.ipt.ChainExists(tbl, c); err == nil && ok {
				present = true
			}
		}
		for _, h := range hooks {
			if h.table != tbl {
				continue
			}
			pos, _, err := r.jumpPositions(h)
			if err != nil {
				continue // no such table: nothing of ours in it
			}
			for i := len(pos) - 1; i >= 0; i-- {
				if err := r.ipt.DeleteById(h.table, h.builtin, pos[i]); err != nil {
					return fmt.Errorf("removing the jump from %s %s: %w", h.table, h.builtin, err)
				}
			}
		}
		if present {
			ours = append(ours, tbl)
		}
	}
	if len(ours) == 0 {
		return nil
	}
	if err := r.Apply(RenderCleanup(ours...)); err != nil {
		return err
	}
	for _, tbl := range ours {
		if tbl != "filter" {
			r.dropIfEmpty(tbl)
		}
	}
	return nil
}

// dropIfEmpty deletes a table famguard's interception brought into being
// once nothing at all is left in it, so cleanup leaves the ruleset exactly as
// it was. Only with the nf_tables backend (iptables cannot delete a table)
// and only when every chain is empty with an ACCEPT policy: a table anyone
// else uses is never touched.
func (r *Runner) dropIfEmpty(tbl string) {
	if !strings.Contains(r.backend, "nf_tables") {
		return
	}
	nft, err := exec.LookPath("nft")
	if err != nil {
		return
	}
	out, err := exec.Command(r.bin, "-w", "-t", tbl, "-S").Output()
	if err != nil {
		return
	}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if !strings.HasPrefix(l, "-P ") || !strings.HasSuffix(l, " ACCEPT") {
			return
		}
	}
	family := "ip"
	if r.fam == IPv6 {
		family = "ip6"
	}
	_ = exec.Command(nft, "delete", "table", family, tbl).Run()
}

// ApplyOneByOne writes the desired state with one go-iptables call per rule,
// the way tools without a restore path do, and returns how many iptables
// processes it ran (each clear, append and jump check is one). Only the
// benchmark uses it, to show what the single transaction saves.
func (r *Runner) ApplyOneByOne(d Desired) (calls int, err error) {
	text, err := Render(d, r.fam)
	if err != nil {
		return 0, err
	}
	for tbl, chains := range ourChains {
		for _, c := range chains {
			calls += 2 // go-iptables' ClearChain: -N, and -F when it exists
			if err := r.ipt.ClearChain(tbl, c); err != nil {
				return calls, err
			}
		}
	}
	tbl := ""
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "*") {
			tbl = line[1:]
		}
		if !strings.HasPrefix(line, "-A ") {
			continue
		}
		args, err := Tokenize(line)
		if err != nil {
			return calls, err
		}
		calls++
		if err := r.ipt.Append(tbl, args[1], args[2:]...); err != nil {
			return calls, err
		}
	}
	tables := tablesIn(text)
	for _, h := range hooks {
		if tables[h.table] {
			calls++ // listing the built-in chain; it is in place after the first op
		}
	}
	return calls, r.EnsureJumps(tables)
}

// Tokenize splits a rule line like iptables-restore does (double quotes,
// backslash escapes).
func Tokenize(line string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inQuote, have := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
			have = true
		case c == '"':
			inQuote = !inQuote
			have = true
		case (c == ' ' || c == '\t') && !inQuote:
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteByte(c)
			have = true
		}
	}
	if inQuote {
		return nil, errors.New("unterminated quote in rule: " + line)
	}
	if have {
		out = append(out, cur.String())
	}
	return out, nil
}

// Kernel is the real Dataplane: one Runner per family.
//
// The jump rules are checked (`iptables -S` execs) on the first
// Apply and again only after a Snapshot showed it missing, misplaced or
// duplicated: the daemon reads a snapshot before every heal, so this saves
// an exec on every ordinary change without ever trusting a stale belief.
//
// After the first write of a family the Kernel writes only what changed
// (delta.go): last is the input the kernel is known to hold, base the
// read-back that showed it, pending what the read-back after a delta must
// show.
type Kernel struct {
	sets   Sets       // the ipsets a restore refers to are created first (nil: none is)
	setsMu sync.Mutex // both families' Apply may run at once; sets are shared
	r      [2]*Runner
	jumpOK [2]bool
	used   [2]map[string]bool // tables the last Apply wrote

	last    [2]string
	base    [2]string
	fresh   [2]bool        // written since the last read-back
	pending [2]expectation // non-nil: the last write was a delta

	strict  [2]bool             // the kernel holds strict reject rules (refused.go)
	refused [2]map[uint16]int64 // what writes reset of their counters

	// The nf_tables generation (nftgen.go) just before the last read-back
	// of each family; genOK: known. Only with the nf_tables backend.
	useGen bool
	gen    [2]uint32
	genOK  [2]bool
	reads  [2]int // iptables-save runs (tests)
}

// NewKernel prepares both families.
func NewKernel() (*Kernel, error) {
	v4, err := NewRunner(IPv4)
	if err != nil {
		return nil, err
	}
	v6, err := NewRunner(IPv6)
	if err != nil {
		return nil, err
	}
	k := &Kernel{r: [2]*Runner{v4, v6}}
	if strings.Contains(v4.Backend(), "nf_tables") {
		_, err := nftGeneration()
		k.useGen = err == nil
	}
	return k, nil
}

// SetSets makes Apply create the ipsets a restore refers to first (strict
// egress); without it a restore naming a set that does not exist fails.
func (k *Kernel) SetSets(s Sets) { k.sets = s }

// SetTimeout bounds each iptables-restore / iptables-save run of both
// families (DefaultToolTimeout).
func (k *Kernel) SetTimeout(d time.Duration) {
	for _, r := range k.r {
		r.SetTimeout(d)
	}
}

// Runner returns the runner of a family (benchmarks use it directly).
func (k *Kernel) Runner(fam Family) *Runner { return k.r[fam] }

// Apply restores (only the difference to the last write when the kernel is
// known to hold that), and checks the jump only when it is not known to be
// good.
func (k *Kernel) Apply(fam Family, restore string) error {
	if k.sets != nil {
		k.setsMu.Lock()
		err := ensureSets(k.sets, fam, restore)
		k.setsMu.Unlock()
		if err != nil {
			return err
		}
	}
	var exp expectation
	err := k.keepRefused(fam, func() error {
		err := errNoDelta
		if k.last[fam] != "" && !k.fresh[fam] {
			if d, e, ok := delta(k.last[fam], restore, k.base[fam]); ok {
				exp, err = e, nil
				if d != "" {
					err = k.r[fam].Apply(d)
				}
			}
		}
		if err != nil {
			// A full write: the first, after a read-back showed another
			// program's change, or when a delta was refused (the positions
			// it edits were not where it expected them).
			exp = nil
			err = k.r[fam].Apply(restore)
		}
		return err
	})
	k.last[fam], k.fresh[fam], k.pending[fam] = "", true, exp
	if err != nil {
		// Whatever made it fail (often another program flushing the
		// tables at that moment) may have taken the jumps too: check them
		// on the next try instead of trusting the last read-back.
		k.jumpOK[fam] = false
		return err
	}
	k.last[fam], k.strict[fam] = restore, hasStrict(restore)
	used := tablesIn(restore)
	// A table famguard wrote before but not now (DNS interception switched
	// off) loses famguard's jump and chain.
	for tbl := range k.used[fam] {
		if !used[tbl] {
			if err := k.r[fam].cleanupTables(tbl); err != nil {
				return err
			}
		}
	}
	if !mapsEqual(used, k.used[fam]) {
		k.jumpOK[fam] = false
	}
	k.used[fam] = used
	if k.jumpOK[fam] {
		return nil
	}
	if err := k.r[fam].EnsureJumps(used); err != nil {
		return err
	}
	k.jumpOK[fam] = true
	return nil
}

func mapsEqual(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// errNoDelta: a full write is due.
var errNoDelta = errors.New("no delta")

// divergedMark is added to a read-back that does not show what the last
// delta promised: the daemon takes it as its baseline, so its next heal
// check (a clean read-back) differs and rewrites everything.
const divergedMark = "# famguard: rules differ from the last write; a full write follows\n"

// Snapshot reads our rules back and, from them, whether the jump is still
// first and single, and whether the next write may be a delta: only while
// the kernel holds exactly what was written.
//
// With nf_tables, a read-back is skipped when nothing in the namespace's
// ruleset changed since the last one, which showed exactly what was
// written: the answer is that read-back again. The generation is read
// before iptables-save runs, so a change racing with the read moves it
// past the value kept, and the next call reads again.
func (k *Kernel) Snapshot(fam Family) (string, error) {
	var gen uint32
	genErr := errNoDelta
	if k.useGen {
		gen, genErr = nftGeneration()
	}
	if genErr == nil && k.genOK[fam] && gen == k.gen[fam] && !k.fresh[fam] && k.last[fam] != "" {
		return k.base[fam], nil
	}
	k.genOK[fam] = false
	k.reads[fam]++
	snap, err := k.r[fam].Snapshot()
	if err == nil && genErr == nil {
		k.gen[fam], k.genOK[fam] = gen, true
	}
	switch {
	case err != nil:
		k.last[fam] = ""
		return snap, err
	case k.fresh[fam]:
		// The read-back right after a write: the new baseline, if it
		// shows that write.
		k.fresh[fam] = false
		if k.pending[fam] != nil && !k.pending[fam].holds(snap) {
			k.last[fam] = ""
			snap += divergedMark
		} else if !Holds(k.last[fam], snap) {
			k.last[fam] = ""
		}
		k.base[fam], k.pending[fam] = snap, nil
	case snap != k.base[fam]:
		k.last[fam] = "" // another program changed our rules
	}
	k.jumpOK[fam] = jumpFirstOnce(snap, k.used[fam])
	return snap, err
}

// Cleanup removes the jump and the chains of a family.
func (k *Kernel) Cleanup(fam Family) error {
	k.jumpOK[fam] = false
	k.last[fam], k.fresh[fam], k.pending[fam] = "", false, nil
	k.used[fam], k.strict[fam] = nil, false
	return k.r[fam].Cleanup()
}

// Backend names the firewall backend (both families use the same).
func (k *Kernel) Backend() string { return k.r[IPv4].Backend() }

// jumpFirstOnce reads a snapshot: the jump of every table in use exactly
// once, at position 1.
func jumpFirstOnce(snap string, used map[string]bool) bool {
	for _, h := range hooks {
		if !used[h.table] {
			continue
		}
		tag := h.table + ":" + h.builtin + "#"
		if strings.Count(snap, tag) != 1 || !strings.Contains(snap, tag+"1 ") {
			return false
		}
	}
	return true
}

// Holds reports whether a snapshot (Dataplane.Snapshot) shows exactly what a
// restore input wrote: every chain it declared, with as many rules, and the
// jump first and single in each table it wrote. The daemon only takes a
// snapshot as the baseline to heal against when it holds: a read-back that
// raced with another program's flush must not become "the good state".
func Holds(restore, snapshot string) bool {
	want, got := map[string]int{}, map[string]int{}
	tbl := ""
	for _, line := range strings.Split(restore, "\n") {
		switch {
		case strings.HasPrefix(line, "*"):
			tbl = line[1:]
		case strings.HasPrefix(line, ":") && len(strings.Fields(line[1:])) > 0:
			want[tbl+":"+strings.Fields(line[1:])[0]] += 0
		case strings.HasPrefix(line, "-A ") && len(strings.Fields(line)) > 1:
			want[tbl+":"+strings.Fields(line)[1]]++
		}
	}
	declared := map[string]bool{}
	for _, line := range strings.Split(snapshot, "\n") {
		t, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch {
		case strings.HasPrefix(rest, ":"):
			declared[t+":"+rest[1:]] = true
		case strings.HasPrefix(rest, "-A ") && len(strings.Fields(rest)) > 1:
			got[t+":"+strings.Fields(rest)[1]]++
		}
	}
	for chain, n := range want {
		if !declared[chain] || got[chain] != n {
			return false
		}
	}
	return jumpFirstOnce(snapshot, tablesIn(restore))
}
