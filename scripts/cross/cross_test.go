package cross

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Instants at which `plan` is compared: around a bedtime, noon, a weekend
// night, and both of Berlin's 2026 daylight-saving changes (the skipped
// spring hour, and the repeated autumn hour at both of its offsets).
var planInstants = []string{
	"2026-11-26T12:00:00+01:00",
	"2026-11-26T20:59:59+01:00",
	"2026-11-26T21:30:00+01:00",
	"2026-11-28T23:15:00+01:00",
	"2026-03-29T01:59:59+01:00",
	"2026-03-29T03:00:00+02:00",
	"2026-10-25T02:30:00+02:00",
	"2026-10-25T02:30:00+01:00",
}

// noZoneProfile has no timezone: plan uses the machine's zone, so TZ (a
// name, resolved from the embedded zone database, or a POSIX rule) is part
// of what is compared.
const noZoneProfile = `version: 1
children:
  kid:
    devices:
      - {mac: "02:00:00:00:00:41", name: "Kid's phone"}
    block: [adult]
    schedules:
      - {name: bedtime, days: [sun-thu], from: "21:00", to: "07:00", action: offline}
      - {name: homework, days: [mon-fri], from: "16:00", to: "18:00", block: [games]}
`

// run is one command line, compared between the host and a router build.
type run struct {
	args []string
	env  []string // on top of baseEnv
}

// The environment both builds get, and nothing else.
var baseEnv = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C", "TZ=Europe/Berlin"}

// commands lists every compared command, with paths relative to the
// repository root (both builds run there, so file names in messages match).
func commands(t *testing.T, root, scratch string) []run {
	t.Helper()
	var valid, invalid []string
	for _, kind := range []struct {
		dir  string
		into *[]string
	}{{"testdata/profiles/valid", &valid}, {"testdata/profiles/invalid", &invalid}} {
		entries, err := os.ReadDir(filepath.Join(root, kind.dir))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.IsDir() {
				*kind.into = append(*kind.into, kind.dir+"/"+e.Name())
			}
		}
	}
	if len(valid) == 0 || len(invalid) == 0 {
		t.Fatalf("no profile sets found under testdata/profiles (valid %v, invalid %v)", valid, invalid)
	}
	noZone, err := filepath.Rel(root, filepath.Join(scratch, "no-zone"))
	if err != nil {
		t.Fatal(err)
	}
	emptyCats, err := filepath.Rel(root, filepath.Join(scratch, "categories"))
	if err != nil {
		t.Fatal(err)
	}

	runs := []run{
		{args: []string{"version"}},
		{args: []string{"help"}},
		{args: []string{"no-such-command"}},
		{args: []string{"check"}},
		{args: []string{"plan", "--at", "not-a-time", valid[0]}},
	}
	for _, d := range append(append([]string{}, valid...), invalid...) {
		runs = append(runs, run{args: []string{"check", d}})
	}
	for _, d := range valid {
		runs = append(runs, run{args: []string{"check", "--categories", emptyCats, d}})
		for _, at := range planInstants {
			runs = append(runs, run{args: []string{"plan", "--at", at, d}})
			runs = append(runs, run{args: []string{"plan", "--at", at, "--json", d}})
		}
	}
	for _, tz := range []string{"TZ=Europe/Berlin", "TZ=America/New_York", "TZ=CET-1CEST,M3.5.0,M10.5.0/3", "TZ=UTC"} {
		for _, at := range []string{"2026-11-26T20:30:00Z", "2026-03-29T01:30:00Z", "2026-11-06T15:59:59Z"} {
			runs = append(runs, run{args: []string{"plan", "--at", at, "--json", noZone}, env: []string{tz}})
			runs = append(runs, run{args: []string{"plan", "--at", at, noZone}, env: []string{tz}})
		}
	}
	return runs
}

// TestRouterBuildsMatchHost runs every router build under qemu-user and
// compares each command's stdout, stderr and exit status byte for byte with
// the host build's.
func TestRouterBuildsMatchHost(t *testing.T) {
	var qemus = map[string]string{}
	for _, tg := range Routers {
		qemus[tg.GOARCH] = RequireQemu(t, tg)
	}
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	version := Version(root)
	bins := t.TempDir()
	start := time.Now()
	paths, err := BuildAll(ctx, root, version, bins, append([]Target{Host}, Routers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built host + %d router builds (version %s) in %v", len(Routers), version, time.Since(start).Round(time.Millisecond))

	scratch := t.TempDir()
	if err := os.MkdirAll(filepath.Join(scratch, "no-zone"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(scratch, "categories"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(scratch, "no-zone", "kid.yaml"), []byte(noZoneProfile), 0o644); err != nil {
		t.Fatal(err)
	}
	runs := commands(t, root, scratch)

	// The host's results first: the reference.
	start = time.Now()
	want := make([]Result, len(runs))
	for i, r := range runs {
		res, err := Run(ctx, root, append(append([]string{}, baseEnv...), r.env...), Command("", paths[Host.GOARCH], r.args...))
		if err != nil {
			t.Fatal(err)
		}
		want[i] = res
	}
	if got := string(want[0].Stdout); got != "famguard "+version+"\n" {
		t.Fatalf("host build's version prints %q, want the stamp %q", got, version)
	}
	t.Logf("host: %d commands in %v", len(runs), time.Since(start).Round(time.Millisecond))

	// Each router build in its own subtest, in parallel (go test runs
	// GOMAXPROCS of them at a time: qemu is CPU-bound).
	t.Run("arch", func(t *testing.T) {
		for _, tg := range Routers {
			t.Run(tg.GOARCH, func(t *testing.T) {
				t.Parallel()
				start := time.Now()
				for i, r := range runs {
					env := append(append([]string{}, baseEnv...), r.env...)
					got, err := Run(ctx, root, env, Command(qemus[tg.GOARCH], paths[tg.GOARCH], r.args...))
					if err != nil {
						t.Errorf("%s under %s: %v", tg.GOARCH, tg.Qemu, err)
						continue
					}
					if msg := compare(want[i], got); msg != "" {
						t.Errorf("%s build under %s differs from the host (%s) build\n  command: %s famguard %s\n%s",
							tg.GOARCH, tg.Qemu, Host.GOARCH, strings.Join(r.env, " "), strings.Join(r.args, " "), msg)
					}
				}
				t.Logf("%s: %d commands under %s in %v, all identical to the host build", tg.GOARCH, len(runs), tg.Qemu, time.Since(start).Round(time.Millisecond))
			})
		}
	})
}

// compare explains how got differs from want ("" when identical).
func compare(want, got Result) string {
	var b strings.Builder
	if want.Exit != got.Exit {
		fmt.Fprintf(&b, "  exit status: host %d, router build %d\n", want.Exit, got.Exit)
	}
	if !bytes.Equal(want.Stdout, got.Stdout) {
		fmt.Fprintf(&b, "  stdout (- host, + router build):\n%s", diff(want.Stdout, got.Stdout))
	}
	if !bytes.Equal(want.Stderr, got.Stderr) {
		fmt.Fprintf(&b, "  stderr (- host, + router build):\n%s", diff(want.Stderr, got.Stderr))
	}
	return b.String()
}

var diffMu sync.Mutex

// diff is a unified diff of two outputs (diff -u; both in full if diff is
// not installed).
func diff(a, b []byte) string {
	diffMu.Lock()
	defer diffMu.Unlock()
	dir, err := os.MkdirTemp("", "famguard-cross-diff")
	if err == nil {
		defer os.RemoveAll(dir)
		pa, pb := filepath.Join(dir, "host"), filepath.Join(dir, "router")
		if os.WriteFile(pa, a, 0o644) == nil && os.WriteFile(pb, b, 0o644) == nil {
			out, err := exec.Command("diff", "-u", "--label", "host", "--label", "router", pa, pb).Output()
			if len(out) > 0 && err != nil { // diff exits 1 when the files differ
				return indent(string(out))
			}
		}
	}
	return indent("host:\n" + string(a) + "\nrouter build:\n" + string(b))
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return "    " + strings.Join(lines, "\n    ") + "\n"
}

// TestCompareExplains pins the failure message: exit status, and a diff per
// stream that differs.
func TestCompareExplains(t *testing.T) {
	same := Result{Stdout: []byte("a\nb\n"), Stderr: []byte("x\n")}
	if msg := compare(same, same); msg != "" {
		t.Errorf("identical results reported as different: %q", msg)
	}
	got := Result{Stdout: []byte("a\nc\n"), Stderr: []byte("x\n"), Exit: 1}
	msg := compare(same, got)
	for _, want := range []string{"exit status: host 0, router build 1", "stdout (- host, + router build)", "-b", "+c"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "stderr") {
		t.Errorf("message mentions stderr, which was identical:\n%s", msg)
	}
}
