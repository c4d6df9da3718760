package rules

import (
	"errors"
	"fmt"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Conntrack cuts connections by the device IDs in their marks (see
// MarkDevice): whatever addresses a device used, and whichever side opened
// the connection, its entries carry its ID. The daemon calls it when a
// device goes offline (every connection: the next packet is NEW and meets
// the offline rules) and when it installs a device's DNS redirect (its
// port-53 connections: a query flow opened before the redirect would keep
// going to whatever server it was going to).
type Conntrack interface {
	// Cut deletes the connections of these devices, in both families. With
	// dnsOnly only those to port 53; with unmarked also connections that
	// carry no ID yet (opened before famguard's rules were in the kernel).
	Cut(ids []uint16, dnsOnly, unmarked bool) (uint, error)
}

// NetlinkConntrack deletes entries over conntrack netlink.
type NetlinkConntrack struct{}

// markFilter matches conntrack entries by the device ID in their mark.
type markFilter struct {
	ids      map[uint16]bool
	dnsOnly  bool
	unmarked bool
}

// MatchConntrackFlow implements netlink.CustomConntrackFilter.
func (f markFilter) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	return f.match(flow.Mark, flow.Forward.DstPort)
}

func (f markFilter) match(mark uint32, dstPort uint16) bool {
	if f.dnsOnly && dstPort != 53 {
		return false
	}
	id := MarkDevice(mark)
	if id == 0 {
		return f.unmarked
	}
	return f.ids[id]
}

func newMarkFilter(ids []uint16, dnsOnly, unmarked bool) markFilter {
	f := markFilter{ids: map[uint16]bool{}, dnsOnly: dnsOnly, unmarked: unmarked}
	for _, id := range ids {
		f.ids[id] = true
	}
	return f
}

// Cut implements Conntrack.
func (NetlinkConntrack) Cut(ids []uint16, dnsOnly, unmarked bool) (uint, error) {
	if len(ids) == 0 && !unmarked {
		return 0, nil
	}
	f := newMarkFilter(ids, dnsOnly, unmarked)
	var total uint
	var errs []error
	for _, fam := range []netlink.InetFamily{unix.AF_INET, unix.AF_INET6} {
		n, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, fam, f)
		total += n
		if err != nil {
			errs = append(errs, fmt.Errorf("conntrack (family %d): %w", fam, err))
		}
	}
	return total, errors.Join(errs...)
}

// FakeConntrack is a stateful conntrack table for tests: entries with a
// mark and a destination port; Cut removes what the kernel would.
type FakeConntrack struct {
	mu      sync.Mutex
	Entries []FakeFlow
	Calls   int
}

// FakeFlow is one conntrack entry of FakeConntrack.
type FakeFlow struct {
	Mark    uint32
	DstPort uint16
}

// Cut implements Conntrack.
func (c *FakeConntrack) Cut(ids []uint16, dnsOnly, unmarked bool) (uint, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Calls++
	f := newMarkFilter(ids, dnsOnly, unmarked)
	var keep []FakeFlow
	var n uint
	for _, e := range c.Entries {
		if f.match(e.Mark, e.DstPort) {
			n++
			continue
		}
		keep = append(keep, e)
	}
	c.Entries = keep
	return n, nil
}

// Add adds an entry.
func (c *FakeConntrack) Add(mark uint32, dstPort uint16) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Entries = append(c.Entries, FakeFlow{mark, dstPort})
}

// Count is the number of entries whose mark carries device id.
func (c *FakeConntrack) Count(id uint16) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, e := range c.Entries {
		if MarkDevice(e.Mark) == id {
			n++
		}
	}
	return n
}
