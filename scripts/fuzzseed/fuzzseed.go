// Package fuzzseed loads the committed seed corpora of famguard's fuzz
// targets, so every `go test` run replays them as regression tests and every
// `go test -fuzz` run starts from real inputs.
//
// Layout: the module's testdata/fuzz/<FuzzTarget>/ holds one seed per file.
// A file that starts with "go test fuzz v1" is in Go's own corpus format (one
// typed value per line, as `go test -fuzz` writes a failing input), so a
// reproducer Go wrote can be copied there as it is; any other file is one
// raw input, which the caller's raw function turns into the target's
// arguments (for targets that take a single []byte or string).
//
// Only test code imports this package.
package fuzzseed

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// Root returns the module's root directory (the one with go.mod), found by
// walking up from the test's working directory (its package directory).
func Root(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("fuzzseed: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Dir is the seed directory of a target.
func Dir(tb testing.TB, target string) string {
	return filepath.Join(Root(tb), "testdata", "fuzz", target)
}

// Files returns the seed files of a target (sorted by name), raw. A target
// without a seed directory fails: the seeds are part of the repository.
func Files(tb testing.TB, target string) map[string][]byte {
	tb.Helper()
	dir := Dir(tb, target)
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatalf("fuzzseed: %v", err)
	}
	out := map[string][]byte{}
	for _, e := range entries {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") || e.Name() == "README.md" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			tb.Fatal(err)
		}
		out[e.Name()] = b
	}
	if len(out) == 0 {
		tb.Fatalf("fuzzseed: no seeds in %s", dir)
	}
	return out
}

// Add adds every seed of target to f. Files in Go's corpus format are added
// with the values they hold; raw files through raw (which may be nil when the
// target has only Go-format seeds).
func Add(f *testing.F, target string, raw func([]byte) []any) {
	f.Helper()
	eachRaw(f, target, func(n string, b []byte) {
		if raw == nil {
			f.Fatalf("fuzzseed: %s/%s is not in Go's corpus format and %s takes no raw seeds", target, n, target)
		}
		f.Add(raw(b)...)
	})
}

// Bytes is the raw function of a target that takes one []byte.
func Bytes(b []byte) []any { return []any{b} }

// String is the raw function of a target that takes one string.
func String(b []byte) []any { return []any{string(b)} }

// AddLines is Add for a target that takes one string, where a raw seed file
// holds many seeds, one per line (a list excerpt, a set of rule lines).
func AddLines(f *testing.F, target string) {
	f.Helper()
	eachRaw(f, target, func(_ string, b []byte) {
		for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			f.Add(l)
		}
	})
}

// eachRaw adds target's Go-format seed files to f as they are and hands
// every other file, in name order, to raw.
func eachRaw(f *testing.F, target string, raw func(name string, b []byte)) {
	f.Helper()
	files := Files(f, target)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		b := files[n]
		if !IsGoFormat(b) {
			raw(n, b)
			continue
		}
		vals, err := Unmarshal(b)
		if err != nil {
			f.Fatalf("fuzzseed: %s/%s: %v", target, n, err)
		}
		f.Add(vals...)
	}
}

const header = "go test fuzz v1\n"

// IsGoFormat says whether a seed file is in Go's corpus format.
func IsGoFormat(b []byte) bool { return bytes.HasPrefix(b, []byte(header)) }

// Marshal writes values in Go's corpus format (what Unmarshal reads).
func Marshal(vals ...any) []byte {
	var b strings.Builder
	b.WriteString(header)
	for _, v := range vals {
		switch v := v.(type) {
		case string:
			fmt.Fprintf(&b, "string(%s)\n", strconv.Quote(v))
		case []byte:
			fmt.Fprintf(&b, "[]byte(%s)\n", strconv.Quote(string(v)))
		case bool:
			fmt.Fprintf(&b, "bool(%v)\n", v)
		case int:
			fmt.Fprintf(&b, "int(%d)\n", v)
		case uint16:
			fmt.Fprintf(&b, "uint16(%d)\n", v)
		case uint8:
			fmt.Fprintf(&b, "byte(%s)\n", strconv.QuoteRune(rune(v)))
		default:
			panic(fmt.Sprintf("fuzzseed: cannot marshal %T", v))
		}
	}
	return []byte(b.String())
}

// Unmarshal reads Go's corpus format for the types famguard's targets use:
// string, []byte, bool, int, int64, uint, uint16, uint32, uint64, byte.
func Unmarshal(b []byte) ([]any, error) {
	if !IsGoFormat(b) {
		return nil, fmt.Errorf("not in Go's corpus format")
	}
	var vals []any
	for i, line := range strings.Split(string(b[len(header):]), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		typ, rest, ok := strings.Cut(line, "(")
		if !ok || !strings.HasSuffix(rest, ")") {
			return nil, fmt.Errorf("line %d: %q is not type(value)", i+2, line)
		}
		lit := strings.TrimSuffix(rest, ")")
		var v any
		var err error
		switch typ {
		case "string", "[]byte":
			var s string
			if s, err = strconv.Unquote(lit); err == nil {
				if typ == "string" {
					v = s
				} else {
					v = []byte(s)
				}
			}
		case "bool":
			v, err = strconv.ParseBool(lit)
		case "int", "int64":
			var n int64
			if n, err = strconv.ParseInt(lit, 0, 64); err == nil {
				if typ == "int" {
					v = int(n)
				} else {
					v = n
				}
			}
		case "uint", "uint16", "uint32", "uint64":
			var n uint64
			bits := map[string]int{"uint": 64, "uint16": 16, "uint32": 32, "uint64": 64}[typ]
			if n, err = strconv.ParseUint(lit, 0, bits); err == nil {
				switch typ {
				case "uint":
					v = uint(n)
				case "uint16":
					v = uint16(n)
				case "uint32":
					v = uint32(n)
				default:
					v = n
				}
			}
		case "byte", "uint8":
			if strings.HasPrefix(lit, "'") {
				var r rune
				var s string
				if s, err = strconv.Unquote(lit); err == nil {
					r = []rune(s)[0]
					v = byte(r)
				}
			} else {
				var n uint64
				if n, err = strconv.ParseUint(lit, 0, 8); err == nil {
					v = byte(n)
				}
			}
		default:
			return nil, fmt.Errorf("line %d: type %s not supported", i+2, typ)
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %q: %v", i+2, line, err)
		}
		vals = append(vals, v)
	}
	return vals, nil
}
