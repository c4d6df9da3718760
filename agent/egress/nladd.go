package egress

// The add path on its own netlink socket. Add runs once for every new
// address a strict class is answered, between the upstream's answer and
// ours, so its cost is DNS latency. The netlink library's generic request
// path costs, per call, a 64 KiB receive buffer on the heap, a getsockname
// and a read deadline on top of the two syscalls; this one builds the
// ~70-byte message in a reused buffer and does a sendto and a recvfrom
// (the kernel handles the message inside sendto, so the acknowledgement
// is already queued when recvfrom asks). README.md has both figures.

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"

	"golang.org/x/sys/unix"
)

// Constants of the kernel's ipset netlink protocol
// (include/uapi/linux/netfilter/ipset/ip_set.h).
const (
	ipsetProtocol     = 6 // what the netlink library speaks too
	ipsetCmdAdd       = 9
	ipsetAttrProtocol = 1
	ipsetAttrSetname  = 2
	ipsetAttrData     = 7
	ipsetAttrLineno   = 9
	ipsetAttrIP       = 1
	ipsetAttrTimeout  = 6
	ipsetAttrIPv4     = 1
	ipsetAttrIPv6     = 2
	ipsetErrHashFull  = 4352 // IPSET_ERR_HASH_FULL, the hash types' first own error
	nlaNested         = 0x8000
	nlaNetByteorder   = 0x4000
)

type adder struct {
	mu   sync.Mutex
	fd   int
	seq  uint32
	msg  []byte
	resp []byte
}

func newAdder() (*adder, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, err
	}
	// A kernel that does not answer within a second is an error, not a
	// hung DNS filter.
	tv := unix.Timeval{Sec: 1}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &adder{fd: fd, msg: make([]byte, 0, 128), resp: make([]byte, 4096)}, nil
}

func (a *adder) close() { unix.Close(a.fd) }

// attr appends a netlink attribute (4-byte aligned).
func attr(b []byte, typ uint16, val []byte) []byte {
	b = binary.LittleEndian.AppendUint16(b, uint16(4+len(val)))
	b = binary.LittleEndian.AppendUint16(b, typ)
	b = append(b, val...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// nest starts a nested attribute; end fixes its length.
func nest(b []byte, typ uint16) ([]byte, int) {
	return append(b, 0, 0, byte(typ), byte(typ>>8)), len(b)
}

func end(b []byte, start int) []byte {
	binary.LittleEndian.PutUint16(b[start:], uint16(len(b)-start))
	return b
}

// add puts addr in set with timeout (seconds), replacing an existing
// entry's timeout (no NLM_F_EXCL), and waits for the kernel's answer.
func (a *adder) add(set string, addr netip.Addr, timeout uint32) error {
	if len(set) > maxNameLen {
		return fmt.Errorf("ipset name %q too long", set)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seq++
	b := a.msg[:0]
	b = binary.LittleEndian.AppendUint32(b, 0) // length, below
	b = binary.LittleEndian.AppendUint16(b, unix.NFNL_SUBSYS_IPSET<<8|ipsetCmdAdd)
	b = binary.LittleEndian.AppendUint16(b, unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	b = binary.LittleEndian.AppendUint32(b, a.seq)
	b = binary.LittleEndian.AppendUint32(b, 0) // port id: the kernel fills it in
	b = append(b, unix.AF_NETLINK, 0, 0, 0)    // nfgenmsg: family, version 0, res_id 0
	b = attr(b, ipsetAttrProtocol, []byte{ipsetProtocol})
	b = attr(b, ipsetAttrSetname, append([]byte(set), 0))
	b, data := nest(b, ipsetAttrData|nlaNested)
	b = attr(b, ipsetAttrTimeout|nlaNetByteorder, binary.BigEndian.AppendUint32(nil, timeout))
	b, ip := nest(b, ipsetAttrIP|nlaNested)
	if addr.Is4() {
		v := addr.As4()
		b = attr(b, ipsetAttrIPv4|nlaNetByteorder, v[:])
	} else {
		v := addr.As16()
		b = attr(b, ipsetAttrIPv6|nlaNetByteorder, v[:])
	}
	b = end(b, ip)
	b = attr(b, ipsetAttrLineno|nlaNetByteorder, []byte{0, 0, 0, 0})
	b = end(b, data)
	binary.LittleEndian.PutUint32(b, uint32(len(b)))
	a.msg = b
	if err := unix.Sendto(a.fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("ipset add: netlink send: %w", err)
	}
	for {
		n, _, err := unix.Recvfrom(a.fd, a.resp, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("ipset add: netlink receive: %w", err)
		}
		errno, found, err := ackOf(a.resp[:n], a.seq)
		switch {
		case err != nil:
			return fmt.Errorf("ipset add: %w", err)
		case !found:
			continue // a late answer to an earlier request
		case errno == 0:
			return nil
		case errno == ipsetErrHashFull:
			return ErrFull
		case errno >= 4096:
			return fmt.Errorf("ipset add %s %s: ipset error %d", set, addr, errno)
		default:
			return fmt.Errorf("ipset add %s %s: %w", set, addr, unix.Errno(errno))
		}
	}
}

// ackOf finds, in one received datagram of netlink messages, the
// acknowledgement (NLMSG_ERROR) of request seq and returns its errno (0:
// success).
func ackOf(m []byte, seq uint32) (errno int32, found bool, err error) {
	for len(m) >= unix.NLMSG_HDRLEN {
		l := int(binary.LittleEndian.Uint32(m))
		if l < unix.NLMSG_HDRLEN || l > len(m) {
			return 0, false, fmt.Errorf("malformed netlink answer")
		}
		typ, s := binary.LittleEndian.Uint16(m[4:]), binary.LittleEndian.Uint32(m[8:])
		if typ == unix.NLMSG_ERROR && s == seq && l >= unix.NLMSG_HDRLEN+4 {
			return -int32(binary.LittleEndian.Uint32(m[unix.NLMSG_HDRLEN:])), true, nil
		}
		step := (l + 3) &^ 3
		if step >= len(m) {
			break
		}
		m = m[step:]
	}
	return 0, false, nil
}
