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
	v := variant{}
	if lunch {
		v.lunchKids = 1
	}
	return household(n, v)
}

// variant is what a benchmark's profile edit changes: lunchKids children
// (from the first) get an offline window at noon; earlyKids children have
// their bedtime start at 11:00 instead of 21:00 (offline at noon too, and
// the file keeps its size: the loader bounds a profile's separators);
// renamed gives device 0 another name (its rules' comments change, nothing
// else).
type variant struct {
	lunchKids, earlyKids int
	renamed              bool
}

func household(n int, v variant) string {
	var b strings.Builder
	b.WriteString("version: 1\ntimezone: Europe/Berlin\nchildren:\n")
	for i := 0; i < n; i++ {
		if i%4 == 0 {
			fmt.Fprintf(&b, "  kid%d:\n    schedules:\n", i/4)
			if i/4 < v.lunchKids {
				b.WriteString("      - {name: lunch, days: [daily], from: \"11:00\", to: \"13:00\", action: offline}\n")
			}
			from := "21:00"
			if i/4 < v.earlyKids {
				from = "11:00"
			}
			fmt.Fprintf(&b, "      - {name: bedtime, days: [daily], from: %q, to: \"07:00\", action: offline}\n", from)
			b.WriteString("    devices:\n")
		}
		name := fmt.Sprintf("device %d", i)
		if i == 0 && v.renamed {
			name += " (renamed)"
		}
		fmt.Fprintf(&b, "      - {mac: \"02:00:00:%02x:%02x:%02x\", name: %q}\n", (i>>16)&0xff, (i>>8)&0xff, i&0xff, name)
	}
	return b.String()
}

// BenchmarkReloadLatency measures the time from a profile file being written
// (atomic rename, as editors and pushes do) to the changed rules being in the
// kernel (the agent's own timestamp after iptables-restore returned for both
// families), for a household of 10 devices, 250 and 1000. Each reload flips
// one child's lunch window: 4 devices change state.
func BenchmarkReloadLatency(b *testing.B) {
	for _, n := range []int{10, 250, 1000} {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) {
			reloadBench(b, n, variant{}, variant{lunchKids: 1})
		})
	}
}

// BenchmarkReloadChanged is the same measurement by how many devices a
// reload changes: one (a device renamed: its rules' comments), four (one
// child's bedtime moved to 11:00: its devices go offline and back), all of
// them (every child's bedtime moved), or four while every other device is
// offline (bedtime for everyone, one child's moved back: extra time at
// bedtime, with the offline rules of all the others in place).
func BenchmarkReloadChanged(b *testing.B) {
	for _, n := range []int{10, 250, 1000} {
		kids := (n + 3) / 4
		for _, c := range []struct {
			name     string
			base, ed variant
		}{
			{"one", variant{}, variant{renamed: true}},
			{"child", variant{}, variant{earlyKids: 1}},
			{"all", variant{}, variant{earlyKids: kids}},
			{"child-at-bedtime", variant{earlyKids: kids}, variant{earlyKids: kids - 1}},
		} {
			b.Run(fmt.Sprintf("devices=%d/changed=%s", n, c.name), func(b *testing.B) {
				reloadBench(b, n, c.base, c.ed)
			})
		}
	}
}

// reloadBench writes the household of n devices in the forms a and b in
// turn and measures each reload. FAMGUARD_RELOAD_BIN runs another famguard
// binary instead of bin/famguard (an older build, to compare in one
// session).
func reloadBench(b *testing.B, n int, va, vb variant) {
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
	writeFile(b, path, household(n, va))
	var command []string
	if bin := os.Getenv("FAMGUARD_RELOAD_BIN"); bin != "" {
		command = []string{bin}
	}
	a := startAgentCommand(b, l, command, profiles, filepath.Join(dir, "state"), noon.Format(time.RFC3339))

	var lat, pickup []time.Duration
	steps := map[string][]float64{}
	var order []string
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// The daemon answers status between its own work: an
		// answer means the last change is applied and read back.
		applies := patientStatus(b, a).Dataplane.Applies
		v := va
		if i%2 == 0 {
			v = vb
		}
		t0 := time.Now()
		writeFile(b, path, household(n, v))
		for {
			st, err := a.statusErr()
			if err == nil && st.Dataplane.Applies > applies && st.LastReload.At.After(t0) {
				lat = append(lat, st.Dataplane.LastApply.Sub(t0))
				pickup = append(pickup, st.LastReload.At.Sub(t0))
				for _, s := range st.Dataplane.LastPass {
					if _, ok := steps[s.Step]; !ok {
						order = append(order, s.Step)
					}
					steps[s.Step] = append(steps[s.Step], s.MS)
				}
				break
			}
			if time.Since(t0) > 60*time.Second {
				b.Fatalf("change not applied within 60 s (status: %v); last reload %+v\nagent log:\n%s", err, st.LastReload, a.log.String())
			}
			time.Sleep(time.Millisecond)
		}
	}
	b.StopTimer()
	p50, p95 := percentile(lat, 0.50), percentile(lat, 0.95)
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p95.Microseconds())/1000, "p95-ms")
	b.Logf("devices=%d reloads=%d file write → rules in kernel: p50 %v, p95 %v", n, len(lat), p50, p95)
	// Where the time went (medians of each step; the agent's
	// dataplane.last_pass): from the write to the loop starting the
	// reload (the watcher's debounce, a pass in progress), then the pass.
	parts := []string{fmt.Sprintf("picked up %.1f", float64(percentile(pickup, 0.5).Microseconds())/1000)}
	for _, s := range order {
		sort.Float64s(steps[s])
		parts = append(parts, fmt.Sprintf("%s %.1f", s, steps[s][len(steps[s])/2]))
	}
	b.Logf("devices=%d median ms per step: %s", n, strings.Join(parts, ", "))
}

func percentile(d []time.Duration, q float64) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(q*float64(len(s)-1))]
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
