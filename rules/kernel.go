package rules

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-iptables/iptables"
)

// Dataplane is what the daemon needs from the firewall. Kernel is the real
// one; Fake is a stateful in-memory one for tests.
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
	backend string
}

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
	r := &Runner{fam: fam, ipt: ipt}
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

// Apply runs iptables-restore --noflush with the given input. A failure is
// reported with the input line the tool complained about; a busy xtables
// lock is waited for (--wait) and retried.
func (r *Runner) Apply(input string) error {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		cmd := exec.Command(r.restore, "--noflush", "--wait=10")
		cmd.Stdin = strings.NewReader(input)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		if err == nil {
			return nil
		}
		msg := strings.TrimSpace(stderr.String())
		lastErr = fmt.Errorf("%s: %v: %s%s", r.restore, err, msg, inputLine(input, msg))
		if !strings.Contains(msg, "xtables lock") && !strings.Contains(msg, "Resource temporarily unavailable") {
			return lastErr
		}
		time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
	}
	return lastErr
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

// jumpSpec is the one rule famguard puts in FORWARD. Packets of established
// and related flows do not even enter our chain: they cost one conntrack
// state test, whatever the number of devices. (When a device goes offline
// the agent deletes its conntrack entries, so its next packet is NEW or
// INVALID and does enter.)
var jumpSpec = []string{"-m", "conntrack", "!", "--ctstate", "RELATED,ESTABLISHED", "-m", "comment", "--comment", JumpComment, "-j", Chain}

// EnsureJump makes famguard's jump the first rule of FORWARD, exactly once.
// A missing jump is inserted; a jump that is not first, or duplicated, gets
// a new first copy before the others are deleted, so there is never a moment
// without one.
func (r *Runner) EnsureJump() error {
	rules, err := r.ipt.List(table, "FORWARD")
	if err != nil {
		return fmt.Errorf("listing FORWARD: %w", err)
	}
	var ours []int // 1-based rule numbers
	n := 0
	for _, line := range rules {
		if !strings.HasPrefix(line, "-A FORWARD") {
			continue
		}
		n++
		if isJump(line) {
			ours = append(ours, n)
		}
	}
	if len(ours) == 1 && ours[0] == 1 {
		return nil
	}
	if len(ours) == 0 || ours[0] != 1 {
		if err := r.ipt.Insert(table, "FORWARD", 1, jumpSpec...); err != nil {
			return fmt.Errorf("inserting the jump to %s: %w", Chain, err)
		}
		for i := range ours {
			ours[i]++
		}
	} else {
		ours = ours[1:]
	}
	for i := len(ours) - 1; i >= 0; i-- {
		if err := r.ipt.DeleteById(table, "FORWARD", ours[i]); err != nil {
			return fmt.Errorf("removing a duplicate jump: %w", err)
		}
	}
	return nil
}

// isJump recognises a FORWARD rule that jumps to our chain.
func isJump(line string) bool {
	f := strings.Fields(line)
	for i := 0; i+1 < len(f); i++ {
		if (f[i] == "-j" || f[i] == "-g") && f[i+1] == Chain {
			return true
		}
	}
	return false
}

// Snapshot returns our chains' declarations, their rules and the FORWARD
// jumps with their positions.
func (r *Runner) Snapshot() (string, error) {
	out, err := exec.Command(r.save, "-t", table).Output()
	if err != nil {
		return "", fmt.Errorf("%s: %w", r.save, err)
	}
	return ourLines(string(out)), nil
}

// ourLines extracts famguard's part of iptables-save output.
func ourLines(save string) string {
	var b strings.Builder
	sc := bufio.NewScanner(strings.NewReader(save))
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	fwd := 0
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, ":"+Chain+" "), strings.HasPrefix(line, ":"+RejectChain+" "):
			b.WriteString(strings.Fields(line)[0] + "\n")
		case strings.HasPrefix(line, "-A "+Chain+" "), strings.HasPrefix(line, "-A "+RejectChain+" "):
			b.WriteString(line + "\n")
		case strings.HasPrefix(line, "-A FORWARD "):
			fwd++
			if isJump(line) {
				fmt.Fprintf(&b, "FORWARD#%d %s\n", fwd, line)
			}
		}
	}
	return b.String()
}

// Cleanup removes every jump to our chain, then the chains.
func (r *Runner) Cleanup() error {
	if rules, err := r.ipt.List(table, "FORWARD"); err == nil {
		n, jumps := 0, []int{}
		for _, line := range rules {
			if strings.HasPrefix(line, "-A FORWARD") {
				n++
				if isJump(line) {
					jumps = append(jumps, n)
				}
			}
		}
		for i := len(jumps) - 1; i >= 0; i-- {
			if err := r.ipt.DeleteById(table, "FORWARD", jumps[i]); err != nil {
				return fmt.Errorf("removing the jump: %w", err)
			}
		}
	}
	exists, err := r.ipt.ChainExists(table, Chain)
	if err != nil {
		return err
	}
	rexists, err := r.ipt.ChainExists(table, RejectChain)
	if err != nil {
		return err
	}
	if !exists && !rexists {
		return nil
	}
	return r.Apply(RenderCleanup())
}

// ApplyOneByOne writes the desired state with one go-iptables call per rule,
// the way tools without a restore path do. Only the benchmark uses it, to
// show what the single transaction saves.
func (r *Runner) ApplyOneByOne(d Desired) error {
	text, err := Render(d, r.fam)
	if err != nil {
		return err
	}
	for _, c := range []string{Chain, RejectChain} {
		if err := r.ipt.ClearChain(table, c); err != nil {
			return err
		}
	}
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, "-A ") {
			continue
		}
		args, err := Tokenize(line)
		if err != nil {
			return err
		}
		if err := r.ipt.Append(table, args[1], args[2:]...); err != nil {
			return err
		}
	}
	return r.EnsureJump()
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
// The jump rule is checked (an `iptables -S FORWARD` exec) on the first
// Apply and again only after a Snapshot showed it missing, misplaced or
// duplicated: the daemon reads a snapshot before every heal, so this saves
// an exec on every ordinary change without ever trusting a stale belief.
type Kernel struct {
	r      [2]*Runner
	jumpOK [2]bool
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
	return &Kernel{r: [2]*Runner{v4, v6}}, nil
}

// Runner returns the runner of a family (benchmarks use it directly).
func (k *Kernel) Runner(fam Family) *Runner { return k.r[fam] }

// Apply restores, and checks the jump only when it is not known to be good.
func (k *Kernel) Apply(fam Family, restore string) error {
	if err := k.r[fam].Apply(restore); err != nil {
		return err
	}
	if k.jumpOK[fam] {
		return nil
	}
	if err := k.r[fam].EnsureJump(); err != nil {
		return err
	}
	k.jumpOK[fam] = true
	return nil
}

// Snapshot reads our rules back and, from them, whether the jump is still
// first and single.
func (k *Kernel) Snapshot(fam Family) (string, error) {
	snap, err := k.r[fam].Snapshot()
	if err == nil {
		k.jumpOK[fam] = jumpFirstOnce(snap)
	}
	return snap, err
}

// Cleanup removes the jump and the chains of a family.
func (k *Kernel) Cleanup(fam Family) error {
	k.jumpOK[fam] = false
	return k.r[fam].Cleanup()
}

// Backend names the firewall backend (both families use the same).
func (k *Kernel) Backend() string { return k.r[IPv4].Backend() }

// jumpFirstOnce reads a snapshot: exactly one jump, at FORWARD position 1.
func jumpFirstOnce(snap string) bool {
	return strings.Count(snap, "FORWARD#") == 1 && strings.Contains(snap, "FORWARD#1 ")
}
