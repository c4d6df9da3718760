package dnsfilter

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Limits of the listener. A query is small and answered in well under the
// upstream timeout, so these bound what a misbehaving client can hold.
const (
	maxUDPInFlight = 512             // UDP queries being answered at once; beyond that the socket buffer queues
	maxTCPConns    = 128             // TCP connections at once; more are closed on accept
	tcpIdleTimeout = 8 * time.Second // a TCP connection with no new query is closed
	tcpIOTimeout   = 4 * time.Second // to read one framed query once its length arrived, or write one answer
	udpReadBuf     = 4096            // a larger query datagram is dropped
	// udpSocketBuf is the kernel's receive queue for the UDP socket (the
	// kernel doubles it for its bookkeeping). The default (208 KiB, some
	// 270 small datagrams) overflows in under 10 ms of a 30,000 queries/s
	// flood whenever the reader is not scheduled — and an overflow drops
	// every device's queries alike, before the per-device limits can sort
	// them. 1 MiB holds about 90 ms of such a flood; it is kernel memory
	// used only while datagrams wait.
	udpSocketBuf = 1 << 20
)

// Listener is a bound DNS listener (UDP and TCP on one address).
type Listener struct {
	s    *Server
	port int // the port it listens on: it tells whose rules answer
	udp  *net.UDPConn
	tcp  *net.TCPListener

	maxConns    int           // maxTCPConns (tests lower it)
	idleTimeout time.Duration // tcpIdleTimeout (tests lower it)

	mu    sync.Mutex
	conns map[net.Conn]struct{} // open TCP connections, closed on shutdown
	done  bool
}

// Listen binds addr over UDP and TCP. Binding first lets the caller enable
// the interception rules only once something is there to answer: otherwise
// every protected device would lose DNS.
func (s *Server) Listen(addr string) (*Listener, error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, err
	}
	// The same port for TCP, also when addr asked for any port (":0").
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		return nil, err
	}
	udp := pc.(*net.UDPConn)
	recvDestination(udp)
	receiveBuffer(udp, udpSocketBuf)
	return &Listener{s: s, port: udp.LocalAddr().(*net.UDPAddr).Port, udp: udp, tcp: ln.(*net.TCPListener), maxConns: maxTCPConns, idleTimeout: tcpIdleTimeout,
		conns: map[net.Conn]struct{}{}}, nil
}

// Serve answers until ctx ends or a listener fails.
func (l *Listener) Serve(ctx context.Context) error {
	errs := make(chan error, 2)
	go func() { errs <- l.serveUDP(ctx) }()
	go func() { errs <- l.serveTCP(ctx) }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errs:
		if err == nil {
			err = errors.New("DNS listener stopped")
		}
	}
	l.mu.Lock()
	l.done = true
	for c := range l.conns {
		c.Close()
	}
	l.mu.Unlock()
	l.udp.Close()
	l.tcp.Close()
	return err
}

// ListenAndServe answers on addr over UDP and TCP until ctx ends.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	l, err := s.Listen(addr)
	if err != nil {
		return err
	}
	return l.Serve(ctx)
}

// udpBatch is how many datagrams one recvmmsg or sendmmsg moves at most
// (batch.go): beyond some 30 the fixed cost of a call is spread thin.
const udpBatch = 32

func (l *Listener) serveUDP(ctx context.Context) error {
	rc, err := l.udp.SyscallConn()
	if err != nil {
		return err
	}
	out := newSender(rc, nil)
	rctx, stop := context.WithCancel(ctx)
	replied := make(chan struct{})
	go func() { out.run(rctx); close(replied) }()
	defer func() { stop(); <-replied }()

	in := newBatchReader(rc, udpBatch, udpReadBuf, 128)
	sem := make(chan struct{}, maxUDPInFlight)
	jobs := make(chan udpJob) // to an idle worker, if one waits
	var idle atomic.Int32
	var lastOOB, replyOOB []byte
	for {
		n, err := in.read()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		for i := range n {
			q := in.payload(i)
			if in.truncated(i) || len(q) < headerLen {
				continue
			}
			// The per-client limits are applied here, before the query
			// takes one of the shared slots: a client over them costs one
			// table lookup, and its query is dropped unanswered. Dropped
			// rather than REFUSED: an answer would cost a write per flooded
			// datagram and reflect traffic at whatever source address the
			// flood carries, while a real device's stub simply retries a
			// second later.
			src := in.peers[i].addrPort().Addr().Unmap()
			tk, ok := l.s.admit(src)
			if !ok {
				continue
			}
			// Datagrams to one address carry the same control message: its
			// reply form is worked out once, not parsed anew per query.
			if oob := in.oob(i); !bytes.Equal(oob, lastOOB) {
				lastOOB = append(lastOOB[:0], oob...)
				replyOOB = sourceFor(lastOOB)
			}
			// What needs no upstream (a blocked name, REFUSED, FORMERR) is
			// answered here; only a query waiting for the upstream goes to
			// a worker. A handoff per query cost more than the answer.
			query := append([]byte(nil), q...)
			resp, fw := l.s.answerLocal(query, l.port, src)
			if fw == nil {
				if resp != nil {
					out.send(outgoing{b: resp, to: in.peers[i], oob: replyOOB})
				}
				l.s.done(tk)
				continue
			}
			j := udpJob{query: query, fw: fw, to: in.peers[i], oob: replyOOB, tk: tk}
			sem <- struct{}{}
			select {
			case jobs <- j:
			default:
				go l.udpWorker(ctx, j, jobs, sem, &idle, out)
			}
		}
	}
}

// udpJob is one admitted UDP query on its way to a worker, to be
// answered with the upstream's help.
type udpJob struct {
	query []byte
	fw    *forwarding
	to    peer   // where the answer goes: the query's source, raw
	oob   []byte // the reply's control message (shared, read only)
	tk    ticket
}

// udpIdleWorkers is how many answering goroutines wait for the next query
// once a burst is over. A goroutine per query cost about a tenth of the
// filter's CPU time (starting it, and growing its stack on every query);
// long-lived workers keep their grown stacks. Beyond these, a burst's extra
// workers end, so a flood leaves no memory behind.
const udpIdleWorkers = 16

// udpWorker answers j, then further queries from jobs while it is one of
// the few idle workers.
func (l *Listener) udpWorker(ctx context.Context, j udpJob, jobs <-chan udpJob, sem <-chan struct{}, idle *atomic.Int32, out *sender) {
	for {
		if resp := l.s.answerUpstream(ctx, j.query, j.fw, "udp"); resp != nil {
			out.send(outgoing{b: resp, to: j.to, oob: j.oob})
		}
		l.s.done(j.tk)
		<-sem
		if idle.Add(1) > udpIdleWorkers {
			idle.Add(-1)
			return
		}
		select {
		case j = <-jobs:
			idle.Add(-1)
		case <-ctx.Done():
			return
		}
	}
}

func (l *Listener) serveTCP(ctx context.Context) error {
	sem := make(chan struct{}, l.maxConns)
	backoff := 5 * time.Millisecond
	for {
		c, err := l.tcp.AcceptTCP()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors and the like: wait, then go on.
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		select {
		case sem <- struct{}{}:
		default:
			c.Close() // at the limit: refuse rather than queue
			continue
		}
		l.mu.Lock()
		if l.done {
			l.mu.Unlock()
			c.Close()
			return nil
		}
		l.conns[c] = struct{}{}
		l.mu.Unlock()
		go func() {
			defer func() {
				l.mu.Lock()
				delete(l.conns, c)
				l.mu.Unlock()
				c.Close()
				<-sem
			}()
			l.serveConn(ctx, c)
		}()
	}
}

// serveConn answers framed queries on one TCP connection, one after the
// other, until the client closes it, stays idle or sends garbage.
func (l *Listener) serveConn(ctx context.Context, c *net.TCPConn) {
	src := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap().WithZone("") // the neighbour table has no zones
	var lb [2]byte
	for {
		_ = c.SetReadDeadline(time.Now().Add(l.idleTimeout))
		if _, err := io.ReadFull(c, lb[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint16(lb[:])
		if n < headerLen {
			return // cannot be a query; the framing is not to be trusted either
		}
		query := make([]byte, n)
		_ = c.SetReadDeadline(time.Now().Add(tcpIOTimeout))
		if _, err := io.ReadFull(c, query); err != nil {
			return
		}
		// Over its limits a TCP client gets REFUSED: its address is proven
		// by the handshake, so an answer reflects nothing, and answering at
		// once frees the connection for the client's next query.
		var resp []byte
		if tk, ok := l.s.admit(src); ok {
			resp = l.s.Answer(ctx, query, l.port, src, "tcp")
			l.s.done(tk)
		} else {
			resp = l.s.Refuse(query)
		}
		if resp == nil || len(resp) > 0xFFFF {
			continue
		}
		binary.BigEndian.PutUint16(lb[:], uint16(len(resp)))
		_ = c.SetWriteDeadline(time.Now().Add(tcpIOTimeout))
		if _, err := (&net.Buffers{lb[:], resp}).WriteTo(c); err != nil {
			return
		}
	}
}

// recvDestination asks the kernel for each datagram's destination address,
// so that the answer leaves from the address the query was sent to. On a
// router with several addresses (and on every IPv6 interface) the address
// the kernel would pick by itself can differ, and then the REDIRECT's
// reverse translation does not match and the client drops the answer.
func recvDestination(c *net.UDPConn) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		// Either may fail (an IPv4-only socket has no IPv6 options); each
		// one that works is used.
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
	})
}

// receiveBuffer sets the socket's receive queue to size: with
// SO_RCVBUFFORCE (root, as the agent runs) beyond net.core.rmem_max,
// otherwise up to it.
func receiveBuffer(c *net.UDPConn, size int) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	forced := false
	_ = rc.Control(func(fd uintptr) {
		forced = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size) == nil
	})
	if !forced {
		_ = c.SetReadBuffer(size)
	}
}

// sourceFor turns the control messages of a received datagram into those
// that send the answer from the datagram's destination address (nil when
// there is none: the kernel picks).
func sourceFor(oob []byte) []byte {
	if len(oob) == 0 {
		return nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var dst netip.Addr
	for _, m := range msgs {
		switch {
		case m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_PKTINFO && len(m.Data) >= unix.SizeofInet4Pktinfo:
			// struct in_pktinfo { int ifindex; in_addr spec_dst; in_addr addr; }
			dst = netip.AddrFrom4([4]byte(m.Data[8:12]))
		case m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_PKTINFO && len(m.Data) >= unix.SizeofInet6Pktinfo && !dst.IsValid():
			// struct in6_pktinfo { in6_addr addr; int ifindex; }
			dst = netip.AddrFrom16([16]byte(m.Data[:16])).Unmap()
		}
	}
	switch {
	case !dst.IsValid():
		return nil
	case dst.Is4():
		return unix.PktInfo4(&unix.Inet4Pktinfo{Spec_dst: dst.As4()})
	default:
		return unix.PktInfo6(&unix.Inet6Pktinfo{Addr: dst.As16()})
	}
}
