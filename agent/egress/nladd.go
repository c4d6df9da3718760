package egress

// The add path on its own netlink socket. Adds run for every new address a
// strict class is answered, between the upstream's answer and ours, so
// their cost is DNS latency and DNS throughput. The netlink library's
// generic request path costs, per call, a 64 KiB receive buffer on the heap,
// a getsockname and a read deadline on top of the two syscalls; this one
// builds the messages in a reused buffer.
//
// A batch of adds is one write and one acknowledgement. Each set's entries
// go in one message, in ipset's list form (IPSET_ATTR_ADT: many entries,
// each with its line number), and only the write's last message asks for
// an ACK (NLM_F_ACK). The kernel handles the messages one by one, in order,
// inside the write (netlink_rcv_skb), and answers every message that fails
// with an error message of its own whether or not it asked for an ACK; the
// answers queue on the socket in the order of the messages. So when the
// last message's answer arrives, every earlier message either succeeded
// silently or its error has been read already. In the list form the kernel
// adds the entries in order and stops at the first that fails; its error
// message carries that entry's line number: the entries before it are in
// the set, it failed, the ones after it were not tried. Those are sent
// again one message each (the same write-and-one-ACK), so that every entry
// gets its own answer: one failing entry fails only itself, and a full set
// costs one more round trip, not one per entry. Why the list form: the
// kernel's cost per message (its netlink dispatch, the set lookup by name)
// is most of an add's; README.md has the figures.
//
// Fail closed: an entry counts as added only when its write's last answer
// was read and no error named it. A receive that fails (the kernel's answer
// lost to a full receive buffer, ENOBUFS, or none within a second) fails
// every entry of the write that had no answer of its own.
//
// Byte order: netlink headers and the attributes' headers are in the host's
// order (binary.NativeEndian: the big-endian mips routers too); the values
// flagged NLA_F_NET_BYTEORDER (timeout, address) in network order; the line
// numbers, which the kernel reads and writes back as plain u32, in the
// host's.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
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
	ipsetAttrADT      = 8
	ipsetAttrLineno   = 9
	ipsetAttrIP       = 1
	ipsetAttrTimeout  = 6
	ipsetAttrIPv4     = 1
	ipsetAttrIPv6     = 2
	ipsetErrHashFull  = 4352 // IPSET_ERR_HASH_FULL, the hash types' first own error
	nlaNested         = 0x8000
	nlaNetByteorder   = 0x4000
)

// Bounds of one write. The kernel answers every failing message with an
// error message of its own (a few hundred bytes of receive buffer each,
// counted with the kernel's overhead; a failing list message's answer
// carries a copy of the message, up to about 6 KiB). maxPerSend
// one-entry messages or maxListsPerWrite list messages of maxPerList
// entries fit the default receive buffer (about 208 KiB) even when every
// one fails, so no error is lost.
const (
	maxPerSend       = 128
	maxPerList       = 128
	maxListsPerWrite = 4
	respBuf          = 16 << 10 // one answer: a failing list message's copy fits
)

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

	// Scratch of addBatch, reused.
	lists []listMsg
	idx   []int // the entries of every list, in order
	retry []int
}

// listMsg is one list message of a write: its sequence number and the
// entries it holds (indexes into the batch), line number i+1 for idx[i].
type listMsg struct {
	seq uint32
	idx []int
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
	// more of them fit the receive buffer. (ipset's own error answer to a
	// list message, which carries the failing line number, keeps its copy.)
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	return &adder{fd: fd, msg: make([]byte, 0, 8192), resp: make([]byte, respBuf)}, nil
}

func (a *adder) close() { unix.Close(a.fd) }

// attr appends a netlink attribute (4-byte aligned).
func attr(b []byte, typ uint16, val []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(4+len(val)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, val...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// nest starts a nested attribute; end fixes its length.
func nest(b []byte, typ uint16) ([]byte, int) {
	start := len(b)
	b = binary.NativeEndian.AppendUint16(b, 0) // length: end
	return binary.NativeEndian.AppendUint16(b, typ), start
}

func end(b []byte, start int) []byte {
	binary.NativeEndian.PutUint16(b[start:], uint16(len(b)-start))
	return b
}

// appendHeader starts an IPSET_CMD_ADD message for set; the caller fixes
// its length with end(b, start).
func appendHeader(b []byte, seq uint32, ack bool, set string) (_ []byte, start int) {
	start = len(b)
	flags := uint16(unix.NLM_F_REQUEST)
	if ack {
		flags |= unix.NLM_F_ACK
	}
	b = binary.NativeEndian.AppendUint32(b, 0) // length: end
	b = binary.NativeEndian.AppendUint16(b, unix.NFNL_SUBSYS_IPSET<<8|ipsetCmdAdd)
	b = binary.NativeEndian.AppendUint16(b, flags)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0) // port id: the kernel fills it in
	b = append(b, unix.AF_NETLINK, 0, 0, 0)    // nfgenmsg: family, version 0, res_id 0
	b = attr(b, ipsetAttrProtocol, []byte{ipsetProtocol})
	b = binary.NativeEndian.AppendUint16(b, uint16(4+len(set)+1))
	b = binary.NativeEndian.AppendUint16(b, ipsetAttrSetname)
	b = append(b, set...)
	b = append(b, 0)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b, start
}

// endMsg writes the message's length (32 bits, unlike an attribute's).
func endMsg(b []byte, start int) []byte {
	binary.NativeEndian.PutUint32(b[start:], uint32(len(b)-start))
	return b
}

// appendData appends one entry: addr with timeout (seconds), replacing an
// existing entry's timeout (no NLM_F_EXCL), with its line number.
func appendData(b []byte, addr netip.Addr, timeout, lineno uint32) []byte {
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
	b = attr(b, ipsetAttrLineno, binary.NativeEndian.AppendUint32(nil, lineno))
	return end(b, data)
}

// appendAdd appends one IPSET_CMD_ADD message of one entry.
func appendAdd(b []byte, seq uint32, ack bool, set string, addr netip.Addr, timeout uint32) []byte {
	b, start := appendHeader(b, seq, ack, set)
	return endMsg(appendData(b, addr, timeout, 0), start)
}

// appendList appends one IPSET_CMD_ADD message in the list form: the
// entries idx of adds (all to set), line numbers from 1.
func appendList(b []byte, seq uint32, ack bool, set string, adds []KernelAdd, idx []int) []byte {
	b, start := appendHeader(b, seq, ack, set)
	// The list form needs a line number of its own; the kernel writes the
	// failing entry's there in its error message.
	b = attr(b, ipsetAttrLineno, []byte{0, 0, 0, 0})
	b, adt := nest(b, ipsetAttrADT|nlaNested)
	for i, j := range idx {
		b = appendData(b, adds[j].Addr, adds[j].Timeout, uint32(i+1))
	}
	return endMsg(end(b, adt), start)
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
	// Entries the kernel would refuse to parse are answered here.
	for i := range adds {
		e := &adds[i]
		e.Err = nil
		switch {
		case len(e.Set) == 0 || len(e.Set) > maxNameLen:
			e.Err = fmt.Errorf("ipset name %q: must be 1 to %d characters", e.Set, maxNameLen)
		case !e.Addr.IsValid():
			e.Err = fmt.Errorf("ipset add %s: invalid address %v", e.Set, e.Addr)
		}
	}
	// One list per set (per maxPerList entries), in the order of the
	// sets' first entries. A batch names few sets (a class's two), so
	// finding an entry's list is a short scan.
	a.idx, a.lists, a.retry = a.idx[:0], a.lists[:0], a.retry[:0]
	for i := range adds {
		if adds[i].Err != nil || slices.ContainsFunc(a.lists, func(l listMsg) bool { return adds[l.idx[0]].Set == adds[i].Set }) {
			continue
		}
		from := len(a.idx)
		for j := i; j < len(adds); j++ {
			if adds[j].Err == nil && adds[j].Set == adds[i].Set {
				a.idx = append(a.idx, j)
			}
		}
		for k := from; k < len(a.idx); k += maxPerList {
			a.lists = append(a.lists, listMsg{idx: a.idx[k:min(k+maxPerList, len(a.idx))]})
		}
	}
	for k := 0; k < len(a.lists); k += maxListsPerWrite {
		a.sendLists(adds, a.lists[k:min(k+maxListsPerWrite, len(a.lists))])
	}
	// The entries after a failing one, one message each.
	for k := 0; k < len(a.retry); k += maxPerSend {
		a.send(adds, a.retry[k:min(k+maxPerSend, len(a.retry))])
	}
}

// sendLists writes list messages (at most maxListsPerWrite) and reads the
// kernel's answers; the entries a failing message left untried go to
// a.retry.
func (a *adder) sendLists(adds []KernelAdd, lists []listMsg) {
	b := a.msg[:0]
	for i := range lists {
		a.seq++
		lists[i].seq = a.seq
		l := lists[i]
		b = appendList(b, l.seq, i == len(lists)-1, adds[l.idx[0]].Set, adds, l.idx)
	}
	a.msg = b
	var answeredBuf [maxListsPerWrite]bool
	answered := answeredBuf[:len(lists)]
	first := lists[0].seq
	err := a.exchange(b, first, len(lists), answered, func(i int, errno int32, echo []byte) {
		l := lists[i]
		if errno == 0 {
			return
		}
		n := int(linenoOf(echo))
		if n < 1 || n > len(l.idx) {
			// The message as a whole failed (a missing set): every entry.
			for _, j := range l.idx {
				adds[j].Err = addError(adds[j].Set, adds[j].Addr, errno)
			}
			return
		}
		// Entries before line n are in the set; n failed; the rest
		// were not tried.
		j := l.idx[n-1]
		adds[j].Err = addError(adds[j].Set, adds[j].Addr, errno)
		a.retry = append(a.retry, l.idx[n:]...)
	})
	if err != nil {
		for i, l := range lists {
			if !answered[i] {
				for _, j := range l.idx {
					adds[j].Err = err
				}
			}
		}
	}
}

// send writes the entries idx of adds, one message each (at most
// maxPerSend), and reads the kernel's answers.
func (a *adder) send(adds []KernelAdd, idx []int) {
	b := a.msg[:0]
	first := a.seq + 1
	for i, j := range idx {
		a.seq++
		b = appendAdd(b, a.seq, i == len(idx)-1, adds[j].Set, adds[j].Addr, adds[j].Timeout)
	}
	a.msg = b
	var answeredBuf [maxPerSend]bool
	answered := answeredBuf[:len(idx)]
	err := a.exchange(b, first, len(idx), answered, func(i int, errno int32, _ []byte) {
		if errno != 0 {
			j := idx[i]
			adds[j].Err = addError(adds[j].Set, adds[j].Addr, errno)
		}
	})
	if err != nil {
		for i, j := range idx {
			if !answered[i] {
				adds[j].Err = err
			}
		}
	}
}

// exchange writes msgs, n messages numbered from seq first, the last one
// asking for an ACK, and reads answers until the last one's: fn gets each
// message's answer (its index, errno, the rest of the answer). It returns
// an error when the write or a read failed: the messages not answered may
// or may not have been handled.
func (a *adder) exchange(msgs []byte, first uint32, n int, answered []bool, fn func(i int, errno int32, echo []byte)) error {
	if _, err := unix.Write(a.fd, msgs); err != nil {
		return fmt.Errorf("ipset add: netlink send: %w", err)
	}
	for !answered[n-1] {
		got, err := unix.Read(a.fd, a.resp)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("ipset add: netlink receive: %w", err)
		}
		err = acks(a.resp[:got], func(seq uint32, errno int32, echo []byte) {
			// seq-first wraps to a large number for an earlier write's
			// late answer.
			if i := seq - first; i < uint32(n) && !answered[i] {
				answered[i] = true
				fn(int(i), errno, echo)
			}
		})
		if err != nil {
			return fmt.Errorf("ipset add: %w", err)
		}
	}
	return nil
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
// datagram of netlink messages, with its request's sequence number, errno
// (0: success) and what follows the errno (the request's header, or with
// ipset's list form the whole request).
func acks(m []byte, fn func(seq uint32, errno int32, echo []byte)) error {
	for len(m) >= unix.NLMSG_HDRLEN {
		l := int(binary.NativeEndian.Uint32(m))
		if l < unix.NLMSG_HDRLEN || l > len(m) {
			return errMalformed
		}
		typ, s := binary.NativeEndian.Uint16(m[4:]), binary.NativeEndian.Uint32(m[8:])
		if typ == unix.NLMSG_ERROR && l >= unix.NLMSG_HDRLEN+4 {
			fn(s, -int32(binary.NativeEndian.Uint32(m[unix.NLMSG_HDRLEN:])), m[unix.NLMSG_HDRLEN+4:l])
		}
		step := (l + 3) &^ 3
		if step >= len(m) {
			break
		}
		m = m[step:]
	}
	return nil
}

// linenoOf is the line number ipset wrote into the copy of a failed list
// message (its top-level IPSET_ATTR_LINENO), 0 when there is none.
func linenoOf(echo []byte) uint32 {
	const hdr = unix.NLMSG_HDRLEN + 4 // the request's header and nfgenmsg
	if len(echo) < hdr {
		return 0
	}
	for m := echo[hdr:]; len(m) >= 4; {
		l := int(binary.NativeEndian.Uint16(m))
		if l < 4 || l > len(m) {
			return 0
		}
		if binary.NativeEndian.Uint16(m[2:])&^(nlaNested|nlaNetByteorder) == ipsetAttrLineno && l >= 8 {
			return binary.NativeEndian.Uint32(m[4:])
		}
		m = m[min((l+3)&^3, len(m)):]
	}
	return 0
}
