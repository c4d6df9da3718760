package categories

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"runtime/metrics"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/famguard/famguard/scripts/fuzzseed"
)

func TestParseLine(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok, bad  bool
	}{
		{"example.com", "example.com", true, false},
		{"  Example.COM.  ", "example.com", true, false},
		{"0.0.0.0 casino.example", "casino.example", true, false},
		{"127.0.0.1\tads.example  # tracker", "ads.example", true, false},
		{":: ipv6.example", "ipv6.example", true, false},
		{"||poker.example^", "poker.example", true, false},
		{"||poker.example^$third-party", "poker.example", true, false},
		{"*.wild.example", "wild.example", true, false},
		{"# a comment", "", false, false},
		{"! adblock comment", "", false, false},
		{"[Adblock Plus 2.0]", "", false, false},
		{"", "", false, false},
		{"127.0.0.1 localhost", "", false, false},
		{"0.0.0.0", "", false, true},
		{"not a domain line", "", false, true},
		{"bad_chars!.example", "", false, true},
		{"a..b", "", false, true},
		{strings.Repeat("a", 64) + ".example", "", false, true},
	} {
		got, ok, err := ParseLine(tc.in)
		if got != tc.want || ok != tc.ok || (err != nil) != tc.bad {
			t.Errorf("ParseLine(%q) = %q, %v, %v; want %q, %v, bad=%v", tc.in, got, ok, err, tc.want, tc.ok, tc.bad)
		}
	}
}

func writeLists(t *testing.T, lists map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range lists {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadAndMatch(t *testing.T) {
	dir := writeLists(t, map[string]string{
		"gambling.txt": "# gambling\ncasino.example\n0.0.0.0 poker.example\n||bets.example^\ncasino.example\nnot a domain line\n",
		"social.txt":   "chat.example\ncasino.example\n",
		"notes.md":     "ignored.example\n",
	})
	s, st, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Categories != 2 || st.Domains != 5 || st.BadLines != 1 {
		t.Errorf("stats = %+v, want 2 categories, 5 entries (duplicate folded), 1 bad line", st)
	}
	if !s.Has("gambling") || s.Has("notes") {
		t.Errorf("categories = %v", s.Categories())
	}
	for _, tc := range []struct {
		name   string
		among  []string
		cats   []string
		listed string
	}{
		{"casino.example", nil, []string{"gambling", "social"}, "casino.example"},
		{"www.Casino.Example.", nil, []string{"gambling", "social"}, "casino.example"}, // subdomain, case, trailing dot
		{"deep.a.b.poker.example", []string{"gambling"}, []string{"gambling"}, "poker.example"},
		{"casino.example", []string{"social"}, []string{"social"}, "casino.example"},
		{"notcasino.example", nil, nil, ""}, // a suffix of the label is not a parent domain
		{"example", nil, nil, ""},
		{"ignored.example", nil, nil, ""},
	} {
		cats, listed := s.Match(tc.name, tc.among)
		if !reflect.DeepEqual(cats, tc.cats) || listed != tc.listed {
			t.Errorf("Match(%q, %v) = %v, %q; want %v, %q", tc.name, tc.among, cats, listed, tc.cats, tc.listed)
		}
	}
	if _, _, err := Load(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing directory accepted")
	}
}

func TestRealListLoads(t *testing.T) {
	dir := filepath.Join("..", "..", "..", "shared", "data", "categories")
	if _, err := os.Stat(filepath.Join(dir, "dating.txt")); err != nil {
		t.Skip("../shared/data not present: the real lists are only beside the repository")
	}
	tmp := t.TempDir()
	b, _ := os.ReadFile(filepath.Join(dir, "dating.txt"))
	if err := os.WriteFile(filepath.Join(tmp, "dating.txt"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	s, st, err := Load(tmp)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Count(string(b), "\n")
	if st.Domains+st.BadLines != lines || st.Domains < lines*99/100 {
		t.Errorf("dating.txt: %d lines, %d domains, %d bad", lines, st.Domains, st.BadLines)
	}
	first := strings.SplitN(string(b), "\n", 2)[0]
	if cats, _ := s.Match("www."+first, nil); !reflect.DeepEqual(cats, []string{"dating"}) {
		t.Errorf("www.%s not matched: %v", first, cats)
	}
}

func FuzzParseLine(f *testing.F) {
	for _, s := range []string{"example.com", "0.0.0.0 a.example", "||a.example^$x", "# c", "a..b", "::1 x.y", "*.x.y"} {
		f.Add(s)
	}
	fuzzseed.AddLines(f, "FuzzParseLine")
	f.Fuzz(func(t *testing.T, line string) {
		d, ok, err := ParseLine(line)
		if ok && (err != nil || !validDomain(d) || d != strings.ToLower(d)) {
			t.Fatalf("ParseLine(%q) = %q, %v, %v", line, d, ok, err)
		}
		// What a list yields is itself a list line meaning the same domain:
		// rewriting a list through famguard changes nothing.
		if ok {
			if again, ok2, err := ParseLine(d); !ok2 || err != nil || again != d {
				t.Fatalf("ParseLine(%q) = %q, but ParseLine(%q) = %q, %v, %v", line, d, d, again, ok2, err)
			}
		}
		if !ok && d != "" {
			t.Fatalf("ParseLine(%q) returned %q without ok", line, d)
		}
	})
}

// heapBytes reads the live heap cheaply (no stop-the-world).
func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// BenchmarkLoadAll loads every real list (about 1.4 M domains) and reports
// load time, settled bytes per domain, and the peak heap during the load
// relative to the settled size.
func BenchmarkLoadAll(b *testing.B) {
	dir := filepath.Join("..", "..", "..", "shared", "data", "categories")
	if _, err := os.Stat(dir); err != nil {
		b.Skip("../shared/data/categories not present")
	}
	for i := 0; i < b.N; i++ {
		runtime.GC()
		base := heapBytes()
		var peak atomic.Uint64
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				if h := heapBytes(); h > peak.Load() {
					peak.Store(h)
				}
				select {
				case <-stop:
					return
				case <-time.After(200 * time.Microsecond):
				}
			}
		}()
		start := time.Now()
		s, st, err := Load(dir)
		elapsed := time.Since(start)
		close(stop)
		<-done
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		settled := heapBytes() - base
		b.ReportMetric(float64(elapsed.Milliseconds()), "load-ms")
		b.ReportMetric(float64(settled)/float64(st.Domains), "bytes/domain")
		b.ReportMetric(float64(peak.Load()-base)/float64(settled), "peak/settled")
		b.ReportMetric(float64(st.Domains), "domains")
		if i == 0 {
			b.Logf("%d categories, %d entries (%d bad lines) from %d MB in %v; settled %.1f MiB", st.Categories, st.Domains, st.BadLines, st.Bytes>>20, elapsed, float64(settled)/(1<<20))
		}
		runtime.KeepAlive(s)
	}
}

func BenchmarkMatch(b *testing.B) {
	dir := filepath.Join("..", "..", "..", "shared", "data", "categories")
	s, _, err := Load(dir)
	if err != nil {
		b.Skip(err)
	}
	names := []string{"www.example.com", "cdn.assets.some-shop.example", "casino.example", "a.b.c.d.e.f.example.org"}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.Match(names[i%len(names)], nil)
	}
}

// TestMatchAgainstReference: Match over random lists agrees with the plain
// definition (a map per category, every suffix of the name looked up) —
// with more categories than 4 bits hold, domains listed in several
// categories, and names that are listed, parents of listed ones, children
// of listed ones and unlisted. Also the key sort (sortKeys) on a slice
// large enough to take the bucket pass.
func TestMatchAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	const cats = 19
	word := func() string { return []string{"a", "b", "cd", "shop", "x1", "mail", "cdn"}[rng.IntN(7)] }
	domain := func() string {
		d := word() + ".example"
		for range rng.IntN(3) {
			d = word() + "." + d
		}
		return d
	}
	ref := make([]map[string]bool, cats)
	files := map[string]string{}
	var all []string
	for c := range ref {
		ref[c] = map[string]bool{}
		var b strings.Builder
		for range 2000 + rng.IntN(3000) { // some 70,000 keys over all: the bucket pass runs
			d := domain()
			if rng.IntN(3) == 0 {
				d = fmt.Sprintf("n%d.%s", rng.IntN(20000), d)
			}
			ref[c][d] = true
			all = append(all, d)
			b.WriteString(d + "\n")
		}
		files[fmt.Sprintf("cat%02d.txt", c)] = b.String()
	}
	s, st, err := Load(writeLists(t, files))
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, m := range ref {
		want += len(m)
	}
	if st.Domains != want || s.Len() != want || !slices.IsSorted(s.keys) {
		t.Fatalf("%d keys (sorted: %v), want %d", s.Len(), slices.IsSorted(s.keys), want)
	}
	among := []string{"cat03", "cat07", "cat18"}
	for i := range 20000 {
		name := domain()
		switch i % 3 {
		case 0:
			name = "www." + all[rng.IntN(len(all))]
		case 1:
			name = all[rng.IntN(len(all))]
		}
		for _, am := range [][]string{nil, among} {
			var wantCats []string
			wantListed := ""
			for c := range ref {
				cat := fmt.Sprintf("cat%02d", c)
				if am != nil && !slices.Contains(am, cat) {
					continue
				}
				for sfx := name; ; {
					if ref[c][sfx] {
						wantCats = append(wantCats, cat)
						if wantListed == "" {
							wantListed = sfx
						}
						break
					}
					dot := strings.IndexByte(sfx, '.')
					if dot < 0 {
						break
					}
					sfx = sfx[dot+1:]
				}
			}
			cats, listed := s.Match(name, am)
			if !reflect.DeepEqual(cats, wantCats) || listed != wantListed {
				t.Fatalf("Match(%q, %v) = %v, %q; want %v, %q", name, am, cats, listed, wantCats, wantListed)
			}
		}
	}
}

// BenchmarkMatchSpread: what a DNS filter's lookups cost over the whole
// lists — names spread across them, as real queries are (BenchmarkMatch's
// four names stay in the CPU's cache): every other name a random listed
// domain under a random subdomain label, the others unlisted names.
func BenchmarkMatchSpread(b *testing.B) {
	dir := filepath.Join("..", "..", "..", "shared", "data", "categories")
	s, _, err := Load(dir)
	if err != nil {
		b.Skip(err)
	}
	var listed []string
	for _, cat := range s.names {
		f, err := os.Open(filepath.Join(dir, cat+".txt"))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = ReadList(f, func(d string) {
			if len(listed) < 1<<20 {
				listed = append(listed, strings.Clone(d))
			}
		})
		f.Close()
	}
	rng := rand.New(rand.NewPCG(1, 2))
	names := make([]string, 1<<14)
	for i := range names {
		if i%2 == 0 {
			names[i] = fmt.Sprintf("w%d.%s", i, listed[rng.IntN(len(listed))])
		} else {
			names[i] = fmt.Sprintf("cdn%d.shop%d.example", rng.IntN(1000), i)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.Match(names[i%len(names)], nil)
	}
}

// TestAvailableMatchesLoad: the categories reported as having a list are
// exactly those Load reads (hidden and non-.txt files are neither).
func TestAvailableMatchesLoad(t *testing.T) {
	dir := writeLists(t, map[string]string{
		"gambling.txt": "casino.example\n", ".games.txt": "game.example\n", "notes.md": "x.example\n",
	})
	avail, err := Available(dir)
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(avail, map[string]bool{"gambling": true}) || !reflect.DeepEqual(s.Categories(), []string{"gambling"}) {
		t.Errorf("Available = %v, Load = %v; want only gambling in both", avail, s.Categories())
	}
}
