package dnsfilter

// Checking answers, not only questions.
//
// A question the child may ask can still be answered with a name the child
// may not reach: `www.harmless.example CNAME casino.example`, a DNAME that
// maps a whole allowed zone onto a blocked one, or an HTTPS/SVCB record whose
// TargetName sends the browser elsewhere. So every forwarded answer to a
// protected device has its answer section walked, and each CNAME/DNAME
// target and SVCB/HTTPS TargetName goes through Decide with the same rules
// as the question. A blocked target turns the whole answer into the blocked
// answer; a safe-search target (an innocent name with a CNAME to
// www.google.com) turns it into the safe-search rewrite, as if the child had
// asked for that name.
//
// The same walk collects the A/AAAA addresses (and SVCB address hints) that
// strict egress opens, and caps their TTLs so a client never caches an
// address longer than the strict set holds it.
//
// Why a walker of its own rather than dnsmessage.Parser: this runs on every
// forwarded answer, and it needs only the record headers, the offsets of the
// TTLs (to cap them in place) and the rdata of four record types. The walker
// allocates nothing unless a target name or an address is found.

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"time"

	"github.com/famguard/famguard/agent/egress"
)

// Record types the walker looks into.
const (
	typeA     = 1
	typeCNAME = 5
	typeAAAA  = 28
	typeDNAME = 39
	typeSVCB  = 64
	typeHTTPS = 65
	classIN   = 1

	svcParamIPv4Hint = 4
	svcParamIPv6Hint = 6
)

var errBadAnswer = errors.New("malformed DNS answer")

// target is a name an answer points the client to.
type target struct {
	kind string // "CNAME", "DNAME", "HTTPS", "SVCB"
	name string // lower case, no root dot
}

// opened is an address an answer gives the client, with its TTL: what
// strict egress opens (egress.Sets.AddAll takes them as they are).
type opened = egress.Entry

func openedAt(a netip.Addr, ttl uint32) opened {
	return opened{Addr: a, TTL: time.Duration(ttl) * time.Second}
}

// answerScan is what walkAnswers found.
type answerScan struct {
	rcode   int
	targets []target
	addrs   []opened
}

// walkAnswers walks msg's header, questions and answer section. With
// collect it also gathers A/AAAA addresses and SVCB hints (class IN), and
// lowers every answer record's TTL above maxTTL to maxTTL, in msg itself.
// A message that does not hold together is errBadAnswer.
func walkAnswers(msg []byte, collect bool, maxTTL uint32) (answerScan, error) {
	var sc answerScan
	if len(msg) < headerLen {
		return sc, errBadAnswer
	}
	sc.rcode = int(msg[3] & 0x0F)
	qd, an := int(binary.BigEndian.Uint16(msg[4:])), int(binary.BigEndian.Uint16(msg[6:]))
	off := headerLen
	var err error
	for range qd {
		if off, err = skipName(msg, off); err != nil || off+4 > len(msg) {
			return sc, errBadAnswer
		}
		off += 4
	}
	for range an {
		if off, err = skipName(msg, off); err != nil || off+10 > len(msg) {
			return sc, errBadAnswer
		}
		typ, class := binary.BigEndian.Uint16(msg[off:]), binary.BigEndian.Uint16(msg[off+2:])
		ttl := binary.BigEndian.Uint32(msg[off+4:])
		rdlen := int(binary.BigEndian.Uint16(msg[off+8:]))
		if collect && ttl > maxTTL {
			ttl = maxTTL
			binary.BigEndian.PutUint32(msg[off+4:], ttl)
		}
		rd := off + 10
		end := rd + rdlen
		if end > len(msg) {
			return sc, errBadAnswer
		}
		switch typ {
		case typeCNAME, typeDNAME:
			name, next, err := readName(msg, rd)
			if err != nil || next != end {
				return sc, errBadAnswer
			}
			kind := "CNAME"
			if typ == typeDNAME {
				kind = "DNAME"
			}
			sc.targets = append(sc.targets, target{kind, name})
		case typeSVCB, typeHTTPS:
			if rdlen < 3 {
				return sc, errBadAnswer
			}
			name, next, err := readName(msg, rd+2)
			if err != nil || next > end {
				return sc, errBadAnswer
			}
			// "." (the owner itself) is no new name; in alias mode
			// (priority 0) it means "no service", also nothing to check.
			if name != "" {
				kind := "HTTPS"
				if typ == typeSVCB {
					kind = "SVCB"
				}
				sc.targets = append(sc.targets, target{kind, name})
			}
			if collect && class == classIN {
				if sc.addrs, err = svcHints(msg[next:end], ttl, sc.addrs); err != nil {
					return sc, err
				}
			}
		case typeA:
			if collect && class == classIN && rdlen == 4 {
				sc.addrs = append(sc.addrs, openedAt(netip.AddrFrom4([4]byte(msg[rd:end])), ttl))
			}
		case typeAAAA:
			if collect && class == classIN && rdlen == 16 {
				sc.addrs = append(sc.addrs, openedAt(netip.AddrFrom16([16]byte(msg[rd:end])).Unmap(), ttl))
			}
		}
		off = end
	}
	return sc, nil
}

// svcHints appends the ipv4hint and ipv6hint addresses of SVCB parameters
// (key, length, value; RFC 9460 section 2.2) to out: browsers may connect
// to a hint before (or instead of) resolving A/AAAA.
func svcHints(params []byte, ttl uint32, out []opened) ([]opened, error) {
	for len(params) > 0 {
		if len(params) < 4 {
			return out, errBadAnswer
		}
		key, n := binary.BigEndian.Uint16(params), int(binary.BigEndian.Uint16(params[2:]))
		if 4+n > len(params) {
			return out, errBadAnswer
		}
		v := params[4 : 4+n]
		switch {
		case key == svcParamIPv4Hint && n%4 == 0:
			for i := 0; i < n; i += 4 {
				out = append(out, openedAt(netip.AddrFrom4([4]byte(v[i:])), ttl))
			}
		case key == svcParamIPv6Hint && n%16 == 0:
			for i := 0; i < n; i += 16 {
				out = append(out, openedAt(netip.AddrFrom16([16]byte(v[i:])).Unmap(), ttl))
			}
		}
		params = params[4+n:]
	}
	return out, nil
}

// maxPointers bounds the compression pointers followed in one name; a
// legitimate name has far fewer, and a loop is cut off by it.
const maxPointers = 32

// skipName returns the offset after the (possibly compressed) name at off.
func skipName(msg []byte, off int) (int, error) {
	for {
		if off >= len(msg) {
			return 0, errBadAnswer
		}
		l := int(msg[off])
		switch {
		case l == 0:
			return off + 1, nil
		case l&0xC0 == 0xC0:
			if off+2 > len(msg) {
				return 0, errBadAnswer
			}
			return off + 2, nil
		case l&0xC0 != 0:
			return 0, errBadAnswer
		}
		off += 1 + l
	}
}

// readName decodes the name at off, lower-cased, labels joined by dots,
// without the root dot ("" for the root), and returns the offset after it
// in the record (after its first pointer, if compressed).
func readName(msg []byte, off int) (string, int, error) {
	var b strings.Builder
	b.Grow(64) // most names fit: one allocation
	next, ptrs := -1, 0
	for {
		if off >= len(msg) {
			return "", 0, errBadAnswer
		}
		l := int(msg[off])
		switch {
		case l == 0:
			if next < 0 {
				next = off + 1
			}
			return b.String(), next, nil
		case l&0xC0 == 0xC0:
			if off+2 > len(msg) || ptrs == maxPointers {
				return "", 0, errBadAnswer
			}
			if next < 0 {
				next = off + 2
			}
			ptrs++
			off = int(binary.BigEndian.Uint16(msg[off:]) & 0x3FFF)
			continue
		case l&0xC0 != 0:
			return "", 0, errBadAnswer
		}
		if off+1+l > len(msg) || b.Len()+l+1 > 255 {
			return "", 0, errBadAnswer
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		for _, c := range msg[off+1 : off+1+l] {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			b.WriteByte(c)
		}
		off += 1 + l
	}
}
