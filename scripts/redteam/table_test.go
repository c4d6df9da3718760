package redteam

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadmeTableIsGenerated: the README's table is the one the red-team
// lab wrote to results.md. With FAMGUARD_REDTEAM_UPDATE=1 it copies it.
func TestReadmeTableIsGenerated(t *testing.T) {
	readme := filepath.Join("..", "..", "README.md")
	doc, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	results, err := os.ReadFile("results.md")
	if err != nil {
		t.Fatal(err)
	}
	want := TableOf(string(results))
	if want == "" {
		t.Fatal("results.md holds no table")
	}
	if os.Getenv("FAMGUARD_REDTEAM_UPDATE") == "1" {
		if err := UpdateReadme(readme, want); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := Section(string(doc))
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("README.md's red-team table differs from scripts/redteam/results.md: run\n\tFAMGUARD_REDTEAM_UPDATE=1 go test -count=1 -run TestReadmeTableIsGenerated ./scripts/redteam/\n(or the lab itself, FAMGUARD_REDTEAM_UPDATE=1 go test -count=1 -run TestRedTeam ./scripts/e2e/)")
	}
}

func TestReplaceSection(t *testing.T) {
	doc := "intro\n" + BeginMarker + "\n| old |\n" + EndMarker + "\nrest\n"
	out, err := ReplaceSection(doc, "| new |\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := "intro\n" + BeginMarker + "\n| new |\n" + EndMarker + "\nrest\n"; out != want {
		t.Errorf("got %q, want %q", out, want)
	}
	if s, _ := Section(out); s != "| new |\n" {
		t.Errorf("Section = %q", s)
	}
	if _, err := ReplaceSection("no markers", "x"); err == nil || !strings.Contains(err.Error(), "markers") {
		t.Errorf("missing markers: err = %v", err)
	}
	if _, err := ReplaceSection(EndMarker+BeginMarker, "x"); err == nil {
		t.Error("markers out of order accepted")
	}
}

func TestMarkdown(t *testing.T) {
	rows := []Row{
		{Phase: "daytime", Technique: "a | b", Verdict: Holds, Evidence: "NXDOMAIN"},
		{Phase: "daytime", Technique: "c", Verdict: Bypass, Evidence: "A:1.2.3.4", Until: "strict egress"},
		{Phase: "bedtime", Technique: "d", Verdict: Bypass, Evidence: "connected", Limit: "a copied MAC"},
		{Phase: "daytime", Technique: "e", Verdict: Holds, Evidence: "TCP reset", Needs: "strict: true"},
	}
	got := Markdown(rows)
	for _, want := range []string{
		"| daytime | a \\| b | holds | NXDOMAIN |",
		"| daytime | c | **gets through** (open until: strict egress) | A:1.2.3.4 |",
		"| bedtime | d | **gets through** — a known limit: a copied MAC | connected |",
		"| daytime | e | holds (with strict: true) | TCP reset |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
	f := ResultsFile(rows)
	if !strings.Contains(f, "4 techniques: 2 hold, 1 get through (each until a named feature lands), 1 are stated limits.") {
		t.Errorf("results file summary:\n%s", f)
	}
	if TableOf(f) != got {
		t.Errorf("TableOf(ResultsFile) != Markdown")
	}
}
