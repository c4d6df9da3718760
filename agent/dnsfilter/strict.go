package dnsfilter

// Strict egress, the DNS side.
//
// A strict class's devices may open new forwarded connections only to
// addresses this filter answered them (the firewall matches the class's
// ipsets; agent/egress keeps them). So before an answer to a strict class
// leaves, each of its A/AAAA addresses (and SVCB hints) is added to the
// class's set with the record's TTL, and only once every add succeeded is
// the answer sent: the first connection after the answer can never race the
// set. An add that fails (set full, set missing, netlink error) fails
// closed: the client gets SERVFAIL, and the failure is counted per device
// ("strict-failed") for status.
//
// TTLs in answers to strict classes are capped at StrictMaxTTL, so a client
// never caches an address for longer than the set holds it.

import (
	"context"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/famguard/famguard/agent/egress"
)

// StrictMaxTTL caps the TTL of every record answered to a strict class (and
// so the time an address stays open after one answer): one day.
const StrictMaxTTL = 86400

// Opener opens addresses for a strict class: egress.Sets implements it.
// set is the class's base set name (Rules.StrictSet); each entry's TTL is
// the answer's, to which the opener adds its grace. It must not return nil
// before every address is in force in the kernel. All the addresses of one
// answer go in one call, so that they reach the kernel together (and with
// other answers' addresses: egress batches concurrent calls).
type Opener interface {
	AddAll(set string, addrs []egress.Entry) error
}

type openerBox struct{ o Opener }

// SetOpener sets where strict classes' addresses are opened. Until it is
// called, every answer to a strict class fails closed (SERVFAIL).
func (s *Server) SetOpener(o Opener) { s.opener.Store(&openerBox{o}) }

// forwardChecked forwards the query and checks the answer: every target
// name in it goes through Decide with the question's rules, and for a strict
// class its addresses are opened before it is returned.
func (s *Server) forwardChecked(ctx context.Context, query []byte, r *request, network, mac string, rules Rules, snap *Snapshot) []byte {
	resp, err := s.exchange(ctx, query, network)
	if err != nil || len(resp) < headerLen {
		return s.reply(r, dnsmessage.RCodeServerFailure)
	}
	resp[0], resp[1] = query[0], query[1]
	sc, err := walkAnswers(resp, rules.Strict, StrictMaxTTL)
	if err != nil {
		if resp[2]&flagTC != 0 {
			// A truncated answer cut inside a record: the client is
			// told to ask again over TCP, where it arrives whole.
			r.tc = true
			return s.reply(r, dnsmessage.RCodeSuccess)
		}
		// Not sent on: a message this walker cannot follow may hide a
		// target that a client's parser reads differently.
		s.count(mac, "bad-answer")
		return s.reply(r, dnsmessage.RCodeServerFailure)
	}
	for _, t := range sc.targets {
		d := Decide(t.name, rules, snap.store)
		switch d.Action {
		case Block:
			what := d.Category
			if what == "" {
				what = "deny"
			}
			name := r.q.Name.String()
			s.note(mac, rules.Child, name, what, Normalize(name)+" via "+t.kind+" to "+d.Reason)
			return s.blocked(r)
		case Refuse:
			name := r.q.Name.String()
			s.note(mac, rules.Child, name, "bypass", Normalize(name)+" via "+t.kind+" to "+d.Reason)
			return s.nxdomain(r)
		case Rewrite:
			s.count(mac, "safe-search")
			return s.open(r, s.rewrite(ctx, r, d.SafeHost, network), mac, rules)
		}
	}
	if rules.Strict {
		if err := s.openAll(sc.addrs, rules); err != nil {
			s.count(mac, "strict-failed")
			return s.reply(r, dnsmessage.RCodeServerFailure)
		}
	}
	return resp
}

// open opens the addresses of an answer of our own making (the safe-search
// rewrite) for a strict class; other classes get resp as it is.
func (s *Server) open(r *request, resp []byte, mac string, rules Rules) []byte {
	if !rules.Strict {
		return resp
	}
	sc, err := walkAnswers(resp, true, StrictMaxTTL)
	if err == nil {
		err = s.openAll(sc.addrs, rules)
	}
	if err != nil {
		s.count(mac, "strict-failed")
		return s.reply(r, dnsmessage.RCodeServerFailure)
	}
	return resp
}

// errNoOpener: a strict class was answered before SetOpener.
type errNoOpener struct{}

func (errNoOpener) Error() string { return "strict egress: no opener set" }

func (s *Server) openAll(addrs []opened, rules Rules) error {
	// A blocked answer's 0.0.0.0 or :: opens nothing.
	open := addrs[:0]
	for _, a := range addrs {
		if !a.Addr.IsUnspecified() {
			open = append(open, a)
		}
	}
	if len(open) == 0 {
		return nil
	}
	box := s.opener.Load()
	if box == nil || box.o == nil || rules.StrictSet == "" {
		return errNoOpener{}
	}
	return box.o.AddAll(rules.StrictSet, open)
}
