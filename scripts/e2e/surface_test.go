package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestAgentNetworkSurface: what a device on the LAN (or anyone) can reach of
// the agent is its DNS filter port and nothing else. Every inet socket the
// running agent holds is listed (ss, in the router's namespace): the only
// listening ones are the DNS port over UDP and TCP, and every other UDP
// socket is connected to the upstream resolver (the kernel delivers a
// connected socket only its peer's datagrams). The control socket is a unix
// socket (root-only, tested in agent/control); netlink sockets are not
// reachable from the network.
func TestAgentNetworkSurface(t *testing.T) {
	f := newFamilyLab(t)
	writeFile(t, filepath.Join(f.profiles, "family.yaml"), familyProfile)
	startDnsmasq(t, f, f.Router, "127.0.0.1", "198.51.100.10", "2001:db8:2::10")
	a := startAgent(t, f.Lab, f.profiles, f.state, noon.Format(time.RFC3339))
	// Make the DNS filter open its upstream sockets: a child's query.
	f.dig(t, f.alice, "192.0.2.1", "example.org", "A")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := f.Run(ctx, f.Router, "ss", "-H", "-t", "-u", "-a", "-n", "-p")
	if err != nil {
		t.Fatalf("ss: %v\n%s", err, out)
	}
	tag := fmt.Sprintf("pid=%d,", a.cmd.Process.Pid)
	var listening, other []string
	for _, line := range strings.Split(out, "\n") {
		if !strings.Contains(line, tag) {
			continue
		}
		fields := strings.Fields(line) // netid state recv-q send-q local peer users
		if len(fields) < 6 {
			t.Fatalf("unexpected ss line %q", line)
		}
		netid, state, local, peer := fields[0], fields[1], fields[4], fields[5]
		switch {
		case state == "LISTEN" || (netid == "udp" && state == "UNCONN"):
			listening = append(listening, netid+" "+local)
			if !dnsFilterPort(local) {
				t.Errorf("the agent listens on %s %s; only the DNS filter ports (5354, the offline port 5355, one per class from 5356) are allowed", netid, local)
			}
		case netid == "udp" && state == "ESTAB":
			other = append(other, netid+" "+local+" → "+peer)
			if peer != "127.0.0.1:53" {
				t.Errorf("a UDP socket of the agent is connected to %s, not the upstream resolver", peer)
			}
		case netid == "tcp":
			other = append(other, netid+" "+state+" "+local+" → "+peer) // a client's TCP query being answered
			if !dnsFilterPort(local) && peer != "127.0.0.1:53" {
				t.Errorf("unexpected TCP socket %s %s → %s", state, local, peer)
			}
		default:
			t.Errorf("unexpected socket: %s", line)
		}
	}
	// The base port, the offline port and one per child (alice, bob), over
	// UDP and TCP.
	if len(listening) != 8 {
		t.Errorf("listening sockets %v; want exactly the DNS filter's four ports over UDP and TCP", listening)
	}
	reliability(t, "attack surface", "sockets of the running agent (ss)", "listening: %s; others: %s", strings.Join(listening, ", "), strings.Join(other, ", "))
}

// dnsFilterPort: an address on one of the DNS filter's ports (the base
// 5354, the offline port, the class ports after it).
func dnsFilterPort(local string) bool {
	i := strings.LastIndexByte(local, ':')
	port, err := strconv.Atoi(local[i+1:])
	return err == nil && port >= 5354 && port < 5354+2+1000
}
