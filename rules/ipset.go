package rules

import (
	"errors"
	"fmt"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Sets makes sure the ipsets a restore refers to exist: iptables-restore
// rejects a rule naming a set that does not (`-m set --match-set`), so the
// runner ensures every set of an input before writing it. The DNS filter
// fills the sets (adds with a timeout); this only creates them.
type Sets interface {
	// Ensure creates the set NAME (hash:ip of the family, with a default
	// timeout) unless it exists; an existing set is left as it is, with
	// its entries.
	Ensure(name string, fam Family) error
}

// SetTimeout is the default timeout (seconds) of a strict set's entries;
// the DNS filter gives each entry its own (TTL plus grace).
const SetTimeout = 300

// SetMaxElem bounds a strict set: hash:ip with this many entries takes
// about 100 bytes each in the kernel (IPv6), so at most some 6.5 MB per set.
const SetMaxElem = 65536

// NetlinkSets creates sets over netlink (the ipset tool is not needed).
type NetlinkSets struct{}

// Ensure implements Sets.
func (NetlinkSets) Ensure(name string, fam Family) error {
	family := uint8(unix.AF_INET)
	if fam == IPv6 {
		family = unix.AF_INET6
	}
	timeout := uint32(SetTimeout)
	err := netlink.IpsetCreate(name, "hash:ip", netlink.IpsetCreateOptions{
		Family: family, Timeout: &timeout, MaxElements: SetMaxElem,
		Replace: true, // "exists" is not an error; the set and its entries stay
	})
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("creating ipset %s (hash:ip %s): %w", name, fam, err)
	}
	return nil
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
