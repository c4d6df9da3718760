package main

import (
	"encoding/binary"
	"fmt"
	"math/rand"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// The load generator. Every query of a run comes from one shared,
// interleaved sequence (blocked, allowed, blocked, ...): each worker takes
// the next index from a shared counter, so the names sent are half blocked
// and half allowed whatever the number of workers and whichever class the
// server answers faster (at most `inflight` queries apart). Queries are
// packed once; a send only stamps the ID, and an answer is parsed only as
// far as its first A record, so the generator's own cost per query stays
// small next to the servers'.

// noAddress stands for an answer without an A record.
var noAddress = [4]byte{255, 255, 255, 255}

// mix is the query sequence of one list size.
type mix struct {
	names   []string
	packed  [][]byte
	blocked []bool    // names[i] is listed (every even i when there are lists)
	want    [][4]byte // the upstream's address for names[i] (upstreamAddrFor)
}

// newMix interleaves blocked names (taken at random from domains) with
// popular allowed ones; with no domains every name is an allowed one. With
// unique, the allowed names are u0.bench.example, u1.bench.example, …: each
// answers an address no earlier name did (the worst case for strict
// egress, one kernel set add per answer).
func newMix(domains, allowed []string, size int, unique bool) *mix {
	rng := rand.New(rand.NewSource(1))
	m := &mix{names: make([]string, size), packed: make([][]byte, size), blocked: make([]bool, size), want: make([][4]byte, size)}
	for i := range m.names {
		switch {
		case i%2 == 0 && len(domains) > 0:
			m.names[i], m.blocked[i] = domains[rng.Intn(len(domains))], true
		case unique:
			m.names[i] = fmt.Sprintf("u%d%s", i, uniqueSuffix)
		default:
			m.names[i] = allowed[rng.Intn(len(allowed))]
		}
		m.packed[i] = packQuery(m.names[i])
		m.want[i] = upstreamAddrFor(m.packed[i][12 : len(m.packed[i])-4])
	}
	return m
}

// uniqueSuffix ends the synthesized names of -unique.
const uniqueSuffix = ".bench.example"

// upstreamAddrFor is the address the bench upstream answers for a name in
// wire format (labels, the root included): uN.bench.example answers
// 10.0.0.0 + N (so -unique's names never repeat an address below 2^24
// names), any other name an address in 198.18.0.0/15 (RFC 2544's benchmark
// range) by a hash of the name, case folded. So popular names each have
// their own address and repeat it, as on a real network: strict egress
// opens each once, then finds it already open.
func upstreamAddrFor(wire []byte) [4]byte {
	if n := int(wire[0]); n > 1 && n < len(wire) && wire[1] == 'u' &&
		strings.EqualFold(string(wire[1+n:]), "\x05bench\x07example\x00") {
		if v, err := strconv.Atoi(string(wire[2 : 1+n])); err == nil {
			return [4]byte{10, byte(v >> 16), byte(v >> 8), byte(v)}
		}
	}
	h := uint32(2166136261) // FNV-1a
	for _, c := range wire {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		h = (h ^ uint32(c)) * 16777619
	}
	return [4]byte{198, 18 | byte(h>>16&1), byte(h >> 8), byte(h)}
}

func packQuery(name string) []byte {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{RecursionDesired: true})
	_ = b.StartQuestions()
	_ = b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name + "."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	out, err := b.Finish()
	if err != nil {
		panic(err)
	}
	return out
}

// loadResult is what one load phase measured.
type loadResult struct {
	sent, answered   int64
	blockedAnswered  int64 // answers to blocked names (the served mix)
	timeouts, wrongs int64
	qps              float64
	elapsed          time.Duration
	p50, p99         time.Duration // over all answers
	p50Blocked       time.Duration
	p50Allowed       time.Duration
}

func (r loadResult) errorRate() float64 {
	if r.sent == 0 {
		return 1
	}
	return float64(r.timeouts+r.wrongs) / float64(r.sent)
}

func (r loadResult) blockedShare() float64 {
	if r.answered == 0 {
		return 0
	}
	return float64(r.blockedAnswered) / float64(r.answered)
}

// answerCheck says whether an answer is right for a name: echo accepts any
// answer with the query's ID; the filters must answer a blocked name with
// 0.0.0.0 and an allowed one with the upstream's address for it (or 0.0.0.0:
// a few popular names are listed too). A SERVFAIL (strict egress failing
// closed) is wrong.
type answerCheck int

const (
	checkFilter answerCheck = iota
	checkEcho
)

// runLoad sends m to addr from `workers` concurrent clients for d, starting
// at m's name number from (a phase after another goes on where it stopped:
// with -unique, a name asked before would find its address open already),
// and with to > 0 stopping before name number to.
func runLoad(addr string, m *mix, from, to int64, workers int, d time.Duration, check answerCheck) loadResult {
	var seq atomic.Int64
	seq.Store(from)
	var mu sync.Mutex
	var res loadResult
	var latB, latA []time.Duration
	start := time.Now()
	end := start.Add(d)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("udp", addr)
			if err != nil {
				return
			}
			defer conn.Close()
			var r loadResult
			var lb, la []time.Duration
			q := make([]byte, 512)
			buf := make([]byte, 4096)
			for time.Now().Before(end) {
				i := int(seq.Add(1) - 1)
				if to > 0 && int64(i) >= to {
					break
				}
				k := i % len(m.names)
				id := uint16(i)
				n := copy(q, m.packed[k])
				binary.BigEndian.PutUint16(q, id)
				t0 := time.Now()
				_ = conn.SetDeadline(t0.Add(2 * time.Second))
				r.sent++
				if _, err := conn.Write(q[:n]); err != nil {
					r.timeouts++
					continue
				}
				got, ok := readAnswer(conn, buf, id)
				if !ok {
					r.timeouts++
					continue
				}
				lat := time.Since(t0)
				r.answered++
				if m.blocked[k] {
					r.blockedAnswered++
					lb = append(lb, lat)
				} else {
					la = append(la, lat)
				}
				if check == checkEcho {
					continue
				}
				switch {
				case m.blocked[k] && got == [4]byte{}:
				case !m.blocked[k] && (got == m.want[k] || got == [4]byte{}):
				default:
					r.wrongs++
				}
			}
			mu.Lock()
			res.sent += r.sent
			res.answered += r.answered
			res.blockedAnswered += r.blockedAnswered
			res.timeouts += r.timeouts
			res.wrongs += r.wrongs
			latB, latA = append(latB, lb...), append(latA, la...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.qps = float64(res.answered) / res.elapsed.Seconds()
	all := append(append([]time.Duration(nil), latB...), latA...)
	res.p50, res.p99 = quantile(all, 0.5), quantile(all, 0.99)
	res.p50Blocked, res.p50Allowed = quantile(latB, 0.5), quantile(latA, 0.5)
	return res
}

func quantile(v []time.Duration, q float64) time.Duration {
	if len(v) == 0 {
		return 0
	}
	sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
	return v[int(q*float64(len(v)-1))]
}

// readAnswer reads until the answer to id arrives (a late answer to an
// earlier, timed-out query is skipped) and returns the address of its first
// A record, noAddress for an answer that has none (NXDOMAIN, SERVFAIL, an
// echo). ok is false on a timeout.
func readAnswer(conn net.Conn, buf []byte, id uint16) (a [4]byte, ok bool) {
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return a, false // the deadline passed (or the socket failed): no answer
		}
		if n < 12 || binary.BigEndian.Uint16(buf) != id || buf[2]&0x80 == 0 {
			continue
		}
		var p dnsmessage.Parser
		h, err := p.Start(buf[:n])
		if err != nil || h.RCode != dnsmessage.RCodeSuccess {
			return noAddress, true // not an address: wrong for a filter
		}
		if p.SkipAllQuestions() != nil {
			return noAddress, true
		}
		for {
			rh, err := p.AnswerHeader()
			if err != nil {
				return noAddress, true
			}
			if rh.Type == dnsmessage.TypeA {
				r, err := p.AResource()
				if err != nil {
					return noAddress, true
				}
				return r.A, true
			}
			if p.SkipAnswer() != nil {
				return noAddress, true
			}
		}
	}
}
