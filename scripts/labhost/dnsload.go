package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// dnsLoadResult is what `labhost dnsload` prints (one JSON line).
type dnsLoadResult struct {
	Mode     string  `json:"mode"`
	Seconds  float64 `json:"seconds"`
	Sent     int64   `json:"sent"`
	Answered int64   `json:"answered"`
	Lost     int64   `json:"lost"`
	// Latency percentiles over every query sent (paced mode), a lost query
	// counting as slower than any answer: -1 when the percentile falls on a
	// lost one. Microseconds.
	P50us int64 `json:"p50_us"`
	P99us int64 `json:"p99_us"`
	MaxUs int64 `json:"max_us"`
}

// dnsload sends DNS queries (A, distinct names) to a server and reports how
// they were answered. Two modes:
//
//   - paced: an ordinary device: one query every 1/rate, each waiting for
//     its answer (up to --timeout) before the next, latency measured;
//   - flood: open loop, --rate queries a second spread over --sockets
//     sockets, answers counted as they come back.
//
// Both stop by themselves after --for (and at most --max queries).
func dnsload(args []string) error {
	fs := flag.NewFlagSet("dnsload", flag.ContinueOnError)
	server := fs.String("server", "", "HOST:PORT of the DNS server")
	mode := fs.String("mode", "paced", "paced or flood")
	rate := fs.Int("rate", 20, "queries per second")
	dur := fs.Duration("for", 10*time.Second, "how long to send")
	maxQ := fs.Int64("max", 2_000_000, "at most this many queries")
	sockets := fs.Int("sockets", 4, "sockets (flood mode)")
	timeout := fs.Duration("timeout", time.Second, "how long a query waits for its answer (paced mode)")
	prefix := fs.String("name", "q", "first label of the names asked (NAME-N.load.example)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *server == "" || *rate <= 0 || *dur <= 0 || *dur > 10*time.Minute {
		return errors.New("dnsload: --server, a positive --rate and a --for of at most 10m are needed")
	}
	var res dnsLoadResult
	var err error
	switch *mode {
	case "paced":
		res, err = paced(*server, *rate, *dur, *maxQ, *timeout, *prefix)
	case "flood":
		res, err = flood(*server, *rate, *dur, *maxQ, max(*sockets, 1), *prefix)
	default:
		return fmt.Errorf("dnsload: unknown mode %q", *mode)
	}
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// dnsQuery builds a recursive A query for name with id.
func dnsQuery(id uint16, name string) []byte {
	b := make([]byte, 12, 12+len(name)+6)
	binary.BigEndian.PutUint16(b[0:], id)
	b[2] = 0x01 // RD
	binary.BigEndian.PutUint16(b[4:], 1)
	for _, label := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		b = append(b, byte(len(label)))
		b = append(b, label...)
	}
	return append(b, 0, 0, 1, 0, 1) // root, type A, class IN
}

// isAnswer reports whether p is a response with ID id.
func isAnswer(p []byte, id uint16) bool {
	return len(p) >= 12 && binary.BigEndian.Uint16(p) == id && p[2]&0x80 != 0
}

func paced(server string, rate int, dur time.Duration, maxQ int64, timeout time.Duration, prefix string) (dnsLoadResult, error) {
	res := dnsLoadResult{Mode: "paced"}
	c, err := net.Dial("udp", server)
	if err != nil {
		return res, err
	}
	defer c.Close()
	interval := time.Second / time.Duration(rate)
	buf := make([]byte, 4096)
	var lat []time.Duration
	start := time.Now()
	for i := int64(0); i < maxQ; i++ {
		at := start.Add(time.Duration(i) * interval)
		if at.Sub(start) >= dur {
			break
		}
		time.Sleep(time.Until(at))
		id := uint16(i)
		t0 := time.Now()
		if _, err := c.Write(dnsQuery(id, fmt.Sprintf("%s-%d.load.example", prefix, i))); err != nil {
			return res, err
		}
		res.Sent++
		got := time.Duration(-1)
		for {
			_ = c.SetReadDeadline(t0.Add(timeout))
			n, err := c.Read(buf)
			if err != nil {
				break // timed out: lost
			}
			if isAnswer(buf[:n], id) {
				got = time.Since(t0)
				break
			}
		}
		if got < 0 {
			res.Lost++
			lat = append(lat, time.Duration(1<<62))
			continue
		}
		res.Answered++
		lat = append(lat, got)
	}
	res.Seconds = time.Since(start).Seconds()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(q float64) int64 {
		if len(lat) == 0 {
			return -1
		}
		d := lat[min(len(lat)-1, int(q*float64(len(lat))))]
		if d == time.Duration(1<<62) {
			return -1
		}
		return d.Microseconds()
	}
	res.P50us, res.P99us, res.MaxUs = pct(0.50), pct(0.99), pct(1)
	return res, nil
}

func flood(server string, rate int, dur time.Duration, maxQ int64, sockets int, prefix string) (dnsLoadResult, error) {
	res := dnsLoadResult{Mode: "flood", P50us: -1, P99us: -1, MaxUs: -1}
	var sent, answered atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(dur)
	perSocket := float64(rate) / float64(sockets)
	const tick = time.Millisecond
	for s := 0; s < sockets; s++ {
		c, err := net.Dial("udp", server)
		if err != nil {
			return res, err
		}
		defer c.Close()
		wg.Add(2)
		go func() { // answers: anything that is a response counts
			defer wg.Done()
			buf := make([]byte, 4096)
			for {
				_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
				n, err := c.Read(buf)
				if err != nil {
					if time.Now().After(end) {
						return
					}
					continue
				}
				if n >= 12 && buf[2]&0x80 != 0 {
					answered.Add(1)
				}
			}
		}()
		go func(s int) {
			defer wg.Done()
			// The names repeat every 1,000 queries: what is measured is the
			// filter, not how the upstream's cache grows.
			queries := make([][]byte, 1000)
			for i := range queries {
				queries[i] = dnsQuery(0, fmt.Sprintf("%s-%d-%d.load.example", prefix, s, i))
			}
			var n int64
			for now := time.Now(); now.Before(end); now = time.Now() {
				due := int64(perSocket * now.Sub(start).Seconds())
				for ; n < due && sent.Load() < maxQ; n++ {
					q := queries[n%int64(len(queries))]
					binary.BigEndian.PutUint16(q, uint16(n))
					if _, err := c.Write(q); err == nil {
						sent.Add(1)
					}
				}
				time.Sleep(tick)
			}
		}(s)
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	res.Sent, res.Answered = sent.Load(), answered.Load()
	res.Lost = res.Sent - res.Answered
	return res, nil
}
