package tz

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// router builds a fake router root with the given files.
func router(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const uciSystem = `
config system
	option hostname 'OpenWrt'
	option timezone 'EST5EDT,M3.2.0,M11.1.0'
	option zonename 'America/New York'
	option ttylogin '0'
`

func TestResolveSources(t *testing.T) {
	env := func(files map[string]string, tzVar string) Env {
		return Env{Root: router(t, files), Getenv: func(k string) string {
			if k == "TZ" {
				return tzVar
			}
			return ""
		}}
	}
	for _, tc := range []struct {
		name       string
		profile    string
		env        Env
		wantName   string
		wantSource string
		warn       string
	}{
		{"profile wins", "Europe/Berlin", env(map[string]string{"etc/config/system": uciSystem}, "UTC"), "Europe/Berlin", "profile timezone", ""},
		{"uci zonename with spaces", "", env(map[string]string{"etc/config/system": uciSystem, "etc/TZ": "CET-1CEST,M3.5.0,M10.5.0/3"}, ""), "America/New_York", "/etc/config/system zonename", ""},
		{"uci double quotes", "", env(map[string]string{"etc/config/system": "config system\n\toption zonename \"Europe/Paris\"\n"}, ""), "Europe/Paris", "/etc/config/system zonename", ""},
		{"bad zonename falls through to TZ", "", env(map[string]string{"etc/config/system": "option zonename 'Mars/Olympus'\n"}, ":Asia/Tokyo"), "Asia/Tokyo", "TZ environment", "Mars/Olympus"},
		{"TZ POSIX rule", "", env(nil, "CET-1CEST,M3.5.0,M10.5.0/3"), "CET-1CEST,M3.5.0,M10.5.0/3", "TZ environment", ""},
		{"/etc/TZ", "", env(map[string]string{"etc/TZ": "EST5EDT,M3.2.0,M11.1.0\n"}, ""), "EST5EDT,M3.2.0,M11.1.0", "/etc/TZ POSIX rule", ""},
		{"nothing configured", "", env(nil, ""), "UTC", "default (no zone configured)", ""},
	} {
		z, err := Resolve(tc.profile, tc.env)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if z.Name != tc.wantName || z.Source != tc.wantSource {
			t.Errorf("%s: got %q from %q, want %q from %q", tc.name, z.Name, z.Source, tc.wantName, tc.wantSource)
		}
		if tc.warn != "" && !strings.Contains(strings.Join(z.Warnings, ";"), tc.warn) {
			t.Errorf("%s: warnings %q should mention %q", tc.name, z.Warnings, tc.warn)
		}
	}
	if _, err := Resolve("Europe/Berln", Env{Root: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "IANA") {
		t.Errorf("bad profile zone: %v", err)
	}
}

func TestLoadPOSIXMatchesIANA(t *testing.T) {
	for _, tc := range []struct{ rule, iana string }{
		{"CET-1CEST,M3.5.0,M10.5.0/3", "Europe/Berlin"},
		{"EST5EDT,M3.2.0,M11.1.0", "America/New_York"},
		{"GMT0BST,M3.5.0/1,M10.5.0", "Europe/London"},
		{"<+0530>-5:30", "Asia/Kolkata"},
	} {
		posix, err := LoadPOSIX(tc.rule)
		if err != nil {
			t.Fatalf("%s: %v", tc.rule, err)
		}
		iana, _ := Load(tc.iana)
		// Every half hour for two years, including both DST switches.
		start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		for at := start; at.Before(start.AddDate(2, 0, 0)); at = at.Add(30 * time.Minute) {
			_, a := at.In(posix).Zone()
			_, b := at.In(iana).Zone()
			if a != b {
				t.Fatalf("%s vs %s at %s: offset %d vs %d", tc.rule, tc.iana, at, a, b)
			}
		}
	}
	for _, bad := range []string{"", "Europe/Berlin", "CET", "CET-1CEST,M3.5.0", "rm -rf /"} {
		if _, err := LoadPOSIX(bad); err == nil {
			t.Errorf("LoadPOSIX(%q) accepted", bad)
		}
	}
}
