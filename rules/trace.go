package rules

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Packet is what the tracer needs to know about a packet.
type Packet struct {
	InMAC    string     // source MAC as seen on the LAN
	Src, Dst netip.Addr // addresses
	Proto    string     // "tcp", "udp", "icmp"
	// CtState is the conntrack state, with the virtual states that apply,
	// comma separated: "NEW", "ESTABLISHED", "NEW,DNAT" (a redirected
	// connection's first packet), "INVALID" (no connection).
	CtState string
	// CtDir is the packet's direction in its connection: "ORIGINAL" (the
	// default: it goes the way the first packet went) or "REPLY".
	CtDir string
	// CtMark is the connection's mark before this packet (what earlier
	// packets of the connection left in it).
	CtMark  uint32
	DstPort int // destination port (tcp, udp); 0 when irrelevant

	Hook     string // the built-in chain it enters: "FORWARD" (default) or "INPUT" (to the router itself)
	InIface  string // incoming interface ("lo" for the router's own traffic)
	OutIface string // outgoing interface (FORWARD)
	// Sets are the ipsets' contents: name → addresses (-m set --match-set).
	Sets map[string][]netip.Addr
}

// Verdict is where a packet ends.
type Verdict struct {
	Action     string   // ACCEPT, DROP or REJECT
	RejectWith string   // for REJECT
	Path       []string // the rules that matched, in order ("CHAIN: rule")
	// Mark is the connection mark after mangle PREROUTING.
	Mark uint32
	// RedirectPort is the port nat PREROUTING redirected the packet to (0:
	// none); the packet then entered INPUT.
	RedirectPort int
	// Added are the set entries the packet added (-j SET --add-set), as
	// "SET ADDR"; the rules after it see them (Packet.Sets is not changed).
	Added []string
}

// Trace walks p through iptables-save text the way the kernel would, for
// the subset of matches famguard and typical router firewalls use: mangle
// PREROUTING (the connection mark), nat PREROUTING for a connection's first
// packet (a REDIRECT turns it towards INPUT), then filter at p.Hook. Tables
// the text does not hold are skipped. A rule it does not understand is an
// error, never a guess: tests assert verdicts, so an unsupported rule must
// not silently pass.
func Trace(save string, p Packet) (Verdict, error) {
	type table struct {
		chains map[string][]string
		policy map[string]string
	}
	tables := map[string]*table{}
	var cur *table
	for _, line := range strings.Split(save, "\n") {
		if strings.HasPrefix(line, "*") {
			cur = &table{chains: map[string][]string{}, policy: map[string]string{}}
			tables[line[1:]] = cur
			continue
		}
		if cur == nil {
			continue
		}
		switch {
		case strings.HasPrefix(line, ":"):
			f := strings.Fields(line[1:])
			if len(f) >= 2 {
				cur.policy[f[0]] = f[1]
				cur.chains[f[0]] = cur.chains[f[0]]
			}
		case strings.HasPrefix(line, "-A "):
			f := strings.SplitN(line, " ", 3)
			if len(f) == 3 {
				cur.chains[f[1]] = append(cur.chains[f[1]], f[2])
			}
		}
	}
	var v Verdict
	hook := p.Hook
	if hook == "" {
		hook = "FORWARD"
	}
	tracked := !strings.Contains(p.CtState, "INVALID") && !strings.Contains(p.CtState, "UNTRACKED")
	if t := tables["mangle"]; t != nil && tracked {
		if _, err := walk(t.chains, "PREROUTING", &p, &v, 0); err != nil {
			return v, err
		}
	}
	v.Mark = p.CtMark
	if t := tables["nat"]; t != nil && hook == "FORWARD" && contains(strings.Split(p.CtState, ","), "NEW") {
		res, err := walk(t.chains, "PREROUTING", &p, &v, 0)
		if err != nil {
			return v, err
		}
		if res == "REDIRECT" {
			hook = "INPUT"
			p.CtState += ",DNAT"
		}
	}
	t := tables["filter"]
	if t == nil {
		return v, fmt.Errorf("no filter table")
	}
	action, err := walk(t.chains, hook, &p, &v, 0)
	if err != nil {
		return v, err
	}
	if action == "" || action == "RETURN" {
		action = t.policy[hook]
	}
	v.Action = action
	return v, nil
}

func walk(chains map[string][]string, chain string, p *Packet, v *Verdict, depth int) (string, error) {
	if depth > 32 {
		return "", fmt.Errorf("chain %s: jumps nest too deep (a loop?)", chain)
	}
	rules, ok := chains[chain]
	if !ok {
		return "", fmt.Errorf("no chain %s", chain)
	}
	for _, r := range rules {
		args, err := Tokenize(r)
		if err != nil {
			return "", err
		}
		m, err := evaluate(args, *p)
		if err != nil {
			return "", fmt.Errorf("%s: %q: %w", chain, r, err)
		}
		if !m.match {
			continue
		}
		v.Path = append(v.Path, chain+": "+r)
		switch m.target {
		case "":
			continue
		case "ACCEPT", "DROP":
			return m.target, nil
		case "REJECT":
			v.RejectWith = m.rejectWith
			return m.target, nil
		case "RETURN":
			return "RETURN", nil
		case "CONNMARK":
			p.CtMark = p.CtMark&^m.markMask ^ m.markValue
		case "SET":
			addr := p.Src
			if m.setDir == "dst" {
				addr = p.Dst
			}
			sets := make(map[string][]netip.Addr, len(p.Sets)+1)
			for k, v := range p.Sets {
				sets[k] = v
			}
			sets[m.addSet] = append(append([]netip.Addr(nil), sets[m.addSet]...), addr)
			p.Sets = sets
			v.Added = append(v.Added, m.addSet+" "+addr.String())
		case "REDIRECT":
			if m.toPort == 0 {
				return "", fmt.Errorf("%s: %q: REDIRECT without --to-ports is not traced", chain, r)
			}
			v.RedirectPort = m.toPort
			p.DstPort = m.toPort
			return "REDIRECT", nil
		default:
			res, err := walk(chains, m.target, p, v, depth+1)
			if err != nil || (res != "" && res != "RETURN") {
				return res, err
			}
			if m.goTo {
				// A goto's chain returns to this chain's caller.
				return "", nil
			}
		}
	}
	return "", nil
}

// ruleMatch is one rule evaluated against a packet.
type ruleMatch struct {
	match               bool
	target, rejectWith  string
	goTo                bool
	markValue, markMask uint32 // CONNMARK --set-xmark
	toPort              int    // REDIRECT --to-ports
	addSet, setDir      string // SET --add-set NAME src|dst
}

// evaluate checks one rule's matches against p.
func evaluate(args []string, p Packet) (ruleMatch, error) {
	r := ruleMatch{match: true}
	negate := false
	fail := func(err error) (ruleMatch, error) { return ruleMatch{}, err }
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "!" {
			negate = true
			continue
		}
		next := func() (string, error) {
			if i+1 >= len(args) {
				return "", fmt.Errorf("%s needs a value", a)
			}
			i++
			return args[i], nil
		}
		var m bool // this match's result, before negation
		isMatch := true
		switch a {
		case "-m":
			if _, err := next(); err != nil {
				return fail(err)
			}
			isMatch = false
		case "--mac-source":
			v, err := next()
			if err != nil {
				return fail(err)
			}
			m = strings.EqualFold(v, p.InMAC)
		case "--ctstate":
			v, err := next()
			if err != nil {
				return fail(err)
			}
			m = anyOf(strings.Split(v, ","), strings.Split(p.CtState, ","))
		case "--ctdir":
			v, err := next()
			if err != nil {
				return fail(err)
			}
			dir := p.CtDir
			if dir == "" {
				dir = "ORIGINAL"
			}
			m = v == dir
		case "--mark":
			v, err := next()
			if err != nil {
				return fail(err)
			}
			val, mask, err := parseMark(v)
			if err != nil {
				return fail(err)
			}
			m = p.CtMark&mask == val && !strings.Contains(p.CtState, "INVALID")
		case "--match-set":
			name, err := next()
			if err != nil {
				return fail(err)
			}
			dir, err := next()
			if err != nil {
				return fail(err)
			}
			addr := p.Dst
			switch dir {
			case "src":
				addr = p.Src
			case "dst":
			default:
				return fail(fmt.Errorf("set direction %q is not traced", dir))
			}
			if _, ok := p.Sets[name]; !ok {
				return fail(fmt.Errorf("set %s does not exist", name))
			}
			for _, x := range p.Sets[name] {
				if x == addr {
					m = true
				}
			}
		case "-i", "-o":
			v, err := next()
			if err != nil {
				return fail(err)
			}
			iface := p.InIface
			if a == "-o" {
				iface = p.OutIface
			}
			m = v == iface
		case "-s", "-d":
			v, err := next()
			if err != nil {
				return fail(err)
			}
			pfx, err := netip.ParsePrefix(v)
			if err != nil {
				addr, aerr := netip.ParseAddr(v)
				if aerr != nil {
					return fail(fmt.Errorf("bad address %q", v))
				}
				pfx = netip.PrefixFrom(addr, addr.BitLen())
			}
			addr := p.Src
			if a == "-d" {
				addr = p.Dst
			}
			m = pfx.Contains(addr)
		case "-p":
			v, err := next()
			if err != nil {
				return fail(err)
			}
			m = v == p.Proto || (v == "ipv6-icmp" && p.Proto == "icmp")
		case "--dport":
			v, err := next()
			if err != nil {
				return fail(err)
			}
			m = v == fmt.Sprint(p.DstPort)
		case "--sport":
			return fail(fmt.Errorf("source ports are not traced"))
		default:
			isMatch = false
			if negate {
				return fail(fmt.Errorf("negation of %s is not traced", a))
			}
			switch a {
			case "--comment":
				if _, err := next(); err != nil {
					return fail(err)
				}
			case "-j", "-g":
				v, err := next()
				if err != nil {
					return fail(err)
				}
				r.target, r.goTo = v, a == "-g"
			case "--reject-with":
				v, err := next()
				if err != nil {
					return fail(err)
				}
				r.rejectWith = v
			case "--set-xmark":
				v, err := next()
				if err != nil {
					return fail(err)
				}
				if r.markValue, r.markMask, err = parseMark(v); err != nil {
					return fail(err)
				}
			case "--add-set":
				var err error
				if r.addSet, err = next(); err != nil {
					return fail(err)
				}
				if r.setDir, err = next(); err != nil {
					return fail(err)
				}
				if r.setDir != "src" && r.setDir != "dst" {
					return fail(fmt.Errorf("set direction %q is not traced", r.setDir))
				}
			case "--exist":
			case "--timeout":
				if _, err := next(); err != nil {
					return fail(err)
				}
			case "--to-ports":
				v, err := next()
				if err != nil {
					return fail(err)
				}
				if r.toPort, err = strconv.Atoi(v); err != nil {
					return fail(fmt.Errorf("bad port %q", v))
				}
			default:
				return fail(fmt.Errorf("unsupported match %q", a))
			}
		}
		if isMatch {
			if m == negate {
				r.match = false
			}
			negate = false
		}
	}
	if r.target == "REJECT" && r.rejectWith == "" {
		r.rejectWith = "icmp-port-unreachable"
	}
	return r, nil
}

// parseMark reads "VALUE/MASK" (hex or decimal; no mask: all bits).
func parseMark(s string) (val, mask uint32, err error) {
	v, m, hasMask := strings.Cut(s, "/")
	x, err := strconv.ParseUint(v, 0, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("bad mark %q", s)
	}
	y := uint64(0xffffffff)
	if hasMask {
		if y, err = strconv.ParseUint(m, 0, 32); err != nil {
			return 0, 0, fmt.Errorf("bad mark %q", s)
		}
	}
	return uint32(x), uint32(y), nil
}

func anyOf(list, states []string) bool {
	for _, s := range states {
		if contains(list, s) {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
