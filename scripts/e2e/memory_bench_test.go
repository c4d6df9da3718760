package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/famguard/famguard/scripts/lab"
)

// BenchmarkAgentMemory reports the whole agent's memory — `famguard run` as
// on a router: profiles, firewall, neighbour watch, DNS filter — with no
// category lists, with 100k listed domains and with all 1.42 M of the shared
// lists, under its default (automatic) memory limit. RSS is read from
// /proc after the lists are loaded and the agent has settled; the peak
// (VmHWM) includes the load.
func BenchmarkAgentMemory(b *testing.B) {
	data := repoFile(b, filepath.Join("..", "shared", "data", "categories"))
	for _, size := range []struct {
		name    string
		domains int // -1: every list, whole
	}{{"lists=none", 0}, {"domains=100k", 100_000}, {"domains=all", -1}} {
		b.Run(size.name, func(b *testing.B) {
			lab.RequireRoot(b)
			if size.domains != 0 {
				if _, err := os.Stat(data); err != nil {
					b.Skipf("no shared data at %s", data)
				}
			}
			l, err := lab.New(context.Background(), fmt.Sprintf("fgm%d%d", os.Getpid()%1000, max(size.domains, 0)%7), []lab.DeviceSpec{{Name: "kid", MAC: "02:00:00:00:00:00"}})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			dir := b.TempDir()
			profiles, cats := filepath.Join(dir, "profiles.d"), filepath.Join(dir, "categories")
			for _, d := range []string{profiles, cats} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					b.Fatal(err)
				}
			}
			writeFile(b, filepath.Join(profiles, "family.yaml"), householdProfile(10, false))
			want := copyDomains(b, data, cats, size.domains)
			for i := 0; i < b.N; i++ {
				a := startAgent(b, l, profiles, filepath.Join(dir, "state"), noon.Format(time.RFC3339))
				deadline := time.Now().Add(30 * time.Second)
				for {
					st := a.status()
					if st.DNS != nil && st.DNS.Domains >= want && (want > 0 || !st.DNS.ListsLoadedAt.IsZero()) {
						break
					}
					if time.Now().After(deadline) {
						b.Fatalf("lists not loaded within 30 s: %+v", st.DNS)
					}
					time.Sleep(50 * time.Millisecond)
				}
				time.Sleep(3 * time.Second) // let the collector return the load's garbage
				rss, peak := lab.ProcMemory(a.cmd.Process.Pid)
				b.ReportMetric(float64(rss)/1024, "RSS-MiB")
				b.ReportMetric(float64(peak)/1024, "peak-MiB")
				b.Logf("%s: %d domains, RSS %.1f MiB, peak %.1f MiB", size.name, a.status().DNS.Domains, float64(rss)/1024, float64(peak)/1024)
				a.stop()
			}
		})
	}
}

// copyDomains writes lists into dst: n domains taken in turn from the shared
// lists, or (n < 0) every list whole. It returns how many distinct domains
// the agent should report at least.
func copyDomains(b *testing.B, src, dst string, n int) int {
	b.Helper()
	if n == 0 {
		return 0
	}
	files, _ := filepath.Glob(filepath.Join(src, "*.txt"))
	total := 0
	for _, f := range files {
		in, err := os.Open(f)
		if err != nil {
			b.Fatal(err)
		}
		out, err := os.Create(filepath.Join(dst, filepath.Base(f)))
		if err != nil {
			b.Fatal(err)
		}
		w := bufio.NewWriter(out)
		sc := bufio.NewScanner(in)
		for sc.Scan() && (n < 0 || total < n) {
			w.WriteString(sc.Text() + "\n")
			total++
		}
		w.Flush()
		out.Close()
		in.Close()
		if n > 0 && total >= n {
			break
		}
	}
	if n < 0 {
		return 1_000_000 // the lists overlap: at least this many distinct
	}
	return n * 9 / 10 // a few lines may be duplicates across lists
}
