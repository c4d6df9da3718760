package tz

//go:generate go run ./gen -o zones_gen.go

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/famguard/famguard/agent/tz/internal/tzif"
)

// Load returns the IANA zone with the given name (Europe/Berlin, also the
// old link names like US/Eastern) from the table embedded in the binary.
// It never reads the host's zoneinfo, so the router (which has none) and a
// development machine behave the same. All of famguard loads zones through
// this function: a test fails if other code calls time.LoadLocation.
//
// The table (zones_gen.go, from Go's zoneinfo.zip by `go generate
// ./agent/tz`) reproduces every zone's offsets and abbreviations exactly
// from 2024 to 2038; schedules only look a few days ahead of now. Outside
// that window the zone's current POSIX rule applies, so historical dates
// are not reliable.
func Load(name string) (*time.Location, error) {
	if name == "UTC" {
		return time.UTC, nil
	}
	if loc, ok := loaded.Load(name); ok {
		return loc.(*time.Location), nil
	}
	entry, ok := lookup(name)
	if !ok {
		return nil, fmt.Errorf("unknown time zone %q", name)
	}
	e, err := tzif.Decode(entry)
	if err != nil {
		return nil, fmt.Errorf("time zone %q: %w", name, err)
	}
	loc, err := time.LoadLocationFromTZData(name, e.TZif())
	if err != nil {
		return nil, fmt.Errorf("time zone %q: %w", name, err)
	}
	actual, _ := loaded.LoadOrStore(name, loc)
	return actual.(*time.Location), nil
}

// loaded caches locations by name: a Location is immutable and the daemon
// resolves its zone at each reload.
var loaded sync.Map

// Names lists every zone name in the table, in table order.
func Names() []string {
	var names []string
	for rest := zoneTable; rest != ""; {
		var line string
		line, rest, _ = strings.Cut(rest, "\n")
		_, list, _ := strings.Cut(line, "\t")
		names = append(names, strings.Fields(list)...)
	}
	return names
}

// lookup finds a zone's entry in zoneTable.
func lookup(name string) (string, bool) {
	if name == "" || strings.ContainsAny(name, " \t\n") {
		return "", false
	}
	for rest := zoneTable; rest != ""; {
		var line string
		line, rest, _ = strings.Cut(rest, "\n")
		entry, list, _ := strings.Cut(line, "\t")
		for list != "" {
			var n string
			n, list, _ = strings.Cut(list, " ")
			if n == name {
				return entry, true
			}
		}
	}
	return "", false
}
