package dnsfilter

// Batched datagram I/O: recvmmsg and sendmmsg.
//
// Why. Profiled under dns-bench, about 70 % of the filter's CPU time was
// system calls: a read and a write per query, and for a forwarded one a write
// and a read to the upstream too. On the machines measured (a VM, with the
// kernel's speculation mitigations on every entry) a system call's fixed
// cost is larger than the packet's own: sending and receiving one 40-byte
// datagram over loopback (BenchmarkLoopbackBatch, 2-core VM at load 8)
// took 17–19 µs one call each, 3.7–5.7 µs per datagram in batches of 8,
// 2.3–3.7 µs in batches of 32. So the listener reads
// whatever the socket holds in one recvmmsg, and answers go out gathered in
// one sendmmsg (listen.go); the upstream's answers are read the same way
// (upstream.go).
//
// Why not golang.org/x/net/ipv4's ReadBatch/WriteBatch: they pull in x/net's
// internal socket package (and ipv4, ipv6, bpf, iana) for two system calls,
// and the router binary has some 65 KB left of its budget. This is the
// direct form: the kernel's struct mmsghdr, filled from Go memory, and the
// socket's RawConn, so that waiting for readiness goes through Go's poller
// as any other socket read.
//
// The calls are raw (RawSyscall: the runtime is not told of a system
// call): with MSG_DONTWAIT neither ever blocks, and a sendmmsg of a batch
// over loopback runs longer than the runtime's monitor tick (20 µs). Told
// of it (entersyscall), the monitor takes the processor away mid-call and
// wakes another thread to run goroutines, and keeps waking itself every
// 20 µs; with the filter on one core (a router's, the benchmark's) those
// threads only take turns on it. perf stat on the filter at 100 k domains,
// 4 s of dns-bench's throughput phase, the two builds in turn: 53,356 and
// 55,103 context switches, 15,745 and 15,838 nanosleeps, 12,277 and 13,217
// futex calls before; 19,380 and 18,772, 707 and 2,150, 326 and 387 raw.
// CPU per query, six rounds in turn: median 15.9 µs before, 15.2 raw
// (paired rounds −2 to −9 %, one +4 %); q/s within 3 %. (An earlier try,
// under other sessions' load, saw q/s halve; six quiet rounds did not.)

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is the kernel's struct mmsghdr: Go lays it out as C does on every
// architecture (the Msghdr, a uint32, the padding to the Msghdr's alignment).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// peer is a datagram's peer address in the kernel's own form (a sockaddr_in
// or sockaddr_in6 and its length), kept raw so that the answer goes back to
// exactly the address (and IPv6 scope) the query came from, with no
// conversion per query.
type peer struct {
	sa  unix.RawSockaddrInet6 // large enough for a sockaddr_in too
	len uint32
}

// peerOf is the raw form of a for a socket of family AF_INET6 (v6: IPv4
// addresses v4-mapped, as a dual-stack socket sees them) or AF_INET.
func peerOf(a netip.AddrPort, v6 bool) peer {
	var p peer
	port := (*[2]byte)(unsafe.Pointer(&p.sa.Port))
	binary.BigEndian.PutUint16(port[:], a.Port())
	if v6 || !a.Addr().Unmap().Is4() {
		p.sa.Family = unix.AF_INET6
		p.sa.Addr = a.Addr().As16()
		p.len = unix.SizeofSockaddrInet6
		return p
	}
	sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&p.sa))
	sa4.Family = unix.AF_INET
	sa4.Addr = a.Addr().Unmap().As4()
	p.len = unix.SizeofSockaddrInet4
	return p
}

// addrPort is p as an address and port (no zone: the neighbour table and the
// limiter have none); invalid for a family other than IPv4 and IPv6.
func (p *peer) addrPort() netip.AddrPort {
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&p.sa.Port))[:])
	switch p.sa.Family {
	case unix.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16(p.sa.Addr), port)
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&p.sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	}
	return netip.AddrPort{}
}

// batchReader reads up to len(bufs) datagrams a call into its own buffers.
// One goroutine uses it at a time.
type batchReader struct {
	rc    syscall.RawConn
	msgs  []mmsghdr
	iovs  []unix.Iovec
	peers []peer
	bufs  [][]byte
	oobs  [][]byte
}

// newBatchReader reads batches of up to size datagrams of up to bufLen
// bytes (a longer one is cut off and flagged), with up to oobLen bytes of
// control messages each (0: none asked for).
func newBatchReader(rc syscall.RawConn, size, bufLen, oobLen int) *batchReader {
	r := &batchReader{rc: rc, msgs: make([]mmsghdr, size), iovs: make([]unix.Iovec, size), peers: make([]peer, size),
		bufs: make([][]byte, size), oobs: make([][]byte, size)}
	for i := range size {
		r.bufs[i] = make([]byte, bufLen)
		r.iovs[i].Base = &r.bufs[i][0]
		r.iovs[i].SetLen(bufLen)
		if oobLen > 0 {
			r.oobs[i] = make([]byte, oobLen)
		}
	}
	return r
}

// read waits for datagrams and reads as many as are queued, up to the
// batch size. Datagram i of the n read is r.payload(i), r.oob(i), r.peers[i]
// and r.truncated(i).
func (r *batchReader) read() (int, error) {
	for i := range r.msgs {
		h := &r.msgs[i].hdr
		*h = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&r.peers[i].sa)), Namelen: unix.SizeofSockaddrInet6, Iov: &r.iovs[i]}
		h.SetIovlen(1)
		if len(r.oobs[i]) > 0 {
			h.Control = &r.oobs[i][0]
			h.SetControllen(len(r.oobs[i]))
		}
		r.msgs[i].n = 0
	}
	var n int
	var errno syscall.Errno
	err := r.rc.Read(func(fd uintptr) bool {
		for {
			got, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.msgs[0])), uintptr(len(r.msgs)), unix.MSG_DONTWAIT, 0, 0)
			switch e {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false // wait in the poller until readable
			}
			n, errno = int(got), e
			return true
		}
	})
	if err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, errno
	}
	for i := range n {
		r.peers[i].len = r.msgs[i].hdr.Namelen
	}
	return n, nil
}

func (r *batchReader) payload(i int) []byte { return r.bufs[i][:min(int(r.msgs[i].n), len(r.bufs[i]))] }
func (r *batchReader) oob(i int) []byte {
	return r.oobs[i][:min(int(r.msgs[i].hdr.Controllen), len(r.oobs[i]))]
}
func (r *batchReader) truncated(i int) bool { return r.msgs[i].hdr.Flags&unix.MSG_TRUNC != 0 }

// outgoing is one datagram to send: to a peer (none, len 0, on a connected
// socket),
// with control messages (the answer's source address; nil: the kernel
// picks).
type outgoing struct {
	b   []byte
	to  peer
	oob []byte
}

// batchWriter sends datagrams in batches. One goroutine uses it at a time.
type batchWriter struct {
	rc   syscall.RawConn
	msgs []mmsghdr
	iovs []unix.Iovec
}

func newBatchWriter(rc syscall.RawConn, size int) *batchWriter {
	return &batchWriter{rc: rc, msgs: make([]mmsghdr, size), iovs: make([]unix.Iovec, size)}
}

// write sends every datagram of out, in as few system calls as it can. A
// datagram the kernel refuses (an unreachable address, a firewall's EPERM)
// is dropped, as a single write's error is for a UDP answer, and the rest
// still go; failed counts them and err is the last such error. An error of
// the socket itself (closed) ends the write.
func (w *batchWriter) write(out []outgoing) (failed int, err error) {
	for len(out) > 0 {
		batch := out[:min(len(out), len(w.msgs))]
		for i := range batch {
			o := &batch[i]
			if len(o.b) > 0 {
				w.iovs[i].Base = &o.b[0]
			} else {
				w.iovs[i].Base = nil
			}
			w.iovs[i].SetLen(len(o.b))
			h := &w.msgs[i].hdr
			*h = unix.Msghdr{Iov: &w.iovs[i]}
			h.SetIovlen(1)
			if o.to.len > 0 {
				h.Name, h.Namelen = (*byte)(unsafe.Pointer(&o.to.sa)), o.to.len
			}
			if len(o.oob) > 0 {
				h.Control = &o.oob[0]
				h.SetControllen(len(o.oob))
			}
		}
		var sent int
		var errno syscall.Errno
		rerr := w.rc.Write(func(fd uintptr) bool {
			for {
				n, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&w.msgs[0])), uintptr(len(batch)), unix.MSG_DONTWAIT, 0, 0)
				switch e {
				case unix.EINTR:
					continue
				case unix.EAGAIN:
					return false // the send queue is full: wait until writable
				}
				sent, errno = int(n), e
				return true
			}
		})
		if rerr != nil {
			return failed + len(out), rerr
		}
		if errno != 0 {
			// The first datagram of the batch failed (the kernel reports an
			// error only when nothing was sent): drop it, go on with the rest.
			failed++
			err = errno
			sent = 1
		}
		clear(w.msgs[:len(batch)]) // no pointers kept into the callers' buffers
		clear(w.iovs[:len(batch)])
		out = out[sent:]
	}
	return failed, err
}

// sender sends the datagrams queued on one socket, gathered: whoever has a
// datagram to send queues it and goes on, and the sender's goroutine,
// woken once for however many are queued by the time it runs, sends them
// all with sendmmsg.
//
// Woken, it first yields (runtime.Gosched): with one core (GOMAXPROCS=1, a
// router's or the benchmark's) the goroutine just woken runs next, before
// the other workers already runnable, and would send every answer on its
// own; yielding lets those workers queue theirs first. With nothing else
// runnable (one query at a time) the yield returns at once.
type sender struct {
	w     *batchWriter
	onErr func(error) // told when the kernel refuses a datagram (nil: ignored)
	mu    sync.Mutex
	q     []outgoing
	wake  chan struct{}
}

func newSender(rc syscall.RawConn, onErr func(error)) *sender {
	return &sender{w: newBatchWriter(rc, udpBatch), onErr: onErr, wake: make(chan struct{}, 1)}
}

// senderQueue bounds a sender's queue. Workers no longer wait for their own
// write, so while the socket cannot send (its send buffer full) answers
// would pile up without bound; beyond this they are dropped, as the kernel
// drops datagrams a full queue cannot take.
const senderQueue = maxUDPInFlight

// send queues o (dropped when the queue is full).
func (s *sender) send(o outgoing) {
	s.mu.Lock()
	if len(s.q) >= senderQueue {
		s.mu.Unlock()
		return
	}
	s.q = append(s.q, o)
	first := len(s.q) == 1
	s.mu.Unlock()
	if first {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// run sends what is queued whenever woken, until ctx ends or the socket is
// closed.
func (s *sender) run(ctx context.Context) {
	var spare []outgoing
	for {
		select {
		case <-s.wake:
		case <-ctx.Done():
			return
		}
		runtime.Gosched()
		s.mu.Lock()
		batch := s.q
		s.q = spare[:0]
		s.mu.Unlock()
		_, err := s.w.write(batch)
		clear(batch) // let the datagrams go
		spare = batch
		switch {
		case err == nil:
		case errors.Is(err, net.ErrClosed):
			return
		case s.onErr != nil:
			s.onErr(err)
		}
	}
}
