package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/famguard/famguard/agent/tz"
	"github.com/famguard/famguard/scripts/fuzzseed"
)

var update = flag.Bool("update", false, "rewrite the expected.txt files of testdata/profiles/invalid")

const testdata = "../../testdata/profiles"

// TestInvalidSets: every invalid set is rejected whole with exactly the
// problem lines in its expected.txt (paths relative to the set).
func TestInvalidSets(t *testing.T) {
	cases, _ := filepath.Glob(filepath.Join(testdata, "invalid", "*"))
	if len(cases) == 0 {
		t.Fatal("no invalid test cases found")
	}
	for _, dir := range cases {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			pol, err := LoadDir(dir)
			if err == nil {
				t.Fatalf("accepted: %+v", pol)
			}
			probs, ok := err.(Problems)
			if !ok {
				t.Fatalf("error %v is not Problems", err)
			}
			got := strings.ReplaceAll(probs.Error(), dir+string(filepath.Separator), "") + "\n"
			got = strings.ReplaceAll(got, dir, ".")
			want := filepath.Join(dir, "expected.txt")
			if *update {
				if err := os.WriteFile(want, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			b, err := os.ReadFile(want)
			if err != nil {
				t.Fatalf("%v (run go test ./agent/policy -update)", err)
			}
			if got != string(b) {
				t.Errorf("problems differ from %s:\ngot:\n%s\nwant:\n%s", want, got, b)
			}
			for _, p := range probs {
				if p.File == "" || (p.Line == 0 && p.File != dir && !strings.Contains(p.Msg, "cannot be read")) {
					t.Errorf("problem without a position: %s", p)
				}
			}
		})
	}
}

func TestValidFamily(t *testing.T) {
	pol, err := LoadDir(filepath.Join(testdata, "valid", "family"))
	if err != nil {
		t.Fatal(err)
	}
	if pol.Timezone != "Europe/Berlin" || len(pol.Children) != 2 || pol.Children[0].Name != "alice" {
		t.Fatalf("unexpected policy: %+v", pol)
	}
	a := pol.Children[0]
	if got := []string{a.Devices[0].MAC, a.Devices[1].MAC}; !reflect.DeepEqual(got, []string{"02:00:00:00:00:11", "02:00:00:00:00:12"}) {
		t.Errorf("MACs not normalised: %v", got)
	}
	if !a.SafeSearch || !reflect.DeepEqual(a.Allow, []string{"khanacademy.org"}) || !reflect.DeepEqual(a.Block, []string{"adult", "gambling"}) {
		t.Errorf("alice = %+v", a)
	}
	if got := pol.Categories(); !reflect.DeepEqual(got, []string{"adult", "gambling", "games", "social", "video-streaming"}) {
		t.Errorf("Categories = %v", got)
	}
	if len(pol.Digest) != 12 || len(pol.Sources) != 1 {
		t.Errorf("digest %q sources %v", pol.Digest, pol.Sources)
	}
	missing := pol.MissingCategories("/etc/famguard/categories.d", map[string]bool{"adult": true, "gambling": true, "games": true})
	var lines []string
	for _, m := range missing {
		lines = append(lines, strings.TrimPrefix(m.String(), filepath.Join(testdata, "valid", "family")+"/"))
	}
	want := []string{
		`family.yaml:15:86: children.alice.schedules[2].block[1]: nothing is blocked for "social" until a list is installed at /etc/famguard/categories.d/social.txt; other rules still apply`,
		`family.yaml:33:24: children.bob.schedules[1].block[1]: nothing is blocked for "video-streaming" until a list is installed at /etc/famguard/categories.d/video-streaming.txt; other rules still apply`,
	}
	if !reflect.DeepEqual(lines, want) {
		t.Errorf("MissingCategories =\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

func TestMultiFileIgnoresTemporaryFiles(t *testing.T) {
	dir := filepath.Join(testdata, "valid", "multi-file")
	pol, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if pol.Timezone != "America/New_York" || len(pol.Children) != 2 || len(pol.Sources) != 3 {
		t.Fatalf("policy = %+v", pol)
	}
	if n := len(pol.Children[1].Schedules); n != 1 {
		t.Errorf("bob has %d schedules, want 1 (the disabled one is not loaded)", n)
	}
	for _, name := range []string{".alice.yaml.swp", "alice.yaml~", ".#a.yaml", "a.yaml.tmp", "a.yaml.dpkg-new"} {
		if IsProfileFile(name) {
			t.Errorf("IsProfileFile(%q) = true", name)
		}
	}
}

func TestDigestChangesWithContent(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		if err := os.WriteFile(filepath.Join(dir, "f.yaml"), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		pol, err := LoadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		return pol.Digest
	}
	a := write("version: 1\n")
	b := write("version: 1\n# a comment\n")
	if a == b || a != write("version: 1\n") {
		t.Error("digest must follow file content exactly")
	}
}

func TestSymlinksAndUnreadable(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "v2.yaml")
	if err := os.WriteFile(target, []byte("version: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, "family.yaml")); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadDir(dir); err != nil {
		t.Fatalf("symlinked profile: %v", err)
	}
	if err := os.Symlink(filepath.Join(dir, "loop.yaml"), filepath.Join(dir, "loop.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/nonexistent/x.yaml", filepath.Join(dir, "dangling.yaml")); err != nil {
		t.Fatal(err)
	}
	_, err := LoadDir(dir)
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if !strings.Contains(msg, "dangling.yaml: cannot be read: it is a symbolic link to a file that does not exist") ||
		!strings.Contains(msg, "loop.yaml: cannot be read: symbolic link loop") {
		t.Errorf("got %q", msg)
	}
	if _, err := LoadDir(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing dir: %v", err)
	}
}

func TestOversizedAndDeepInput(t *testing.T) {
	big := "version: 1\n#" + strings.Repeat("x", MaxFileSize) + "\n"
	if _, probs := ParseFile("big.yaml", []byte(big)); len(probs) != 1 || !strings.Contains(probs[0].Msg, "at most") {
		t.Errorf("oversized: %v", probs)
	}
	deep := "version: 1\nchildren: " + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + "\n"
	if _, probs := ParseFile("deep.yaml", []byte(deep)); len(probs) == 0 {
		t.Error("deep nesting accepted")
	}
	bomb := "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
	if _, probs := ParseFile("bomb.yaml", []byte(bomb)); len(probs) == 0 {
		t.Error("alias bomb accepted")
	}
}

func TestEvaluate(t *testing.T) {
	pol, err := LoadDir(filepath.Join(testdata, "valid", "family"))
	if err != nil {
		t.Fatal(err)
	}
	berlin, _ := tz.Load("Europe/Berlin")
	at := func(s string) time.Time {
		v, err := time.ParseInLocation("2006-01-02 15:04", s, berlin)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	type row struct {
		online bool
		reason string
		until  string
		cats   string
	}
	for _, tc := range []struct {
		at    string
		alice row
		bob   row
	}{
		{"2026-11-26 12:00", // Thursday noon
			row{true, "online: no schedule active; always blocked: adult, gambling", "2026-11-26 16:00", "adult,gambling"},
			row{true, "online; school blocks games, video-streaming (Mon–Fri 08:00–13:00); always blocked: adult", "2026-11-26 13:00", "adult,games,video-streaming"}},
		{"2026-11-26 16:30",
			row{true, "online; homework blocks games, social (Mon–Fri 16:00–18:00); always blocked: adult, gambling", "2026-11-26 18:00", "adult,gambling,games,social"},
			row{true, "online: no schedule active; always blocked: adult", "2026-11-26 20:00", "adult"}},
		{"2026-11-26 21:00",
			row{false, "offline: bedtime (Sun–Thu 21:00–07:00); always blocked: adult, gambling", "2026-11-27 07:00", "adult,gambling"},
			row{false, "offline: bedtime (daily 20:00–07:00); always blocked: adult", "2026-11-27 07:00", "adult"}},
		{"2026-11-27 06:59", // Friday morning still belongs to Thursday's bedtime
			row{false, "offline: bedtime (Sun–Thu 21:00–07:00); always blocked: adult, gambling", "2026-11-27 07:00", "adult,gambling"},
			row{false, "offline: bedtime (daily 20:00–07:00); always blocked: adult", "2026-11-27 07:00", "adult"}},
		{"2026-11-27 22:00", // Friday: the weekend bedtime is later
			row{true, "online: no schedule active; always blocked: adult, gambling", "2026-11-27 22:30", "adult,gambling"},
			row{false, "offline: bedtime (daily 20:00–07:00); always blocked: adult", "2026-11-28 07:00", "adult"}},
		{"2026-11-28 07:30", // Saturday: Friday's window runs to 08:00
			row{false, "offline: weekend-bedtime (Fri, Sat 22:30–08:00); always blocked: adult, gambling", "2026-11-28 08:00", "adult,gambling"},
			row{true, "online: no schedule active; always blocked: adult", "2026-11-28 20:00", "adult"}},
		{"2026-03-28 23:00", // the night Berlin springs forward: bedtime still ends at 08:00 CEST
			row{false, "offline: weekend-bedtime (Fri, Sat 22:30–08:00); always blocked: adult, gambling", "2026-03-29 08:00", "adult,gambling"},
			row{false, "offline: bedtime (daily 20:00–07:00); always blocked: adult", "2026-03-29 07:00", "adult"}},
	} {
		states := pol.Evaluate(at(tc.at), berlin)
		if len(states) != 3 {
			t.Fatalf("%d device states, want 3", len(states))
		}
		for _, chk := range []struct {
			s   DeviceState
			row row
		}{{states[0], tc.alice}, {states[2], tc.bob}} {
			got := row{chk.s.Online, chk.s.Reason, "", strings.Join(chk.s.BlockedCategories, ",")}
			if chk.s.Until != nil {
				got.until = chk.s.Until.In(berlin).Format("2006-01-02 15:04")
			}
			if got != chk.row {
				t.Errorf("%s %s:\n got %+v\nwant %+v", tc.at, chk.s.Child, got, chk.row)
			}
		}
		if states[0].Online != states[1].Online || states[1].MAC != "02:00:00:00:00:12" {
			t.Errorf("both of Alice's devices follow her rules: %+v", states[:2])
		}
	}
	next, ok := NextChange(pol.Evaluate(at("2026-11-26 12:00"), berlin))
	if !ok || !next.Equal(at("2026-11-26 13:00")) {
		t.Errorf("NextChange = %v", next)
	}
}

// TestJSONSchemaMatchesKeys: the published schema lists exactly the keys the
// loader accepts, and requires what the loader requires.
func TestJSONSchemaMatchesKeys(t *testing.T) {
	var s map[string]any
	if err := json.Unmarshal(JSONSchema, &s); err != nil {
		t.Fatalf("schema.json is not valid JSON: %v", err)
	}
	defs := s["$defs"].(map[string]any)
	props := func(obj map[string]any) []string {
		var keys []string
		for k := range obj["properties"].(map[string]any) {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if obj["additionalProperties"] != false {
			t.Errorf("schema object with %v must forbid additional properties", keys)
		}
		return keys
	}
	for kind, obj := range map[string]map[string]any{
		"file": s, "child": defs["child"].(map[string]any), "device": defs["device"].(map[string]any), "schedule": defs["schedule"].(map[string]any),
		"assigned": defs["assigned"].(map[string]any), "unknown": defs["unknown"].(map[string]any)["oneOf"].([]any)[1].(map[string]any),
	} {
		want := append([]string(nil), Keys[kind]...)
		sort.Strings(want)
		if got := props(obj); !reflect.DeepEqual(got, want) {
			t.Errorf("schema %s keys %v, loader accepts %v", kind, got, want)
		}
	}
}

func FuzzParseFile(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(testdata, "*", "*", "*.y*ml"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("version: 1\nchildren: {a: {devices: [{mac: 02:00:00:00:00:11}]}}"))
	fuzzseed.Add(f, "FuzzParseFile", fuzzseed.Bytes)
	f.Fuzz(func(t *testing.T, data []byte) {
		pol, probs := ParseFile("fuzz.yaml", data)
		if (pol == nil) == (len(probs) == 0) {
			t.Fatalf("policy %v with %d problems", pol, len(probs))
		}
		for _, p := range probs {
			if p.File != "fuzz.yaml" || p.Msg == "" {
				t.Fatalf("malformed problem %+v", p)
			}
		}
		if pol != nil {
			// Whatever was accepted evaluates without panicking, and every
			// device seen gets exactly one row.
			at := time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC)
			pol.Evaluate(at, time.UTC)
			seen := []string{"02:00:00:00:00:11", "00:1a:2b:3c:4d:99", "da:00:00:00:00:01"}
			rows := map[string]int{}
			for _, s := range pol.EvaluateSeen(seen, At(at, time.UTC)) {
				rows[s.MAC]++
			}
			for _, mac := range seen {
				if rows[mac] != 1 {
					t.Fatalf("%s has %d rows in EvaluateSeen", mac, rows[mac])
				}
			}
			pol.UnknownClasses(At(at, time.UTC))
		}
	})
}

// TestBadPushesAreBounded: what a botched or hostile push can put in the
// profile directory is rejected with a clear problem, quickly and within a
// bounded amount of memory.
func TestBadPushesAreBounded(t *testing.T) {
	valid := "version: 1\nchildren:\n  alice:\n    devices: [{mac: \"02:00:00:00:00:11\"}]\n"
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  string
		alloc float64 // MiB allocated by LoadDir at most
	}{
		{"a 256 KiB flat list (32 MiB of YAML nodes without the bound)", func(t *testing.T, dir string) {
			writeT(t, filepath.Join(dir, "big.yaml"), "version: 1\nx: ["+strings.Repeat("a,", MaxFileSize/2-20)+"a]\n")
		}, "a profile may have at most 20000", 8},
		{"a 100 MB file", func(t *testing.T, dir string) {
			f, err := os.Create(filepath.Join(dir, "huge.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Truncate(100 << 20); err != nil { // sparse: no 100 MB written to the test disk
				t.Fatal(err)
			}
			f.Close()
		}, "a profile may be at most 262144", 4},
		{"a named pipe", func(t *testing.T, dir string) {
			writeT(t, filepath.Join(dir, "a.yaml"), valid)
			if err := syscall.Mkfifo(filepath.Join(dir, "pipe.yaml"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "pipe.yaml: is not a regular file (a named pipe)", 1},
		{"a directory named like a profile", func(t *testing.T, dir string) {
			writeT(t, filepath.Join(dir, "a.yaml"), valid)
			if err := os.Mkdir(filepath.Join(dir, "sub.yaml"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, "sub.yaml: is not a regular file (a directory)", 1},
		{"many large files", func(t *testing.T, dir string) {
			body := valid + "# " + strings.Repeat("x", 250<<10) + "\n"
			for i := 0; i < 20; i++ {
				writeT(t, filepath.Join(dir, fmt.Sprintf("f%d.yaml", i)), body)
			}
		}, "hold more than 4194304 bytes", 64}, // 8× the 4 MiB read (12× under -race), file by file: garbage, not peak
		{"10,000 files at once", func(t *testing.T, dir string) {
			for i := 0; i < 10000; i++ {
				writeT(t, filepath.Join(dir, fmt.Sprintf("kid%05d.yaml", i)), valid)
			}
		}, "10000 profile files; at most 1000 are read", 4},
		{"binary junk", func(t *testing.T, dir string) {
			junk := make([]byte, 4096)
			for i := range junk {
				junk[i] = byte(i*131 + 7)
			}
			writeT(t, filepath.Join(dir, "junk.yaml"), string(junk))
		}, "junk.yaml", 2},
		{"a truncated file", func(t *testing.T, dir string) {
			writeT(t, filepath.Join(dir, "cut.yaml"), "version: 1\nchildren:\n  alice:\n    devices: [{mac: \"02:00:00:0")
		}, "cut.yaml:", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(t, dir)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			done := make(chan error, 1)
			go func() { _, err := LoadDir(dir); done <- err }()
			var err error
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("LoadDir did not return within 10 s")
			}
			runtime.ReadMemStats(&after)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v; want one containing %q", err, tc.want)
			}
			if mib := float64(after.TotalAlloc-before.TotalAlloc) / (1 << 20); mib > tc.alloc {
				t.Errorf("LoadDir allocated %.1f MiB, bound %.0f MiB", mib, tc.alloc)
			}
			// Nothing of a rejected push stays in memory.
			runtime.GC()
			var settled runtime.MemStats
			runtime.ReadMemStats(&settled)
			if grown := int64(settled.HeapAlloc) - int64(before.HeapAlloc); grown > 1<<20 {
				t.Errorf("%d bytes still held after a rejected load", grown)
			}
		})
	}
}

func writeT(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// FuzzLoadDir: a profile directory of two files with any content loads to a
// policy or to problems, never both and never neither; every problem names
// one of the files (or the directory) and, where it gives a position, one
// inside that file. Loading the pair never hides a problem either file has
// on its own, and a pair only loads when each file does — except that a
// reference to a child (like:, assigned to:) may be resolved by the other.
func FuzzLoadDir(f *testing.F) {
	dirs, _ := filepath.Glob(filepath.Join(testdata, "*", "*"))
	for _, d := range dirs {
		files, _ := filepath.Glob(filepath.Join(d, "*.y*ml"))
		sort.Strings(files)
		if len(files) == 1 {
			files = append(files, files[0])
		}
		for i := 0; i+1 < len(files); i++ {
			a, _ := os.ReadFile(files[i])
			b, _ := os.ReadFile(files[i+1])
			f.Add(a, b)
		}
	}
	fuzzseed.Add(f, "FuzzLoadDir", nil)
	dir := f.TempDir()
	pa, pb := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yml")
	f.Fuzz(func(t *testing.T, a, b []byte) {
		if err := os.WriteFile(pa, a, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(pb, b, 0o644); err != nil {
			t.Fatal(err)
		}
		pol, err := LoadDir(dir)
		var probs Problems
		if err != nil && !errors.As(err, &probs) {
			t.Fatalf("LoadDir: not Problems: %v", err)
		}
		if (pol == nil) == (len(probs) == 0) {
			t.Fatalf("policy %v with %d problems", pol, len(probs))
		}
		lines := map[string]int{pa: yamlLines(a), pb: yamlLines(b), dir: 0}
		for _, p := range probs {
			n, ok := lines[p.File]
			if !ok || p.Msg == "" || p.Line < 0 || p.Col < 0 || p.Line > n || (p.Line == 0 && p.Col != 0) {
				t.Fatalf("problem at an impossible place (files have %v lines): %+v", lines, p)
			}
			if p.Field != "" && p.Line == 0 {
				t.Fatalf("problem about a field without a line: %+v", p)
			}
		}
		for _, one := range []struct {
			path string
			data []byte
		}{{pa, a}, {pb, b}} {
			_, aprobs := ParseFile(one.path, one.data)
			// A file alone may name a child (like:, assigned to:) that
			// the other file defines: only those problems may go away.
			local := 0
			for _, ap := range aprobs {
				if !ap.crossFile {
					local++
				}
			}
			if local > 0 && pol != nil {
				t.Fatalf("%s alone has problems %v, but the pair loads", one.path, aprobs)
			}
			for _, ap := range aprobs {
				if ap.crossFile {
					continue
				}
				found := false
				for _, p := range probs {
					found = found || p == ap
				}
				if !found {
					t.Fatalf("%s alone has problem %v, which the pair does not report: %v", one.path, ap, probs)
				}
			}
		}
		if pol != nil {
			if len(pol.Sources) != 2 || pol.Digest == "" {
				t.Fatalf("sources %v, digest %q", pol.Sources, pol.Digest)
			}
			pol.Evaluate(time.Date(2026, 10, 25, 2, 30, 0, 0, time.UTC), time.UTC)
		}
	})
}

// yamlLines counts lines as YAML does: \r\n, a lone \r, \n, and NEL, LS and
// PS each end a line (the fuzzer's "\r0" is two lines, and the loader says
// so).
func yamlLines(b []byte) int {
	// yaml.v3 reads a file that starts with a UTF-16 byte-order mark as
	// UTF-16 (the fuzzer's "\xff\xfe( 00" is LS, then U+3030: two lines).
	if len(b) >= 2 && (b[0] == 0xff && b[1] == 0xfe || b[0] == 0xfe && b[1] == 0xff) {
		u := make([]uint16, 0, len(b)/2)
		for i := 2; i+1 < len(b); i += 2 {
			if b[0] == 0xff {
				u = append(u, uint16(b[i])|uint16(b[i+1])<<8)
			} else {
				u = append(u, uint16(b[i])<<8|uint16(b[i+1]))
			}
		}
		b = []byte(string(utf16.Decode(u)))
	}
	n := 1
	for i := 0; i < len(b); i++ {
		switch {
		case b[i] == '\r' && i+1 < len(b) && b[i+1] == '\n':
			i++
			n++
		case b[i] == '\r', b[i] == '\n':
			n++
		case bytes.HasPrefix(b[i:], []byte("\u0085")), bytes.HasPrefix(b[i:], []byte("\u2028")), bytes.HasPrefix(b[i:], []byte("\u2029")):
			n++
		}
	}
	return n
}

// TestSecondDocumentIsRefused: a file whose children come after a `---`
// must not load as a family without them.
func TestSecondDocumentIsRefused(t *testing.T) {
	data := "version: 1\n---\nchildren:\n  alice:\n    devices: [{mac: \"02:00:00:00:00:11\"}]\n    schedules: [{name: bedtime, days: daily, from: \"21:00\", to: \"07:00\", action: offline}]\n"
	_, probs := ParseFile("two.yaml", []byte(data))
	if len(probs) != 1 || probs[0].Line != 2 || !strings.Contains(probs[0].Msg, "a second YAML document") {
		t.Fatalf("problems %v; want one at line 2 (the ---) about the second document", probs)
	}
	for _, ok := range []string{"---\nversion: 1\n", "version: 1\n...\n", "# just a comment\nversion: 1\n"} {
		if _, probs := ParseFile("one.yaml", []byte(ok)); len(probs) != 0 {
			t.Errorf("%q: %v", ok, probs)
		}
	}
}
