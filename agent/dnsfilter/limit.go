package dnsfilter

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"
)

// Limits bound what one client may take of the filter, so that one device
// flooding the listener (a broken app, malware, a child's "DNS benchmark")
// cannot starve the others. A client is a device: its MAC when the neighbour
// table knows the source address (so all of a phone's IPv6 addresses count
// together), the source address otherwise.
//
// Why these defaults. A household device makes a few queries a second; a
// browser opening a heavy page, or a phone waking and refreshing every app,
// makes up to a hundred or two within a second. So: a sustained 200 queries
// per second with a burst of 400 never touches a real device, while a flood
// of tens of thousands a second is cut to 1 % of itself. 200/s each is also
// what the router can afford for every device at once: 50 devices at the
// limit are 10 k queries/s, within what the filter answers on one core.
//
// The in-flight bound is for a slow or dead upstream: at a normal upstream
// latency (a few ms) 64 queries in flight are thousands per second, far above
// the rate; when each forwarded query waits up to the 2 s upstream timeout,
// it keeps one client from holding more than an eighth of the listener's 512
// concurrent UDP answers.
type Limits struct {
	Rate     int `json:"rate"`      // queries per second, sustained; 0: no rate limit
	Burst    int `json:"burst"`     // queries accepted at once after a quiet spell (at least 1)
	InFlight int `json:"in_flight"` // queries being answered at once; 0: no bound
}

// DefaultLimits is what `famguard run` applies unless told otherwise.
var DefaultLimits = Limits{Rate: 200, Burst: 400, InFlight: 64}

// The client table: a fixed set-associative table (limiterSets sets of
// limiterWays entries), so memory is bounded (about 48 KiB) however many
// source addresses a flood spoofs, and every query costs one hash and at
// most limiterWays comparisons. A new client takes a free entry of its set,
// else the one that has been quiet longest (a client whose bucket has
// refilled and that has nothing in flight loses nothing by being evicted:
// it would start with a full bucket anyway). A flooder keeps its own entry
// warm, so churning spoofed sources evict only each other and idle clients.
const (
	limiterSets = 256 // a power of two
	limiterWays = 4
	// otherClients is the status name of the counts of clients whose entry
	// was evicted (and, past maxFolded, of MACs too).
	otherClients = "other"
	maxFolded    = 256
)

// clientKey identifies a client: an IPv6 address (IPv4 mapped), or a MAC
// tagged in hi with a prefix no unicast address uses (fa4d::/16 is in the
// reserved f800::/6).
type clientKey struct{ hi, lo uint64 }

const macTag = 0xfa4d << 48

func addrKey(a netip.Addr) clientKey {
	b := a.As16()
	return clientKey{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// macKey packs a MAC written as the neighbour table does (lower-case hex
// pairs separated by colons); any other form is hashed (FNV-1a).
func macKey(mac string) clientKey {
	var v uint64
	if len(mac) == 17 {
		ok := true
		for i := 0; i < 17 && ok; i += 3 {
			hi, lo := unhex(mac[i]), unhex(mac[i+1])
			ok = hi >= 0 && lo >= 0 && (i == 15 || mac[i+2] == ':')
			v = v<<8 | uint64(hi<<4|lo)
		}
		if ok {
			return clientKey{macTag, v}
		}
	}
	v = 14695981039346656037
	for i := 0; i < len(mac); i++ {
		v = (v ^ uint64(mac[i])) * 1099511628211
	}
	return clientKey{macTag | 1, v}
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}

// String is the client's name in status: its MAC or its address.
func (k clientKey) String() string {
	if k.hi == macTag {
		var b [6]byte
		binary.BigEndian.PutUint16(b[:2], uint16(k.lo>>32))
		binary.BigEndian.PutUint32(b[2:], uint32(k.lo))
		const hex = "0123456789abcdef"
		out := make([]byte, 0, 17)
		for i, c := range b {
			if i > 0 {
				out = append(out, ':')
			}
			out = append(out, hex[c>>4], hex[c&15])
		}
		return string(out)
	}
	if k.hi == macTag|1 {
		return otherClients // a MAC in an unusual form: not worth keeping its text
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], k.hi)
	binary.BigEndian.PutUint64(b[8:], k.lo)
	return netip.AddrFrom16(b).Unmap().String()
}

// slot is one client's entry. The rate limit is GCRA (the generic cell rate
// algorithm, a token bucket kept as one timestamp): tat is the theoretical
// arrival time of the next query at the sustained rate; a query is accepted
// when tat is at most the burst's worth of intervals ahead of now.
type slot struct {
	key      clientKey
	used     bool
	tat      int64  // ns on the limiter's clock
	inflight int32  // queries admitted and not yet answered
	gen      uint32 // bumped when the slot changes owner: stale tickets are ignored
	limited  uint64 // queries refused to this client while it held the slot
}

// ticket is an admitted query's claim on its client's in-flight count.
type ticket struct {
	idx int32 // -1: no limiter
	gen uint32
}

type limiter struct {
	mu       sync.Mutex
	lim      Limits
	interval int64 // ns between queries at the sustained rate; 0: no rate limit
	tau      int64 // how far ahead of now tat may be
	seed     uint64
	now      func() int64
	slots    [limiterSets * limiterWays]slot
	total    uint64               // queries refused, all clients
	folded   map[clientKey]uint64 // refusals of evicted MAC clients
	other    uint64               // refusals of evicted address clients (and MACs past maxFolded)
}

func newLimiter(lim Limits) *limiter {
	start := time.Now()
	l := &limiter{seed: rand.Uint64(), now: func() int64 { return int64(time.Since(start)) + 1 }, folded: map[clientKey]uint64{}}
	l.set(lim)
	return l
}

func (l *limiter) set(lim Limits) {
	lim.Rate, lim.Burst, lim.InFlight = max(lim.Rate, 0), max(lim.Burst, 1), max(lim.InFlight, 0)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lim = lim
	l.interval, l.tau = 0, 0
	if lim.Rate > 0 {
		l.interval = int64(time.Second) / int64(lim.Rate)
		l.tau = int64(lim.Burst-1) * l.interval
	}
}

func (l *limiter) limits() Limits {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lim
}

func (l *limiter) setOf(k clientKey) int {
	h := (k.hi ^ l.seed) * 0x9e3779b97f4a7c15
	h = (h ^ k.lo) * 0xbf58476d1ce4e5b9
	h ^= h >> 31
	return int(h>>32) & (limiterSets - 1)
}

// admit decides whether client k may have one more query answered now. An
// admitted query holds a ticket until done.
func (l *limiter) admit(k clientKey) (ticket, bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.interval == 0 && l.lim.InFlight == 0 {
		return ticket{idx: -1}, true // no limits: nothing to track
	}
	base := l.setOf(k) * limiterWays
	idx := -1
	for i := base; i < base+limiterWays; i++ {
		if l.slots[i].used && l.slots[i].key == k {
			idx = i
			break
		}
	}
	if idx < 0 {
		idx = l.victim(base)
		l.evict(idx)
		s := &l.slots[idx]
		s.key, s.used, s.tat = k, true, now
	}
	s := &l.slots[idx]
	if l.lim.InFlight > 0 && int(s.inflight) >= l.lim.InFlight {
		s.limited++
		l.total++
		return ticket{}, false
	}
	if l.interval > 0 {
		tat := max(s.tat, now)
		if tat-now > l.tau {
			s.limited++
			l.total++
			return ticket{}, false
		}
		s.tat = tat + l.interval
	}
	s.inflight++
	return ticket{int32(idx), s.gen}, true
}

// victim picks the entry of the set starting at base that a new client
// takes: a free one, else the quietest one with nothing in flight, else the
// quietest one.
func (l *limiter) victim(base int) int {
	best := -1
	for i := base; i < base+limiterWays; i++ {
		s := &l.slots[i]
		if !s.used {
			return i
		}
		if best < 0 {
			best = i
			continue
		}
		b := &l.slots[best]
		if (s.inflight == 0) != (b.inflight == 0) {
			if s.inflight == 0 {
				best = i
			}
			continue
		}
		if s.tat < b.tat {
			best = i
		}
	}
	return best
}

// evict frees slot i, keeping its client's refusals for status.
func (l *limiter) evict(i int) {
	s := &l.slots[i]
	if s.used && s.limited > 0 {
		if _, ok := l.folded[s.key]; s.key.hi == macTag && (ok || len(l.folded) < maxFolded) {
			l.folded[s.key] += s.limited
		} else {
			l.other += s.limited
		}
	}
	*s = slot{gen: s.gen + 1}
}

// done releases an admitted query's claim.
func (l *limiter) done(t ticket) {
	if t.idx < 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := &l.slots[t.idx]; s.gen == t.gen && s.inflight > 0 {
		s.inflight--
	}
}

// refused returns the refusals in total and per client (MAC or address;
// evicted address clients together under "other").
func (l *limiter) refused() (uint64, map[string]uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	by := map[string]uint64{}
	for k, n := range l.folded {
		by[k.String()] += n
	}
	if l.other > 0 {
		by[otherClients] += l.other
	}
	for i := range l.slots {
		if s := &l.slots[i]; s.used && s.limited > 0 {
			by[s.key.String()] += s.limited
		}
	}
	return l.total, by
}
