package dnsfilter

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"time"
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
	upstreamPool   = 64 // idle UDP sockets kept for reuse
)

var errShortMessage = errors.New("DNS message shorter than its header")

// UpstreamExchange forwards to a resolver address like "127.0.0.1:53" over
// UDP, and again over TCP when the answer was truncated and the client asked
// over TCP (or did not fit our buffer). UDP sockets are kept in a small pool
// and reused: dialling a socket per query would cost more than the filtering
// itself.
//
// The query leaves with an ID of our own (random, per exchange) and the
// answer comes back with the client's: the rest of the bytes pass unchanged
// both ways. An answer whose ID is not ours (a late answer to an abandoned
// query) is skipped.
func UpstreamExchange(addr string) Exchange {
	pool := make(chan *upConn, upstreamPool)
	return func(ctx context.Context, query []byte, network string) ([]byte, error) {
		if len(query) < headerLen {
			return nil, errShortMessage
		}
		msg := append([]byte(nil), query...)
		id := uint16(rand.Uint32())
		binary.BigEndian.PutUint16(msg, id)

		var c *upConn
		select {
		case c = <-pool:
		default:
			conn, err := net.DialTimeout("udp", addr, upstreamTimeout)
			if err != nil {
				return nil, err
			}
			c = &upConn{conn: conn, buf: make([]byte, upstreamUDPBuf+1)}
		}
		resp, err := c.exchange(msg, id, deadlineFrom(ctx))
		if err != nil {
			c.conn.Close() // a timed-out socket may still receive the late answer
			return nil, err
		}
		select {
		case pool <- c:
		default:
			c.conn.Close()
		}
		if len(resp) > upstreamUDPBuf || (resp[2]&flagTC != 0 && network == "tcp") {
			if resp, err = tcpExchange(addr, msg, id, deadlineFrom(ctx)); err != nil {
				return nil, err
			}
		}
		binary.BigEndian.PutUint16(resp, binary.BigEndian.Uint16(query))
		return resp, nil
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

// upConn is a connected UDP socket to the upstream and its read buffer.
type upConn struct {
	conn net.Conn
	buf  []byte
}

// exchange sends msg and reads until the answer with ID id arrives. The
// returned slice is a copy; a length above upstreamUDPBuf means the answer
// was cut off.
func (c *upConn) exchange(msg []byte, id uint16, deadline time.Time) ([]byte, error) {
	_ = c.conn.SetDeadline(deadline)
	if _, err := c.conn.Write(msg); err != nil {
		return nil, err
	}
	for {
		n, err := c.conn.Read(c.buf)
		if err != nil {
			return nil, err
		}
		if n < headerLen || binary.BigEndian.Uint16(c.buf) != id || c.buf[2]&flagQR == 0 {
			continue // not the answer to this query
		}
		return append([]byte(nil), c.buf[:n]...), nil
	}
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
