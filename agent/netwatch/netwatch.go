// Package netwatch is the agent's view of the LAN through netlink: which
// addresses each device (MAC) uses right now, and the deletion of a device's
// tracked connections when it goes offline.
//
// Why netlink and not /proc or `ip neigh`: the neighbour subscription tells
// us about a new IPv6 privacy address the moment the router resolves it, at
// no polling cost. Its traps (ENGINEERING.md): the subscription channel
// closes on any error and a slow reader loses messages, so after every
// change we re-list the whole table (cheap: a home LAN has tens of entries)
// and hand the daemon a complete snapshot; when the subscription dies we
// resubscribe with backoff and list again. A dump interrupted by concurrent
// changes (ErrDumpInterrupted) is retried.
package netwatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Table maps a lower-case MAC to the device's current addresses, sorted.
type Table map[string][]netip.Addr

// usable says whether a neighbour entry describes a device that is there:
// it has a unicast MAC and its state is not FAILED or INCOMPLETE. IPv6
// link-local addresses are kept: connections to the router use them and
// their conntrack entries must go too.
func usable(n netlink.Neigh) (string, netip.Addr, bool) {
	if len(n.HardwareAddr) != 6 || n.HardwareAddr[0]&1 == 1 {
		return "", netip.Addr{}, false
	}
	if n.State&(netlink.NUD_FAILED|netlink.NUD_INCOMPLETE) != 0 || n.State == netlink.NUD_NONE {
		return "", netip.Addr{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return "", netip.Addr{}, false
	}
	a = a.Unmap()
	if a.IsMulticast() || a.IsUnspecified() {
		return "", netip.Addr{}, false
	}
	return n.HardwareAddr.String(), a, true
}

// BuildTable turns neighbour entries into a Table.
func BuildTable(neighs []netlink.Neigh) Table {
	t := Table{}
	seen := map[string]map[netip.Addr]bool{}
	for _, n := range neighs {
		mac, a, ok := usable(n)
		if !ok {
			continue
		}
		if seen[mac] == nil {
			seen[mac] = map[netip.Addr]bool{}
		}
		if !seen[mac][a] {
			seen[mac][a] = true
			t[mac] = append(t[mac], a)
		}
	}
	for _, addrs := range t {
		sort.Slice(addrs, func(i, j int) bool { return addrs[i].Less(addrs[j]) })
	}
	return t
}

// Neighbours watches the kernel's neighbour table.
type Neighbours struct {
	log *slog.Logger
	// list and subscribe are netlink calls; tests replace them.
	list      func() ([]netlink.Neigh, error)
	subscribe func(ch chan<- netlink.NeighUpdate, done <-chan struct{}, onErr func(error)) error

	// lan, when set, limits the table to neighbours on these interfaces
	// (lan.go): what is seen there is the family's devices, never the WAN.
	lan       []string
	linkIndex func(name string) (int, error)
	missing   map[string]bool // LAN interfaces reported missing (logged once)
}

// SetLAN limits the table to neighbours on the named interfaces (resolved
// at every listing, so a bridge that is re-created is followed). Call it
// before Run.
func (n *Neighbours) SetLAN(ifaces []string) {
	n.lan = append([]string(nil), ifaces...)
}

// onLAN filters neighs to the LAN interfaces (all of them when no LAN is set).
func (n *Neighbours) onLAN(neighs []netlink.Neigh) []netlink.Neigh {
	if len(n.lan) == 0 {
		return neighs
	}
	idx := map[int]bool{}
	for _, name := range n.lan {
		i, err := n.linkIndex(name)
		if err != nil {
			if !n.missing[name] {
				n.missing[name] = true
				n.log.Warn("LAN interface not found; devices on it are not seen until it exists", "interface", name, "err", err)
			}
			continue
		}
		if n.missing[name] {
			delete(n.missing, name)
			n.log.Info("LAN interface found", "interface", name)
		}
		idx[i] = true
	}
	out := neighs[:0:0]
	for _, nb := range neighs {
		if idx[nb.LinkIndex] {
			out = append(out, nb)
		}
	}
	return out
}

// NewNeighbours watches the neighbour table of the current network namespace.
func NewNeighbours(log *slog.Logger) *Neighbours {
	return &Neighbours{
		log: log,
		list: func() ([]netlink.Neigh, error) {
			return netlink.NeighList(0, unix.AF_UNSPEC)
		},
		subscribe: func(ch chan<- netlink.NeighUpdate, done <-chan struct{}, onErr func(error)) error {
			return netlink.NeighSubscribeWithOptions(ch, done, netlink.NeighSubscribeOptions{ErrorCallback: onErr})
		},
		linkIndex: func(name string) (int, error) {
			l, err := netlink.LinkByName(name)
			if err != nil {
				return 0, err
			}
			return l.Attrs().Index, nil
		},
		missing: map[string]bool{},
	}
}

// listTable lists the whole table, retrying interrupted dumps.
func (n *Neighbours) listTable() (Table, error) {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		var neighs []netlink.Neigh
		neighs, err = n.list()
		if err == nil {
			return BuildTable(n.onLAN(neighs)), nil
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	return nil, err
}

// Run sends a full table now and after every change (bursts coalesced to
// one listing per 100 ms) until ctx ends.
func (n *Neighbours) Run(ctx context.Context, out chan<- Table) error {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := n.session(ctx, out)
		if ctx.Err() != nil {
			return nil
		}
		n.log.Warn("neighbour subscription ended; resubscribing", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
	return nil
}

// session subscribes, lists, and forwards snapshots until the subscription
// breaks.
func (n *Neighbours) session(ctx context.Context, out chan<- Table) error {
	updates := make(chan netlink.NeighUpdate, 256)
	done := make(chan struct{})
	defer close(done)
	failed := make(chan error, 1)
	// Subscribe before listing, so no change between the two is lost.
	if err := n.subscribe(updates, done, func(err error) {
		select {
		case failed <- err:
		default:
		}
	}); err != nil {
		return fmt.Errorf("subscribing to neighbour updates: %w", err)
	}
	send := func() error {
		t, err := n.listTable()
		if err != nil {
			return fmt.Errorf("listing neighbours: %w", err)
		}
		deliver(ctx, out, t)
		return nil
	}
	if err := send(); err != nil {
		return err
	}
	var coalesce <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-failed:
			return err
		case _, ok := <-updates:
			if !ok {
				return errors.New("subscription channel closed")
			}
			if coalesce == nil {
				coalesce = time.After(100 * time.Millisecond)
			}
		case <-coalesce:
			coalesce = nil
			if err := send(); err != nil {
				return err
			}
		}
	}
}

// deliver hands the table to the daemon. Blocking is fine: every table is
// complete, so whatever changed while we waited is in the next listing.
func deliver(ctx context.Context, out chan<- Table, t Table) {
	select {
	case out <- t:
	case <-ctx.Done():
	}
}

// DeleteFlows deletes every conntrack entry whose original source or
// destination is one of addrs, IPv4 and IPv6, so a device that just went
// offline loses its open connections at once.
func DeleteFlows(addrs []netip.Addr) (uint, error) {
	var v4, v6 []netlink.CustomConntrackFilter
	for _, a := range addrs {
		a = a.Unmap()
		for _, dir := range []netlink.ConntrackFilterType{netlink.ConntrackOrigSrcIP, netlink.ConntrackOrigDstIP} {
			f := &netlink.ConntrackFilter{}
			if err := f.AddIP(dir, net.IP(a.AsSlice())); err != nil {
				return 0, err
			}
			if a.Is4() {
				v4 = append(v4, f)
			} else {
				v6 = append(v6, f)
			}
		}
	}
	var total uint
	var errs []error
	if len(v4) > 0 {
		n, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, v4...)
		total += n
		errs = append(errs, err)
	}
	if len(v6) > 0 {
		n, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET6, v6...)
		total += n
		errs = append(errs, err)
	}
	return total, errors.Join(errs...)
}
