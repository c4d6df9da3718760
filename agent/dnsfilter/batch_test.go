package dnsfilter

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

func udpSocket(t *testing.T, addr string) (*net.UDPConn, syscall.RawConn) {
	t.Helper()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	c := pc.(*net.UDPConn)
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return c, rc
}

// readAll reads batches from r until want datagrams arrived (or 10 s
// passed) and returns their payloads and peers in arrival order.
func readAll(t *testing.T, c *net.UDPConn, r *batchReader, want int) ([]string, []netip.AddrPort, [][]byte, []bool) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var got []string
	var from []netip.AddrPort
	var oobs [][]byte
	var trunc []bool
	for len(got) < want {
		n, err := r.read()
		if err != nil {
			t.Fatalf("after %d of %d datagrams: %v", len(got), want, err)
		}
		for i := range n {
			got = append(got, string(r.payload(i)))
			from = append(from, r.peers[i].addrPort())
			oobs = append(oobs, append([]byte(nil), r.oob(i)...))
			trunc = append(trunc, r.truncated(i))
		}
	}
	return got, from, oobs, trunc
}

// TestBatchRoundTrip: datagrams written in one batch arrive whole, in
// order, read in batches, each with its source and its destination address
// (IP_PKTINFO); one longer than the reader's buffer arrives flagged as cut
// off. Both for an IPv4 socket and a dual-stack IPv6 one (IPv4 peers
// v4-mapped).
func TestBatchRoundTrip(t *testing.T) {
	for _, sendAddr := range []string{"127.0.0.1:0", "[::]:0"} {
		t.Run(sendAddr, func(t *testing.T) {
			rconn, rrc := udpSocket(t, "127.0.0.1:0")
			recvDestination(rconn)
			sconn, src := udpSocket(t, sendAddr)
			v6 := sendAddr[0] == '['
			to := peerOf(rconn.LocalAddr().(*net.UDPAddr).AddrPort(), v6)
			var out []outgoing
			var want []string
			for i := range 40 { // more than one batch
				p := fmt.Sprintf("datagram %02d", i)
				if i == 7 {
					p += string(bytes.Repeat([]byte{'x'}, 100))
				}
				want = append(want, p)
				out = append(out, outgoing{b: []byte(p), to: to})
			}
			if failed, err := newBatchWriter(src, udpBatch).write(out); failed != 0 || err != nil {
				t.Fatalf("write: %d failed, %v", failed, err)
			}
			got, from, oobs, trunc := readAll(t, rconn, newBatchReader(rrc, 8, 64, 128), len(want))
			sport := sconn.LocalAddr().(*net.UDPAddr).AddrPort().Port()
			for i := range want {
				w := want[i]
				if len(w) > 64 {
					w = w[:64]
				}
				if got[i] != w || trunc[i] != (i == 7) {
					t.Errorf("datagram %d: %q (cut off %v), want %q (cut off %v)", i, got[i], trunc[i], w, i == 7)
				}
				if from[i] != netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), sport) {
					t.Errorf("datagram %d from %v, want 127.0.0.1:%d", i, from[i], sport)
				}
				if reply := sourceFor(oobs[i]); !bytes.Equal(reply, unix.PktInfo4(&unix.Inet4Pktinfo{Spec_dst: [4]byte{127, 0, 0, 1}})) {
					t.Errorf("datagram %d: control messages % x give the reply form % x", i, oobs[i], reply)
				}
			}
		})
	}
}

// TestBatchWriteSkipsRefused: a datagram the kernel refuses (port 0) is
// dropped and counted; the rest of the batch, before and after it, go out.
func TestBatchWriteSkipsRefused(t *testing.T) {
	rconn, rrc := udpSocket(t, "127.0.0.1:0")
	_, src := udpSocket(t, "127.0.0.1:0")
	good := peerOf(rconn.LocalAddr().(*net.UDPAddr).AddrPort(), false)
	bad := peerOf(netip.MustParseAddrPort("127.0.0.1:0"), false)
	out := []outgoing{{b: []byte("one"), to: good}, {b: []byte("refused"), to: bad}, {b: []byte("two"), to: good}, {b: []byte("three"), to: good}}
	failed, err := newBatchWriter(src, udpBatch).write(out)
	if failed != 1 || err == nil {
		t.Errorf("write: %d failed (%v), want 1 failed with its error", failed, err)
	}
	got, _, _, _ := readAll(t, rconn, newBatchReader(rrc, udpBatch, 64, 0), 3)
	if fmt.Sprint(got) != "[one two three]" {
		t.Errorf("received %q, want [one two three]", got)
	}
}

// TestUpstreamSharedSocket: queries in flight together on the shared
// socket each get their own answer, though the upstream answers them in
// reverse order and first sends, for each, a forged answer with its ID but
// another question.
func TestUpstreamSharedSocket(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	const n = 20
	go func() {
		type asked struct {
			q    []byte
			from net.Addr
		}
		var qs []asked
		buf := make([]byte, 512)
		for len(qs) < n {
			m, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			qs = append(qs, asked{append([]byte(nil), buf[:m]...), from})
		}
		for i := len(qs) - 1; i >= 0; i-- {
			real := unusualAnswer(t, qs[i].q, 1)
			forged := withID(unusualAnswer(t, qs[(i+1)%n].q, 1), qs[i].q)
			_, _ = pc.WriteTo(forged, qs[i].from)
			_, _ = pc.WriteTo(real, qs[i].from)
		}
	}()
	ex := UpstreamExchange(pc.LocalAddr().String())
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("q%d.example", i)
			wire, _ := query(name, dns.TypeA).Pack()
			resp, err := ex(context.Background(), wire, "udp")
			if err != nil {
				t.Errorf("%s: %v", name, err)
				return
			}
			if r := unpack(t, resp); r.Id != binary.BigEndian.Uint16(wire) || len(r.Question) != 1 || r.Question[0].Name != name+"." {
				t.Errorf("%s: got the answer %v", name, r)
			}
		}()
	}
	wg.Wait()
}

// TestUpstreamRefused: an upstream that is not listening fails the query
// with the kernel's "connection refused" (a real answer of the network,
// not a timeout), again on the next query.
func TestUpstreamRefused(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	ex := UpstreamExchange(addr)
	for i := range 3 {
		wire, _ := query("a.example", dns.TypeA).Pack()
		if _, err := ex(context.Background(), wire, "udp"); !errors.Is(err, unix.ECONNREFUSED) {
			t.Errorf("query %d: %v, want connection refused", i, err)
		}
	}
}

// BenchmarkLoopbackBatch: the CPU cost of sending and receiving one small
// datagram over loopback, one system call each (batch=1) against batches.
// The figures quoted in batch.go's comment came from this.
func BenchmarkLoopbackBatch(b *testing.B) {
	for _, size := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			rpc, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer rpc.Close()
			receiveBuffer(rpc.(*net.UDPConn), 4<<20)
			spc, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer spc.Close()
			rrc, _ := rpc.(*net.UDPConn).SyscallConn()
			src, _ := spc.(*net.UDPConn).SyscallConn()
			r, w := newBatchReader(rrc, size, 512, 0), newBatchWriter(src, size)
			out := make([]outgoing, size)
			for i := range out {
				out[i] = outgoing{b: make([]byte, 40), to: peerOf(rpc.LocalAddr().(*net.UDPAddr).AddrPort(), false)}
			}
			b.ResetTimer()
			for sent := 0; sent < b.N; sent += size {
				if _, err := w.write(out); err != nil {
					b.Fatal(err)
				}
				for got := 0; got < size; {
					n, err := r.read()
					if err != nil {
						b.Fatal(err)
					}
					got += n
				}
			}
		})
	}
}

// TestUpstreamTimeout: a query the upstream never answers fails at its
// deadline (the reader's sweep, no timer of its own), and the shared socket
// goes on answering the next one.
func TestUpstreamTimeout(t *testing.T) {
	addr, _ := rawUpstream(t, func(q []byte) [][]byte {
		if bytes.Contains(q, []byte("silent")) {
			return nil
		}
		return [][]byte{unusualAnswer(t, q, 1)}
	}, nil)
	ex := UpstreamExchange(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	wire, _ := query("silent.example", dns.TypeA).Pack()
	if resp, err := ex(ctx, wire, "udp"); !errors.Is(err, errUpstreamTimeout) {
		t.Errorf("unanswered query: %v (answer % x), want the timeout", err, resp)
	}
	wire, _ = query("a.example", dns.TypeA).Pack()
	if resp, err := ex(context.Background(), wire, "udp"); err != nil || unpack(t, resp).Id != binary.BigEndian.Uint16(wire) {
		t.Errorf("next query: %v", err)
	}
}
