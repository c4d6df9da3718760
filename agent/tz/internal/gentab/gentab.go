// Package gentab builds famguard's compact zone table (agent/tz/zones_gen.go)
// from Go's zone database, $GOROOT/lib/time/zoneinfo.zip. It is used by
// agent/tz/gen (go generate ./agent/tz) and by the test that checks the
// committed table is current.
package gentab

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"go/format"
	"io"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/famguard/famguard/agent/tz/internal/tzif"
)

// The window over which the table reproduces every zone exactly (offset and
// abbreviation). Outside it the zone's POSIX rule applies.
var (
	WindowStart = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	WindowEnd   = time.Date(2038, 1, 1, 0, 0, 0, 0, time.UTC)
)

// ZoneinfoZip is the path of the Go toolchain's zone database.
func ZoneinfoZip() (string, error) {
	goroot := runtime.GOROOT()
	if out, err := exec.Command("go", "env", "GOROOT").Output(); err == nil {
		goroot = strings.TrimSpace(string(out))
	}
	if goroot == "" {
		return "", errors.New("cannot find GOROOT: run with the go command in PATH")
	}
	return goroot + "/lib/time/zoneinfo.zip", nil
}

// ReadZip returns every zone in a zoneinfo.zip by name.
func ReadZip(path string) (map[string][]byte, error) {
	zr, err := zip.OpenReader(path)
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	zones := map[string][]byte{}
	for _, f := range zr.File {
		if f.FileInfo().IsDir() {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name, err)
		}
		zones[f.Name] = b
	}
	if len(zones) == 0 {
		return nil, fmt.Errorf("%s: no zones", path)
	}
	return zones, nil
}

// Footer returns the POSIX TZ rule at the end of a TZif version 2+ file.
func Footer(data []byte) (string, error) {
	if len(data) < 44 || string(data[:4]) != "TZif" {
		return "", errors.New("not a TZif file")
	}
	if data[4] < '2' {
		return "", errors.New("TZif version 1 has no footer")
	}
	if data[len(data)-1] != '\n' {
		return "", errors.New("no footer")
	}
	i := bytes.LastIndexByte(data[:len(data)-1], '\n')
	if i < 0 {
		return "", errors.New("no footer")
	}
	footer := string(data[i+1 : len(data)-1])
	if footer == "" {
		return "", errors.New("empty footer")
	}
	return footer, nil
}

// Period is a stretch of constant local time.
type Period struct {
	Start time.Time
	tzif.Type
}

// Periods lists loc's local-time periods from start until end (the last one
// runs past end), merging neighbours that differ in nothing (Go reports
// year ends of POSIX rules as zone bounds).
//
// Time.ZoneBounds can report an end that is not after the instant (on the
// last UTC day of a leap year served by a POSIX rule, golang/go#81583); there
// the walk steps 15 minutes at a time and bisects to the second any change it
// finds.
func Periods(loc *time.Location, start, end time.Time) []Period {
	typeAt := func(t time.Time) tzif.Type {
		lt := t.In(loc)
		abbr, off := lt.Zone()
		return tzif.Type{Abbr: abbr, Offset: off, DST: lt.IsDST()}
	}
	var ps []Period
	add := func(t time.Time, typ tzif.Type) {
		if n := len(ps); n == 0 || ps[n-1].Type != typ {
			ps = append(ps, Period{Start: t, Type: typ})
		}
	}
	for t := start; t.Before(end); {
		typ := typeAt(t)
		add(t, typ)
		_, next := t.In(loc).ZoneBounds()
		if next.IsZero() {
			break
		}
		if !next.After(t) {
			next = t.Add(15 * time.Minute)
			if nt := typeAt(next); nt != typ {
				lo, hi := t, next // typ at lo, another type at hi
				for hi.Sub(lo) > time.Second {
					mid := lo.Add(hi.Sub(lo) / 2).Truncate(time.Second)
					if typeAt(mid) == typ {
						lo = mid
					} else {
						hi = mid
					}
				}
				next = hi
			}
		}
		t = next
	}
	return ps
}

// SameLocalTime reports whether two period lists give every instant the same
// offset and abbreviation (the DST flag is not compared).
func SameLocalTime(a, b []Period) bool {
	strip := func(ps []Period) []Period {
		var out []Period
		for _, p := range ps {
			p.DST = false
			if n := len(out); n == 0 || out[n-1].Type != p.Type {
				out = append(out, p)
			}
		}
		return out
	}
	a, b = strip(a), strip(b)
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Type != b[i].Type || !a[i].Start.Equal(b[i].Start) {
			return false
		}
	}
	return true
}

// Entry computes a zone's table entry: its footer, plus its transitions in
// the window when the footer alone does not reproduce it there.
func Entry(name string, data []byte) (tzif.Entry, error) {
	footer, err := Footer(data)
	if err != nil {
		return tzif.Entry{}, fmt.Errorf("%s: %w", name, err)
	}
	full, err := time.LoadLocationFromTZData(name, data)
	if err != nil {
		return tzif.Entry{}, fmt.Errorf("%s: %w", name, err)
	}
	want := Periods(full, WindowStart, WindowEnd)
	e := tzif.Entry{Footer: footer}
	if got, err := periodsOf(name, e); err != nil {
		return tzif.Entry{}, err
	} else if SameLocalTime(got, want) {
		return e, nil
	}
	// The footer is not enough. Keep the window's transitions up to the
	// first one from which the footer is right for the rest of the window;
	// if there is none, keep them all plus the end of the last period, so
	// that the footer takes over only after it.
	ps := want
	for k := 1; k <= len(ps); k++ {
		e := withTransitions(footer, ps[:k])
		if got, err := periodsOf(name, e); err != nil {
			return tzif.Entry{}, err
		} else if SameLocalTime(got, want) {
			return e, nil
		}
	}
	last := ps[len(ps)-1]
	_, next := last.Start.In(full).ZoneBounds()
	for !next.IsZero() {
		lt := next.In(full)
		abbr, off := lt.Zone()
		typ := tzif.Type{Abbr: abbr, Offset: off, DST: lt.IsDST()}
		if typ != last.Type {
			ps = append(ps, Period{Start: next, Type: typ})
			break
		}
		_, next = lt.ZoneBounds()
	}
	e = withTransitions(footer, ps)
	got, err := periodsOf(name, e)
	if err != nil {
		return tzif.Entry{}, err
	}
	if !SameLocalTime(got, want) {
		return tzif.Entry{}, fmt.Errorf("%s: the table entry %q does not reproduce the zone", name, e.Encode())
	}
	return e, nil
}

// withTransitions is an entry with the footer and a transition at the start
// of each period.
func withTransitions(footer string, ps []Period) tzif.Entry {
	e := tzif.Entry{Footer: footer}
	index := map[tzif.Type]int{}
	for _, p := range ps {
		i, ok := index[p.Type]
		if !ok {
			i = len(e.Types)
			index[p.Type] = i
			e.Types = append(e.Types, p.Type)
		}
		e.Trans = append(e.Trans, tzif.Transition{At: p.Start.Unix(), Type: i})
	}
	return e
}

// periodsOf decodes what the table would hold and lists its periods.
func periodsOf(name string, e tzif.Entry) ([]Period, error) {
	d, err := tzif.Decode(e.Encode())
	if err != nil {
		return nil, err
	}
	loc, err := time.LoadLocationFromTZData(name, d.TZif())
	if err != nil {
		return nil, fmt.Errorf("%s: entry %q: %w", name, e.Encode(), err)
	}
	return Periods(loc, WindowStart, WindowEnd), nil
}

// Stats describes a generated table.
type Stats struct {
	Names, Entries int
	Explicit       []string // zones whose entry carries transitions
}

// Generate returns the Go source of zones_gen.go for the zones in zip.
func Generate(zipPath string) ([]byte, Stats, error) {
	zones, err := ReadZip(zipPath)
	if err != nil {
		return nil, Stats{}, err
	}
	names := make([]string, 0, len(zones))
	for n := range zones {
		names = append(names, n)
	}
	sort.Strings(names)
	byEntry := map[string][]string{}
	var st Stats
	for _, n := range names {
		if strings.ContainsAny(n, " \t\n|\"\\") {
			return nil, Stats{}, fmt.Errorf("zone name %q cannot be stored", n)
		}
		e, err := Entry(n, zones[n])
		if err != nil {
			return nil, Stats{}, err
		}
		if len(e.Trans) > 0 {
			st.Explicit = append(st.Explicit, n)
		}
		s := e.Encode()
		byEntry[s] = append(byEntry[s], n)
	}
	entries := make([]string, 0, len(byEntry))
	for s := range byEntry {
		entries = append(entries, s)
	}
	// Entries in the order of their first name, so the file reads like an
	// atlas and a tzdata update gives a small diff.
	sort.Slice(entries, func(i, j int) bool { return byEntry[entries[i]][0] < byEntry[entries[j]][0] })
	st.Names, st.Entries = len(names), len(entries)

	var b bytes.Buffer
	b.WriteString("// Code generated by go generate ./agent/tz (agent/tz/gen) from Go's lib/time/zoneinfo.zip; DO NOT EDIT.\n\n")
	b.WriteString("package tz\n\n")
	fmt.Fprintf(&b, "// zoneTable holds %d zone names in %d distinct entries, one line each:\n", st.Names, st.Entries)
	b.WriteString("// the entry (see internal/tzif), a tab, and the space-separated names that\n")
	fmt.Fprintf(&b, "// share it. Exact from %s to %s.\n", WindowStart.Format("2006-01-02"), WindowEnd.Format("2006-01-02"))
	b.WriteString("const zoneTable = \"\" +\n")
	for _, s := range entries {
		fmt.Fprintf(&b, "\t%q +\n", s+"\t")
		ns := byEntry[s]
		for len(ns) > 0 {
			k, width := 0, 0
			for k < len(ns) && (k == 0 || width+len(ns[k])+1 <= 72) {
				width += len(ns[k]) + 1
				k++
			}
			line := strings.Join(ns[:k], " ")
			ns = ns[k:]
			if len(ns) > 0 {
				line += " "
			} else {
				line += "\n"
			}
			fmt.Fprintf(&b, "\t%q +\n", line)
		}
	}
	b.WriteString("\t\"\"\n")
	src, err := format.Source(b.Bytes())
	if err != nil {
		return nil, Stats{}, err
	}
	return src, st, nil
}

// Transitions reads the 64-bit transitions of a TZif version 2+ file: when
// each happens and the local time it starts.
func Transitions(data []byte) ([]int64, []tzif.Type, error) {
	bad := errors.New("malformed TZif file")
	counts := func(p []byte) (isut, isstd, leap, time, typ, char int, ok bool) {
		if len(p) < 44 || string(p[:4]) != "TZif" {
			return 0, 0, 0, 0, 0, 0, false
		}
		n := make([]int, 6)
		for i := range n {
			n[i] = int(binary.BigEndian.Uint32(p[20+4*i:]))
		}
		return n[0], n[1], n[2], n[3], n[4], n[5], true
	}
	isut, isstd, leap, timecnt, typecnt, charcnt, ok := counts(data)
	if !ok || data[4] < '2' {
		return nil, nil, bad
	}
	v1 := 44 + timecnt*5 + typecnt*6 + charcnt + leap*8 + isstd + isut
	if len(data) < v1 {
		return nil, nil, bad
	}
	p := data[v1:]
	_, _, _, timecnt, typecnt, charcnt, ok = counts(p)
	if !ok || len(p) < 44+timecnt*9+typecnt*6+charcnt {
		return nil, nil, bad
	}
	p = p[44:]
	whens := make([]int64, timecnt)
	for i := range whens {
		whens[i] = int64(binary.BigEndian.Uint64(p[8*i:]))
	}
	idx := p[8*timecnt : 9*timecnt]
	ttinfo := p[9*timecnt : 9*timecnt+6*typecnt]
	chars := p[9*timecnt+6*typecnt : 9*timecnt+6*typecnt+charcnt]
	types := make([]tzif.Type, timecnt)
	for i, k := range idx {
		if int(k) >= typecnt {
			return nil, nil, bad
		}
		tt := ttinfo[6*int(k):]
		a := int(tt[5])
		if a >= len(chars) {
			return nil, nil, bad
		}
		abbr, _, _ := bytes.Cut(chars[a:], []byte{0})
		types[i] = tzif.Type{Abbr: string(abbr), Offset: int(int32(binary.BigEndian.Uint32(tt))), DST: tt[4] != 0}
	}
	return whens, types, nil
}
