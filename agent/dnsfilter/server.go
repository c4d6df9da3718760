package dnsfilter

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/famguard/famguard/agent/categories"
)

// Snapshot is the immutable view the DNS handlers read: the rules of each
// policy class by the port its queries are redirected to (for this instant),
// the refusing port of offline devices, the device each source address
// belongs to as last seen (for display and the per-client limits only, never
// for a decision), and the category lists.
type Snapshot struct {
	rules map[string]Rules      // MAC → rules
	macOf map[netip.Addr]string // source address → MAC (display, limiter keys)
	store *categories.Store

	ports       map[int]Rules // listening port → the class's rules (see ports.go)
	offlinePort int           // queries arriving here are REFUSED

	// listsPending: the first load of the category lists since start has
	// not finished yet. Until it has, a query a class's categories would
	// decide is REFUSED rather than answered unfiltered (the filter fails
	// closed while it starts). Not set when there are no lists or their
	// load failed: then the categories are not enforced, and said so.
	listsPending bool
}

// WithListsPending marks a snapshot published while the category lists are
// still being loaded (see listsPending). It returns s.
func (s *Snapshot) WithListsPending(pending bool) *Snapshot {
	s.listsPending = pending
	return s
}

// NewSnapshot builds a snapshot; addrs is the neighbour table (MAC → its
// addresses).
func NewSnapshot(rules map[string]Rules, addrs map[string][]netip.Addr, store *categories.Store) *Snapshot {
	s := &Snapshot{rules: rules, macOf: map[netip.Addr]string{}, store: store}
	for mac, as := range addrs {
		for _, a := range as {
			s.macOf[a.Unmap()] = mac
		}
	}
	return s
}

// BlockMode is how a blocked name is answered.
type BlockMode int

const (
	// NullIP answers A with 0.0.0.0 and AAAA with :: (other types:
	// NXDOMAIN). The default: apps fail at once, and no resolver in between
	// caches "this name does not exist" for longer than the short TTL.
	NullIP BlockMode = iota
	// NXDomain answers every blocked query with NXDOMAIN.
	NXDomain
)

// BlockedTTL is the TTL of blocked answers: short, so lifting a block (the
// end of homework time) takes effect within seconds.
const BlockedTTL = 10

// Recent is one recent blocked decision, kept in memory only so status can
// explain a block. No browsing history is kept: only blocks, only the last
// few, never written to disk.
type Recent struct {
	At     time.Time `json:"at"`
	MAC    string    `json:"mac"`
	Child  string    `json:"child"`
	Name   string    `json:"name"`
	Reason string    `json:"reason"`
}

// RecentMax bounds the recent-decisions ring.
const RecentMax = 20

// Server answers DNS for protected devices.
type Server struct {
	snap     atomic.Pointer[Snapshot]
	exchange Exchange
	mode     BlockMode
	now      func() time.Time

	limit    *limiter      // per-client limits, applied by the listener
	refused  portCounters  // queries refused by their port (ports.go)
	notReady atomic.Uint64 // queries REFUSED while the category lists were loading

	opener atomic.Pointer[openerBox] // strict egress: where answered addresses are opened (strict.go)

	mu       sync.Mutex
	counters map[string]map[string]uint64 // MAC → category (or "deny", "safe-search", "bypass") → count
	recent   []Recent
	queries  atomic.Uint64
}

// NewServer makes a server; publish a snapshot before serving.
func NewServer(exchange Exchange, mode BlockMode) *Server {
	s := &Server{exchange: exchange, mode: mode, now: time.Now, counters: map[string]map[string]uint64{},
		limit: newLimiter(DefaultLimits)}
	s.snap.Store(NewSnapshot(nil, nil, nil))
	return s
}

// SetLimits replaces the per-client limits (DefaultLimits until called).
func (s *Server) SetLimits(l Limits) { s.limit.set(l) }

// admit applies the per-client limits to one query from src: the client is
// the device the neighbour table says src belongs to, else src itself. An
// admitted query's ticket goes back through done once it is answered.
func (s *Server) admit(src netip.Addr) (ticket, bool) {
	k := addrKey(src)
	if mac, ok := s.snap.Load().macOf[src]; ok {
		k = macKey(mac)
	}
	return s.limit.admit(k)
}

func (s *Server) done(t ticket) { s.limit.done(t) }

// Refuse answers a query with REFUSED (nil when it has no header to answer
// to): what a TCP client over its limits gets.
func (s *Server) Refuse(query []byte) []byte {
	if len(query) < headerLen {
		return nil
	}
	r := &request{}
	var err error
	if r.h, err = r.p.Start(query); err != nil {
		return nil
	}
	if !r.h.Response && r.h.OpCode == 0 && binary.BigEndian.Uint16(query[4:]) == 1 {
		if r.q, err = r.p.Question(); err == nil {
			r.hasQ = true
		}
	}
	return s.reply(r, dnsmessage.RCodeRefused)
}

// Publish replaces the snapshot (atomically, for all handlers at once).
func (s *Server) Publish(snap *Snapshot) { s.snap.Store(snap) }

// Answer decides and builds the reply to one query (wire format) from src;
// network is "udp" or "tcp", the transport the query came over. It returns
// nil when the packet is too short to carry a DNS header: there is no ID to
// answer to, so it is dropped. Any other malformed query gets FORMERR.
//
// Only the header and the one question are parsed. A forwarded query goes
// to the upstream byte for byte, and the upstream's answer comes back byte
// for byte apart from the ID, so EDNS options, DNSSEC bits and record types
// this code knows nothing about pass through untouched.
//
// Whose rules answer is decided by port, the port the kernel redirected
// the query to from the sender's MAC: a port no class has (or a query sent
// to a port directly) is REFUSED and counted, never forwarded unfiltered;
// src only names the client in counters. Likewise while the category lists
// are still loading at start (WithListsPending), a query they could decide
// is REFUSED and counted, never answered unfiltered.
func (s *Server) Answer(ctx context.Context, query []byte, port int, src netip.Addr, network string) []byte {
	resp, fw := s.answerLocal(query, port, src)
	if fw == nil {
		return resp
	}
	return s.answerUpstream(ctx, query, fw, network)
}

// forwarding is a query whose answer needs the upstream: a forwarded name,
// or a safe-search rewrite.
type forwarding struct {
	r     *request
	d     Decision
	mac   string
	rules Rules
	snap  *Snapshot
}

// answerLocal is the part of Answer that needs no upstream: it returns the
// answer, or (for a forwarded name or a safe-search rewrite) what
// answerUpstream needs to finish it. The UDP listener calls it on the
// reading goroutine, so a blocked or refused query is answered without a
// handoff to a worker; query must stay unchanged until answerUpstream.
func (s *Server) answerLocal(query []byte, port int, src netip.Addr) ([]byte, *forwarding) {
	if len(query) < headerLen {
		return nil, nil
	}
	s.queries.Add(1)
	r := &request{}
	var err error
	if r.h, err = r.p.Start(query); err != nil {
		return nil, nil
	}
	if r.h.Response || r.h.OpCode != 0 || binary.BigEndian.Uint16(query[4:]) != 1 {
		return s.reply(r, dnsmessage.RCodeFormatError), nil
	}
	if r.q, err = r.p.Question(); err != nil {
		return s.reply(r, dnsmessage.RCodeFormatError), nil
	}
	r.hasQ = true
	snap := s.snap.Load()
	rules, ok := snap.classOf(port)
	if !ok {
		s.refused.count(port == snap.offlinePort && port != 0)
		return s.reply(r, dnsmessage.RCodeRefused), nil
	}
	mac := snap.clientName(src, rules)
	name := r.q.Name.String()
	d := Decide(name, rules, snap.store)
	if snap.listsPending && waitsForLists(d, rules) {
		s.notReady.Add(1)
		return s.reply(r, dnsmessage.RCodeRefused), nil
	}
	switch d.Action {
	case Block:
		what := d.Category
		if what == "" {
			what = "deny"
		}
		s.note(mac, rules.Child, name, what, d.Reason)
		return s.blocked(r), nil
	case Refuse:
		s.note(mac, rules.Child, name, "bypass", d.Reason)
		return s.nxdomain(r), nil
	}
	return nil, &forwarding{r: r, d: d, mac: mac, rules: rules, snap: snap}
}

// answerUpstream finishes what answerLocal could not answer alone.
func (s *Server) answerUpstream(ctx context.Context, query []byte, f *forwarding, network string) []byte {
	if f.d.Action == Rewrite {
		s.count(f.mac, "safe-search")
		return s.open(f.r, s.rewrite(ctx, f.r, f.d.SafeHost, network), f.mac, f.rules)
	}
	return s.forwardChecked(ctx, query, f.r, network, f.mac, f.rules, f.snap)
}

// waitsForLists reports whether the lists not loaded yet could change
// decision d: the class blocks categories and nothing before them in the
// precedence (bypass names, the allow and deny lists) decided the name.
// A forwarded or safe-search answer would otherwise go out unfiltered, and
// under strict open its addresses.
func waitsForLists(d Decision, r Rules) bool {
	if len(r.Categories) == 0 {
		return false
	}
	return d.Action == Rewrite || d.Action == Forward && d.Listed == ""
}

const (
	headerLen = 12 // the fixed DNS header
	// ourUDPSize is the UDP payload size our own answers advertise to EDNS
	// clients (the DNS flag day 2020 value).
	ourUDPSize = 1232
	// compressAbove is the question name length from which our own answers
	// are compressed: below it, an uncompressed blocked or NXDOMAIN answer
	// (the name twice, a SOA, an OPT record) stays well under 512 bytes.
	compressAbove = 80
)

// request is a parsed query: its header and, when it has one, its question;
// p stands after the question.
type request struct {
	h     dnsmessage.Header
	q     dnsmessage.Question
	hasQ  bool
	p     dnsmessage.Parser
	tc    bool // answer with TC set and no records
	edns  int  // the client's EDNS UDP size, 0 without EDNS
	eknow bool // edns parsed
}

// clientEDNS returns the UDP payload size of the query's OPT record, 0 when
// it has none (parsed on first use: only our own answers need it).
func (r *request) clientEDNS() int {
	if r.eknow {
		return r.edns
	}
	r.eknow = true
	if !r.hasQ || r.p.SkipAllQuestions() != nil || r.p.SkipAllAnswers() != nil || r.p.SkipAllAuthorities() != nil {
		return 0
	}
	for {
		rh, err := r.p.AdditionalHeader()
		if err != nil {
			return 0
		}
		if rh.Type == dnsmessage.TypeOPT {
			r.edns = max(int(rh.Class), 512)
			return r.edns
		}
		if r.p.SkipAdditional() != nil {
			return 0
		}
	}
}

func (s *Server) forward(ctx context.Context, query []byte, r *request, network string) []byte {
	resp, err := s.exchange(ctx, query, network)
	if err != nil || len(resp) < headerLen {
		return s.reply(r, dnsmessage.RCodeServerFailure)
	}
	resp[0], resp[1] = query[0], query[1]
	return resp
}

// reply builds our own answer to r: the ID, opcode, RD and CD echoed, RA
// set, the question when there is one, the records that add adds, and an
// OPT record when the query has one.
func (s *Server) reply(r *request, rcode dnsmessage.RCode, add ...func(b *dnsmessage.Builder) error) []byte {
	rh := dnsmessage.Header{ID: r.h.ID, Response: true, OpCode: r.h.OpCode, RecursionDesired: r.h.RecursionDesired,
		CheckingDisabled: r.h.CheckingDisabled, RecursionAvailable: true, Truncated: r.tc, RCode: rcode}
	b := dnsmessage.NewBuilder(make([]byte, 0, 128), rh)
	// Compression costs a map and a lookup per label of every name, on
	// every answer; in a blocked or NXDOMAIN answer it saves one copy of the
	// question's name. So it is on only for a long name (to keep such an
	// answer within 512 bytes for clients without EDNS) and for answers
	// carrying an upstream's records (safe search), whose names repeat.
	if len(add) > 1 || (r.hasQ && r.q.Name.Length > compressAbove) {
		b.EnableCompression()
	}
	err := b.StartQuestions()
	if r.hasQ && err == nil {
		err = b.Question(r.q)
	}
	for _, f := range add {
		if err == nil && !r.tc {
			err = f(&b)
		}
	}
	if r.clientEDNS() > 0 && err == nil {
		var oh dnsmessage.ResourceHeader
		if err = b.StartAdditionals(); err == nil {
			if err = oh.SetEDNS0(ourUDPSize, dnsmessage.RCodeSuccess, false); err == nil {
				err = b.OPTResource(oh, dnsmessage.OPTResource{})
			}
		}
	}
	out, ferr := b.Finish()
	if err != nil || ferr != nil {
		// Not expected for a question the parser accepted; a bare SERVFAIL
		// header is still better than silence.
		out = make([]byte, headerLen)
		binary.BigEndian.PutUint16(out, r.h.ID)
		out[2] = 0x80 | byte(r.h.OpCode&0xF)<<3
		out[3] = 0x80 | byte(dnsmessage.RCodeServerFailure)
	}
	return out
}

func (s *Server) blocked(r *request) []byte {
	if s.mode == NXDomain || (r.q.Type != dnsmessage.TypeA && r.q.Type != dnsmessage.TypeAAAA) {
		return s.nxdomain(r)
	}
	return s.reply(r, dnsmessage.RCodeSuccess, func(b *dnsmessage.Builder) error {
		if err := b.StartAnswers(); err != nil {
			return err
		}
		rh := dnsmessage.ResourceHeader{Name: r.q.Name, Class: dnsmessage.ClassINET, TTL: BlockedTTL}
		if r.q.Type == dnsmessage.TypeA {
			return b.AResource(rh, dnsmessage.AResource{}) // 0.0.0.0
		}
		return b.AAAAResource(rh, dnsmessage.AAAAResource{}) // ::
	})
}

var (
	soaNS   = dnsmessage.MustNewName("famguard.invalid.")
	soaMbox = dnsmessage.MustNewName("blocked.famguard.invalid.")
)

// nxdomain answers NXDOMAIN with a SOA whose minimum is BlockedTTL, so
// resolvers cache the negative answer only briefly.
func (s *Server) nxdomain(r *request) []byte {
	return s.reply(r, dnsmessage.RCodeNameError, func(b *dnsmessage.Builder) error {
		if err := b.StartAuthorities(); err != nil {
			return err
		}
		return b.SOAResource(dnsmessage.ResourceHeader{Name: r.q.Name, Class: dnsmessage.ClassINET, TTL: BlockedTTL},
			dnsmessage.SOAResource{NS: soaNS, MBox: soaMbox, Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, MinTTL: BlockedTTL})
	})
}

// rewrite answers with a CNAME to the safe-search host and that host's
// records from the upstream, as the search engines ask resolvers to do.
func (s *Server) rewrite(ctx context.Context, r *request, host, network string) []byte {
	target, err := dnsmessage.NewName(host + ".")
	if err != nil {
		return s.reply(r, dnsmessage.RCodeServerFailure)
	}
	cname := func(b *dnsmessage.Builder) error {
		if err := b.StartAnswers(); err != nil {
			return err
		}
		return b.CNAMEResource(dnsmessage.ResourceHeader{Name: r.q.Name, Class: dnsmessage.ClassINET, TTL: 300},
			dnsmessage.CNAMEResource{CNAME: target})
	}
	if r.q.Type == dnsmessage.TypeCNAME {
		return s.reply(r, dnsmessage.RCodeSuccess, cname)
	}
	ub := dnsmessage.NewBuilder(make([]byte, 0, 64), dnsmessage.Header{ID: uint16(rand.Uint32()), RecursionDesired: true})
	_ = ub.StartQuestions()
	_ = ub.Question(dnsmessage.Question{Name: target, Type: r.q.Type, Class: dnsmessage.ClassINET})
	upq, err := ub.Finish()
	if err != nil {
		return s.reply(r, dnsmessage.RCodeServerFailure, cname)
	}
	// Asked as for a TCP client, so that a truncated answer is fetched in
	// full over TCP.
	resp, err := s.exchange(ctx, upq, "tcp")
	var up dnsmessage.Parser
	var uh dnsmessage.Header
	if err == nil {
		uh, err = up.Start(resp)
	}
	if err == nil {
		err = up.SkipAllQuestions()
	}
	if err != nil {
		return s.reply(r, dnsmessage.RCodeServerFailure, cname)
	}
	if uh.RCode != dnsmessage.RCodeSuccess {
		return s.reply(r, uh.RCode, cname)
	}
	out := s.reply(r, dnsmessage.RCodeSuccess, cname, func(b *dnsmessage.Builder) error {
		for {
			if err := copyAnswer(b, &up); err == dnsmessage.ErrSectionDone {
				return nil
			} else if err != nil {
				return err
			}
		}
	})
	if limit := max(r.clientEDNS(), 512); network == "udp" && len(out) > limit {
		// Too big for the client's buffer: TC set, and the client asks
		// again over TCP.
		r.tc = true
		return s.reply(r, dnsmessage.RCodeSuccess)
	}
	return out
}

// copyAnswer copies the parser's next answer record into b (decoded and
// re-encoded: names in the upstream's message may be compressed against
// offsets that mean nothing in ours).
func copyAnswer(b *dnsmessage.Builder, p *dnsmessage.Parser) error {
	rr, err := p.Answer()
	if err != nil {
		return err
	}
	h := rr.Header
	switch body := rr.Body.(type) {
	case *dnsmessage.AResource:
		return b.AResource(h, *body)
	case *dnsmessage.AAAAResource:
		return b.AAAAResource(h, *body)
	case *dnsmessage.CNAMEResource:
		return b.CNAMEResource(h, *body)
	case *dnsmessage.NSResource:
		return b.NSResource(h, *body)
	case *dnsmessage.PTRResource:
		return b.PTRResource(h, *body)
	case *dnsmessage.MXResource:
		return b.MXResource(h, *body)
	case *dnsmessage.SOAResource:
		return b.SOAResource(h, *body)
	case *dnsmessage.SRVResource:
		return b.SRVResource(h, *body)
	case *dnsmessage.TXTResource:
		return b.TXTResource(h, *body)
	case *dnsmessage.HTTPSResource:
		return b.HTTPSResource(h, *body)
	case *dnsmessage.SVCBResource:
		return b.SVCBResource(h, *body)
	case *dnsmessage.UnknownResource:
		return b.UnknownResource(h, *body)
	}
	return nil // an OPT record has no place among answers: dropped
}
func (s *Server) count(mac, what string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.countLocked(mac, what)
}

func (s *Server) countLocked(mac, what string) {
	if s.counters[mac] == nil {
		s.counters[mac] = map[string]uint64{}
	}
	s.counters[mac][what]++
}

func (s *Server) note(mac, child, name, what, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.countLocked(mac, what)
	s.recent = append(s.recent, Recent{At: s.now(), MAC: mac, Child: child, Name: Normalize(name), Reason: reason})
	if len(s.recent) > RecentMax {
		s.recent = append(s.recent[:0], s.recent[len(s.recent)-RecentMax:]...)
	}
}

// Stats is what status shows about DNS.
type Stats struct {
	Queries uint64 `json:"queries"` // handled; those refused under the client limits are not among them
	// Per-client limits and the queries refused under them (dropped over
	// UDP, REFUSED over TCP), in total and per client: a MAC, or a source
	// address the neighbour table does not know ("other": clients no
	// longer in the limiter's table).
	Limits        Limits                       `json:"client_limits"`
	RateLimited   uint64                       `json:"rate_limited"`
	RateLimitedBy map[string]uint64            `json:"rate_limited_by_client"`
	Counters      map[string]map[string]uint64 `json:"blocked_by_device"` // MAC → category → count
	Recent        []Recent                     `json:"recent_blocks"`     // newest last
	// Refused by port: offline devices' queries, and queries on a port no
	// class has (not attributable: refused rather than answered unfiltered).
	OfflineRefused uint64 `json:"offline_refused"`
	Unattributed   uint64 `json:"unattributed"`
	// ListsNotReady: queries REFUSED at start because the category lists
	// their class blocks were still loading (never answered unfiltered).
	ListsNotReady uint64 `json:"lists_not_ready"`
}

// Stats returns a copy of the counters and recent blocks.
func (s *Server) Stats() Stats {
	limited, by := s.limit.refused()
	lim := s.limit.limits()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Queries: s.queries.Load(), Limits: lim, RateLimited: limited, RateLimitedBy: by,
		Counters: map[string]map[string]uint64{}, Recent: append([]Recent{}, s.recent...),
		OfflineRefused: s.refused.offline.Load(), Unattributed: s.refused.unattributed.Load(),
		ListsNotReady: s.notReady.Load()}
	for mac, m := range s.counters {
		c := map[string]uint64{}
		for k, v := range m {
			c[k] = v
		}
		st.Counters[mac] = c
	}
	sort.SliceStable(st.Recent, func(i, j int) bool { return st.Recent[i].At.Before(st.Recent[j].At) })
	return st
}
