package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/famguard/famguard/agent/opstatus"
)

// TestOperatorBundleLive: a running agent with the parents' profiles; an
// operator imports a signed bundle (a floor: security always blocked, safe
// search forced, and the security list) while it runs. The agent reloads
// by itself, status and status.json say which layer decided what, carry
// each layer's digest and serial and the import's result, and a replayed
// bundle changes nothing and says why. status.json never holds a name a
// device looked up.
func TestOperatorBundleLive(t *testing.T) {
	f := newFamilyLab(t)
	writeFile(t, filepath.Join(f.profiles, "family.yaml"), familyProfile)
	etc := filepath.Dir(f.profiles)
	opDir := filepath.Join(etc, "operator.d") // the agent's default: beside profiles.d
	catDir := filepath.Join(etc, "categories")
	keys := filepath.Join(etc, "keys.d")
	work := t.TempDir()
	os.MkdirAll(keys, 0o755)
	fgb := binary(t, "famguard-bundle")
	mustRun := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return string(out)
	}
	mustRun(fgb, "keygen", filepath.Join(work, "isp"))
	pub, _ := os.ReadFile(filepath.Join(work, "isp.pub"))
	os.WriteFile(filepath.Join(keys, "isp.pub"), pub, 0o644)
	src := filepath.Join(work, "src")
	os.MkdirAll(filepath.Join(src, "op"), 0o755)
	os.MkdirAll(filepath.Join(src, "cat"), 0o755)
	os.WriteFile(filepath.Join(src, "op", "isp.yaml"), []byte("version: 1\nfloors: {block: [security], safe_search: true}\n"), 0o644)
	os.WriteFile(filepath.Join(src, "cat", "security.txt"), []byte("malware.example\n"), 0o644)
	mustRun(fgb, "build", "--key", filepath.Join(work, "isp.sec"), "--serial", "7", "--operator", filepath.Join(src, "op"),
		"--categories", filepath.Join(src, "cat"), "-o", filepath.Join(work, "b7.tar.gz"))

	a := startAgent(t, f.Lab, f.profiles, f.state, bedtime.Add(-2*time.Hour).Format(time.RFC3339))
	before := a.status().Policy.Digest
	report := func() opstatus.Report {
		t.Helper()
		var r opstatus.Report
		b, err := os.ReadFile(filepath.Join(f.state, opstatus.FileName))
		if err != nil || json.Unmarshal(b, &r) != nil {
			t.Fatalf("status.json: %v %s", err, b)
		}
		for _, leak := range []string{"recent_blocks", "blocked_by_device", "addresses", "192.0.2."} {
			if strings.Contains(string(b), leak) {
				t.Errorf("status.json holds %q", leak)
			}
		}
		return r
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitFor("status.json", func() bool { _, err := os.Stat(filepath.Join(f.state, opstatus.FileName)); return err == nil })
	if r := report(); r.Policy == nil || r.Policy.Digest != before || len(r.Layers) != 1 {
		t.Fatalf("status.json before the import: %+v", r)
	}

	imp := func(bundle string) (string, error) {
		return cli(t, f.Lab, "import", "--operator", opDir, "--categories", catDir, "--profiles", f.profiles,
			"--keys", keys, "--state", f.state, bundle)
	}
	out, err := imp(filepath.Join(work, "b7.tar.gz"))
	if err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	// The agent reloads by itself: the digest the import announced.
	var want string
	for _, l := range strings.Split(out, "\n") {
		if i := strings.Index(l, "; policy "); i >= 0 {
			want = strings.TrimSpace(l[i+len("; policy "):])
		}
	}
	waitFor("the agent to load the bundle", func() bool { return a.status().Policy.Digest == want })
	waitFor("status.json to follow", func() bool { r := report(); return r.Policy != nil && r.Policy.Digest == want })
	r := report()
	if len(r.Layers) != 2 || r.Layers[0].Name != "operator" || r.Layers[0].Serial != 7 {
		t.Errorf("layers %+v", r.Layers)
	}
	if r.LastImport == nil || !r.LastImport.OK || r.LastImport.Serial != 7 {
		t.Errorf("last import %+v", r.LastImport)
	}
	for _, c := range r.Children {
		if !slices.Contains(c.BlockedCategories, "security") || !strings.Contains(c.Decided["block"], "operator floor") || c.Decided["safe_search"] != "operator floor" {
			t.Errorf("child %s: blocked %v, decided %v", c.Name, c.BlockedCategories, c.Decided)
		}
	}
	st, _ := cli(t, f.Lab, "status", "--state", f.state)
	if !strings.Contains(st, "operator floor (security)") || !strings.Contains(st, "Import:") {
		t.Errorf("status does not say which layer decided, or the import:\n%s", st)
	}

	// A replay: refused, nothing changes, and status.json says why.
	if out, err := imp(filepath.Join(work, "b7.tar.gz")); err == nil || !strings.Contains(out, "replay") {
		t.Errorf("replay accepted: %v\n%s", err, out)
	}
	waitFor("status.json to show the refusal", func() bool {
		r := report()
		return r.LastImport != nil && r.LastImport.Error != nil && r.LastImport.Error.Code == "replay"
	})
	if a.status().Policy.Digest != want {
		t.Error("a refused bundle changed the policy")
	}
}
