// Package categories holds the category block lists (adult, gambling, ...)
// in a form small enough for a router, and answers "which categories list
// this name or one of its parent domains?".
//
// Why hashes: real lists hold about 1.4 million domains. As Go strings in a
// map that is 60–100 bytes a domain (a dnsmasq-like design measures ~75);
// a 256 MB router cannot afford it. Here every listed domain becomes one
// 64-bit hash in a sorted slice per category: 8 bytes a domain, lookups are a
// binary search per suffix of the queried name (a name has a handful), and
// loading is streaming (no line is kept) into a slice sized from the file
// size, so the peak during a load stays close to the settled size. A false
// match needs a 64-bit collision between a queried name and a listed one:
// with 1.4 M entries the chance per query is about 1e-13.
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
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"unsafe"
)

// Store is a loaded set of category lists.
type Store struct {
	names  []string   // category names, sorted
	hashes [][]uint64 // per category, sorted and unique
	total  int
}

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
	var st Stats
	for _, e := range entries {
		name, ok := ListFile(e.Name())
		if !ok || e.IsDir() {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, st, fmt.Errorf("category list %s: %w", e.Name(), err)
		}
		fi, _ := f.Stat()
		// Count lines first (a fast pass over the page cache) so the
		// slice is allocated once at its final size: no growth, no copy,
		// no garbage — the peak of a load stays near the settled size.
		lines, err := countLines(f)
		if err == nil {
			_, err = f.Seek(0, io.SeekStart)
		}
		if err != nil {
			f.Close()
			return nil, st, fmt.Errorf("category list %s: %w", e.Name(), err)
		}
		hs := make([]uint64, 0, lines+1)
		bad, err := ReadList(f, func(d string) { hs = append(hs, hash(d)) })
		f.Close()
		if err != nil {
			return nil, st, fmt.Errorf("category list %s: %w", e.Name(), err)
		}
		slices.Sort(hs)
		hs = slices.Clip(slices.Compact(hs))
		s.names = append(s.names, name)
		s.hashes = append(s.hashes, hs)
		s.total += len(hs)
		st.BadLines += bad
		st.Bytes += int(fi.Size())
	}
	// names came from ReadDir (sorted), hashes parallel to them.
	st.Categories, st.Domains = len(s.names), s.total
	return s, st, nil
}

// countLines counts newline-terminated lines (plus a last unterminated one).
func countLines(r io.Reader) (int, error) {
	buf := make([]byte, 64*1024)
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
func (s *Store) Len() int { return s.total }

// Match returns the categories among `among` (nil: all) that list name or
// one of its parent domains, and the listed domain that matched first.
func (s *Store) Match(name string, among []string) (cats []string, listed string) {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	for i, cat := range s.names {
		if among != nil && !slices.Contains(among, cat) {
			continue
		}
		if l, ok := suffixIn(s.hashes[i], name); ok {
			cats = append(cats, cat)
			if listed == "" {
				listed = l
			}
		}
	}
	sort.Strings(cats)
	return cats, listed
}

// suffixIn checks name and each parent domain against a sorted hash list.
func suffixIn(hs []uint64, name string) (string, bool) {
	for s := name; s != ""; {
		if _, ok := slices.BinarySearch(hs, hash(s)); ok {
			return s, true
		}
		i := strings.IndexByte(s, '.')
		if i < 0 {
			break
		}
		s = s[i+1:]
	}
	return "", false
}
