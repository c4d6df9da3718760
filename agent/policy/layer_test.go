package policy

import (
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// writeSet writes files (name → content) into a fresh directory.
func writeSet(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestDigestDependsOnlyOnContent: the same files give the same digest in any
// directory, and any change of a name or a byte changes it.
func TestDigestDependsOnlyOnContent(t *testing.T) {
	files := map[string]string{"a.yaml": "version: 1\n", "b.yaml": "version: 1\ntimezone: Europe/Berlin\n"}
	d1, d2 := writeSet(t, files), filepath.Join(t.TempDir(), "somewhere", "else")
	if err := os.MkdirAll(d2, 0o755); err != nil {
		t.Fatal(err)
	}
	for n, b := range files {
		os.WriteFile(filepath.Join(d2, n), []byte(b), 0o644)
	}
	p1, err := LoadDir(d1)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := LoadDir(d2)
	if err != nil {
		t.Fatal(err)
	}
	if p1.Digest != p2.Digest {
		t.Errorf("digest depends on the directory: %s vs %s", p1.Digest, p2.Digest)
	}
	// The documented algorithm (OPERATORS.md): SHA-256 over one line
	// "NAME NUL SHA256-OF-CONTENT LF" per file in name order, 12 hex digits.
	h := sha256.New()
	for _, n := range []string{"a.yaml", "b.yaml"} {
		c := sha256.Sum256([]byte(files[n]))
		fmt.Fprintf(h, "%s\x00%x\n", n, c)
	}
	if want := fmt.Sprintf("%x", h.Sum(nil))[:12]; p1.Digest != want {
		t.Errorf("digest %s, the documented algorithm gives %s", p1.Digest, want)
	}
	os.Rename(filepath.Join(d2, "b.yaml"), filepath.Join(d2, "c.yaml"))
	if p3, _ := LoadDir(d2); p3.Digest == p1.Digest {
		t.Error("renaming a file does not change the digest")
	}
}

func TestLayers(t *testing.T) {
	const alice = "version: 1\nchildren:\n  alice:\n    devices: [{mac: \"02:00:00:00:00:11\"}]\n"
	type want struct {
		block      []string
		safe       bool
		bypass     bool
		devices    []string
		schedules  int
		decided    map[string]string
		warnings   []string
		zone       string
		layerNames []string
	}
	for _, tc := range []struct {
		name          string
		operator      map[string]string // nil: no operator directory
		parents       map[string]string
		want          want
		wantProblems  []string
		childIsAbsent bool
	}{
		{
			name:    "version-1 parents only: nothing decided, nothing changed",
			parents: map[string]string{"f.yaml": alice + "    block: [adult]\n"},
			want:    want{block: []string{"adult"}, bypass: true, devices: []string{"02:00:00:00:00:11"}, layerNames: []string{"parents"}},
		},
		{
			name:     "operator defaults apply where the parents say nothing",
			operator: map[string]string{"isp.yaml": "version: 1\ntimezone: Europe/Berlin\ndefaults: {block: [malware], safe_search: true}\n"},
			parents:  map[string]string{"f.yaml": alice},
			want: want{block: []string{"malware"}, safe: true, bypass: true, devices: []string{"02:00:00:00:00:11"}, zone: "Europe/Berlin",
				decided:    map[string]string{"block": "operator default", "safe_search": "operator default"},
				layerNames: []string{"operator", "parents"}},
		},
		{
			name:     "parents change operator defaults (child key, then parents' defaults)",
			operator: map[string]string{"isp.yaml": "version: 1\ntimezone: Europe/Berlin\ndefaults: {block: [malware], safe_search: true}\n"},
			parents:  map[string]string{"f.yaml": alice + "    block: []\ntimezone: Europe/Paris\ndefaults: {safe_search: false}\n"},
			want: want{block: []string{}, safe: false, bypass: true, devices: []string{"02:00:00:00:00:11"}, zone: "Europe/Paris",
				decided:    map[string]string{"block": "parents", "safe_search": "parents default"},
				layerNames: []string{"operator", "parents"}},
		},
		{
			name:     "floors cannot be lowered",
			operator: map[string]string{"isp.yaml": "version: 1\nfloors: {block: [security], safe_search: true, bypass_prevention: true}\n"},
			parents:  map[string]string{"f.yaml": alice + "    block: [adult]\n    safe_search: false\n    bypass_prevention: false\n"},
			want: want{block: []string{"adult", "security"}, safe: true, bypass: true, devices: []string{"02:00:00:00:00:11"},
				decided:    map[string]string{"block": "parents + operator floor (security)", "safe_search": "operator floor", "bypass_prevention": "operator floor"},
				layerNames: []string{"operator", "parents"}},
		},
		{
			name:     "a child in both layers merges key by key, devices are the union",
			operator: map[string]string{"acs.yaml": "version: 1\nchildren:\n  alice:\n    devices: [{mac: \"02:00:00:00:00:12\", name: tablet}, {mac: \"02:00:00:00:00:11\", name: old}]\n    block: [adult]\n    schedules: [{name: bedtime, days: daily, from: \"21:00\", to: \"07:00\", action: offline}]\n"},
			parents:  map[string]string{"f.yaml": alice + "    safe_search: true\n"},
			want: want{block: []string{"adult"}, safe: true, bypass: true, devices: []string{"02:00:00:00:00:11", "02:00:00:00:00:12"}, schedules: 1,
				decided:    map[string]string{"block": "operator", "safe_search": "parents", "schedules": "operator", "devices": "operator + parents"},
				layerNames: []string{"operator", "parents"}},
		},
		{
			name:     "a MAC the parents give another child is theirs, with a warning",
			operator: map[string]string{"acs.yaml": "version: 1\nchildren:\n  alice:\n    devices: [{mac: \"02:00:00:00:00:21\"}]\n"},
			parents:  map[string]string{"f.yaml": alice + "  bob:\n    devices: [{mac: \"02:00:00:00:00:21\"}]\n"},
			want: want{bypass: true, devices: []string{"02:00:00:00:00:11"},
				decided:    map[string]string{"devices": "operator + parents"},
				warnings:   []string{`acs.yaml:4:21: children.alice.devices[0].mac: MAC 02:00:00:00:00:21 is also listed for child "bob"`},
				layerNames: []string{"operator", "parents"}},
		},
		{
			name:     "an empty operator directory is no layer",
			operator: map[string]string{"README": "not a profile"},
			parents:  map[string]string{"f.yaml": alice},
			want:     want{bypass: true, devices: []string{"02:00:00:00:00:11"}, layerNames: []string{"parents"}},
		},
		{
			name:         "a default set twice in one layer is a problem",
			operator:     map[string]string{"a.yaml": "version: 1\ndefaults: {safe_search: true}\n", "b.yaml": "version: 1\ndefaults: {safe_search: false}\n"},
			parents:      map[string]string{"f.yaml": alice},
			wantProblems: []string{"b.yaml:2:25: defaults.safe_search: already set at "},
		},
		{
			name:         "problems of both layers are reported together",
			operator:     map[string]string{"a.yaml": "version: 1\nfloors: {safe_search: false}\n"},
			parents:      map[string]string{"f.yaml": "version: 2\n"},
			wantProblems: []string{"a.yaml:2:23: floors.safe_search: false lowers nothing", "f.yaml:1:10: version: version 2"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opDir := ""
			if tc.operator != nil {
				opDir = writeSet(t, tc.operator)
			}
			parDir := writeSet(t, tc.parents)
			pol, err := Load(opDir, parDir)
			if tc.wantProblems != nil {
				if err == nil {
					t.Fatalf("accepted, want %v", tc.wantProblems)
				}
				got := strings.ReplaceAll(strings.ReplaceAll(err.Error(), opDir+"/", ""), parDir+"/", "")
				for _, w := range tc.wantProblems {
					if !strings.Contains(got, w) {
						t.Errorf("problems %q lack %q", got, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var c *Child
			for i := range pol.Children {
				if pol.Children[i].Name == "alice" {
					c = &pol.Children[i]
				}
			}
			if c == nil {
				t.Fatalf("no alice in %+v", pol.Children)
			}
			var macs []string
			for _, d := range c.Devices {
				macs = append(macs, d.MAC)
			}
			block := c.Block
			if block == nil {
				block = []string{}
			}
			if tc.want.block == nil {
				tc.want.block = []string{}
			}
			if !reflect.DeepEqual(block, tc.want.block) || c.SafeSearch != tc.want.safe || c.BypassPrevention != tc.want.bypass ||
				!reflect.DeepEqual(macs, tc.want.devices) || len(c.Schedules) != tc.want.schedules {
				t.Errorf("alice = block %v safe %v bypass %v devices %v schedules %d; want %+v", block, c.SafeSearch, c.BypassPrevention, macs, len(c.Schedules), tc.want)
			}
			if len(c.Decided) > 0 || tc.want.decided != nil {
				if !reflect.DeepEqual(c.Decided, tc.want.decided) {
					t.Errorf("decided %v, want %v", c.Decided, tc.want.decided)
				}
			}
			if pol.Timezone != tc.want.zone {
				t.Errorf("zone %q, want %q", pol.Timezone, tc.want.zone)
			}
			var names []string
			for _, l := range pol.Layers {
				names = append(names, l.Name)
			}
			if !reflect.DeepEqual(names, tc.want.layerNames) {
				t.Errorf("layers %v, want %v", names, tc.want.layerNames)
			}
			var warns []string
			for _, w := range pol.Warnings {
				warns = append(warns, strings.ReplaceAll(w.String(), opDir+"/", ""))
			}
			if len(warns) != len(tc.want.warnings) {
				t.Fatalf("warnings %q, want %q", warns, tc.want.warnings)
			}
			for i := range warns {
				if !strings.HasPrefix(warns[i], tc.want.warnings[i]) {
					t.Errorf("warning %q, want prefix %q", warns[i], tc.want.warnings[i])
				}
			}
		})
	}
}

// TestLayeredDigest: the policy digest of a layered set is the documented
// combination of the layer digests, and without an operator layer it is the
// parents' layer digest.
func TestLayeredDigest(t *testing.T) {
	op := writeSet(t, map[string]string{"isp.yaml": "version: 1\nfloors: {block: [security]}\n"})
	par := writeSet(t, map[string]string{"f.yaml": "version: 1\n"})
	pol, err := Load(op, par)
	if err != nil {
		t.Fatal(err)
	}
	if len(pol.Layers) != 2 || pol.Digest != layersDigest(pol.Layers[0].Digest, pol.Layers[1].Digest) {
		t.Errorf("digest %s, layers %+v", pol.Digest, pol.Layers)
	}
	alone, _ := LoadDir(par)
	if alone.Digest != pol.Layers[1].Digest || alone.Digest == pol.Digest {
		t.Errorf("parents alone %s, parents layer %s, both %s", alone.Digest, pol.Layers[1].Digest, pol.Digest)
	}
}

// TestDigestScript: scripts/policy-digest.sh (what an operator's server
// can run without famguard) computes the digest the agent reports, under
// dash and busybox sh.
func TestDigestScript(t *testing.T) {
	op := writeSet(t, map[string]string{"isp.yaml": "version: 1\nfloors: {block: [security]}\n", "README": "x", ".hidden.yaml": "junk"})
	cases := [][2]string{
		{filepath.Join(testdata, "valid", "family"), ""},
		{filepath.Join(testdata, "valid", "multi-file"), ""}, // with .swp and ~ files
		{filepath.Join(testdata, "valid", "family"), op},
	}
	for _, shell := range [][]string{{"sh"}, {"busybox", "sh"}} {
		if _, err := exec.LookPath(shell[0]); err != nil {
			t.Fatalf("%s: %v (scripts/install-deps.sh installs busybox)", shell[0], err)
		}
		for _, c := range cases {
			pol, err := Load(c[1], c[0])
			if err != nil {
				t.Fatal(err)
			}
			args := append(append([]string(nil), shell[1:]...), "../../scripts/policy-digest.sh", c[0])
			if c[1] != "" {
				args = append(args, c[1])
			}
			out, err := exec.Command(shell[0], args...).CombinedOutput()
			if err != nil {
				t.Fatalf("%v: %v: %s", args, err, out)
			}
			if got := strings.TrimSpace(string(out)); got != pol.Digest {
				t.Errorf("%s %v: script %s, agent %s", shell[0], c, got, pol.Digest)
			}
		}
	}
}

// TestUnknownDevicesLayered: unknown_devices in the operator layer is a
// default the parents' own setting beats; trusted devices of the operator
// layer count unless the parents give the MAC to a child.
func TestUnknownDevicesLayered(t *testing.T) {
	const alice = "version: 1\nchildren:\n  alice:\n    devices: [{mac: \"02:00:00:00:00:11\"}]\n"
	op := writeSet(t, map[string]string{"isp.yaml": "version: 1\nunknown_devices: allow\ntrusted: [{mac: \"02:00:00:00:00:31\", name: ISP box}, {mac: \"02:00:00:00:00:11\", name: mistaken}]\n"})
	pol, err := Load(op, writeSet(t, map[string]string{"f.yaml": alice}))
	if err != nil {
		t.Fatal(err)
	}
	if u := pol.UnknownDevices(); u.Action != UnknownAllow || u.Default {
		t.Errorf("operator default not applied: %+v", u)
	}
	if len(pol.Trusted) != 1 || pol.Trusted[0].MAC != "02:00:00:00:00:31" {
		t.Errorf("trusted %+v (the parents' child keeps 02:00:00:00:00:11)", pol.Trusted)
	}
	pol, err = Load(op, writeSet(t, map[string]string{"f.yaml": alice + "unknown_devices: offline\n"}))
	if err != nil {
		t.Fatal(err)
	}
	if u := pol.UnknownDevices(); u.Action != UnknownOffline || u.Default {
		t.Errorf("the parents' choice does not win: %+v", u)
	}
}
