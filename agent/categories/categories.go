// Package categories holds the category block lists (adult, gambling, ...)
// in a form small enough for a router, and answers "which categories list
// this name or one of its parent domains?".
//
// Why hashes: real lists hold about 1.4 million domains. As Go strings in a
// map that is 60–100 bytes a domain (a dnsmasq-like design measures ~75);
// a 256 MB router cannot afford it. Here every listed domain becomes one
// 64-bit key in one sorted slice for all categories: the domain's hash with
// its lowest bits replaced by the category's index (as few bits as the
// categories need: 4 for 9 to 16), 8 bytes a listed domain. Loading is streaming (no line is
// kept) into a slice sized from the files' line counts, so the peak during
// a load stays close to the settled size. A false match needs a collision
// of the hash's upper 60 bits between a queried name and a listed one: with
// 1.4 M entries the chance per query is about 1e-12.
//
// Why one slice: a lookup searches once per suffix of the queried name (a
// name has a handful), and the keys of one domain in every category lie
// side by side. With a slice per category, a name cost one search per
// suffix per category — 44 for a four-label name over 11 categories, each
// ending in cache misses: 5.4–6.9 µs a name over the shared lists
// (BenchmarkMatchSpread; the DNS filter spends some 15 µs of CPU on a
// whole query), and 0.9 µs with one slice, measured side by side. The one
// sort of all the keys is quicker too (sortKeys): the load of all lists
// took 278–343 ms against 324–358 before, and 8.004 bytes a domain against
// 8.032. (Estimating a key's position from its value, as the hashes are
// spread evenly, probed less but measured slower than halving, whose first
// steps stay in the CPU's cache: 1.1–1.2 against 0.9 µs a name.)
//
// A Store is immutable once built; a reload builds a new one and the owner
// swaps the pointer, so the old lists keep answering until the new ones are
// complete.
package categories

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unsafe"
)

// Store is a loaded set of category lists.
type Store struct {
	names []string // category names, sorted; a key's category is an index into it
	keys  []uint64 // every (domain, category): key(hash(domain), category), sorted and unique
	bits  uint     // the low bits of a key that hold the category
}

// key is the key of a domain with hash h in category cat.
func (s *Store) key(h uint64, cat int) uint64 { return h&^s.catMask() | uint64(cat) }

func (s *Store) catMask() uint64 { return 1<<s.bits - 1 }

// Stats describes a load.
type Stats struct {
	Categories int
	Domains    int // distinct entries summed over categories
	BadLines   int // lines that were not a domain (reported, skipped)
	Bytes      int // bytes of list files read
}

// hash is FNV-1a (64 bit) over the lower-cased name; inlined so that loading
// and lookups allocate nothing.
func hash(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// ParseLine extracts the domain of one list line, accepting plain domains,
// hosts-file lines ("0.0.0.0 name", "127.0.0.1 name"), adblock-style
// "||name^" and comments ("#", "!", trailing "# ..."). ok is false for blank
// and comment lines; err says why a non-blank line is not usable.
func ParseLine(line string) (domain string, ok bool, err error) {
	if i := strings.IndexByte(line, '#'); i >= 0 {
		line = line[:i]
	}
	line = strings.TrimSpace(line)
	if line == "" || line[0] == '!' || line[0] == '[' {
		return "", false, nil
	}
	if strings.HasPrefix(line, "||") {
		line = strings.TrimPrefix(line, "||")
		if i := strings.IndexAny(line, "^$/"); i >= 0 {
			line = line[:i]
		}
	} else if sp := strings.IndexAny(line, " \t"); sp >= 0 {
		// hosts-file form: the address, then one or more names; the
		// first name is the listed domain. (No strings.Fields: it would
		// allocate for every line of a million-line list.)
		addr, rest := line[:sp], strings.TrimLeft(line[sp:], " \t")
		if !looksLikeAddress(addr) {
			return "", false, fmt.Errorf("expected one domain per line, a hosts line or ||domain^")
		}
		if end := strings.IndexAny(rest, " \t"); end >= 0 {
			rest = rest[:end]
		}
		line = rest
	}
	d := strings.TrimSuffix(strings.ToLower(line), ".")
	d = strings.TrimPrefix(d, "*.")
	if looksLikeAddress(d) {
		return "", false, fmt.Errorf("%q is an address; lists hold domain names", line)
	}
	if !validDomain(d) {
		return "", false, fmt.Errorf("%q is not a domain name", line)
	}
	if d == "localhost" || d == "localhost.localdomain" || d == "local" || d == "broadcasthost" {
		return "", false, nil // hosts-file boilerplate, never a category entry
	}
	return d, true, nil
}

func looksLikeAddress(s string) bool {
	return strings.Count(s, ".") == 3 && strings.Trim(s, "0123456789.") == "" || strings.Contains(s, ":")
}

func validDomain(d string) bool {
	if len(d) == 0 || len(d) > 253 {
		return false
	}
	label := 0
	for i := 0; i < len(d); i++ {
		c := d[i]
		switch {
		case c == '.':
			if label == 0 {
				return false
			}
			label = 0
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
			label++
			if label > 63 {
				return false
			}
		default:
			return false
		}
	}
	return label > 0
}

// ReadList streams one list, calling add for every domain. The domain
// string is only valid during the call (it may share memory with the read
// buffer): copy it to keep it. This is what keeps a load free of per-line
// garbage, so its peak memory stays near the settled size.
func ReadList(r io.Reader, add func(domain string)) (bad int, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 64*1024)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		d, ok, perr := ParseLine(unsafe.String(&line[0], len(line)))
		switch {
		case perr != nil:
			bad++
		case ok:
			add(d)
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, bufio.ErrTooLong) {
		return bad, err
	}
	return bad, nil
}

// ListFile says whether a directory entry is a category list, and which
// category: <category>.txt, not hidden (editors' temporary files are).
func ListFile(name string) (category string, ok bool) {
	category, ok = strings.CutSuffix(name, ".txt")
	return category, ok && category != "" && !strings.HasPrefix(category, ".")
}

// Available lists the categories that have a list file in dir, without
// reading the lists (check and status use it to report missing lists).
func Available(dir string) (map[string]bool, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	avail := map[string]bool{}
	for _, e := range entries {
		if name, ok := ListFile(e.Name()); ok && !e.IsDir() {
			avail[name] = true
		}
	}
	return avail, nil
}

// Load reads every <category>.txt in dir.
func Load(dir string) (*Store, Stats, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, Stats{}, fmt.Errorf("categories directory %s: %w", dir, err)
	}
	s := &Store{}
	for _, e := range entries { // sorted by name: the names are too
		if name, ok := ListFile(e.Name()); ok && !e.IsDir() {
			s.names = append(s.names, name)
		}
	}
	s.bits = uint(bits.Len(uint(max(len(s.names), 1) - 1)))
	// Count the lines first (a fast pass over the page cache) so that the
	// slice is allocated once at its final size: no growth, no copy, no
	// garbage — the peak of a load stays near the settled size.
	lines := 0
	buf := make([]byte, 64*1024)
	for _, name := range s.names {
		n, err := countFile(filepath.Join(dir, name+".txt"), buf)
		if err != nil {
			return nil, Stats{}, fmt.Errorf("category list %s.txt: %w", name, err)
		}
		lines += n
	}
	s.keys = make([]uint64, 0, lines+len(s.names))
	var st Stats
	for cat, name := range s.names {
		f, err := os.Open(filepath.Join(dir, name+".txt"))
		if err != nil {
			return nil, st, fmt.Errorf("category list %s.txt: %w", name, err)
		}
		fi, _ := f.Stat()
		bad, err := ReadList(f, func(d string) { s.keys = append(s.keys, s.key(hash(d), cat)) })
		f.Close()
		if err != nil {
			return nil, st, fmt.Errorf("category list %s.txt: %w", name, err)
		}
		st.BadLines += bad
		st.Bytes += int(fi.Size())
	}
	sortKeys(s.keys)
	s.keys = slices.Clip(slices.Compact(s.keys))
	st.Categories, st.Domains = len(s.names), len(s.keys)
	return s, st, nil
}

// sortKeys sorts keys that are spread evenly over 64 bits, in place: one
// pass moves each key into the bucket of its top byte (American flag sort),
// then each of the 256 buckets is sorted on its own. One sort of all the
// lists' 1.5 M keys took longer than the sorts of one list each that it
// replaced; buckets of some 6,000 keys sort in fewer steps, and stay in the
// CPU's cache.
func sortKeys(ks []uint64) {
	if len(ks) < 1<<12 {
		slices.Sort(ks)
		return
	}
	var count, start [256]int
	for _, k := range ks {
		count[k>>56]++
	}
	for b := 1; b < 256; b++ {
		start[b] = start[b-1] + count[b-1]
	}
	next := start // where bucket b's next key goes
	for b := range 256 {
		end := start[b] + count[b]
		for next[b] < end {
			k := ks[next[b]]
			d := k >> 56
			if int(d) == b {
				next[b]++
				continue
			}
			ks[next[b]], ks[next[d]] = ks[next[d]], k
			next[d]++
		}
	}
	for b := range 256 {
		slices.Sort(ks[start[b] : start[b]+count[b]])
	}
}

// countFile counts the lines of the file at path.
func countFile(path string, buf []byte) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return countLines(f, buf)
}

// countLines counts newline-terminated lines (plus a last unterminated one).
func countLines(r io.Reader, buf []byte) (int, error) {
	n, last := 0, byte('\n')
	for {
		k, err := r.Read(buf)
		if k > 0 {
			n += bytes.Count(buf[:k], []byte{'\n'})
			last = buf[k-1]
		}
		if err == io.EOF {
			if last != '\n' {
				n++
			}
			return n, nil
		}
		if err != nil {
			return 0, err
		}
	}
}

// Categories lists the loaded categories.
func (s *Store) Categories() []string { return append([]string(nil), s.names...) }

// Has reports whether a category has a list.
func (s *Store) Has(category string) bool {
	_, ok := slices.BinarySearch(s.names, category)
	return ok
}

// Len is the number of entries over all categories.
func (s *Store) Len() int { return len(s.keys) }

// Match returns the categories among `among` (nil: all) that list name or
// one of its parent domains, and the listed domain that matched first: the
// longest one listed in the first of those categories. One search per
// suffix of name finds that suffix's keys in every category.
func (s *Store) Match(name string, among []string) (cats []string, listed string) {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	type hit struct{ cat, at int } // a category, and where in name its longest listed suffix starts
	var buf [8]hit
	hits := buf[:0]
	mask := s.catMask()
	for at := 0; at < len(name); {
		h := hash(name[at:]) &^ mask
		i, _ := slices.BinarySearch(s.keys, h) // the first key of this hash, if any
		for ; i < len(s.keys) && s.keys[i]&^mask == h; i++ {
			cat := int(s.keys[i] & mask)
			if among != nil && !slices.Contains(among, s.names[cat]) {
				continue
			}
			// hits stay in category order (the names' order); a category
			// hit before keeps its longer suffix. A plain loop: a generic
			// sort or search of hits would cost the mips build a 64 KiB
			// step (Makefile, size-check).
			j := 0
			for j < len(hits) && hits[j].cat < cat {
				j++
			}
			if j < len(hits) && hits[j].cat == cat {
				continue
			}
			hits = append(hits, hit{})
			copy(hits[j+1:], hits[j:])
			hits[j] = hit{cat, at}
		}
		dot := strings.IndexByte(name[at:], '.')
		if dot < 0 {
			break
		}
		at += dot + 1
	}
	if len(hits) == 0 {
		return nil, ""
	}
	for _, x := range hits {
		cats = append(cats, s.names[x.cat])
	}
	return cats, name[hits[0].at:]
}
