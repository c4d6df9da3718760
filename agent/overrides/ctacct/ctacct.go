// Package ctacct counts each device's traffic from the kernel's connection
// tracking table, for daily budgets (daemon.Accounting).
//
// Why conntrack and not addresses: every connection a device takes part in
// carries the device's ID in its conntrack mark (rules.DeviceMark, set in
// the kernel from the packet's source MAC), so a device's bytes are summed
// by that ID — never by addresses the agent learnt, which change and lag.
// Byte counters on conntrack entries need nf_conntrack_acct=1 (OpenWrt
// turns it on; Enable sets it in the agent's network namespace).
//
// Each Sample dumps the table once (both families), and for every marked
// entry adds what its counters grew since the previous Sample (a new entry:
// all of its bytes). What a connection that opened and closed between two
// samples moved is not seen: for "was the child using the internet this
// minute" the long-lived flows of real use (video, games, calls) dominate;
// the miss is stated in the README.
package ctacct

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/famguard/famguard/rules"
)

// Lister lists the conntrack table (netlink.ConntrackTableList in
// production; a fake in tests).
type Lister func(family netlink.InetFamily) ([]*netlink.ConntrackFlow, error)

// Reader keeps the previous sample's counters per connection.
type Reader struct {
	list Lister
	prev map[flowKey]uint64
	// Entries is how many marked entries the last Sample saw (status, bench).
	Entries int
}

// flowKey identifies a connection across samples: its original tuple, and
// the reply source (NAT can give two flows one original tuple). Not the
// mark: it changes when a device goes offline, and the flow is the same.
type flowKey struct {
	proto        uint8
	zone         uint16
	src, dst     netip.Addr
	sport, dport uint16
	replySrc     netip.Addr
	replySport   uint16
}

// New reads the kernel's table through list (nil: netlink).
func New(list Lister) *Reader {
	if list == nil {
		list = func(f netlink.InetFamily) ([]*netlink.ConntrackFlow, error) {
			flows, err := netlink.ConntrackTableList(netlink.ConntrackTable, f)
			if errors.Is(err, netlink.ErrDumpInterrupted) {
				// The table changed during the dump: what came is still
				// worth counting; a missed entry is counted next minute.
				err = nil
			}
			return flows, err
		}
	}
	return &Reader{list: list, prev: map[flowKey]uint64{}}
}

func addr(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

// Sample is the bytes (both directions) per device ID since the previous
// Sample. The first Sample only sets the baseline: it returns what every
// entry moved since it was created, which callers should not count.
func (r *Reader) Sample() (map[uint16]uint64, error) {
	out := map[uint16]uint64{}
	cur := make(map[flowKey]uint64, len(r.prev))
	var errs []error
	for _, fam := range []netlink.InetFamily{unix.AF_INET, unix.AF_INET6} {
		flows, err := r.list(fam)
		if err != nil {
			errs = append(errs, fmt.Errorf("listing conntrack (family %d): %w", fam, err))
			continue
		}
		for _, f := range flows {
			id := rules.MarkDevice(f.Mark)
			if id == 0 {
				continue
			}
			k := flowKey{proto: f.Forward.Protocol, zone: f.Zone, src: addr(f.Forward.SrcIP), dst: addr(f.Forward.DstIP),
				sport: f.Forward.SrcPort, dport: f.Forward.DstPort, replySrc: addr(f.Reverse.SrcIP), replySport: f.Reverse.SrcPort}
			total := f.Forward.Bytes + f.Reverse.Bytes
			cur[k] = total
			if p, ok := r.prev[k]; ok && total >= p {
				out[id] += total - p
			} else {
				out[id] += total // new (or a reused tuple): all its bytes are new
			}
		}
	}
	if len(errs) == 2 {
		return nil, errors.Join(errs...) // keep the old baseline
	}
	r.prev, r.Entries = cur, len(cur)
	return out, errors.Join(errs...)
}

// AcctSysctl is where the kernel's per-connection byte counters are turned on.
const AcctSysctl = "/proc/sys/net/netfilter/nf_conntrack_acct"

// Enabled reports whether the kernel keeps byte counters on connections.
// The agent never changes the setting itself (OpenWrt turns it on; a lab
// sets it in its router namespace): without it budgets cannot count, which
// status and the log say.
func Enabled() (bool, error) {
	b, err := os.ReadFile(AcctSysctl)
	if err != nil {
		return false, fmt.Errorf("%s: %w (is nf_conntrack loaded?)", AcctSysctl, err)
	}
	return len(b) > 0 && b[0] == '1', nil
}
