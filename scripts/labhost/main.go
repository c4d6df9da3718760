// Command labhost is the lab's stand-in for the rest of the world: run inside
// a namespace, it serves HTTP and an endless TCP stream on the "internet"
// host, and on a device it holds a stream open or probes reachability every
// few milliseconds. Standard library only, so the lab needs nothing more.
//
//	labhost serve  [--addr [::]:8080] [--stream-addr [::]:9000]
//	labhost stream --to HOST:PORT [--timeout 1s]
//	labhost probe  --to HOST:PORT [--every 20ms] [--for 10s]
//	labhost dnsload --server HOST:PORT [--mode paced|flood] [--rate N] [--for 10s]
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: labhost serve|stream|probe|dnsload [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "stream":
		err = stream(os.Args[2:])
	case "probe":
		err = probe(os.Args[2:])
	case "dnsload":
		err = dnsload(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "labhost:", err)
		os.Exit(1)
	}
}

func stamp() string { return time.Now().Format("15:04:05.000") }

// serve answers HTTP with the host name, and streams a line every 50 ms to
// whoever connects to the stream port.
func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	addr := fs.String("addr", "[::]:8080", "HTTP listen address")
	streamAddr := fs.String("stream-addr", "[::]:9000", "stream listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	host, _ := os.Hostname()
	ln, err := net.Listen("tcp", *streamAddr)
	if err != nil {
		return err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				for i := 0; ; i++ {
					if _, err := fmt.Fprintf(c, "chunk %d %s\n", i, stamp()); err != nil {
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			}(c)
		}
	}()
	return http.ListenAndServe(*addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s\n", host)
	}))
}

// stream connects and prints each received line with a timestamp; it exits
// non-zero when the stream dies (reset, or silent for --timeout).
func stream(args []string) error {
	fs := flag.NewFlagSet("stream", flag.ContinueOnError)
	to := fs.String("to", "", "HOST:PORT of the stream server")
	timeout := fs.Duration("timeout", time.Second, "give up after this long without data")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := net.DialTimeout("tcp", *to, 2*time.Second)
	if err != nil {
		return fmt.Errorf("%s stream could not connect: %w", stamp(), err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		_ = c.SetReadDeadline(time.Now().Add(*timeout))
		line, err := r.ReadString('\n')
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return fmt.Errorf("%s stream stalled: no data for %v", stamp(), *timeout)
			}
			return fmt.Errorf("%s stream ended: %w", stamp(), err)
		}
		fmt.Printf("%s %s", stamp(), line)
	}
}

// probe opens a TCP connection every --every and prints a line whenever the
// outcome changes (and a summary at the end, also when stopped by SIGTERM or
// SIGINT): "ok" or "blocked: <why>".
func probe(args []string) error {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	to := fs.String("to", "", "HOST:PORT to connect to")
	every := fs.Duration("every", 20*time.Millisecond, "probe interval")
	dur := fs.Duration("for", 10*time.Second, "how long to probe")
	if err := fs.Parse(args); err != nil {
		return err
	}
	last := ""
	oks, blocked := 0, 0
	end := time.Now().Add(*dur)
	// SIGTERM or SIGINT end the probing early, still with the summary, so a
	// test can probe for exactly as long as a fault lasts.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	for time.Now().Before(end) && len(stop) == 0 {
		state := "ok"
		c, err := net.DialTimeout("tcp", *to, *every*5)
		if err != nil {
			state = "blocked: " + reason(err)
			blocked++
		} else {
			c.Close()
			oks++
		}
		if state != last {
			fmt.Printf("%s %s\n", stamp(), state)
			last = state
		}
		time.Sleep(*every)
	}
	fmt.Printf("%s summary: %d ok, %d blocked\n", stamp(), oks, blocked)
	return nil
}

func reason(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, errConnRefused):
		return "connection refused"
	}
	return err.Error()
}
