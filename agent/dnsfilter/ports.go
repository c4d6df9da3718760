package dnsfilter

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
)

// Attribution by port.
//
// The kernel redirects each device's DNS to the port of its policy class
// (a child, or the unknown-device class), matched from the packet's own
// source MAC, and offline devices' DNS to a port that refuses everything.
// So the port a query arrives on says whose rules answer it: no address
// → MAC cache is consulted, and a fresh IPv4 alias, a new IPv6 temporary
// address or an ARP claim changes nothing. A port the published snapshot
// does not know answers REFUSED and is counted ("unattributed"): the filter
// fails closed.

// WithPorts sets the classes of a snapshot before it is published: the
// rules that answer the queries arriving on each port, and the port of
// offline devices (0: none). It returns s.
func (s *Snapshot) WithPorts(classes map[int]Rules, offlinePort int) *Snapshot {
	s.ports = classes
	s.offlinePort = offlinePort
	return s
}

// classOf is the class answering on port; false for the offline port and
// any port no class has.
func (s *Snapshot) classOf(port int) (Rules, bool) {
	if port == 0 || port == s.offlinePort {
		return Rules{}, false
	}
	r, ok := s.ports[port]
	return r, ok
}

// clientName names the client in counters and recent blocks: its MAC as
// last seen in the neighbour table when that is known, else its class.
// Display only: the decision is already made.
func (s *Snapshot) clientName(src netip.Addr, class Rules) string {
	if mac, ok := s.macOf[src]; ok {
		return mac
	}
	return "class:" + class.Child
}

// portCounters count the queries refused by their port.
type portCounters struct {
	offline, unattributed atomic.Uint64
}

func (c *portCounters) count(offline bool) {
	if offline {
		c.offline.Add(1)
	} else {
		c.unattributed.Add(1)
	}
}

// Ports keeps one listener per port open: the daemon asks for the ports of
// the classes it is about to redirect to before it writes the redirects,
// so a redirect never points at a port nobody answers.
type Ports struct {
	s    *Server
	host string
	ctx  context.Context

	mu   sync.Mutex
	open map[int]*served
}

type served struct {
	l      *Listener
	cancel context.CancelFunc
	done   chan error
}

// NewPorts manages listeners of s on host (e.g. "::", every address: a
// redirect delivers to the address the query came in on) until ctx ends.
func (s *Server) NewPorts(ctx context.Context, host string) *Ports {
	return &Ports{s: s, host: host, ctx: ctx, open: map[int]*served{}}
}

// Ensure makes the listeners on exactly these ports run: missing ones are
// bound (an error names the port and leaves the others as they were),
// those no longer wanted are closed.
func (p *Ports) Ensure(ports []int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	want := map[int]bool{}
	for _, port := range ports {
		want[port] = true
		if p.open[port] != nil {
			continue
		}
		l, err := p.s.Listen(net.JoinHostPort(p.host, strconv.Itoa(port)))
		if err != nil {
			return fmt.Errorf("DNS filter port %d: %w (is another program using it? choose another --dns-port)", port, err)
		}
		ctx, cancel := context.WithCancel(p.ctx)
		sv := &served{l: l, cancel: cancel, done: make(chan error, 1)}
		go func() { sv.done <- l.Serve(ctx) }()
		p.open[port] = sv
	}
	for port, sv := range p.open {
		if !want[port] {
			sv.cancel()
			<-sv.done
			delete(p.open, port)
		}
	}
	return nil
}

// Open lists the ports listened on, sorted.
func (p *Ports) Open() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]int, 0, len(p.open))
	for port := range p.open {
		out = append(out, port)
	}
	sort.Ints(out)
	return out
}

// Close stops every listener.
func (p *Ports) Close() {
	_ = p.Ensure(nil)
}
