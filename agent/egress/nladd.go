package egress

// The add path on its own netlink socket. Adds run for every new address a
// strict class is answered, between the upstream's answer and ours, so
// their cost is DNS latency and DNS throughput. The netlink library's
// generic request path costs, per call, a 64 KiB receive buffer on the heap,
// a getsockname and a read deadline on top of the two syscalls; this one
// builds the messages in a reused buffer.
//
// A batch of adds is one write of several netlink messages, one add each,
// and one acknowledgement: only the last message asks for an ACK
// (NLM_F_ACK). The kernel handles the messages one by one, in order, inside
// the write (netlink_rcv_skb), and answers every message that fails with
// an error message of its own whether or not it asked for an ACK; the
// answers queue on the socket in the order of the messages. So when the
// last message's ACK arrives, every earlier message either succeeded
// silently or its error has been read already, and each error names its
// message by sequence number: one failing entry fails only itself. One
// message per entry rather than ipset's list form (IPSET_ATTR_ADT, many
// entries in one message) because the list form stops at the first failing
// entry and leaves the rest undone, which would cost a round trip per
// failure when a set is full. README.md has the figures.
//
// Fail closed: an entry counts as added only when the batch's last ACK was
// read and no error named it. A receive that fails (the kernel's answer
// lost to a full receive buffer, ENOBUFS, or none within a second) fails
// every entry of the batch that had no answer of its own.

import (
	"encoding/binary"
	"errors"
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

// maxPerSend bounds the messages of one write. Why 128: every failing
// message is answered with an error message of its own (a few hundred
// bytes of receive buffer each, counted with the kernel's overhead), and
// 128 of them fit the default receive buffer (about 208 KiB), so even a
// batch of which every entry fails (a full set) loses no error.
const maxPerSend = 128

// KernelAdd is one entry of a batch: put Addr in Set with Timeout seconds
// (replacing the timeout of an entry already there). AddBatch fills in Err.
type KernelAdd struct {
	Set     string
	Addr    netip.Addr
	Timeout uint32
	Err     error
}

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
	// Connected to the kernel (port 0): plain write and read, no address
	// to allocate per call.
	if err := unix.Connect(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
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
	// Error answers without a copy of the failed request: smaller, so
	// more of them fit the receive buffer (only the errno is read).
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	return &adder{fd: fd, msg: make([]byte, 0, 1024), resp: make([]byte, 4096)}, nil
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

// appendAdd appends one IPSET_CMD_ADD message: addr into set with timeout
// (seconds), replacing an existing entry's timeout (no NLM_F_EXCL).
func appendAdd(b []byte, seq uint32, ack bool, set string, addr netip.Addr, timeout uint32) []byte {
	start := len(b)
	flags := uint16(unix.NLM_F_REQUEST)
	if ack {
		flags |= unix.NLM_F_ACK
	}
	b = binary.LittleEndian.AppendUint32(b, 0) // length, below
	b = binary.LittleEndian.AppendUint16(b, unix.NFNL_SUBSYS_IPSET<<8|ipsetCmdAdd)
	b = binary.LittleEndian.AppendUint16(b, flags)
	b = binary.LittleEndian.AppendUint32(b, seq)
	b = binary.LittleEndian.AppendUint32(b, 0) // port id: the kernel fills it in
	b = append(b, unix.AF_NETLINK, 0, 0, 0)    // nfgenmsg: family, version 0, res_id 0
	b = attr(b, ipsetAttrProtocol, []byte{ipsetProtocol})
	b = binary.LittleEndian.AppendUint16(b, uint16(4+len(set)+1))
	b = binary.LittleEndian.AppendUint16(b, ipsetAttrSetname)
	b = append(b, set...)
	b = append(b, 0)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
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
	binary.LittleEndian.PutUint32(b[start:], uint32(len(b)-start))
	return b
}

// add is a batch of one.
func (a *adder) add(set string, addr netip.Addr, timeout uint32) error {
	e := []KernelAdd{{Set: set, Addr: addr, Timeout: timeout}}
	a.addBatch(e)
	return e[0].Err
}

// addBatch puts every entry in its set and sets each entry's Err: nil
// once the kernel holds it.
func (a *adder) addBatch(adds []KernelAdd) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for len(adds) > 0 {
		n := min(len(adds), maxPerSend)
		a.send(adds[:n])
		adds = adds[n:]
	}
}

// send writes one datagram of at most maxPerSend adds and reads the
// kernel's answers to it.
func (a *adder) send(adds []KernelAdd) {
	// Entries the kernel would refuse to parse are answered here, so that
	// sequence number first+i is always adds[i].
	last := -1
	for i := range adds {
		e := &adds[i]
		e.Err = nil
		switch {
		case len(e.Set) == 0 || len(e.Set) > maxNameLen:
			e.Err = fmt.Errorf("ipset name %q: must be 1 to %d characters", e.Set, maxNameLen)
		case !e.Addr.IsValid():
			e.Err = fmt.Errorf("ipset add %s: invalid address %v", e.Set, e.Addr)
		default:
			last = i
		}
	}
	if last < 0 {
		return
	}
	first := a.seq + 1
	b := a.msg[:0]
	for i, e := range adds[:last+1] {
		a.seq++
		if e.Err != nil {
			continue // its sequence number stays unused
		}
		b = appendAdd(b, a.seq, i == last, e.Set, e.Addr, e.Timeout)
	}
	a.msg = b
	// answered[i]: the kernel said something about adds[i].
	var answeredBuf [maxPerSend]bool
	answered := answeredBuf[:last+1]
	failRest := func(err error) {
		for i := range answered {
			if !answered[i] && adds[i].Err == nil {
				adds[i].Err = err
			}
		}
	}
	if _, err := unix.Write(a.fd, b); err != nil {
		failRest(fmt.Errorf("ipset add: netlink send: %w", err))
		return
	}
	for !answered[last] {
		n, err := unix.Read(a.fd, a.resp)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			failRest(fmt.Errorf("ipset add: netlink receive: %w", err))
			return
		}
		err = acks(a.resp[:n], func(seq uint32, errno int32) {
			i := int(seq - first) // wraps to a large number for earlier batches' late answers
			if seq-first > uint32(last) {
				return
			}
			answered[i] = true
			if errno != 0 {
				adds[i].Err = addError(adds[i].Set, adds[i].Addr, errno)
			}
		})
		if err != nil {
			failRest(fmt.Errorf("ipset add: %w", err))
			return
		}
	}
}

// addError is the error of an add the kernel refused with errno.
func addError(set string, addr netip.Addr, errno int32) error {
	switch {
	case errno == ipsetErrHashFull:
		return ErrFull
	case errno >= 4096:
		return fmt.Errorf("ipset add %s %s: ipset error %d", set, addr, errno)
	default:
		return fmt.Errorf("ipset add %s %s: %w", set, addr, unix.Errno(errno))
	}
}

var errMalformed = errors.New("malformed netlink answer")

// acks calls fn for every acknowledgement (NLMSG_ERROR) in one received
// datagram of netlink messages, with its request's sequence number and
// errno (0: success).
func acks(m []byte, fn func(seq uint32, errno int32)) error {
	for len(m) >= unix.NLMSG_HDRLEN {
		l := int(binary.LittleEndian.Uint32(m))
		if l < unix.NLMSG_HDRLEN || l > len(m) {
			return errMalformed
		}
		typ, s := binary.LittleEndian.Uint16(m[4:]), binary.LittleEndian.Uint32(m[8:])
		if typ == unix.NLMSG_ERROR && l >= unix.NLMSG_HDRLEN+4 {
			fn(s, -int32(binary.LittleEndian.Uint32(m[unix.NLMSG_HDRLEN:])))
		}
		step := (l + 3) &^ 3
		if step >= len(m) {
			break
		}
		m = m[step:]
	}
	return nil
}
