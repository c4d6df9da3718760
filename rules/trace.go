package rules

import (
	"fmt"
	"net/netip"
	"strings"
)

// Packet is what the tracer needs to know about a packet.
type Packet struct {
	InMAC    string     // source MAC as seen on the LAN
	Src, Dst netip.Addr // addresses
	Proto    string     // "tcp", "udp", "icmp"
	// CtState is the conntrack state, with the virtual states that apply,
	// comma separated: "NEW", "ESTABLISHED", "NEW,DNAT" (a redirected
	// connection's first packet).
	CtState string
	DstPort int // destination port (tcp, udp); 0 when irrelevant

	Hook    string // the built-in chain it enters: "FORWARD" (default) or "INPUT" (to the router itself)
	InIface string // incoming interface ("lo" for the router's own traffic)
}

// Verdict is where a packet ends.
type Verdict struct {
	Action     string   // ACCEPT, DROP or REJECT
	RejectWith string   // for REJECT
	Path       []string // the rules that matched, in order ("CHAIN: rule")
}

// Trace walks p through iptables-save text starting at p.Hook, the way the
// kernel would for the subset of matches famguard and typical router
// firewalls use. A rule it does not understand is an error, never a guess:
// tests assert verdicts, so an unsupported rule must not silently pass.
func Trace(save string, p Packet) (Verdict, error) {
	chains := map[string][]string{}
	policy := map[string]string{}
	inFilter := false
	for _, line := range strings.Split(save, "\n") {
		if strings.HasPrefix(line, "*") {
			inFilter = line == "*filter"
			continue
		}
		if !inFilter {
			continue // FORWARD lives in the filter table
		}
		switch {
		case strings.HasPrefix(line, ":"):
			f := strings.Fields(line[1:])
			if len(f) >= 2 {
				policy[f[0]] = f[1]
				chains[f[0]] = chains[f[0]]
			}
		case strings.HasPrefix(line, "-A "):
			f := strings.SplitN(line, " ", 3)
			if len(f) == 3 {
				chains[f[1]] = append(chains[f[1]], f[2])
			}
		}
	}
	var v Verdict
	hook := p.Hook
	if hook == "" {
		hook = "FORWARD"
	}
	action, err := walk(chains, hook, p, &v, 0)
	if err != nil {
		return v, err
	}
	if action == "" || action == "RETURN" {
		action = policy[hook]
	}
	v.Action = action
	return v, nil
}

func walk(chains map[string][]string, chain string, p Packet, v *Verdict, depth int) (string, error) {
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
		match, target, rejectWith, err := evaluate(args, p)
		if err != nil {
			return "", fmt.Errorf("%s: %q: %w", chain, r, err)
		}
		if !match {
			continue
		}
		v.Path = append(v.Path, chain+": "+r)
		switch target {
		case "":
			continue
		case "ACCEPT", "DROP":
			return target, nil
		case "REJECT":
			v.RejectWith = rejectWith
			return target, nil
		case "RETURN":
			return "RETURN", nil
		default:
			res, err := walk(chains, target, p, v, depth+1)
			if err != nil || (res != "" && res != "RETURN") {
				return res, err
			}
		}
	}
	return "", nil
}

// evaluate checks one rule's matches against p.
func evaluate(args []string, p Packet) (match bool, target, rejectWith string, err error) {
	match = true
	negate := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "!" {
			negate = true
			continue
		}
		if negate && a != "--ctstate" {
			return false, "", "", fmt.Errorf("negation of %s is not traced", a)
		}
		next := func() (string, error) {
			if i+1 >= len(args) {
				return "", fmt.Errorf("%s needs a value", a)
			}
			i++
			return args[i], nil
		}
		switch a {
		case "-m":
			if _, err := next(); err != nil {
				return false, "", "", err
			}
		case "--mac-source":
			v, err := next()
			if err != nil {
				return false, "", "", err
			}
			if !strings.EqualFold(v, p.InMAC) {
				match = false
			}
		case "--ctstate":
			v, err := next()
			if err != nil {
				return false, "", "", err
			}
			if anyOf(strings.Split(v, ","), strings.Split(p.CtState, ",")) == negate {
				match = false
			}
			negate = false
		case "-i":
			v, err := next()
			if err != nil {
				return false, "", "", err
			}
			if v != p.InIface {
				match = false
			}
		case "-s", "-d":
			v, err := next()
			if err != nil {
				return false, "", "", err
			}
			pfx, err := netip.ParsePrefix(v)
			if err != nil {
				addr, aerr := netip.ParseAddr(v)
				if aerr != nil {
					return false, "", "", fmt.Errorf("bad address %q", v)
				}
				pfx = netip.PrefixFrom(addr, addr.BitLen())
			}
			addr := p.Src
			if a == "-d" {
				addr = p.Dst
			}
			if !pfx.Contains(addr) {
				match = false
			}
		case "-p":
			v, err := next()
			if err != nil {
				return false, "", "", err
			}
			if v != p.Proto && !(v == "ipv6-icmp" && p.Proto == "icmp") {
				match = false
			}
		case "--dport":
			v, err := next()
			if err != nil {
				return false, "", "", err
			}
			if v != fmt.Sprint(p.DstPort) {
				match = false
			}
		case "--sport":
			return false, "", "", fmt.Errorf("source ports are not traced")
		case "--comment":
			if _, err := next(); err != nil {
				return false, "", "", err
			}
		case "-j", "-g":
			v, err := next()
			if err != nil {
				return false, "", "", err
			}
			target = v
		case "--reject-with":
			v, err := next()
			if err != nil {
				return false, "", "", err
			}
			rejectWith = v
		default:
			return false, "", "", fmt.Errorf("unsupported match %q", a)
		}
	}
	if target == "REJECT" && rejectWith == "" {
		rejectWith = "icmp-port-unreachable"
	}
	return match, target, rejectWith, nil
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
