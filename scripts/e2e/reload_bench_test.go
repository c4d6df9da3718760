package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/famguard/famguard/agent/daemon"
	"github.com/famguard/famguard/scripts/lab"
)

// householdProfile is a profile with n devices spread over children of up to
// four devices each; with lunch, the first child is offline at noon.
func householdProfile(n int, lunch bool) string {
	var b strings.Builder
	b.WriteString("version: 1\ntimezone: Europe/Berlin\nchildren:\n")
	for i := 0; i < n; i++ {
		if i%4 == 0 {
			fmt.Fprintf(&b, "  kid%d:\n    schedules:\n", i/4)
			if lunch && i == 0 {
				b.WriteString("      - {name: lunch, days: [daily], from: \"11:00\", to: \"13:00\", action: offline}\n")
			}
			b.WriteString("      - {name: bedtime, days: [daily], from: \"21:00\", to: \"07:00\", action: offline}\n")
			b.WriteString("    devices:\n")
		}
		fmt.Fprintf(&b, "      - {mac: \"02:00:00:%02x:%02x:%02x\", name: \"device %d\"}\n", (i>>16)&0xff, (i>>8)&0xff, i&0xff, i)
	}
	return b.String()
}

// BenchmarkReloadLatency measures the time from a profile file being written
// (atomic rename, as editors and pushes do) to the changed rules being in the
// kernel (the agent's own timestamp after iptables-restore returned for both
// families), for a household of 10 devices, 250 and 1000.
func BenchmarkReloadLatency(b *testing.B) {
	for _, n := range []int{10, 250, 1000} {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) {
			lab.RequireRoot(b)
			l, err := lab.New(context.Background(), fmt.Sprintf("fgb%d%d", os.Getpid()%1000, n), []lab.DeviceSpec{{Name: "kid", MAC: "02:00:00:00:00:00"}})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			dir := b.TempDir()
			profiles := filepath.Join(dir, "profiles.d")
			if err := os.MkdirAll(profiles, 0o755); err != nil {
				b.Fatal(err)
			}
			path := filepath.Join(profiles, "family.yaml")
			writeFile(b, path, householdProfile(n, false))
			a := startAgent(b, l, profiles, filepath.Join(dir, "state"), noon.Format(time.RFC3339))

			var lat []time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				// The daemon answers status between its own work: an
				// answer means the last change is applied and read back.
				applies := patientStatus(b, a).Dataplane.Applies
				t0 := time.Now()
				writeFile(b, path, householdProfile(n, i%2 == 0))
				for {
					st, err := a.statusErr()
					if err == nil && st.Dataplane.Applies > applies && st.LastReload.At.After(t0) {
						lat = append(lat, st.Dataplane.LastApply.Sub(t0))
						break
					}
					if time.Since(t0) > 60*time.Second {
						b.Fatalf("change not applied within 60 s (status: %v); last reload %+v\nagent log:\n%s", err, st.LastReload, a.log.String())
					}
					time.Sleep(time.Millisecond)
				}
			}
			b.StopTimer()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			p := func(q float64) time.Duration { return lat[int(q*float64(len(lat)-1))] }
			b.ReportMetric(float64(p(0.50).Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(p(0.95).Microseconds())/1000, "p95-ms")
			b.Logf("devices=%d reloads=%d file write → rules in kernel: p50 %v, p95 %v", n, len(lat), p(0.50), p(0.95))
		})
	}
}

// patientStatus is the agent's status, waiting up to a minute for an
// answer: the daemon answers between its own work, and on a loaded machine
// a reload of 1000 devices can keep it longer than the client's 2 s.
func patientStatus(b *testing.B, a *agent) daemon.Status {
	b.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := a.statusErr()
		if err == nil {
			return st
		}
		if time.Now().After(deadline) {
			b.Fatalf("status: %v\nagent log:\n%s", err, a.log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
