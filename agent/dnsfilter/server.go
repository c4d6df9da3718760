package dnsfilter

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/famguard/famguard/agent/categories"
)

// Snapshot is the immutable view the DNS handlers read: rules per protected
// MAC (for this instant), the device each source address belongs to, and the
// category lists.
type Snapshot struct {
	rules map[string]Rules      // MAC → rules
	macOf map[netip.Addr]string // source address → MAC
	store *categories.Store
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

// Exchange sends a query upstream (UDP or TCP, as the client asked).
type Exchange func(ctx context.Context, m *dns.Msg, network string) (*dns.Msg, error)

// UpstreamExchange forwards to a resolver address like "127.0.0.1:53": over
// UDP, and again over TCP when the answer was truncated (a client that asked
// over TCP gets the full answer either way). UDP sockets are kept in a small
// pool and reused: dialling a socket per query would cost more than the
// filtering itself.
func UpstreamExchange(addr string) Exchange {
	tcp := &dns.Client{Net: "tcp", Timeout: 2 * time.Second}
	pool := make(chan *dns.Conn, 64)
	return func(ctx context.Context, m *dns.Msg, _ string) (*dns.Msg, error) {
		var c *dns.Conn
		select {
		case c = <-pool:
		default:
			conn, err := net.DialTimeout("udp", addr, 2*time.Second)
			if err != nil {
				return nil, err
			}
			c = &dns.Conn{Conn: conn, UDPSize: dns.DefaultMsgSize}
		}
		deadline := time.Now().Add(2 * time.Second)
		if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
			deadline = dl
		}
		_ = c.SetDeadline(deadline)
		r, err := exchangeOn(c, m)
		if err != nil {
			c.Close() // a timed-out socket may still receive the late answer
			return nil, err
		}
		select {
		case pool <- c:
		default:
			c.Close()
		}
		if r.Truncated {
			r, _, err = tcp.ExchangeContext(ctx, m, addr)
		}
		return r, err
	}
}

// exchangeOn sends m on c and reads until the answer with m's ID arrives
// (a stale answer to an earlier, abandoned query is skipped).
func exchangeOn(c *dns.Conn, m *dns.Msg) (*dns.Msg, error) {
	if err := c.WriteMsg(m); err != nil {
		return nil, err
	}
	for {
		r, err := c.ReadMsg()
		if err != nil {
			return nil, err
		}
		if r.Id == m.Id {
			return r, nil
		}
	}
}

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

	mu       sync.Mutex
	counters map[string]map[string]uint64 // MAC → category (or "deny", "safe-search", "bypass") → count
	recent   []Recent
	queries  atomic.Uint64
}

// NewServer makes a server; publish a snapshot before serving.
func NewServer(exchange Exchange, mode BlockMode) *Server {
	s := &Server{exchange: exchange, mode: mode, now: time.Now, counters: map[string]map[string]uint64{}}
	s.snap.Store(NewSnapshot(nil, nil, nil))
	return s
}

// Publish replaces the snapshot (atomically, for all handlers at once).
func (s *Server) Publish(snap *Snapshot) { s.snap.Store(snap) }

// ServeDNS implements dns.Handler.
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	_ = w.WriteMsg(s.Answer(context.Background(), r, remoteAddr(w.RemoteAddr()), network(w.RemoteAddr())))
}

func remoteAddr(a net.Addr) netip.Addr {
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

func network(a net.Addr) string {
	if _, ok := a.(*net.TCPAddr); ok {
		return "tcp"
	}
	return "udp"
}

// Answer decides and builds the reply for one query from src.
func (s *Server) Answer(ctx context.Context, r *dns.Msg, src netip.Addr, network string) *dns.Msg {
	s.queries.Add(1)
	if r.Opcode != dns.OpcodeQuery || len(r.Question) != 1 || r.Response {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeFormatError)
		return m
	}
	q := r.Question[0]
	snap := s.snap.Load()
	mac, known := snap.macOf[src]
	rules, protected := snap.rules[mac]
	if !known || !protected {
		return s.forward(ctx, r, network)
	}
	d := Decide(q.Name, rules, snap.store)
	switch d.Action {
	case Block:
		what := d.Category
		if what == "" {
			what = "deny"
		}
		s.note(mac, rules.Child, q.Name, what, d.Reason)
		return s.blocked(r)
	case Refuse:
		s.note(mac, rules.Child, q.Name, "bypass", d.Reason)
		return s.nxdomain(r)
	case Rewrite:
		s.count(mac, "safe-search")
		return s.rewrite(ctx, r, d.SafeHost, network)
	}
	return s.forward(ctx, r, network)
}

func (s *Server) forward(ctx context.Context, r *dns.Msg, network string) *dns.Msg {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	resp, err := s.exchange(ctx, r, network)
	if err != nil || resp == nil {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeServerFailure)
		return m
	}
	resp.Id = r.Id
	return resp
}

func (s *Server) blocked(r *dns.Msg) *dns.Msg {
	q := r.Question[0]
	if s.mode == NXDomain || (q.Qtype != dns.TypeA && q.Qtype != dns.TypeAAAA) {
		return s.nxdomain(r)
	}
	m := new(dns.Msg)
	m.SetReply(r)
	m.RecursionAvailable = true
	hdr := dns.RR_Header{Name: q.Name, Rrtype: q.Qtype, Class: dns.ClassINET, Ttl: BlockedTTL}
	if q.Qtype == dns.TypeA {
		m.Answer = []dns.RR{&dns.A{Hdr: hdr, A: net.IPv4zero.To4()}}
	} else {
		m.Answer = []dns.RR{&dns.AAAA{Hdr: hdr, AAAA: net.IPv6zero}}
	}
	return m
}

// nxdomain answers NXDOMAIN with a SOA whose minimum is BlockedTTL, so
// resolvers cache the negative answer only briefly.
func (s *Server) nxdomain(r *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetRcode(r, dns.RcodeNameError)
	m.RecursionAvailable = true
	m.Ns = []dns.RR{&dns.SOA{
		Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: BlockedTTL},
		Ns:  "famguard.invalid.", Mbox: "blocked.famguard.invalid.", Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: BlockedTTL,
	}}
	return m
}

// rewrite answers name with a CNAME to the safe-search host and that host's
// records from the upstream, as the search engines ask resolvers to do.
func (s *Server) rewrite(ctx context.Context, r *dns.Msg, host, network string) *dns.Msg {
	q := r.Question[0]
	m := new(dns.Msg)
	m.SetReply(r)
	m.RecursionAvailable = true
	m.Answer = []dns.RR{&dns.CNAME{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 300}, Target: dns.Fqdn(host)}}
	if q.Qtype == dns.TypeCNAME {
		return m
	}
	up := new(dns.Msg)
	up.SetQuestion(dns.Fqdn(host), q.Qtype)
	up.RecursionDesired = true
	resp := s.forward(ctx, up, network)
	if resp.Rcode != dns.RcodeSuccess {
		m.Rcode = resp.Rcode
		return m
	}
	m.Answer = append(m.Answer, resp.Answer...)
	return m
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
	Queries  uint64                       `json:"queries"`
	Counters map[string]map[string]uint64 `json:"blocked_by_device"` // MAC → category → count
	Recent   []Recent                     `json:"recent_blocks"`     // newest last
}

// Stats returns a copy of the counters and recent blocks.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Queries: s.queries.Load(), Counters: map[string]map[string]uint64{}, Recent: append([]Recent{}, s.recent...)}
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

// Listener is a bound DNS listener (UDP and TCP on one address).
type Listener struct {
	udp, tcp *dns.Server
}

// Listen binds addr over UDP and TCP. Binding first lets the caller enable
// the interception rules only once something is there to answer: otherwise
// every protected device would lose DNS.
func (s *Server) Listen(addr string) (*Listener, error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		pc.Close()
		return nil, err
	}
	return &Listener{udp: &dns.Server{PacketConn: pc, Handler: s}, tcp: &dns.Server{Listener: ln, Handler: s}}, nil
}

// Serve answers until ctx ends or a listener fails.
func (l *Listener) Serve(ctx context.Context) error {
	errs := make(chan error, 2)
	go func() { errs <- l.udp.ActivateAndServe() }()
	go func() { errs <- l.tcp.ActivateAndServe() }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errs:
		if err == nil {
			err = errors.New("DNS listener stopped")
		}
	}
	_ = l.udp.Shutdown()
	_ = l.tcp.Shutdown()
	return err
}

// ListenAndServe answers on addr over UDP and TCP until ctx ends.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	l, err := s.Listen(addr)
	if err != nil {
		return err
	}
	return l.Serve(ctx)
}
