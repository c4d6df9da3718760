package egress

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Netlink is the Kernel of the agent: ipsets over one netfilter netlink
// socket, kept open (opened in the network namespace of the caller).
type Netlink struct {
	h   *netlink.Handle
	add *adder // the hot path: nladd.go
}

// NewNetlink opens the netlink socket.
func NewNetlink() (*Netlink, error) {
	h, err := netlink.NewHandle(unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("ipset netlink socket: %w", err)
	}
	a, err := newAdder()
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("ipset netlink socket: %w", err)
	}
	return &Netlink{h: h, add: a}, nil
}

// Close closes the sockets.
func (n *Netlink) Close() { n.h.Close(); n.add.close() }

const setType = "hash:ip"

// Create implements Kernel.
func (n *Netlink) Create(name string, v6 bool, maxElem uint32) error {
	family := uint8(unix.AF_INET)
	if v6 {
		family = unix.AF_INET6
	}
	def := uint32(MinTimeout.Seconds()) // every Add sets its own
	err := n.h.IpsetCreate(name, setType, netlink.IpsetCreateOptions{Family: family, Timeout: &def, MaxElements: maxElem})
	if !errors.Is(err, unix.EEXIST) {
		if err != nil {
			return fmt.Errorf("ipset create %s %s family %s: %w (is the kernel module ip_set_hash_ip loaded?)", name, setType, familyName(family), err)
		}
		return nil
	}
	r, err := n.h.IpsetList(name)
	if err != nil {
		return fmt.Errorf("ipset %s exists but cannot be read: %w", name, err)
	}
	if r.TypeName != setType || r.Family != family || r.Timeout == nil {
		return fmt.Errorf("ipset %s exists as %s family %s without the timeouts famguard needs: it is famguard's name for a strict set; remove it (ipset destroy %s) and reload famguard", name, r.TypeName, familyName(r.Family), name)
	}
	return nil
}

func familyName(f uint8) string {
	switch f {
	case unix.AF_INET:
		return "inet"
	case unix.AF_INET6:
		return "inet6"
	}
	return fmt.Sprint(f)
}

// AddBatch implements Kernel: one write and one acknowledgement for up to
// 512 entries, a list message per set (nladd.go).
func (n *Netlink) AddBatch(adds []KernelAdd) { n.add.addBatch(adds) }

// Add is a batch of one.
func (n *Netlink) Add(name string, addr netip.Addr, timeout uint32) error {
	return n.add.add(name, addr, timeout)
}

// addLib is Add through the netlink library's generic path: what Add was,
// kept to compare with (BenchmarkNetlinkAdd) and as the reference the
// tests check the hand-built message against.
func (n *Netlink) addLib(name string, addr netip.Addr, timeout uint32) error {
	err := n.h.IpsetAdd(name, &netlink.IPSetEntry{IP: addr.AsSlice(), Timeout: &timeout, Replace: true})
	// The first type-specific error of the hash types is "hash is full"
	// (IPSET_ERR_HASH_FULL in the kernel's ip_set_hash.h).
	var ie nl.IPSetError
	if errors.As(err, &ie) && ie == nl.IPSetError(nl.IPSET_ERR_TYPE_SPECIFIC) {
		return ErrFull
	}
	return err
}

// Info implements Kernel.
func (n *Netlink) Info(name string) (SetInfo, error) {
	r, err := n.h.IpsetList(name)
	if err != nil {
		return SetInfo{}, fmt.Errorf("ipset list %s: %w", name, err)
	}
	return SetInfo{Name: name, Entries: int(r.NumEntries), MaxElem: int(r.MaxElements), MemBytes: int(r.SizeInMemory)}, nil
}

// Destroy implements Kernel and SetRemover.
func (n *Netlink) Destroy(name string) error {
	err := n.h.IpsetDestroy(name)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	// The kernel answers IPSET_ERR_BUSY for a set a rule references.
	var ie nl.IPSetError
	if errors.As(err, &ie) && ie == nl.IPSetError(nl.IPSET_ERR_BUSY) {
		err = ErrInUse
	}
	return fmt.Errorf("ipset destroy %s: %w", name, err)
}

// List implements SetRemover: every set's name, once (the kernel's dump
// of a large set spans several messages).
func (n *Netlink) List() ([]string, error) {
	all, err := n.h.IpsetListAll()
	if errors.Is(err, unix.EINVAL) {
		// nfnetlink's answer when no ipset subsystem is in the kernel
		// (on OpenWrt: kmod-ipt-ipset not installed, or not loadable):
		// then there is no set at all, famguard's included. Failing here
		// would fail `famguard cleanup`, and with it the package's prerm.
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, r := range all {
		if r.SetName != "" && (len(names) == 0 || names[len(names)-1] != r.SetName) {
			names = append(names, r.SetName)
		}
	}
	return names, nil
}
