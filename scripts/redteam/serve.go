package redteam

import (
	"bufio"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// multi is a repeatable flag.
type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

// cmdServe runs the internet host's servers until killed: DNS relays on
// odd ports (UDP and TCP, to the real resolver --upstream), DNS over HTTPS
// (plain HTTP POST /dns-query), echo servers (TCP lines, UDP datagrams: QUIC
// stands in as UDP 443) and an HTTP proxy. Every listener is bound before
// "ready" is printed.
func cmdServe(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	upstream := fs.String("upstream", "", "HOST:PORT of the resolver DNS relays forward to")
	var udpDNS, tcpDNS, doh, echoTCP, echoUDP, proxy multi
	fs.Var(&udpDNS, "udp-dns", "DNS over UDP at HOST:PORT (repeatable)")
	fs.Var(&tcpDNS, "tcp-dns", "DNS over TCP at HOST:PORT (repeatable; DoT without TLS on 853)")
	fs.Var(&doh, "doh", "DNS over HTTP POST at HOST:PORT (repeatable)")
	fs.Var(&echoTCP, "echo-tcp", "TCP echo at HOST:PORT (repeatable)")
	fs.Var(&echoUDP, "echo-udp", "UDP echo at HOST:PORT (repeatable)")
	fs.Var(&proxy, "proxy", "HTTP proxy at HOST:PORT (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	relay := func(q []byte) ([]byte, error) {
		if *upstream == "" {
			return nil, errors.New("no --upstream")
		}
		c, err := net.DialTimeout("udp", *upstream, time.Second)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write(q); err != nil {
			return nil, err
		}
		buf := make([]byte, 65535)
		n, err := c.Read(buf)
		return buf[:n], err
	}
	for _, a := range udpDNS {
		pc, err := net.ListenPacket("udp", a)
		if err != nil {
			return err
		}
		go func() {
			buf := make([]byte, 65535)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				q := append([]byte(nil), buf[:n]...)
				go func() {
					if resp, err := relay(q); err == nil {
						_, _ = pc.WriteTo(resp, from)
					}
				}()
			}
		}()
	}
	for _, a := range echoUDP {
		pc, err := net.ListenPacket("udp", a)
		if err != nil {
			return err
		}
		go func() {
			buf := make([]byte, 65535)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				_, _ = pc.WriteTo(buf[:n], from)
			}
		}()
	}
	accept := func(a string, handle func(net.Conn)) error {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return err
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() { defer c.Close(); handle(c) }()
			}
		}()
		return nil
	}
	for _, a := range tcpDNS {
		if err := accept(a, func(c net.Conn) {
			for {
				var l [2]byte
				if _, err := io.ReadFull(c, l[:]); err != nil {
					return
				}
				q := make([]byte, binary.BigEndian.Uint16(l[:]))
				if _, err := io.ReadFull(c, q); err != nil {
					return
				}
				resp, err := relay(q)
				if err != nil {
					return
				}
				_, _ = c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(resp))), resp...))
			}
		}); err != nil {
			return err
		}
	}
	for _, a := range echoTCP {
		// Each connection's end is printed ("end LOCAL REMOTE OUTCOME"): when
		// the router cuts an inbound flow by resetting the device's end, the
		// device's side is where the real answer shows.
		if err := accept(a, func(c net.Conn) {
			r := bufio.NewReader(c)
			for {
				line, err := r.ReadString('\n')
				if err == nil {
					_, err = io.WriteString(c, line)
				}
				if err != nil {
					end := classify(err)
					if errors.Is(err, io.EOF) {
						end = "eof"
					}
					fmt.Printf("end %s %s %s\n", c.LocalAddr(), c.RemoteAddr(), end)
					return
				}
			}
		}); err != nil {
			return err
		}
	}
	for _, a := range doh {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return err
		}
		go func() {
			_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				q, _ := io.ReadAll(io.LimitReader(r.Body, 65535))
				if r.Method != http.MethodPost || len(q) == 0 {
					http.Error(w, "POST a DNS message to /dns-query", http.StatusBadRequest)
					return
				}
				resp, err := relay(q)
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadGateway)
					return
				}
				w.Header().Set("Content-Type", "application/dns-message")
				_, _ = w.Write(resp)
			}))
		}()
	}
	for _, a := range proxy {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return err
		}
		go func() {
			client := &http.Client{Timeout: 3 * time.Second}
			_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !r.URL.IsAbs() {
					http.Error(w, "a proxy: ask for an absolute URL", http.StatusBadRequest)
					return
				}
				resp, err := client.Get(r.URL.String())
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadGateway)
					return
				}
				defer resp.Body.Close()
				w.WriteHeader(resp.StatusCode)
				_, _ = io.Copy(w, resp.Body)
			}))
		}()
	}
	fmt.Println("ready")
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
	return nil
}

// GratuitousARP announces that ip (IPv4) is at iface's MAC: an ARP request
// whose sender and target are both ip, broadcast, as a device that just took
// the address sends it. Neighbours update an entry they already hold.
func GratuitousARP(iface, ip string) error {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return err
	}
	a := net.ParseIP(ip).To4()
	if a == nil {
		return fmt.Errorf("garp: %q is not an IPv4 address", ip)
	}
	const ethPARP = 0x0806
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, int(htons(ethPARP)))
	if err != nil {
		return fmt.Errorf("garp: raw socket: %w", err)
	}
	defer syscall.Close(fd)
	frame := make([]byte, 0, 42)
	frame = append(frame, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	frame = append(frame, ifi.HardwareAddr...)
	frame = append(frame, 0x08, 0x06)
	frame = append(frame, 0, 1, 0x08, 0, 6, 4, 0, 1) // Ethernet, IPv4, request
	frame = append(frame, ifi.HardwareAddr...)
	frame = append(frame, a...)
	frame = append(frame, 0, 0, 0, 0, 0, 0)
	frame = append(frame, a...)
	to := &syscall.SockaddrLinklayer{Protocol: htons(ethPARP), Ifindex: ifi.Index, Halen: 6}
	copy(to.Addr[:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	return syscall.Sendto(fd, frame, 0, to)
}

// htons puts v in network byte order, as AF_PACKET wants its protocol.
func htons(v uint16) uint16 { return binary.NativeEndian.Uint16(binary.BigEndian.AppendUint16(nil, v)) }

func cmdGARP(args []string) error {
	fs := flag.NewFlagSet("garp", flag.ContinueOnError)
	iface := fs.String("iface", "eth0", "interface")
	ip := fs.String("ip", "", "IPv4 address to claim")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := GratuitousARP(*iface, *ip); err != nil {
		return err
	}
	fmt.Println("announced")
	return nil
}
