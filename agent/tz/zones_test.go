package tz

import (
	"bytes"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/famguard/famguard/agent/tz/internal/gentab"
)

// goZones is every zone in the Go toolchain's zoneinfo.zip, the full
// database the table is checked against.
func goZones(t *testing.T) (string, map[string][]byte) {
	t.Helper()
	path, err := gentab.ZoneinfoZip()
	if err != nil {
		t.Fatal(err)
	}
	zones, err := gentab.ReadZip(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, zones
}

func TestGeneratedTableIsCurrent(t *testing.T) {
	path, _ := goZones(t)
	want, _, err := gentab.Generate(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("zones_gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("agent/tz/zones_gen.go is not what %s gives (a Go upgrade with newer tzdata?): run `go generate ./agent/tz` and commit the result", path)
	}
}

func TestTableHasEveryZone(t *testing.T) {
	_, zones := goZones(t)
	want := sortedNames(zones)
	got := Names()
	sort.Strings(got)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("table has %d names, zoneinfo.zip %d", len(got), len(want))
	}
}

// TestTableMatchesZoneinfo compares every zone with the full database:
// exactly, period by period, from 2024 to 2038; and by sampling every 30
// minutes, over two years around now for every zone and to 2038 for zones
// with unusual rules.
func TestTableMatchesZoneinfo(t *testing.T) {
	_, zones := goZones(t)
	type pair struct{ table, full *time.Location }
	locs := map[string]pair{}
	for n, data := range zones {
		table, err := Load(n)
		if err != nil {
			t.Errorf("Load(%q): %v", n, err)
			continue
		}
		full, err := time.LoadLocationFromTZData(n, data)
		if err != nil {
			t.Fatal(err)
		}
		locs[n] = pair{table, full}
		if !gentab.SameLocalTime(gentab.Periods(table, gentab.WindowStart, gentab.WindowEnd), gentab.Periods(full, gentab.WindowStart, gentab.WindowEnd)) {
			t.Errorf("%s: the table's periods differ from zoneinfo.zip's in %s–%s", n, gentab.WindowStart.Format("2006"), gentab.WindowEnd.Format("2006"))
		}
	}
	sample := func(name string, from, to time.Time) {
		p := locs[name]
		if p.table == nil {
			t.Errorf("%s: not in the table", name)
			return
		}
		for at := from; at.Before(to); at = at.Add(30 * time.Minute) {
			an, ao := at.In(p.table).Zone()
			bn, bo := at.In(p.full).Zone()
			if an != bn || ao != bo {
				t.Errorf("%s at %s: table says %s %+d, zoneinfo.zip %s %+d", name, at.Format(time.RFC3339), an, ao, bn, bo)
				return
			}
		}
	}
	// Zones whose TZif data from a year before the sampled range on is
	// identical (links, and zones that differ only in old history) answer
	// the same there: each such group is sampled once.
	now := time.Now().UTC().Truncate(time.Hour)
	from, to := now.AddDate(-1, 0, 0), now.AddDate(1, 0, 0)
	type job struct {
		name     string
		from, to time.Time
	}
	var jobs []job
	seen := map[string]bool{}
	for _, n := range sortedNames(zones) {
		key, err := recentData(zones[n], from.AddDate(-1, 0, 0))
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		if !seen[key] {
			seen[key] = true
			jobs = append(jobs, job{n, from, to})
		}
	}
	t.Logf("%d zones, %d distinct over %s–%s", len(zones), len(jobs), from.Format("2006-01-02"), to.Format("2006-01-02"))
	for _, n := range []string{
		"Europe/Berlin", "America/New_York", "Australia/Lord_Howe", // 30-minute DST
		"Asia/Kolkata", "America/Santiago", "Africa/Casablanca", // Ramadan breaks
		"Asia/Tehran", "Pacific/Chatham", "Europe/Dublin", // negative DST
		"America/Sao_Paulo", "Asia/Gaza", "America/Asuncion", "US/Eastern", "Asia/Calcutta",
	} {
		jobs = append(jobs, job{n, gentab.WindowStart, gentab.WindowEnd})
	}
	for _, j := range jobs {
		sample(j.name, j.from, j.to)
	}
}

// recentData is what decides a zone's local time from since on: its footer
// and its transitions from the last one before since.
func recentData(data []byte, since time.Time) (string, error) {
	footer, err := gentab.Footer(data)
	if err != nil {
		return "", err
	}
	whens, types, err := gentab.Transitions(data)
	if err != nil {
		return "", err
	}
	i := sort.Search(len(whens), func(i int) bool { return whens[i] > since.Unix() })
	if i > 0 {
		i--
	}
	key := footer
	for ; i < len(whens); i++ {
		key += fmt.Sprintf(" %d:%v", whens[i], types[i])
	}
	return key, nil
}

func sortedNames(zones map[string][]byte) []string {
	names := make([]string, 0, len(zones))
	for n := range zones {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func TestLoad(t *testing.T) {
	for _, name := range []string{"Europe/Berlin", "US/Eastern", "Asia/Calcutta", "Etc/GMT+5", "UTC", "EST5EDT"} {
		loc, err := Load(name)
		if err != nil {
			t.Errorf("Load(%q): %v", name, err)
		} else if loc.String() != name {
			t.Errorf("Load(%q) is named %q", name, loc)
		}
	}
	if loc, _ := Load("UTC"); loc != time.UTC {
		t.Error("Load(UTC) is not time.UTC")
	}
	a, _ := Load("Europe/Berlin")
	summer := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC).In(a)
	if name, off := summer.Zone(); name != "CEST" || off != 7200 {
		t.Errorf("Berlin in July: %s %d", name, off)
	}
	for _, bad := range []string{"Europe/Berln", "", "Local", "europe/berlin", "../../etc/passwd", "Europe/Berlin ", "GMT0\tAfrica/Abidjan", "zones_gen.go"} {
		_, err := Load(bad)
		if err == nil {
			t.Errorf("Load(%q) accepted", bad)
		} else if !strings.Contains(err.Error(), strconv.Quote(bad)) {
			t.Errorf("Load(%q): error %q does not name the zone", bad, err)
		}
	}
}
