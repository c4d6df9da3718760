package egress

import (
	"errors"
	"fmt"
	"strings"
)

// The name prefixes of every kernel set famguard makes: the strict sets
// (SetBase: StrictPrefix + class) and the inbound guard's generations
// (InboundPrefix + "a"/"b", agent/daemon/inbound.go). Ours is the one
// place that decides which sets are famguard's; `famguard cleanup`
// destroys exactly those.
const (
	StrictPrefix  = "fg-"
	InboundPrefix = "fgin-"
)

// Ours reports whether the kernel set name is one famguard makes.
func Ours(name string) bool {
	return strings.HasPrefix(name, StrictPrefix) || strings.HasPrefix(name, InboundPrefix)
}

// ErrInUse is a Destroy of a set some firewall rule still names: the
// kernel refuses it.
var ErrInUse = errors.New("set is in use by a firewall rule")

// SetRemover is what RemoveOurs needs of the kernel.
type SetRemover interface {
	// List returns the names of every set in the kernel.
	List() ([]string, error)
	// Destroy removes the set (a missing one is not an error); a set a
	// rule still names fails with ErrInUse.
	Destroy(name string) error
}

// RemoveOurs destroys every set of famguard's (Ours) and leaves all
// others. Call it after famguard's rules are gone: the kernel refuses to
// destroy a set a rule names. A set it cannot destroy is named in the
// error, with what to do, and the others are still removed; removed counts
// the sets destroyed.
func RemoveOurs(k SetRemover) (removed int, err error) {
	names, err := k.List()
	if err != nil {
		return 0, fmt.Errorf("listing the kernel's ipsets: %w (famguard's sets, named %s… and %s…, stay; remove them with ipset destroy)", err, StrictPrefix, InboundPrefix)
	}
	var errs []error
	for _, name := range names {
		if !Ours(name) {
			continue
		}
		err := k.Destroy(name)
		switch {
		case err == nil:
			removed++
		case errors.Is(err, ErrInUse):
			errs = append(errs, fmt.Errorf("ipset %s: %w (find it with: iptables-save | grep -w %s; ip6tables-save | grep -w %s); remove that rule, then run famguard cleanup again", name, ErrInUse, name, name))
		default:
			errs = append(errs, err)
		}
	}
	return removed, errors.Join(errs...)
}
