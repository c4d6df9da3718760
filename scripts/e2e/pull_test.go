package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/famguard/famguard/agent/bundle"
	"github.com/famguard/famguard/scripts/lab"
)

// TestPullMode: a router namespace polls an operator's file server (busybox
// httpd in the "internet" namespace) through each fetcher it may have —
// curl, GNU wget, busybox wget (uclient-fetch takes wget's arguments and is
// not packaged for Debian). It fetches the manifest every time and the
// bundle only when the serial is new; a bad bundle, an oversized one and a
// server that is down change nothing and say why in last-pull.json and
// last-import.json.
func TestPullMode(t *testing.T) {
	lab.RequireRoot(t)
	prefix := fmt.Sprintf("fgp%d%d", os.Getpid()%1000, labSeq.Add(1))
	ctx := context.Background()
	l, err := lab.New(ctx, prefix, nil)
	if err != nil {
		t.Fatalf("building the lab: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("removing the lab: %v", err)
		}
	})
	work := t.TempDir()
	www := filepath.Join(work, "www")
	pub := filepath.Join(www, "grp")
	os.MkdirAll(pub, 0o755)
	srv := l.Cmd(ctx, l.Internet, "busybox", "httpd", "-f", "-vv", "-p", "198.51.100.10:8081", "-h", www)
	var srvLog lab.SyncBuffer
	srv.Stderr = &srvLog
	if err := srv.Start(); err != nil {
		t.Fatalf("busybox httpd: %v", err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })

	// The operator's side: a key, and bundles published with famguard-bundle.
	bundleCmd := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(binary(t, "famguard-bundle"), args...).CombinedOutput(); err != nil {
			t.Fatalf("famguard-bundle %v: %v\n%s", args, err, out)
		}
	}
	bundleCmd("keygen", filepath.Join(work, "isp"))
	src := filepath.Join(work, "src")
	os.MkdirAll(src, 0o755)
	publish := func(serial int, profile string) {
		t.Helper()
		os.WriteFile(filepath.Join(src, "isp.yaml"), []byte(profile), 0o644)
		bundleCmd("build", "--key", filepath.Join(work, "isp.sec"), "--serial", fmt.Sprint(serial), "--operator", src, "--publish", pub)
	}

	busyboxWget := filepath.Join(work, "bb", "wget")
	os.MkdirAll(filepath.Dir(busyboxWget), 0o755)
	bb, _ := exec.LookPath("busybox")
	os.Symlink(bb, busyboxWget)
	for _, fetcher := range []string{"curl", "wget", busyboxWget} {
		t.Run(filepath.Base(filepath.Dir(fetcher))+"-"+filepath.Base(fetcher), func(t *testing.T) {
			etc := filepath.Join(t.TempDir(), "etc")
			state := filepath.Join(etc, "run")
			for _, d := range []string{"keys.d", "profiles.d"} {
				os.MkdirAll(filepath.Join(etc, d), 0o755)
			}
			k, _ := os.ReadFile(filepath.Join(work, "isp.pub"))
			os.WriteFile(filepath.Join(etc, "keys.d", "isp.pub"), k, 0o644)
			os.WriteFile(filepath.Join(etc, "profiles.d", "family.yaml"), []byte("version: 1\nchildren:\n  alice:\n    devices: [{mac: \"02:00:00:00:00:11\"}]\n"), 0o644)
			pull := func(url string) (bundle.PullResult, *bundle.Result) {
				t.Helper()
				os.Remove(filepath.Join(state, "last-import.json"))
				out, _ := cli(t, l, "pull", "--once", "--url", url, "--fetcher", fetcher, "--timeout", "60s",
					"--operator", filepath.Join(etc, "operator.d"), "--categories", filepath.Join(etc, "categories.d"),
					"--profiles", filepath.Join(etc, "profiles.d"), "--keys", filepath.Join(etc, "keys.d"), "--state", state)
				var pr bundle.PullResult
				b, err := os.ReadFile(filepath.Join(state, "last-pull.json"))
				if err != nil || json.Unmarshal(b, &pr) != nil {
					t.Fatalf("last-pull.json: %v %s\nfamguard pull said:\n%s", err, b, out)
				}
				var ir *bundle.Result
				if b, err := os.ReadFile(filepath.Join(state, "last-import.json")); err == nil {
					ir = &bundle.Result{}
					json.Unmarshal(b, ir)
				}
				return pr, ir
			}
			url := "http://198.51.100.10:8081/grp"
			installed := func() uint64 {
				m, _ := bundle.Installed(filepath.Join(etc, "operator.d"))
				if m == nil {
					return 0
				}
				return m.Serial
			}

			publish(100, "version: 1\nfloors: {block: [security]}\n")
			pr, ir := pull(url)
			if !pr.OK || !pr.Fetched || ir == nil || !ir.OK || installed() != 100 {
				t.Fatalf("first pull: %+v import %+v", pr, ir)
			}
			pr, ir = pull(url)
			if !pr.OK || pr.Fetched || ir != nil {
				t.Errorf("same serial: fetched %v (want only the manifest) %+v", pr.Fetched, pr)
			}

			publish(101, "version: 1\nfloors: {safe_search: no}\n")
			pr, ir = pull(url)
			if pr.OK || ir == nil || ir.Error == nil || ir.Error.Code != bundle.CodeInvalid || installed() != 100 {
				t.Errorf("invalid profile: %+v import %+v", pr, ir)
			} else if !strings.Contains(strings.Join(ir.Error.Problems, "\n"), "bundle:operator/isp.yaml:2:") {
				t.Errorf("the reason does not name the file and line: %v", ir.Error)
			}

			// A 100 MB bundle behind a manifest announcing serial 102.
			publish(102, "version: 1\n")
			big := filepath.Join(pub, bundle.PublishedBundle)
			if err := os.Truncate(big, 100<<20); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			pr, ir = pull(url)
			if pr.OK || ir == nil || ir.Error == nil || installed() != 100 {
				t.Errorf("100 MB bundle: %+v import %+v", pr, ir)
			} else if ir.Error.Code != bundle.CodeCorrupt && ir.Error.Code != bundle.CodeTooLarge {
				t.Errorf("100 MB bundle refused for %v", ir.Error)
			}
			t.Logf("100 MB bundle refused in %v: %v", time.Since(start).Round(time.Millisecond), ir.Error)

			// Server gone: the poll fails and says so.
			pr, _ = pull("http://198.51.100.10:8099/grp")
			if pr.OK || !strings.Contains(pr.Error, "manifest") {
				t.Errorf("server down: %+v", pr)
			}

			publish(103, "version: 1\ndefaults: {safe_search: true}\n")
			if pr, ir = pull(url); !pr.OK || ir == nil || !ir.OK || installed() != 103 {
				t.Errorf("recovery: %+v import %+v", pr, ir)
			}
		})
	}
	if t.Failed() {
		t.Logf("httpd log:\n%s", srvLog.String())
	}
}
