// Package tzif turns one entry of famguard's compact zone table into a TZif
// version 2 file that time.LoadLocationFromTZData understands.
//
// An entry is a POSIX TZ rule (the footer of the zone's TZif file), alone
// when the rule reproduces the zone over the table's window, or followed by
// the zone's explicit transitions in that window:
//
//	footer
//	footer|types|transitions
//
// types is a comma-separated list of abbr:offset (seconds east of UTC),
// with ":d" appended for daylight-saving types; transitions is a
// space-separated list of unix:typeindex. The first transition's type also
// applies to every earlier instant; after the last one the footer governs.
package tzif

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
)

// Type is one kind of local time: abbreviation, offset and DST flag.
type Type struct {
	Abbr   string
	Offset int // seconds east of UTC
	DST    bool
}

// Transition is the instant from which a type is in effect.
type Transition struct {
	At   int64 // unix seconds
	Type int   // index into Entry.Types
}

// Entry is a decoded table entry.
type Entry struct {
	Footer string
	Types  []Type
	Trans  []Transition
}

// Encode writes the entry in the table format.
func (e Entry) Encode() string {
	if len(e.Trans) == 0 {
		return e.Footer
	}
	var b strings.Builder
	b.WriteString(e.Footer)
	b.WriteByte('|')
	for i, t := range e.Types {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s:%d", t.Abbr, t.Offset)
		if t.DST {
			b.WriteString(":d")
		}
	}
	b.WriteByte('|')
	for i, t := range e.Trans {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d:%d", t.At, t.Type)
	}
	return b.String()
}

// Decode reads an entry written by Encode.
func Decode(s string) (Entry, error) {
	parts := strings.Split(s, "|")
	e := Entry{Footer: parts[0]}
	if e.Footer == "" || strings.ContainsAny(e.Footer, "\n\x00") {
		return Entry{}, fmt.Errorf("zone entry %q: bad footer", s)
	}
	switch len(parts) {
	case 1:
		return e, nil
	case 3:
	default:
		return Entry{}, fmt.Errorf("zone entry %q: want footer or footer|types|transitions", s)
	}
	for _, f := range strings.Split(parts[1], ",") {
		tf := strings.Split(f, ":")
		if len(tf) < 2 || len(tf) > 3 || (len(tf) == 3 && tf[2] != "d") || tf[0] == "" {
			return Entry{}, fmt.Errorf("zone entry %q: bad type %q", s, f)
		}
		off, err := strconv.Atoi(tf[1])
		if err != nil || off < -26*3600 || off > 26*3600 {
			return Entry{}, fmt.Errorf("zone entry %q: bad offset in %q", s, f)
		}
		e.Types = append(e.Types, Type{Abbr: tf[0], Offset: off, DST: len(tf) == 3})
	}
	for _, f := range strings.Fields(parts[2]) {
		at, idx, ok := strings.Cut(f, ":")
		if !ok {
			return Entry{}, fmt.Errorf("zone entry %q: bad transition %q", s, f)
		}
		sec, err1 := strconv.ParseInt(at, 10, 64)
		i, err2 := strconv.Atoi(idx)
		if err1 != nil || err2 != nil || i < 0 || i >= len(e.Types) {
			return Entry{}, fmt.Errorf("zone entry %q: bad transition %q", s, f)
		}
		e.Trans = append(e.Trans, Transition{At: sec, Type: i})
	}
	if len(e.Trans) == 0 {
		return Entry{}, fmt.Errorf("zone entry %q: no transitions", s)
	}
	return e, nil
}

// beginning is the time of the first transition in a built file: the first
// type applies from (practically) the beginning of time.
const beginning = -1 << 59

// TZif builds a TZif version 2 file: an empty version 1 block, then the
// 64-bit block with the transitions, and the footer. With no transitions it
// holds one at the beginning of time to a placeholder UTC type, so the footer
// governs every instant.
func (e Entry) TZif() []byte {
	types, trans := e.Types, e.Trans
	if len(trans) == 0 {
		types = []Type{{Abbr: "UTC"}}
		trans = []Transition{{At: beginning}}
	}
	var chars []byte
	abbrIndex := map[string]int{}
	for _, t := range types {
		if _, ok := abbrIndex[t.Abbr]; !ok {
			abbrIndex[t.Abbr] = len(chars)
			chars = append(append(chars, t.Abbr...), 0)
		}
	}
	var b bytes.Buffer
	header := func(timecnt, typecnt, charcnt int) {
		b.WriteString("TZif2")
		b.Write(make([]byte, 15))
		// isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt
		for _, v := range []int{0, 0, 0, timecnt, typecnt, charcnt} {
			_ = binary.Write(&b, binary.BigEndian, uint32(v))
		}
	}
	// Version 1 block: one type, no transitions (readers of version 2
	// files skip it).
	header(0, 1, 4)
	b.Write([]byte{0, 0, 0, 0, 0, 0})
	b.WriteString("UTC\x00")
	// Version 2 block.
	header(len(trans), len(types), len(chars))
	for i, t := range trans {
		at := t.At
		if i == 0 {
			at = beginning
		}
		_ = binary.Write(&b, binary.BigEndian, at)
	}
	for _, t := range trans {
		b.WriteByte(byte(t.Type))
	}
	for _, t := range types {
		_ = binary.Write(&b, binary.BigEndian, int32(t.Offset))
		dst := byte(0)
		if t.DST {
			dst = 1
		}
		b.Write([]byte{dst, byte(abbrIndex[t.Abbr])})
	}
	b.Write(chars)
	b.WriteString("\n" + e.Footer + "\n")
	return b.Bytes()
}
