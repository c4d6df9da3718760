package rules

import (
	"fmt"
	"sync"
)

// Sets makes sure the ipsets a restore refers to exist: iptables-restore
// rejects a rule naming a set that does not (`-m set --match-set`), so the
// Kernel ensures every set of an input before writing it (Kernel.SetSets;
// the agent passes agent/egress's netlink sets). The DNS filter fills the
// sets (adds with a timeout); this only creates them.
type Sets interface {
	// Ensure creates the set NAME (hash:ip of the family, with a default
	// timeout) unless it exists; an existing set is left as it is, with
	// its entries.
	Ensure(name string, fam Family) error
}

// FakeSets is a stateful in-memory Sets for tests: the sets that exist, by
// name, with their family.
type FakeSets struct {
	mu   sync.Mutex
	sets map[string]Family
	Fail error // when set, Ensure fails with it
}

// NewFakeSets returns no sets.
func NewFakeSets() *FakeSets { return &FakeSets{sets: map[string]Family{}} }

// Ensure implements Sets.
func (f *FakeSets) Ensure(name string, fam Family) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Fail != nil {
		return f.Fail
	}
	if have, ok := f.sets[name]; ok && have != fam {
		return fmt.Errorf("ipset %s exists with family %s", name, have)
	}
	f.sets[name] = fam
	return nil
}

// Has reports whether a set exists.
func (f *FakeSets) Has(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.sets[name]
	return ok
}

// ensureSets creates the sets a restore input refers to.
func ensureSets(s Sets, fam Family, restore string) error {
	for _, name := range StrictSets(restore) {
		if err := s.Ensure(name, fam); err != nil {
			return err
		}
	}
	return nil
}
