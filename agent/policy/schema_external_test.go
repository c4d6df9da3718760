package policy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// schemaResult is one line of scripts/schemacheck/validate.py.
type schemaResult struct {
	File      string   `json:"file"`
	Errors    []string `json:"errors"`
	YAMLError string   `json:"yaml_error"`
}

func (r schemaResult) rejected() bool { return len(r.Errors) > 0 || r.YAMLError != "" }

// validateWithPython runs an independent JSON Schema implementation
// (Python's jsonschema, Debian package python3-jsonschema) over YAML texts.
func validateWithPython(t *testing.T, docs map[string]string) map[string]schemaResult {
	t.Helper()
	py := "python3"
	if _, err := os.Stat("/usr/bin/python3"); err == nil {
		py = "/usr/bin/python3" // Debian's, where apt installs python3-jsonschema
	}
	if out, err := exec.Command(py, "-c", "import jsonschema, yaml").CombinedOutput(); err != nil {
		t.Fatalf("%s cannot import jsonschema and yaml (%v: %s): run scripts/install-deps.sh (python3-jsonschema, python3-yaml)", py, err, out)
	}
	in, _ := json.Marshal(docs)
	cmd := exec.Command(py, "../../scripts/schemacheck/validate.py", "schema.json", "-")
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("validate.py: %v\n%s", err, stderr.String())
	}
	res := map[string]schemaResult{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r schemaResult
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("validate.py output %q: %v", sc.Text(), err)
		}
		res[r.File] = r
	}
	if len(res) != len(docs) {
		t.Fatalf("validate.py answered for %d of %d documents", len(res), len(docs))
	}
	return res
}

// notExpressible lists the invalid testdata files that the loader blames
// (expected.txt names them) but that pass the schema, and why no JSON
// Schema can reject them. Every other file the loader blames must fail the
// schema. (A file of an invalid set that the loader does not blame, like
// a.yaml when b.yaml repeats its MAC, may pass.)
var notExpressible = map[string]string{
	"alias/family.yaml":                "YAML anchors and aliases are resolved by the YAML parser; the JSON the schema sees has none (and the expanded document is valid)",
	"duplicate-mac/b.yaml":             "valid alone: the problem is across files (a MAC in a.yaml and b.yaml), and a schema sees one file",
	"zones/b.yaml":                     "valid alone: the two files set different zones; a schema sees one file",
	"trusted-conflicts/a.yaml":         "the same MAC twice in trusted (in two spellings): uniqueness of one property across array items is not expressible",
	"unknown-like-missing/family.yaml": "like: must name a child defined somewhere in the set: a reference to another object's keys (possibly in another file)",
	"empty-dir/(no .yaml file)":        "an empty directory has no file to validate",
}

// blamed reads the files an invalid set's expected.txt names.
func blamed(t *testing.T, set string) map[string]bool {
	b, err := os.ReadFile(filepath.Join(testdata, "invalid", set, "expected.txt"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if f, _, ok := strings.Cut(line, ":"); ok {
			out[f] = true
		}
	}
	return out
}

// readmeProfiles extracts the README's YAML examples that are profiles.
func readmeProfiles(t *testing.T) map[string]string {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	re := regexp.MustCompile("(?s)```yaml\n(.*?)```")
	for i, m := range re.FindAllSubmatch(b, -1) {
		if regexp.MustCompile(`(?m)^version: `).Match(m[1]) {
			out["README.md#yaml-"+string(rune('a'+i))] = string(m[1])
		}
	}
	if len(out) == 0 {
		t.Fatal("no profile example (```yaml with version:) in README.md")
	}
	return out
}

// TestSchemaWithIndependentValidator: every valid testdata file and README
// example passes Python's jsonschema; every invalid testdata file the loader
// rejects fails it too, except those in notExpressible.
func TestSchemaWithIndependentValidator(t *testing.T) {
	if bytes.Contains(JSONSchema, []byte("(?i)")) {
		t.Error("schema.json uses (?i), which is not in the JSON Schema (ECMA-262) regex dialect")
	}
	docs := map[string]string{}
	valid := map[string]bool{}
	files, _ := filepath.Glob(filepath.Join(testdata, "*", "*", "*"))
	for _, f := range files {
		if !IsProfileFile(filepath.Base(f)) {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(testdata, f)
		docs[rel] = string(b)
		valid[rel] = strings.HasPrefix(rel, "valid"+string(filepath.Separator))
	}
	for name, text := range readmeProfiles(t) {
		docs[name], valid[name] = text, true
		if _, probs := ParseFile(name, []byte(text)); len(probs) > 0 {
			t.Errorf("%s: the loader rejects the README's example: %v", name, probs)
		}
	}
	res := validateWithPython(t, docs)
	names := make([]string, 0, len(docs))
	for n := range docs {
		names = append(names, n)
	}
	sort.Strings(names)
	invalidSets := map[string]bool{}
	for _, n := range names {
		r := res[n]
		short := strings.TrimPrefix(n, "invalid"+string(filepath.Separator))
		switch {
		case valid[n] && r.rejected():
			t.Errorf("%s is valid, the schema rejects it: %v %s", n, r.Errors, r.YAMLError)
		case !valid[n]:
			invalidSets[filepath.Dir(short)] = true
			if !blamed(t, filepath.Dir(short))[filepath.Base(short)] {
				continue
			}
			why, listed := notExpressible[short]
			if r.rejected() && listed {
				t.Errorf("%s is listed as not expressible (%s) but the schema rejects it: %v", n, why, r.Errors)
			}
			if !r.rejected() && !listed {
				t.Errorf("%s is invalid and the schema accepts it: make the schema reject it, or add it to notExpressible with the reason", n)
			}
		}
	}
	// Every invalid set is covered: by a file the schema rejects, or by a
	// listed reason (the empty directory has no file at all).
	sets, _ := filepath.Glob(filepath.Join(testdata, "invalid", "*"))
	for _, s := range sets {
		b := filepath.Base(s)
		if !invalidSets[b] && notExpressible[b+"/(no .yaml file)"] == "" {
			t.Errorf("invalid set %s has no profile file and no reason in notExpressible", b)
		}
	}
}

// TestSchemaAgreesWithLoader: one problem (or one accepted oddity) per
// case; the loader and the independent validator must agree, except where
// the case names why a schema cannot express the check.
func TestSchemaAgreesWithLoader(t *testing.T) {
	child := func(body string) string {
		return "version: 1\nchildren:\n  alice:\n    devices: [{mac: \"02:00:00:00:00:11\"}]\n" + body
	}
	sched := func(s string) string { return child("    schedules:\n      - " + s + "\n") }
	cases := []struct {
		name, yaml string
		loaderOK   bool
		why        string // non-empty: the schema cannot express it (it accepts)
	}{
		{"dotted MAC", "version: 1\nchildren:\n  a: {devices: [{mac: \"0200.0000.0011\"}]}\n", true, ""},
		{"dash MAC, upper case", "version: 1\nchildren:\n  a: {devices: [{mac: \"02-AA-00-00-00-11\"}]}\n", true, ""},
		{"unquoted MAC (YAML 1.1 would read base 60)", "version: 1\nchildren:\n  a: {devices: [{mac: 02:00:00:00:00:11}]}\n", true, ""},
		{"mixed MAC separators", "version: 1\nchildren:\n  a: {devices: [{mac: \"02:00-00:00:00:11\"}]}\n", false, ""},
		{"multicast MAC", "version: 1\nchildren:\n  a: {devices: [{mac: \"01:00:5e:00:00:01\"}]}\n", false, ""},
		{"zero MAC", "version: 1\nchildren:\n  a: {devices: [{mac: \"00:00:00:00:00:00\"}]}\n", false, ""},
		{"dotted zero MAC", "version: 1\nchildren:\n  a: {devices: [{mac: \"0000.0000.0000\"}]}\n", false, ""},
		{"EUI-64", "version: 1\nchildren:\n  a: {devices: [{mac: \"02:00:00:00:00:00:00:11\"}]}\n", false, ""},
		{"upper-case category", child("    block: [Gambling, ADULT]\n"), true, ""},
		{"category with a space", child("    block: [adult content]\n"), false, ""},
		{"safe_search: yes", child("    safe_search: yes\n"), false, ""},
		{"safe_search: on", child("    safe_search: on\n"), false, ""},
		{"safe_search: True", child("    safe_search: True\n"), true, ""},
		{"device name is a number", "version: 1\nchildren:\n  a: {devices: [{mac: \"02:00:00:00:00:11\", name: 2024}]}\n", true, ""},
		{"upper-case days", sched(`{days: [MON-Fri], from: "16:00", to: "18:00", action: offline}`), true, ""},
		{"unquoted times", sched(`{days: daily, from: 21:00, to: 07:00, action: offline}`), true, ""},
		{"everyday", sched(`{days: everyday, from: "21:00", to: "07:00", action: offline}`), true, ""},
		{"no days", sched(`{days: [], from: "21:00", to: "07:00", action: offline}`), false, ""},
		{"from 24:00", sched(`{days: daily, from: "24:00", to: "07:00", action: offline}`), false, ""},
		{"to 24:00", sched(`{days: daily, from: "20:00", to: "24:00", action: offline}`), true, ""},
		{"action block without list", sched(`{days: daily, from: "20:00", to: "21:00", action: block}`), false, ""},
		{"empty block list", sched(`{days: daily, from: "20:00", to: "21:00", block: []}`), false, ""},
		{"upper-case domain", child("    allow: [KhanAcademy.ORG.]\n"), true, ""},
		{"version as text", "version: \"1\"\n", true, ""},
		{"unknown file key", "version: 1\nchildern: {}\n", false, ""},
		{"operator defaults", "version: 1\ndefaults: {block: [malware], safe_search: true, bypass_prevention: false}\n", true, ""},
		{"operator floors", "version: 1\nfloors: {block: [security], safe_search: true, bypass_prevention: true}\n", true, ""},
		{"floor set to false", "version: 1\nfloors: {safe_search: false}\n", false, ""},
		{"unknown defaults key", "version: 1\ndefaults: {blok: [x]}\n", false, ""},
		{"second YAML document", "version: 1\n---\nchildren: {}\n", false, ""},
		{"budget every day", child("    budget: 90m\n"), true, ""},
		{"budget per day", child("    budget: {mon-fri: 2h, Sat-Sun: 1h30m}\n"), true, ""},
		{"budget zero as a number", child("    budget: 0\n"), true, ""},
		{"budget as Go writes it", child("    budget: 1.5h\n"), true, ""},
		{"budget negative", child("    budget: -1h\n"), false, ""},
		{"budget over a day", child("    budget: 25h\n"), false, "the schema checks the duration's grammar; its value (at most 24h, whole minutes: 1.5h is fine, 90s is not) is arithmetic over a sum of units, which a pattern cannot bound"},
		{"budget in seconds", child("    budget: 90s\n"), false, "the schema checks the duration's grammar; whole minutes is arithmetic over a sum of units"},
		{"budget bad unit", child("    budget: 2 hours\n"), false, ""},
		{"unknown devices offline", "version: 1\nunknown_devices: offline\n", true, ""},
		{"unknown devices like", "version: 1\nunknown_devices: {like: alice}\nchildren:\n  alice: {devices: [{mac: \"02:00:00:00:00:11\"}]}\n", true, ""},
		{"unknown devices block", "version: 1\nunknown_devices: block\n", false, ""},
		{"trusted dotted MAC", "version: 1\ntrusted: [{mac: \"0200.0000.0031\", name: Mum}]\n", true, ""},
		{"version 1.0", "version: 1.0\n", false, "JSON Schema compares numbers by value: 1.0 is the integer 1 to it, while the agent wants the digit 1"},
		{"unknown zone", "version: 1\ntimezone: Europe/Berln\n", false, "the IANA zone list changes with tzdata releases; a schema enum would drift from the agent's embedded database"},
		{"equal from and to", sched(`{days: daily, from: "13:00", to: "13:00", action: offline}`), false, "JSON Schema cannot compare two values of one object (from = to)"},
		{"duplicate key", child("    safe_search: true\n    safe_search: false\n"), false, "a YAML parser keeps one of two equal keys before the schema sees the object"},
		{"duplicate schedule name", child("    schedules:\n      - {name: a, days: daily, from: \"20:00\", to: \"21:00\", action: offline}\n      - {name: a, days: daily, from: \"22:00\", to: \"23:00\", action: offline}\n"), false, "uniqueness of one property across array items is not expressible (uniqueItems compares whole items)"},
		{"same MAC twice in one child", "version: 1\nchildren:\n  a: {devices: [{mac: \"02:00:00:00:00:11\"}, {mac: \"02:00:00:00:00:11\", name: x}]}\n", false, "uniqueness of one property across array items (and across spellings of a MAC) is not expressible"},
	}
	docs := map[string]string{}
	for _, c := range cases {
		docs[c.name] = c.yaml
	}
	res := validateWithPython(t, docs)
	for _, c := range cases {
		_, probs := ParseFile("case.yaml", []byte(c.yaml))
		if got := len(probs) == 0; got != c.loaderOK {
			t.Errorf("%s: loader accepts = %v, want %v (%v)", c.name, got, c.loaderOK, probs)
		}
		schemaOK := !res[c.name].rejected()
		want := c.loaderOK || c.why != ""
		if schemaOK != want {
			t.Errorf("%s: schema accepts = %v, loader accepts = %v (reason listed: %q); schema errors: %v %s", c.name, schemaOK, c.loaderOK, c.why, res[c.name].Errors, res[c.name].YAMLError)
		}
	}
}

// TestJSONSchemaLayerKeys: the defaults: and floors: objects list exactly
// the keys the loader accepts.
func TestJSONSchemaLayerKeys(t *testing.T) {
	var s struct {
		Defs map[string]struct {
			Properties           map[string]any `json:"properties"`
			AdditionalProperties any            `json:"additionalProperties"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(JSONSchema, &s); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"defaults", "floors"} {
		var got []string
		for k := range s.Defs[kind].Properties {
			got = append(got, k)
		}
		sort.Strings(got)
		want := append([]string(nil), Keys[kind]...)
		sort.Strings(want)
		if !reflect.DeepEqual(got, want) || s.Defs[kind].AdditionalProperties != false {
			t.Errorf("schema %s keys %v (additionalProperties %v), loader accepts %v", kind, got, s.Defs[kind].AdditionalProperties, want)
		}
	}
}
