package egress

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Fake is a stateful Kernel for tests: sets with entries that expire on
// its clock, the kernel's errors for a missing set, a wrong family and a
// full set, addresses it refuses, batches, and a call log.
type Fake struct {
	Now func() time.Time // the clock entries expire on (time.Now if nil)
	// Refuse makes the kernel refuse these addresses with their error,
	// whatever else the batch holds.
	Refuse map[netip.Addr]error
	// BeforeBatch, if set, is called with each batch before the kernel
	// takes it (without Fake's lock): tests hold a batch there.
	BeforeBatch func(adds []KernelAdd)
	// InUse are sets a firewall rule names: Destroy fails with ErrInUse.
	InUse map[string]bool

	mu      sync.Mutex
	sets    map[string]*fakeSet
	Calls   []string // "create NAME", "add NAME ADDR TIMEOUT", "destroy NAME"
	Batches []int    // the size of every AddBatch, in order
}

type fakeSet struct {
	v6      bool
	maxElem int
	entries map[netip.Addr]time.Time // until
}

func (f *Fake) now() time.Time {
	if f.Now != nil {
		return f.Now()
	}
	return time.Now()
}

// Create implements Kernel.
func (f *Fake) Create(name string, v6 bool, maxElem uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls = append(f.Calls, "create "+name)
	if f.sets == nil {
		f.sets = map[string]*fakeSet{}
	}
	if s, ok := f.sets[name]; ok {
		if s.v6 != v6 {
			return fmt.Errorf("ipset %s exists with another family", name)
		}
		return nil
	}
	f.sets[name] = &fakeSet{v6: v6, maxElem: int(maxElem), entries: map[netip.Addr]time.Time{}}
	return nil
}

// AddBatch implements Kernel.
func (f *Fake) AddBatch(adds []KernelAdd) {
	if f.BeforeBatch != nil {
		f.BeforeBatch(adds)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Batches = append(f.Batches, len(adds))
	for i := range adds {
		adds[i].Err = f.add(adds[i].Set, adds[i].Addr, adds[i].Timeout)
	}
}

// Add is a batch of one.
func (f *Fake) Add(name string, addr netip.Addr, timeout uint32) error {
	e := []KernelAdd{{Set: name, Addr: addr, Timeout: timeout}}
	f.AddBatch(e)
	return e[0].Err
}

func (f *Fake) add(name string, addr netip.Addr, timeout uint32) error {
	f.Calls = append(f.Calls, fmt.Sprintf("add %s %s %d", name, addr, timeout))
	s, ok := f.sets[name]
	switch {
	case !ok:
		return fmt.Errorf("ipset %s: no such set", name)
	case s.v6 != addr.Is6():
		return fmt.Errorf("ipset %s: invalid protocol (address family)", name)
	case f.Refuse[addr] != nil:
		return f.Refuse[addr]
	}
	now := f.now()
	s.expire(now)
	if _, in := s.entries[addr]; !in && len(s.entries) >= s.maxElem {
		return ErrFull
	}
	s.entries[addr] = now.Add(time.Duration(timeout) * time.Second)
	return nil
}

func (s *fakeSet) expire(now time.Time) {
	for a, until := range s.entries {
		if !now.Before(until) {
			delete(s.entries, a)
		}
	}
}

// Info implements Kernel; memory is the kernel's hash:ip figure measured
// in the lab, about 40 bytes an entry.
func (f *Fake) Info(name string) (SetInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.sets[name]
	if !ok {
		return SetInfo{}, fmt.Errorf("ipset %s: no such set", name)
	}
	s.expire(f.now())
	return SetInfo{Name: name, Entries: len(s.entries), MaxElem: s.maxElem, MemBytes: 280 + 40*len(s.entries)}, nil
}

// Destroy implements Kernel.
func (f *Fake) Destroy(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls = append(f.Calls, "destroy "+name)
	if f.InUse[name] {
		return fmt.Errorf("ipset destroy %s: %w", name, ErrInUse)
	}
	delete(f.sets, name)
	return nil
}

// List implements SetRemover: the names of the sets, sorted.
func (f *Fake) List() ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Sorted(maps.Keys(f.sets)), nil
}

// Holds reports whether the set holds addr now, and until when.
func (f *Fake) Holds(name string, addr netip.Addr) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.sets[name]
	if !ok {
		return time.Time{}, false
	}
	s.expire(f.now())
	until, ok := s.entries[addr]
	return until, ok
}

// Flush empties a set, as `ipset flush` behind the agent's back would.
func (f *Fake) Flush(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s, ok := f.sets[name]; ok {
		s.entries = map[netip.Addr]time.Time{}
	}
}
