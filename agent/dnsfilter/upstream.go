package dnsfilter

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Exchange sends a query (wire format) upstream and returns the answer
// (wire format, with the query's ID). network is the transport the client
// used, "udp" or "tcp": a client that asked over TCP must get a complete
// answer, one that asked over UDP may get a truncated one (TC set) and asks
// again over TCP. An Exchange must not modify query, and returns a slice the
// caller may modify.
type Exchange func(ctx context.Context, query []byte, network string) ([]byte, error)

const (
	upstreamTimeout = 2 * time.Second
	// upstreamUDPBuf bounds a UDP answer read from the upstream. The
	// upstream sizes its answer to the client's EDNS buffer; anything
	// larger than this arrives cut off, and is fetched again over TCP.
	upstreamUDPBuf = 4096
)

var errShortMessage = errors.New("DNS message shorter than its header")

// UpstreamExchange forwards to a resolver address like "127.0.0.1:53" over
// UDP, and again over TCP when the answer was truncated and the client asked
// over TCP (or did not fit our buffer).
//
// Over UDP all queries share one connected socket (udpUpstream): each
// leaves with an ID of our own, random among those not in flight, and the
// answers, read in batches (batch.go), go to the query waiting for that ID.
// A socket per query, or a pool of them each read on its own, cost a write
// and a read system call per query, more than the filtering itself. The
// rest of the bytes pass unchanged both ways; the answer comes back with
// the client's ID. An answer whose ID is not in flight (a late answer to an
// abandoned query) or whose question is not the query's is skipped.
func UpstreamExchange(addr string) Exchange {
	u := &udpUpstream{addr: addr, pending: map[uint16]*upWait{}}
	return func(ctx context.Context, query []byte, network string) ([]byte, error) {
		if len(query) < headerLen {
			return nil, errShortMessage
		}
		msg := append([]byte(nil), query...)
		deadline := deadlineFrom(ctx)
		resp, id, err := u.exchange(msg, deadline)
		if err != nil {
			return nil, err
		}
		if len(resp) > upstreamUDPBuf || (resp[2]&flagTC != 0 && network == "tcp") {
			if resp, err = tcpExchange(addr, msg, id, deadline); err != nil {
				return nil, err
			}
		}
		binary.BigEndian.PutUint16(resp, binary.BigEndian.Uint16(query))
		return resp, nil
	}
}

// udpUpstream is the shared UDP socket to one upstream and the queries in
// flight on it. The socket is dialled on first use; its reader goroutine
// runs while queries are in flight and ends once none has been for a while
// (upstreamIdle), so an Exchange nobody uses holds no goroutine.
type udpUpstream struct {
	addr string

	mu      sync.Mutex
	conn    *net.UDPConn
	out     *sender            // conn's, while the reader runs
	pending map[uint16]*upWait // by the ID the query left with
}

// upWait is one query in flight: its question (to check the answer's) and
// where its answer goes.
type upWait struct {
	question []byte
	deadline time.Time
	done     chan upResult // buffered 1: the reader never blocks on it
}

type upResult struct {
	resp []byte
	err  error
}

// upstreamIdle is how long the reader goroutine waits with no query in
// flight before it ends. upstreamSweep is how often it fails the queries
// past their deadline: a timer per query cost more than its answer's
// checking, and a timeout a tenth of a second late changes nothing.
const (
	upstreamIdle  = 5 * time.Second
	upstreamSweep = 100 * time.Millisecond
)

// exchange sends msg (its ID overwritten with one of ours, returned) and
// waits for the answer until deadline. The answer is a copy; a length above
// upstreamUDPBuf means it was cut off.
func (u *udpUpstream) exchange(msg []byte, deadline time.Time) ([]byte, uint16, error) {
	qend, err := skipName(msg, headerLen)
	if err != nil || qend+4 > len(msg) || binary.BigEndian.Uint16(msg[4:]) != 1 {
		qend = headerLen - 4 // not one question: matched by ID alone
	}
	w := &upWait{question: msg[headerLen : qend+4], deadline: deadline, done: make(chan upResult, 1)}
	u.mu.Lock()
	if u.conn == nil {
		c, err := net.DialTimeout("udp", u.addr, time.Until(deadline))
		if err != nil {
			u.mu.Unlock()
			return nil, 0, err
		}
		u.conn = c.(*net.UDPConn)
	}
	id := uint16(rand.Uint32())
	for u.pending[id] != nil {
		id = uint16(rand.Uint32())
	}
	binary.BigEndian.PutUint16(msg, id)
	u.pending[id] = w
	if u.out == nil {
		if err := u.start(); err != nil {
			delete(u.pending, id)
			u.mu.Unlock()
			return nil, 0, err
		}
	}
	u.out.send(outgoing{b: msg})
	u.mu.Unlock()
	r := <-w.done // the answer, an error, or the reader's sweep at the deadline
	return r.resp, id, r.err
}

var errUpstreamTimeout = errors.New("upstream: no answer in time")

// read delivers answers to the queries in flight, and fails those past
// their deadline, until none has been in flight for upstreamIdle, or the
// socket fails (then every query in flight fails with it, and the next
// query dials anew). It stops the sender as it ends.
func (u *udpUpstream) read(conn *net.UDPConn, rc syscall.RawConn, stopSender context.CancelFunc) {
	defer stopSender()
	in := newBatchReader(rc, udpBatch, upstreamUDPBuf+1, 0)
	var swept time.Time
	busy := time.Now()
	for {
		if now := time.Now(); now.Sub(swept) >= upstreamSweep {
			swept = now
			inFlight, ended := u.sweep(now, now.Sub(busy) >= upstreamIdle)
			if ended {
				return
			}
			if inFlight {
				busy = now
			}
			// Woken by the next answer, or in time for the next sweep.
			_ = conn.SetReadDeadline(now.Add(upstreamSweep))
		}
		n, err := in.read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		if errors.Is(err, unix.ECONNREFUSED) {
			// An ICMP port unreachable for an earlier query: the upstream
			// is not listening. Those in flight fail now rather than at
			// their timeout, as with a socket of their own.
			u.failPending(err)
			continue
		}
		if err != nil {
			u.fail(conn, err)
			return
		}
		u.mu.Lock()
		for i := range n {
			a := in.payload(i) // cut off, it is upstreamUDPBuf+1 long: fetched again over TCP
			if len(a) < headerLen || a[2]&flagQR == 0 {
				continue
			}
			id := binary.BigEndian.Uint16(a)
			w := u.pending[id]
			if w == nil || !sameQuestion(a, w.question) {
				continue // not the answer to a query in flight
			}
			delete(u.pending, id)
			w.done <- upResult{resp: append([]byte(nil), a...)}
		}
		u.mu.Unlock()
	}
}

// sweep fails the queries in flight past their deadline, and reports
// whether any is still in flight. When none is and mayEnd, the reader ends:
// marked (u.out nil) under the same lock, so that the next query starts a
// new one.
func (u *udpUpstream) sweep(now time.Time, mayEnd bool) (inFlight, ended bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for id, w := range u.pending {
		if !now.Before(w.deadline) {
			delete(u.pending, id)
			w.done <- upResult{err: errUpstreamTimeout}
		}
	}
	if len(u.pending) == 0 && mayEnd {
		u.out = nil
		return false, true
	}
	return len(u.pending) > 0, false
}

// start starts the reader and the sender of u.conn (u.mu held).
func (u *udpUpstream) start() error {
	rc, err := u.conn.SyscallConn()
	if err != nil {
		return err
	}
	ctx, stop := context.WithCancel(context.Background())
	u.out = newSender(rc, func(err error) {
		if errors.Is(err, unix.ECONNREFUSED) {
			u.failPending(err) // see read
		}
	})
	go u.out.run(ctx)
	go u.read(u.conn, rc, stop)
	return nil
}

// sameQuestion: answer a carries question q (the query's question section:
// empty when the query was matched by ID alone), or none at all (an error
// answer may omit it). Names compare without regard to ASCII case.
func sameQuestion(a, q []byte) bool {
	if len(q) == 0 || binary.BigEndian.Uint16(a[4:]) == 0 {
		return true
	}
	if len(a) < headerLen+len(q) {
		return false
	}
	for i, c := range a[headerLen : headerLen+len(q)] {
		if d := q[i]; c != d && !(c|0x20 == d|0x20 && 'a' <= c|0x20 && c|0x20 <= 'z') {
			return false
		}
	}
	return true
}

// fail fails every query in flight with err, closes conn and stops reading:
// the next query dials anew.
func (u *udpUpstream) fail(conn *net.UDPConn, err error) {
	u.mu.Lock()
	u.failLocked(err)
	u.out = nil
	if u.conn == conn {
		u.conn = nil
	}
	u.mu.Unlock()
	conn.Close()
}

func (u *udpUpstream) failPending(err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.failLocked(err)
}

func (u *udpUpstream) failLocked(err error) {
	for id, w := range u.pending {
		delete(u.pending, id)
		w.done <- upResult{err: err}
	}
}

const (
	flagQR = 0x80 // in the third header byte
	flagTC = 0x02
)

// deadlineFrom is upstreamTimeout from now, or ctx's deadline if sooner.
func deadlineFrom(ctx context.Context) time.Time {
	deadline := time.Now().Add(upstreamTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	return deadline
}

// tcpExchange asks over a fresh TCP connection (2-byte length framing).
func tcpExchange(addr string, msg []byte, id uint16, deadline time.Time) ([]byte, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Until(deadline))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(deadline)
	var l [2]byte
	binary.BigEndian.PutUint16(l[:], uint16(len(msg)))
	if _, err := (&net.Buffers{l[:], msg}).WriteTo(conn); err != nil {
		return nil, err
	}
	for {
		if _, err := io.ReadFull(conn, l[:]); err != nil {
			return nil, err
		}
		resp := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(conn, resp); err != nil {
			return nil, err
		}
		if len(resp) >= headerLen && binary.BigEndian.Uint16(resp) == id && resp[2]&flagQR != 0 {
			return resp, nil
		}
	}
}
