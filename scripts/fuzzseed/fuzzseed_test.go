package fuzzseed

import (
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// TestMakefileNamesEveryFuzzTarget: `make fuzz` runs exactly the module's
// fuzz targets, each in its own package, and each has committed seeds.
func TestMakefileNamesEveryFuzzTarget(t *testing.T) {
	root := Root(t)
	fuzzFunc := regexp.MustCompile(`(?m)^func (Fuzz\w*)\(\w+ \*testing\.F\)`)
	var inCode []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		// bin/, dist/ and node_modules/ hold build outputs and downloads
		// (make bench-peers unpacks AdGuard Home's sources under bin/peers),
		// never the project's own fuzz targets.
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "vendor" ||
			(filepath.Dir(path) == root && (d.Name() == "bin" || d.Name() == "dist")) || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		for _, m := range fuzzFunc.FindAllStringSubmatch(string(src), -1) {
			inCode = append(inCode, "./"+filepath.ToSlash(rel)+":"+m[1])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	var inMake []string
	m := regexp.MustCompile(`\nFUZZ_TARGETS := ((?:[^\n]*\\\n)*[^\n]*)`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("Makefile has no FUZZ_TARGETS list")
	}
	inMake = append(inMake, strings.Fields(strings.ReplaceAll(string(m[1]), "\\", " "))...)
	sort.Strings(inCode)
	sort.Strings(inMake)
	if len(inCode) == 0 || !reflect.DeepEqual(inCode, inMake) {
		t.Errorf("fuzz targets in the code:\n  %s\nin the Makefile's FUZZ_TARGETS:\n  %s", strings.Join(inCode, "\n  "), strings.Join(inMake, "\n  "))
	}
	for _, target := range inCode {
		name := target[strings.Index(target, ":")+1:]
		if _, err := os.Stat(filepath.Join(root, "testdata", "fuzz", name)); err != nil {
			t.Errorf("%s has no committed seeds: %v", name, err)
		}
	}
}

func TestCorpusFormatRoundTrip(t *testing.T) {
	vals := []any{"a\"b\\\n–", []byte{0, 0xff, 'x'}, true, 7, uint16(5354), byte(0x3f)}
	got, err := Unmarshal(Marshal(vals...))
	if err != nil || !reflect.DeepEqual(got, vals) {
		t.Fatalf("round trip: %v, %v", got, err)
	}
	// What `go test -fuzz` writes for a failing input reads back.
	goWrote := "go test fuzz v1\nstring(\"-A X\")\n[]byte(\"\\x00a\")\nbyte('\\x06')\nuint16(53)\nbool(false)\n"
	got, err = Unmarshal([]byte(goWrote))
	want := []any{"-A X", []byte("\x00a"), byte(6), uint16(53), false}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Go's format: %v, %v", got, err)
	}
}
