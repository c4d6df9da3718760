package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckFileOrDirectory(t *testing.T) {
	none := lists(t) // an empty categories directory: every category is unlisted
	for _, path := range []string{family(t), filepath.Join(family(t), "family.yaml")} {
		var out bytes.Buffer
		if err := cmdCheck([]string{"--categories", "", path}, &out); err != nil {
			t.Errorf("check %s: %v\n%s", path, err, out.String())
		}
		if out.Len() != 0 {
			t.Errorf("check %s printed %q; want nothing on stdout", path, out.String())
		}
		out.Reset()
		if err := cmdCheck([]string{"--categories", none, path}, &out); err != nil {
			t.Errorf("check %s: %v", path, err)
		}
		if !strings.Contains(out.String(), `nothing is blocked for "social" until a list is installed at `+filepath.Join(none, "social.txt")) {
			t.Errorf("check %s does not say social blocks nothing:\n%s", path, out.String())
		}
	}
}

func TestCheckInvalidFile(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "kid.yaml")
	if err := os.WriteFile(f, []byte("version: 1\nchildren:\n  kid:\n    devices: [{mac: \"nope\"}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err := cmdCheck([]string{"--categories", "", f}, &out)
	if err != exitError(1) || !strings.HasPrefix(out.String(), f+":4:") {
		t.Errorf("check of a bad file: %v\n%s", err, out.String())
	}
}

func TestCategoryWarnings(t *testing.T) {
	pol, err := loadProfiles(family(t))
	if err != nil {
		t.Fatal(err)
	}
	all := lists(t, "adult", "gambling", "games", "social", "video-streaming")
	if w := categoryWarnings(pol, all); len(w) != 0 {
		t.Errorf("every list present, warnings %q", w)
	}
	missing := filepath.Join(t.TempDir(), "no-such-dir")
	w := categoryWarnings(pol, missing)
	if len(w) < 2 || !strings.Contains(w[0], `nothing is blocked for "adult" until a list is installed at `+filepath.Join(missing, "adult.txt")) {
		t.Fatalf("fresh install (no categories directory) = %q", w)
	}
	if hint := w[len(w)-1]; !strings.Contains(hint, "one a line") || !strings.Contains(hint, filepath.Join(missing, "<category>.txt")) {
		t.Errorf("the last warning should say how to install a list: %q", hint)
	}
}
