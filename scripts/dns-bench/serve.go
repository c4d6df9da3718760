package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"sync"
	"time"

	"github.com/famguard/famguard/agent/categories"
	"github.com/famguard/famguard/agent/dnsfilter"
	"github.com/famguard/famguard/agent/egress"
)

// The servers this program runs itself, as subcommands of its own binary
// (so each is a process of its own, pinned to its core).

// serveFamguard is the famguard side: the real list store and DNS filter,
// with the load generator's address treated as a protected device with
// every category blocked. The per-client limits are off: the generator is
// one client sending tens of thousands of queries a second, which the
// agent's defaults (200/s a device) would cut to 1 %, and the bench
// measures the filter, not the limiter (the limiter has its own flood test,
// scripts/e2e TestDNSFloodFairness).
//
// With --strict SET the device is strict (issue 9's strict egress): every
// address of an allowed answer goes into the real kernel sets SET4/SET6
// (agent/egress, over netlink) before the answer is sent, in the bench's
// private network namespace; --fresh-sets destroys them first, so each
// measurement starts with nothing open.
func serveFamguard(args []string) {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	client := fs.String("client", "127.0.0.1", "the protected device's address (the load generator's; the name in counters and the limiter key only: the port decides the rules)")
	strictSet := fs.String("strict", "", "strict egress on, with this base set name (the sets are created in the current network namespace)")
	fresh := fs.Bool("fresh-sets", false, "destroy the strict sets first (each measurement starts empty)")
	_ = fs.Parse(args)
	if fs.NArg() != 3 {
		fail("usage: dns-bench serve [--client ADDR] [--strict SET [--fresh-sets]] LISTS-DIR LISTEN UPSTREAM")
	}
	dir, listen, upstream := fs.Arg(0), fs.Arg(1), fs.Arg(2)
	start := time.Now()
	store, st, err := categories.Load(dir)
	if err != nil {
		fail("%v", err)
	}
	// Return the load's scratch memory to the OS, as the agent does after
	// a list load on a router.
	debug.FreeOSMemory()
	s := dnsfilter.NewServer(dnsfilter.UpstreamExchange(upstream), dnsfilter.NullIP)
	s.SetLimits(dnsfilter.Limits{})
	mac := "02:00:00:00:00:01"
	rules := dnsfilter.Rules{Child: "bench", Categories: store.Categories()}
	if *strictSet != "" {
		k, err := egress.NewNetlink()
		if err != nil {
			fail("strict: %v", err)
		}
		sets := egress.New(k)
		if *fresh {
			_ = sets.Destroy(*strictSet) // absent on the first run
		}
		if err := sets.EnsureSets(*strictSet); err != nil {
			fail("strict: %v", err)
		}
		s.SetOpener(sets)
		rules.Strict, rules.StrictSet = true, *strictSet
		// On stop: how well the adds were batched (the bench reads it
		// from the log, strictWrites).
		defer func() {
			w, a := sets.Writes()
			fmt.Fprintf(os.Stderr, "strict: %d kernel adds in %d writes\n", a, w)
		}()
	}
	_, portText, err := net.SplitHostPort(listen)
	port, perr := strconv.Atoi(portText)
	if err != nil || perr != nil {
		fail("listen %q: need host:port with a fixed port (the port says whose rules answer)", listen)
	}
	s.Publish(dnsfilter.NewSnapshot(map[string]dnsfilter.Rules{mac: rules},
		map[string][]netip.Addr{mac: {netip.MustParseAddr(*client)}}, store).WithPorts(map[int]dnsfilter.Rules{port: rules}, 0))
	fmt.Fprintf(os.Stderr, "famguard: %d domains loaded in %v\n", st.Domains, time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	// DNSBENCH_CPUPROFILE=FILE profiles the server from ready to stop
	// (`go tool pprof FILE`): how the UDP path was profiled.
	if f, err := os.Create(os.Getenv("DNSBENCH_CPUPROFILE")); err == nil {
		if err := pprof.StartCPUProfile(f); err == nil {
			defer pprof.StopCPUProfile()
		}
	}
	go func() {
		c := make(chan os.Signal, 1)
		signalNotify(c)
		<-c
		cancel()
	}()
	if err := s.ListenAndServe(ctx, listen); err != nil {
		fail("%v", err)
	}
}

// serveEcho is the ceiling: a bare Go UDP server that answers each query
// with itself (QR set), one read and one write per query, no parsing. A DNS
// filter cannot do less work per query than this on the same runtime.
func serveEcho(args []string) {
	pc, err := net.ListenPacket("udp", args[0])
	if err != nil {
		fail("echo: %v", err)
	}
	c := pc.(*net.UDPConn)
	buf := make([]byte, 4096)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			fail("echo: %v", err)
		}
		if n < 12 {
			continue
		}
		buf[2] |= 0x80
		_, _ = c.WriteToUDPAddrPort(buf[:n], from)
	}
}

// serveForwarder is the floor for a forwarding filter on the bench's mix: a
// bare Go UDP server that does the socket work a filter must do and
// nothing else. The queries the mix blocks (even IDs: the generator's
// sequence alternates blocked and allowed names, and the ID is the
// sequence number) it answers with themselves, as the echo does; the
// others it relays through one connected socket to the upstream and the
// answers back, by ID. One read and one write per datagram, no parsing, no
// lists: what it spends per query is what moving the mix's datagrams costs.
// With an empty list (the run with no lists, whose mix blocks nothing) it
// relays every query, as a filter does.
func serveForwarder(args []string) {
	if len(args) != 3 {
		fail("usage: dns-bench serve-forwarder PLAIN-LIST LISTEN UPSTREAM")
	}
	st, err := os.Stat(args[0])
	if err != nil {
		fail("forwarder: %v", err)
	}
	answerEven := st.Size() > 0
	pc, err := net.ListenPacket("udp", args[1])
	if err != nil {
		fail("forwarder: %v", err)
	}
	up, err := net.Dial("udp", args[2])
	if err != nil {
		fail("forwarder: %v", err)
	}
	c := pc.(*net.UDPConn)
	var mu sync.Mutex
	var to [1 << 16]netip.AddrPort // by ID: the bench's IDs in flight are distinct
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := up.Read(buf)
			if err != nil {
				fail("forwarder: %v", err)
			}
			if n < 12 {
				continue
			}
			mu.Lock()
			client := to[binary.BigEndian.Uint16(buf)]
			mu.Unlock()
			_, _ = c.WriteToUDPAddrPort(buf[:n], client)
		}
	}()
	buf := make([]byte, 4096)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			fail("forwarder: %v", err)
		}
		if n < 12 {
			continue
		}
		id := binary.BigEndian.Uint16(buf)
		if answerEven && id%2 == 0 {
			buf[2] |= 0x80
			_, _ = c.WriteToUDPAddrPort(buf[:n], from)
			continue
		}
		mu.Lock()
		to[id] = from
		mu.Unlock()
		_, _ = up.Write(buf[:n])
	}
}

// serveUpstream is the upstream every filter forwards to: it answers any
// A question with the name's own address (upstreamAddrFor; TTL 0, so
// nothing is cached) and any other
// type with no records, over UDP and TCP. It is written here rather than
// run as dnsmasq because blocky races a TCP connection against UDP for
// every upstream query, and dnsmasq forks a process per TCP connection:
// the upstream must not be what limits a server.
func serveUpstream(args []string) {
	pc, err := net.ListenPacket("udp", args[0])
	if err != nil {
		fail("upstream: %v", err)
	}
	ln, err := net.Listen("tcp", args[0])
	if err != nil {
		fail("upstream: %v", err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				fail("upstream: %v", err)
			}
			go upstreamTCP(c)
		}
	}()
	c := pc.(*net.UDPConn)
	buf := make([]byte, 4096)
	out := make([]byte, 0, 4096)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			fail("upstream: %v", err)
		}
		if resp := upstreamAnswer(out[:0], buf[:n]); resp != nil {
			_, _ = c.WriteToUDPAddrPort(resp, from)
		}
	}
}

func upstreamTCP(c net.Conn) {
	defer c.Close()
	var l [2]byte
	for {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return
		}
		q := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(c, q); err != nil {
			return
		}
		resp := upstreamAnswer(make([]byte, 2, 512), q)
		if resp == nil {
			return
		}
		binary.BigEndian.PutUint16(resp, uint16(len(resp)-2))
		if _, err := c.Write(resp); err != nil {
			return
		}
	}
}

// upstreamAnswer appends the answer to q to out (nil for a datagram that is
// not a one-question query): the header and question echoed, and for an A
// question one record pointing back at the question's name.
func upstreamAnswer(out, q []byte) []byte {
	if len(q) < 12 || q[2]&0x80 != 0 || binary.BigEndian.Uint16(q[4:]) != 1 {
		return nil
	}
	i := 12
	for i < len(q) && q[i] != 0 {
		i += int(q[i]) + 1
	}
	if i+5 > len(q) {
		return nil
	}
	end := i + 5 // the root label, type, class
	qtype := binary.BigEndian.Uint16(q[i+1:])
	base := len(out)
	out = append(out, q[:end]...)
	h := out[base:]
	h[2] |= 0x80                          // QR
	h[3] = 0x80                           // RA, NOERROR
	binary.BigEndian.PutUint16(h[8:], 0)  // NSCOUNT
	binary.BigEndian.PutUint16(h[10:], 0) // ARCOUNT: an EDNS OPT is not echoed
	if qtype != 1 {
		binary.BigEndian.PutUint16(h[6:], 0)
		return out
	}
	binary.BigEndian.PutUint16(h[6:], 1)
	a := upstreamAddrFor(q[12 : i+1])
	return append(out, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, a[0], a[1], a[2], a[3])
}
