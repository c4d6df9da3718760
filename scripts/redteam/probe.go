// Package redteam is the toolkit of famguard's red-team lab
// (scripts/e2e/redteam_test.go): the probes a "child" namespace runs to get
// around famguard, the servers of the lab's "internet" host, and the writer
// of the README table "What a child can try, and what happens".
//
// Why a toolkit of its own rather than dig and curl: a verdict counts only
// from a real answer, so every probe must tell apart exactly what came back —
// an answer and its records, a DNS status (REFUSED, NXDOMAIN, SERVFAIL), a
// TCP reset, an ICMP "administratively prohibited", or nothing (a timeout,
// which proves nothing). Each probe prints one line in a fixed form (see
// Outcome) that the test parses. The test binary runs these probes by
// re-executing itself inside a namespace (see Main), so the lab needs no
// extra binary and no tool the machine may lack.
package redteam

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// EnvTool names the environment variable that turns a test binary into this
// toolkit: a binary started with it set runs Main(os.Args[1:]) and exits.
const EnvTool = "FAMGUARD_REDTEAM_TOOL"

// Main runs one tool command and returns the exit code.
//
//	dns   --server HOST:PORT [--proto udp|tcp|doh] --name N [--type A] [--src IP] [--sport P] [--garp IFACE] [--every D]
//	tcp   --to HOST:PORT [--src IP] [--http [--host NAME]]
//	udp   --to HOST:PORT [--src IP]
//	proxy --proxy HOST:PORT --url URL
//	hold  --to HOST:PORT [--src IP] [--for D]
//	garp  --iface IFACE --ip IPv4
//	serve [--upstream HOST:PORT] [--udp-dns A]... [--tcp-dns A]... [--doh A]... [--echo-tcp A]... [--echo-udp A]... [--proxy A]...
func Main(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "redteam tool: dns|tcp|udp|proxy|hold|garp|serve")
		return 2
	}
	var err error
	switch args[0] {
	case "dns":
		err = cmdDNS(args[1:])
	case "tcp":
		err = cmdTCP(args[1:])
	case "udp":
		err = cmdUDP(args[1:])
	case "proxy":
		err = cmdProxy(args[1:])
	case "hold":
		err = cmdHold(args[1:])
	case "garp":
		err = cmdGARP(args[1:])
	case "serve":
		err = cmdServe(args[1:])
	default:
		err = fmt.Errorf("unknown command %q", args[0])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "redteam tool:", err)
		return 1
	}
	return 0
}

// Probe timeouts: generous, because the lab shares two cores with other
// sessions; a timeout is never a verdict anyway (it is UNCLEAR).
const (
	probeTimeout = 3 * time.Second
	resendEvery  = time.Second
)

// Outcome is what one probe saw, printed as one line:
//
//	answer RCODE [TYPE:value ...]    a DNS response (e.g. "answer NOERROR A:198.51.100.20")
//	connected [first line]          a TCP connection (and the server's first line)
//	reply DATA                      a UDP reply
//	reset                           a TCP reset (connection refused)
//	prohibited ERRNO                an ICMP unreachable / administratively prohibited
//	port-unreachable                an ICMP port unreachable (UDP)
//	timeout                         nothing came back
//	error TEXT                      anything else
type Outcome string

// Kind is an Outcome's first word.
func (o Outcome) Kind() string { return strings.Fields(string(o) + " x")[0] }

// Rcode is the DNS status of an "answer" outcome ("" otherwise).
func (o Outcome) Rcode() string {
	f := strings.Fields(string(o))
	if len(f) >= 2 && f[0] == "answer" {
		return f[1]
	}
	return ""
}

// Records are the "TYPE:value" records of an "answer" outcome.
func (o Outcome) Records() []string {
	f := strings.Fields(string(o))
	if len(f) >= 2 && f[0] == "answer" {
		return f[2:]
	}
	return nil
}

// Refused reports a rejection by the network that a client sees at once:
// a TCP reset or an ICMP prohibited/unreachable.
func (o Outcome) Refused() bool {
	k := o.Kind()
	return k == "reset" || k == "prohibited" || k == "port-unreachable"
}

// Human says an outcome in words for the table: "NOERROR: A 0.0.0.0",
// "TCP reset", "ICMPv6 administratively prohibited (EACCES)".
func (o Outcome) Human() string {
	f := strings.Fields(string(o))
	switch o.Kind() {
	case "answer":
		if len(f) == 2 && f[1] == "NOERROR" {
			return "NOERROR, no records"
		}
		if len(f) == 2 {
			return f[1]
		}
		recs := make([]string, 0, len(f)-2)
		for _, r := range f[2:] {
			recs = append(recs, strings.Replace(r, ":", " ", 1))
		}
		return f[1] + ": " + strings.Join(recs, ", ")
	case "reset":
		return "TCP reset"
	case "port-unreachable":
		return "ICMP port unreachable"
	case "prohibited":
		switch {
		case len(f) == 2 && f[1] == "EACCES":
			return "ICMPv6 administratively prohibited (EACCES)"
		case len(f) == 2 && f[1] == "EHOSTUNREACH":
			return "ICMP unreachable: prohibited (EHOSTUNREACH)"
		}
		return "ICMP " + strings.Join(f[1:], " ")
	case "reply":
		if len(f) == 2 && f[1] == "echo" {
			return "ICMP echo reply came back"
		}
		return "UDP reply came back"
	}
	return string(o)
}

// classify turns a network error into an Outcome.
func classify(err error) Outcome {
	var ne net.Error
	switch {
	case err == nil:
		return "error none"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "reset"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "prohibited EHOSTUNREACH"
	case errors.Is(err, syscall.EACCES):
		return "prohibited EACCES"
	case errors.Is(err, syscall.ENETUNREACH):
		return "prohibited ENETUNREACH"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return Outcome("error " + strings.ReplaceAll(err.Error(), "\n", " "))
}

func dialer(src string, sport int) (*net.Dialer, error) {
	d := &net.Dialer{Timeout: probeTimeout}
	if src == "" && sport == 0 {
		return d, nil
	}
	var ip net.IP
	if src != "" {
		a, err := netip.ParseAddr(src)
		if err != nil {
			return nil, err
		}
		ip = a.AsSlice()
	}
	// Both address kinds are set; Dial uses the one its network needs.
	d.LocalAddr = &net.UDPAddr{IP: ip, Port: sport}
	return d, nil
}

func dialWith(d *net.Dialer, network, to string) (net.Conn, error) {
	if u, ok := d.LocalAddr.(*net.UDPAddr); ok && network == "tcp" {
		d2 := *d
		d2.LocalAddr = &net.TCPAddr{IP: u.IP, Port: u.Port}
		d = &d2
	}
	return d.Dial(network, to)
}

// qtypes are the query types a probe can ask.
var qtypes = map[string]dnsmessage.Type{
	"A": dnsmessage.TypeA, "AAAA": dnsmessage.TypeAAAA, "TXT": dnsmessage.TypeTXT, "ANY": dnsmessage.TypeALL,
	"CNAME": dnsmessage.TypeCNAME, "MX": dnsmessage.TypeMX, "SVCB": 64, "HTTPS": 65,
}

// Query builds a recursive query.
func Query(id uint16, name, qtype string) ([]byte, error) {
	t, ok := qtypes[strings.ToUpper(qtype)]
	if !ok {
		return nil, fmt.Errorf("query type %q: use one of A AAAA TXT ANY CNAME MX SVCB HTTPS", qtype)
	}
	n, err := dnsmessage.NewName(strings.TrimSuffix(name, ".") + ".")
	if err != nil {
		return nil, err
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(dnsmessage.Question{Name: n, Type: t, Class: dnsmessage.ClassINET}); err != nil {
		return nil, err
	}
	return b.Finish()
}

// Describe turns a DNS response into an "answer" Outcome.
func Describe(resp []byte) Outcome {
	var p dnsmessage.Parser
	h, err := p.Start(resp)
	if err != nil {
		return Outcome("error unparsable response: " + err.Error())
	}
	if err := p.SkipAllQuestions(); err != nil {
		return Outcome("error unparsable response: " + err.Error())
	}
	out := []string{"answer", RcodeName(h.RCode)}
	for {
		rh, err := p.AnswerHeader()
		if err != nil {
			break
		}
		r, err := p.UnknownResource()
		if err != nil {
			break
		}
		out = append(out, record(rh.Type, r.Data))
	}
	return Outcome(strings.Join(out, " "))
}

// RcodeName is a DNS status as dig prints it.
func RcodeName(rc dnsmessage.RCode) string {
	switch rc {
	case dnsmessage.RCodeSuccess:
		return "NOERROR"
	case dnsmessage.RCodeFormatError:
		return "FORMERR"
	case dnsmessage.RCodeServerFailure:
		return "SERVFAIL"
	case dnsmessage.RCodeNameError:
		return "NXDOMAIN"
	case dnsmessage.RCodeNotImplemented:
		return "NOTIMP"
	case dnsmessage.RCodeRefused:
		return "REFUSED"
	}
	return fmt.Sprintf("RCODE%d", rc)
}

// record formats one answer record as TYPE:value (no spaces).
func record(t dnsmessage.Type, data []byte) string {
	switch t {
	case dnsmessage.TypeA, dnsmessage.TypeAAAA:
		if a, ok := netip.AddrFromSlice(data); ok {
			return strings.TrimPrefix(t.String(), "Type") + ":" + a.Unmap().String()
		}
	case dnsmessage.TypeCNAME:
		if n, _, ok := wireName(data, 0); ok {
			return "CNAME:" + n
		}
	case dnsmessage.TypeTXT:
		var parts []string
		for i := 0; i < len(data); {
			l := int(data[i])
			if i+1+l > len(data) {
				break
			}
			parts = append(parts, string(data[i+1:i+1+l]))
			i += 1 + l
		}
		return "TXT:" + strings.ReplaceAll(strings.Join(parts, ""), " ", "_")
	case 64, 65: // SVCB, HTTPS: priority, target, then the parameters' hints
		if len(data) >= 3 {
			name := "SVCB"
			if t == 65 {
				name = "HTTPS"
			}
			target, off, ok := wireName(data, 2)
			if ok {
				s := fmt.Sprintf("%s:%d,%s", name, binary.BigEndian.Uint16(data), target)
				for off+4 <= len(data) {
					key, l := binary.BigEndian.Uint16(data[off:]), int(binary.BigEndian.Uint16(data[off+2:]))
					v := data[off+4 : min(off+4+l, len(data))]
					if key == 4 || key == 6 { // ipv4hint, ipv6hint
						size := 4
						if key == 6 {
							size = 16
						}
						for i := 0; i+size <= len(v); i += size {
							a, _ := netip.AddrFromSlice(v[i : i+size])
							s += ",hint=" + a.String()
						}
					}
					off += 4 + l
				}
				return s
			}
		}
	}
	return fmt.Sprintf("TYPE%d:%x", uint16(t), data)
}

// wireName reads an uncompressed wire-format name at off (record data of
// SVCB/HTTPS and CNAME targets written by dnsmasq are not compressed).
func wireName(b []byte, off int) (string, int, bool) {
	var labels []string
	for off < len(b) {
		l := int(b[off])
		if l == 0 {
			return strings.Join(labels, ".") + ".", off + 1, true
		}
		if l&0xC0 != 0 || off+1+l > len(b) {
			return "", off, false
		}
		labels = append(labels, string(b[off+1:off+1+l]))
		off += 1 + l
	}
	return "", off, false
}

// AskDNS sends one query and returns what came back.
func AskDNS(server, proto, name, qtype, src string, sport int) Outcome {
	q, err := Query(uint16(time.Now().UnixNano()), name, qtype)
	if err != nil {
		return Outcome("error " + err.Error())
	}
	d, err := dialer(src, sport)
	if err != nil {
		return Outcome("error " + err.Error())
	}
	switch proto {
	case "udp":
		return askUDP(d, server, q)
	case "tcp":
		return askTCP(d, server, q)
	case "doh":
		return askDoH(d, server, q)
	}
	return Outcome("error unknown protocol " + proto)
}

func askUDP(d *net.Dialer, server string, q []byte) Outcome {
	c, err := dialWith(d, "udp", server)
	if err != nil {
		return classify(err)
	}
	defer c.Close()
	deadline := time.Now().Add(probeTimeout)
	buf := make([]byte, 65535)
	// Resent once a second: one lost datagram on a loaded machine is not a
	// verdict either way.
	for time.Now().Before(deadline) {
		if _, err := c.Write(q); err != nil {
			return classify(err)
		}
		_ = c.SetReadDeadline(minTime(deadline, time.Now().Add(resendEvery)))
		for {
			n, err := c.Read(buf)
			if err != nil {
				if o := classify(err); o != "timeout" {
					return o
				}
				break
			}
			if n >= 2 && bytes.Equal(buf[:2], q[:2]) {
				return Describe(buf[:n])
			}
		}
	}
	return "timeout"
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func askTCP(d *net.Dialer, server string, q []byte) Outcome {
	c, err := dialWith(d, "tcp", server)
	if err != nil {
		return classify(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(probeTimeout))
	msg := binary.BigEndian.AppendUint16(nil, uint16(len(q)))
	if _, err := c.Write(append(msg, q...)); err != nil {
		return classify(err)
	}
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		return tcpReadOutcome(err)
	}
	resp := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(c, resp); err != nil {
		return tcpReadOutcome(err)
	}
	return Describe(resp)
}

// tcpReadOutcome: a connection the server closed without answering is not
// a block anyone chose; only resets and ICMP count.
func tcpReadOutcome(err error) Outcome {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "error closed without an answer"
	}
	return classify(err)
}

// askDoH posts the query as DNS over HTTPS does (RFC 8484), over plain
// HTTP: the firewall sees the same TCP 443 connection either way, and the
// lab needs no certificates.
func askDoH(d *net.Dialer, server string, q []byte) Outcome {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
		return dialWith(d, "tcp", addr)
	}, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: probeTimeout}
	resp, err := client.Post("http://"+server+"/dns-query", "application/dns-message", bytes.NewReader(q))
	if err != nil {
		return classify(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 65535))
	if err != nil {
		return classify(err)
	}
	if resp.StatusCode != http.StatusOK {
		return Outcome(fmt.Sprintf("error HTTP %d", resp.StatusCode))
	}
	return Describe(body)
}

func cmdDNS(args []string) error {
	fs := flag.NewFlagSet("dns", flag.ContinueOnError)
	server := fs.String("server", "", "HOST:PORT")
	proto := fs.String("proto", "udp", "udp, tcp or doh")
	name := fs.String("name", "", "name to ask")
	qtype := fs.String("type", "A", "query type")
	src := fs.String("src", "", "source address")
	sport := fs.Int("sport", 0, "source port")
	garp := fs.String("garp", "", "first claim --src (IPv4) with a gratuitous ARP on this interface")
	every := fs.Duration("every", 0, "ask again at this interval until killed, a line each time (with its time)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *server == "" || *name == "" {
		return errors.New("dns: --server and --name are needed")
	}
	if *garp != "" {
		if err := GratuitousARP(*garp, *src); err != nil {
			return err
		}
	}
	if *every <= 0 {
		fmt.Println(AskDNS(*server, *proto, *name, *qtype, *src, *sport))
		return nil
	}
	for {
		start := time.Now()
		fmt.Printf("%s %s\n", start.Format(time.RFC3339Nano), AskDNS(*server, *proto, *name, *qtype, *src, *sport))
		time.Sleep(time.Until(start.Add(*every)))
	}
}

// ConnectTCP opens a TCP connection; with httpGet it sends a GET and
// returns the status line.
func ConnectTCP(to, src, host string, httpGet bool) Outcome {
	d, err := dialer(src, 0)
	if err != nil {
		return Outcome("error " + err.Error())
	}
	c, err := dialWith(d, "tcp", to)
	if err != nil {
		return classify(err)
	}
	defer c.Close()
	if !httpGet {
		return "connected"
	}
	_ = c.SetDeadline(time.Now().Add(probeTimeout))
	if host == "" {
		host = to
	}
	fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: %s\r\n\r\n", host)
	line, err := readLine(c)
	if err != nil {
		return Outcome("connected, then " + string(tcpReadOutcome(err)))
	}
	return Outcome("connected " + line)
}

func readLine(r io.Reader) (string, error) {
	var b []byte
	one := make([]byte, 1)
	for len(b) < 200 {
		if _, err := r.Read(one); err != nil {
			return string(b), err
		}
		if one[0] == '\n' {
			break
		}
		b = append(b, one[0])
	}
	return strings.TrimRight(string(b), "\r"), nil
}

func cmdTCP(args []string) error {
	fs := flag.NewFlagSet("tcp", flag.ContinueOnError)
	to := fs.String("to", "", "HOST:PORT")
	src := fs.String("src", "", "source address")
	get := fs.Bool("http", false, "send an HTTP GET and report the status line")
	host := fs.String("host", "", "the GET's Host header (default: --to)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	fmt.Println(ConnectTCP(*to, *src, *host, *get))
	return nil
}

// SendUDP sends a datagram (again each second) and waits for the echo.
func SendUDP(to, src string) Outcome {
	d, err := dialer(src, 0)
	if err != nil {
		return Outcome("error " + err.Error())
	}
	c, err := dialWith(d, "udp", to)
	if err != nil {
		return classify(err)
	}
	defer c.Close()
	deadline := time.Now().Add(probeTimeout)
	buf := make([]byte, 2048)
	for time.Now().Before(deadline) {
		// A QUIC-sized first datagram (clients pad their Initial to 1200 bytes).
		payload := append([]byte("datagram "), bytes.Repeat([]byte{'.'}, 1191)...)
		if _, err := c.Write(payload); err != nil {
			return classify(err)
		}
		_ = c.SetReadDeadline(minTime(deadline, time.Now().Add(resendEvery)))
		n, err := c.Read(buf)
		if err == nil {
			return Outcome("reply " + strings.Fields(string(buf[:n]) + " x")[0])
		}
		if o := classify(err); o != "timeout" {
			if o == "reset" {
				return "port-unreachable"
			}
			return o
		}
	}
	return "timeout"
}

func cmdUDP(args []string) error {
	fs := flag.NewFlagSet("udp", flag.ContinueOnError)
	to := fs.String("to", "", "HOST:PORT")
	src := fs.String("src", "", "source address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	fmt.Println(SendUDP(*to, *src))
	return nil
}

// ViaProxy asks an HTTP proxy for url (absolute-URI GET, as browsers do
// for plain HTTP) and returns the status line and the body's first word.
func ViaProxy(proxy, url string) Outcome {
	c, err := net.DialTimeout("tcp", proxy, probeTimeout)
	if err != nil {
		return classify(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(probeTimeout))
	fmt.Fprintf(c, "GET %s HTTP/1.0\r\n\r\n", url)
	all, err := io.ReadAll(io.LimitReader(c, 4096))
	if len(all) == 0 {
		return Outcome("connected, then " + string(tcpReadOutcome(err)))
	}
	status, body, _ := strings.Cut(string(all), "\r\n\r\n")
	first, _, _ := strings.Cut(status, "\r\n")
	if strings.HasPrefix(body, "hello from") { // labhost's page
		return Outcome("connected " + first + ", with the site's page")
	}
	return Outcome("connected " + first)
}

func cmdProxy(args []string) error {
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	proxy := fs.String("proxy", "", "HOST:PORT of the proxy")
	url := fs.String("url", "", "URL to fetch through it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	fmt.Println(ViaProxy(*proxy, *url))
	return nil
}

// cmdHold keeps a TCP connection to an echo server busy (a line every
// 100 ms, each echoed) and prints "open" once the first echo is back, then
// how it ended: "closed reset", "closed prohibited ...", "closed timeout"
// (no echo for 3 s), or "done" after --for.
func cmdHold(args []string) error {
	fs := flag.NewFlagSet("hold", flag.ContinueOnError)
	to := fs.String("to", "", "HOST:PORT of an echo server")
	src := fs.String("src", "", "source address")
	dur := fs.Duration("for", 10*time.Minute, "stop after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	d, err := dialer(*src, 0)
	if err != nil {
		return err
	}
	c, err := dialWith(d, "tcp", *to)
	if err != nil {
		fmt.Println("closed", classify(err))
		return nil
	}
	defer c.Close()
	end := time.Now().Add(*dur)
	buf := make([]byte, 256)
	for i := 0; time.Now().Before(end); i++ {
		_ = c.SetDeadline(time.Now().Add(probeTimeout))
		if _, err := fmt.Fprintf(c, "ping %d\n", i); err != nil {
			fmt.Println("closed", classify(err))
			return nil
		}
		if _, err := c.Read(buf); err != nil {
			fmt.Println("closed", tcpReadOutcome(err))
			return nil
		}
		if i == 0 {
			fmt.Println("open")
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Println("done")
	return nil
}
