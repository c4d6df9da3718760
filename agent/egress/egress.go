// Package egress keeps the strict-egress address sets: for each strict
// policy class, the addresses famguard's DNS filter answered that class
// recently. The firewall (rules/, the dataplane) lets a strict device open
// new forwarded connections only to an address in its class's sets, the LAN,
// or the child's allow_ips; everything else is rejected. So IP literals,
// DNS-over-HTTPS or a proxy reached by address, and VPN endpoints fail,
// while every name the filter allowed works.
//
// The sets are kernel ipsets, two per class: Names(base) gives
// base+"4" (hash:ip family inet) and base+"6" (hash:ip family inet6), both
// with per-entry timeouts, so an address leaves the set by itself TTL+Grace
// after the last answer that named it: nothing has to sweep them, and a
// crashed agent leaves sets that empty themselves.
//
// Who calls what:
//   - the dataplane (daemon loop) calls EnsureSets(base) for every strict
//     class before an iptables-restore that references the sets (a rule
//     naming a missing set fails the whole restore), and Destroy(base) after
//     a restore that no longer does;
//   - the DNS filter calls AddAll(base, entries) with the addresses of an
//     answer to a strict class, and sends the answer only once AddAll
//     returned nil (agent/dnsfilter/strict.go): when AddAll returns nil,
//     every address is in the kernel;
//   - status calls Stats(base);
//   - `famguard cleanup`, once famguard's rules are gone, calls
//     RemoveOurs (cleanup.go): every set whose name is famguard's (Ours).
//
// Why netlink rather than the ipset binary: an exec per answered address
// would cost milliseconds per query; one netlink message on a kept socket
// costs microseconds (README.md beside this file has the figures).
//
// Sets remembers until when it last put each address in the kernel, so
// the many answers that name the same popular address cost no syscall at
// all — but it refreshes an address at least every RefreshEvery, so a set
// flushed behind its back (ipset flush, a recreated set) is repaired by the
// next answer after that at the latest.
//
// Group commit: the adds of concurrent answers go to the kernel together.
// An answer's new addresses join the batch being gathered; one writer
// goroutine at a time (started when there is work, gone when there is none)
// takes the gathered batch and writes it with one write and one
// acknowledgement (Kernel.AddBatch, nladd.go), while the next batch gathers
// behind it. Each answer waits only for the batches that hold its own
// addresses, and fails only if one of its own addresses failed. An address
// already on its way (in a batch) is not sent twice: a later answer waits
// for that add, or, while the batch is still gathering, lengthens it.
// Before taking a batch the writer yields once (runtime.Gosched), so that
// on a router with one core every goroutine ready to run (the answers the
// upstream just sent) joins the batch first; without it, the writer would
// run as soon as the first answer parked, and every batch would hold one
// address.
package egress

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults. See README.md for what they cost.
const (
	// DefaultGrace is added to every answer's TTL: a client that resolved
	// at the end of a TTL still connects (and retries) within it.
	DefaultGrace = 60 * time.Second
	// MinTimeout is the least time an address stays open: answers with TTL
	// 0 (common behind load balancers) must still reach the connect.
	MinTimeout = 30 * time.Second
	// MaxTimeout bounds one answer's hold on an address (the DNS filter
	// caps TTLs answered to strict classes at one day, StrictMaxTTL).
	MaxTimeout = 24*time.Hour + DefaultGrace
	// MaxElem bounds each set. Why 65536: a child's devices resolve a few
	// thousand addresses a day (measured figures in README.md), so this is
	// far above real use, while the kernel memory of a full set stays near
	// 2.5 MiB (hash:ip with timeouts, measured). A full set makes Add fail,
	// and the DNS filter then fails closed (SERVFAIL) for new addresses
	// until entries time out: a flood of answers cannot eat router memory.
	MaxElem = 65536
	// RefreshEvery: an address already in a set is put there again by the
	// first answer after this long, even when the set should still hold it.
	RefreshEvery = 30 * time.Second
	// maxNameLen is the kernel's ipset name limit (IPSET_MAXNAMELEN 32,
	// with the terminating NUL).
	maxNameLen = 31
	// cacheMax bounds the per-set memory of what Sets remembers: a full
	// table is about 0.8 MiB (51 bytes an entry, measured with 16-byte
	// keys); beyond it addresses are added without being remembered (each
	// answer then costs a kernel add).
	cacheMax = 16384
)

// Kernel is the ipset side Sets needs: Netlink in the agent, Fake in tests.
type Kernel interface {
	// Create makes a hash:ip set with per-entry timeouts (family inet6 when
	// v6) holding at most maxElem entries. A set of that name that already
	// has this type, family and timeouts is kept as it is (entries too);
	// any other set of that name is an error that says what to do.
	Create(name string, v6 bool, maxElem uint32) error
	// AddBatch puts every entry's address in its set with its timeout in
	// seconds (replacing the timeout of an entry already there) and sets
	// each entry's Err. An entry whose Err is nil is in the kernel when
	// AddBatch returns; one failing entry fails only itself.
	AddBatch(adds []KernelAdd)
	// Info reads the set's header.
	Info(name string) (SetInfo, error)
	// Destroy removes the set; a set that does not exist is no error.
	Destroy(name string) error
}

// SetInfo is one kernel set's header.
type SetInfo struct {
	Name     string `json:"name"`
	Entries  int    `json:"entries"`
	MaxElem  int    `json:"max_entries"`
	MemBytes int    `json:"memory_bytes"`
}

// ErrFull is what Add returns when a set holds MaxElem entries.
var ErrFull = errors.New("strict set is full (entries leave it when their TTL ends)")

// Sets keeps the strict sets of every class. Safe for concurrent use.
type Sets struct {
	k     Kernel
	grace time.Duration
	now   func() time.Time

	mu      sync.Mutex
	known   map[string]*classSets // base name → what Sets put in the class's sets
	next    *batch                // the batch gathering: the writer takes it next
	writing bool                  // a writer goroutine runs (it clears this when it finds no batch)

	writes, written atomic.Uint64 // kernel writes (batches) and the adds they held
}

// classSets is what Sets remembers of one class's two sets.
type classSets struct{ v4, v6 *heldSet }

// heldSet is what Sets remembers of one kernel set: per address (in its
// 16-byte form: a smaller table than netip.Addr keys, and one without
// pointers, which the garbage collector does not scan), until when the
// kernel holds it; and the adds on their way.
type heldSet struct {
	name    string // the kernel's name of the set
	m       map[[16]byte]held
	swept   uint32             // when expired entries were last dropped (unix seconds)
	pending map[[16]byte]*slot // adds gathering or being written: as many as answers wait for
}

// held is until when the kernel holds an address (by Sets' last add), and
// when that add was: unix seconds, to keep the table small.
type held struct{ until, added uint32 }

// slot is one address on its way into the kernel.
type slot struct {
	hs    *heldSet
	addr  netip.Addr
	until uint32 // the expiry asked for (unix seconds); raised while its batch gathers
	b     *batch
	err   error // the kernel's answer; read once b.done is closed
}

// batch is the adds that go to the kernel together.
type batch struct {
	slots []*slot
	done  chan struct{} // closed once every slot has its answer
}

// Entry is one address of an answer and the answer's TTL for it.
type Entry struct {
	Addr netip.Addr
	TTL  time.Duration
}

// New returns Sets over k with DefaultGrace.
func New(k Kernel) *Sets {
	return &Sets{k: k, grace: DefaultGrace, now: time.Now, known: map[string]*classSets{}}
}

// SetGrace changes the grace added to every TTL (DefaultGrace until called).
func (s *Sets) SetGrace(g time.Duration) {
	s.mu.Lock()
	s.grace = max(g, 0)
	s.mu.Unlock()
}

// SetBase is the base set name of a policy class (a child's name, or the
// unknown-device class): StrictPrefix+class, or, when that would not fit the
// kernel's name limit with its family suffix, a prefix of it plus a short
// hash (so two long names never share a set).
func SetBase(class string) string {
	base := StrictPrefix + class
	if len(base)+1 <= maxNameLen {
		return base
	}
	sum := sha256.Sum256([]byte(class))
	h := hex.EncodeToString(sum[:4])
	return base[:maxNameLen-1-1-len(h)] + "-" + h
}

// Names are the two kernel sets of a base name: IPv4 and IPv6.
func Names(base string) (v4, v6 string) { return base + "4", base + "6" }

func checkBase(base string) error {
	if base == "" || len(base)+1 > maxNameLen {
		return fmt.Errorf("strict set base name %q: must be 1 to %d characters (use egress.SetBase)", base, maxNameLen-1)
	}
	return nil
}

// EnsureSets creates the class's two sets if they are missing (existing
// ones keep their entries). Call it before any firewall restore whose rules
// match the sets.
func (s *Sets) EnsureSets(base string) error {
	if err := checkBase(base); err != nil {
		return err
	}
	v4, v6 := Names(base)
	// What Sets remembers may be stale if the sets were recreated.
	s.mu.Lock()
	delete(s.known, base)
	s.mu.Unlock()
	for _, n := range []struct {
		name string
		v6   bool
	}{{v4, false}, {v6, true}} {
		if err := s.k.Create(n.name, n.v6, MaxElem); err != nil {
			return err
		}
	}
	return nil
}

// timeout is how long one answer with this TTL keeps an address open.
func (s *Sets) timeout(ttl time.Duration) time.Duration {
	return min(max(ttl, 0)+s.grace, MaxTimeout)
}

// Add opens addr for the class base for ttl plus the grace: AddAll of one.
func (s *Sets) Add(base string, addr netip.Addr, ttl time.Duration) error {
	return s.AddAll(base, []Entry{{addr, ttl}})
}

// AddAll opens every address for the class base for its TTL plus the grace
// (at least MinTimeout, at most MaxTimeout). It never shortens what an
// earlier answer opened. When it returns nil, the kernel holds every
// address; when it returns an error, at least one of them may be missing.
func (s *Sets) AddAll(base string, es []Entry) error {
	now := s.now()
	nowS := uint32(now.Unix())
	refresh := uint32(RefreshEvery / time.Second)
	var waitBuf [8]*slot
	wait := waitBuf[:0]
	var bad error
	s.mu.Lock()
	cs := s.known[base]
	if cs == nil {
		v4, v6 := Names(base)
		cs = &classSets{newHeldSet(v4, nowS), newHeldSet(v6, nowS)}
		s.known[base] = cs
	}
	for _, e := range es {
		addr := e.Addr.Unmap()
		if !addr.IsValid() {
			bad = fmt.Errorf("strict set %s: invalid address", base)
			continue
		}
		hs := cs.v4
		if addr.Is6() {
			hs = cs.v6
		}
		need := nowS + uint32(max(s.timeout(e.TTL), MinTimeout)/time.Second)
		key := addr.As16()
		h, ok := hs.m[key]
		// Held long enough: the kernel keeps it until h.until, and need asks
		// for TTL plus the grace from now. Allowing h.until to fall up to
		// RefreshEvery short of need still covers the answer's TTL (the grace
		// is longer than RefreshEvery), and it makes a name answered again a
		// few seconds later cost no syscall, which `h.until >= need` alone
		// would not (need moves with the clock). An add on its way cannot
		// shorten that: it asked for at least h.until.
		if ok && h.until+refresh >= need && nowS-h.added < refresh {
			continue // held long enough, and put there recently
		}
		if p := hs.pending[key]; p != nil {
			if p.until >= need {
				wait = append(wait, p) // on its way, long enough
				continue
			}
			if p.b == s.next {
				p.until = need // still gathering: ask for longer
				wait = append(wait, p)
				continue
			}
			// Being written with a shorter hold: a new add follows it.
		}
		if ok && h.until > need {
			need = h.until // never shorten
		}
		if s.next == nil {
			s.next = &batch{done: make(chan struct{})}
		}
		sl := &slot{hs: hs, addr: addr, until: need, b: s.next}
		s.next.slots = append(s.next.slots, sl)
		hs.pending[key] = sl
		wait = append(wait, sl)
	}
	start := len(wait) > 0 && !s.writing
	if start {
		s.writing = true
	}
	s.mu.Unlock()
	if start {
		go s.write()
	}
	for _, sl := range wait {
		<-sl.b.done
		if sl.err != nil && bad == nil {
			bad = fmt.Errorf("strict set %s: add %s: %w", sl.hs.name, sl.addr, sl.err)
		}
	}
	return bad
}

// write is the writer: it writes the gathered batches one after the other
// until none is left.
func (s *Sets) write() {
	var adds []KernelAdd
	for {
		// Every goroutine ready to run gets to add to this batch first.
		runtime.Gosched()
		s.mu.Lock()
		b := s.next
		s.next = nil
		if b == nil {
			s.writing = false
			s.mu.Unlock()
			return
		}
		nowS := uint32(s.now().Unix())
		adds = adds[:0]
		for _, sl := range b.slots {
			adds = append(adds, KernelAdd{Set: sl.hs.name, Addr: sl.addr, Timeout: max(sl.until, nowS+1) - nowS})
		}
		s.mu.Unlock()
		s.k.AddBatch(adds)
		s.writes.Add(1)
		s.written.Add(uint64(len(adds)))
		s.mu.Lock()
		for i, sl := range b.slots {
			sl.err = adds[i].Err
			sl.hs.settle(sl, nowS)
		}
		s.mu.Unlock()
		close(b.done)
		clear(adds) // no references to set names or errors kept while idle
	}
}

// Writes is how many batches Sets wrote to the kernel, and how many adds
// they held: adds/batches is the batching's gain.
func (s *Sets) Writes() (batches, adds uint64) { return s.writes.Load(), s.written.Load() }

func newHeldSet(name string, nowS uint32) *heldSet {
	return &heldSet{name: name, m: map[[16]byte]held{}, pending: map[[16]byte]*slot{}, swept: nowS}
}

// settle notes the kernel's answer to sl. The table is bounded: when it
// holds cacheMax addresses, expired entries are dropped — at most once per
// RefreshEvery, so a full table of live entries costs no sweep per answer;
// until then new addresses are simply not remembered.
func (hs *heldSet) settle(sl *slot, nowS uint32) {
	key := sl.addr.As16()
	if hs.pending[key] == sl {
		delete(hs.pending, key)
	}
	if sl.err != nil {
		return
	}
	_, ok := hs.m[key]
	if !ok && len(hs.m) >= cacheMax && nowS-hs.swept >= uint32(RefreshEvery/time.Second) {
		hs.swept = nowS
		for a, h := range hs.m {
			if h.until <= nowS {
				delete(hs.m, a)
			}
		}
	}
	if ok || len(hs.m) < cacheMax {
		hs.m[key] = held{until: sl.until, added: nowS}
	}
}

// Stats is what status shows for one class: how many addresses are open
// now, and the sets' kernel memory.
type Stats struct {
	Open4    int       `json:"open_ipv4"`
	Open6    int       `json:"open_ipv6"`
	MemBytes int       `json:"memory_bytes"`
	Sets     []SetInfo `json:"sets"`
}

// Stats reads the class's two sets from the kernel.
func (s *Sets) Stats(base string) (Stats, error) {
	var st Stats
	v4, v6 := Names(base)
	for i, n := range []string{v4, v6} {
		info, err := s.k.Info(n)
		if err != nil {
			return st, err
		}
		st.Sets = append(st.Sets, info)
		st.MemBytes += info.MemBytes
		if i == 0 {
			st.Open4 = info.Entries
		} else {
			st.Open6 = info.Entries
		}
	}
	return st, nil
}

// Destroy removes the class's sets (and what Sets remembers of them). Call
// it only after a restore that no longer references them: the kernel
// refuses to destroy a set a rule still uses.
func (s *Sets) Destroy(base string) error {
	v4, v6 := Names(base)
	s.mu.Lock()
	delete(s.known, base)
	s.mu.Unlock()
	return errors.Join(s.k.Destroy(v4), s.k.Destroy(v6))
}
