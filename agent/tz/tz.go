// Package tz decides which time zone a family's schedules are evaluated in.
//
// Why this is its own package: on OpenWrt Go's time.Local is UTC — there is
// no /etc/localtime and no zoneinfo — so a naive agent would send children to
// bed an hour or more early or late. The router's zone lives in
// /etc/config/system (`option zonename 'Europe/Berlin'`, with spaces where
// IANA has underscores) and, as a POSIX rule, in /etc/TZ. The order is:
// the profile's `timezone`, then zonename, then the TZ environment variable,
// then /etc/TZ, then /etc/localtime, then UTC. Zone names resolve through
// Load, from a compact table embedded in the binary (zones_gen.go), never
// from the host's zoneinfo.
package tz

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/famguard/famguard/agent/tz/internal/tzif"
)

// Env is where the router's zone is looked up; tests point Root at a fake
// router file system.
type Env struct {
	Root   string              // "" means "/"
	Getenv func(string) string // nil means os.Getenv
}

func (e Env) path(p string) string {
	if e.Root == "" {
		return p
	}
	return filepath.Join(e.Root, p)
}

func (e Env) getenv(k string) string {
	if e.Getenv == nil {
		return os.Getenv(k)
	}
	return e.Getenv(k)
}

// Zone is the zone in use and where it came from (shown by status and logged).
type Zone struct {
	Loc      *time.Location
	Name     string
	Source   string
	Warnings []string // router sources that were present but unusable
}

// Resolve picks the zone. An invalid profile zone is an error (the profile
// loader reports it with file and line); an unusable router source is
// skipped with a warning.
func Resolve(profileZone string, env Env) (Zone, error) {
	if profileZone != "" {
		loc, err := Load(profileZone)
		if err != nil {
			return Zone{}, fmt.Errorf("unknown time zone %q: use an IANA name like Europe/Berlin", profileZone)
		}
		return Zone{Loc: loc, Name: profileZone, Source: "profile timezone"}, nil
	}
	var warnings []string
	if name, ok := uciZonename(env); ok {
		if loc, err := Load(name); err == nil {
			return Zone{Loc: loc, Name: name, Source: "/etc/config/system zonename"}, nil
		}
		warnings = append(warnings, fmt.Sprintf("/etc/config/system zonename %q is not a known zone", name))
	}
	if v := env.getenv("TZ"); v != "" {
		if z, err := fromTZValue(v); err == nil {
			z.Source, z.Warnings = "TZ environment", warnings
			return z, nil
		}
		warnings = append(warnings, fmt.Sprintf("TZ=%q is neither a zone name nor a POSIX rule", v))
	}
	if b, err := os.ReadFile(env.path("/etc/TZ")); err == nil {
		rule := strings.TrimSpace(string(b))
		if loc, err := LoadPOSIX(rule); err == nil {
			return Zone{Loc: loc, Name: rule, Source: "/etc/TZ POSIX rule", Warnings: warnings}, nil
		}
		warnings = append(warnings, fmt.Sprintf("/etc/TZ rule %q is not valid", rule))
	}
	if b, err := os.ReadFile(env.path("/etc/localtime")); err == nil {
		if loc, err := time.LoadLocationFromTZData("localtime", b); err == nil {
			name := "localtime"
			if target, err := os.Readlink(env.path("/etc/localtime")); err == nil {
				if i := strings.Index(target, "zoneinfo/"); i >= 0 {
					name = target[i+len("zoneinfo/"):]
				}
			}
			return Zone{Loc: loc, Name: name, Source: "/etc/localtime", Warnings: warnings}, nil
		}
	}
	return Zone{Loc: time.UTC, Name: "UTC", Source: "default (no zone configured)", Warnings: warnings}, nil
}

var uciZone = regexp.MustCompile(`^\s*option\s+zonename\s+(?:'([^']*)'|"([^"]*)"|(\S+))`)

// uciZonename reads `option zonename` from /etc/config/system.
func uciZonename(env Env) (string, bool) {
	b, err := os.ReadFile(env.path("/etc/config/system"))
	if err != nil {
		return "", false
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		m := uciZone.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		name := strings.TrimSpace(m[1] + m[2] + m[3])
		if name == "" {
			continue
		}
		return strings.ReplaceAll(name, " ", "_"), true
	}
	return "", false
}

// fromTZValue reads a TZ variable: ":Europe/Berlin", "Europe/Berlin" or a
// POSIX rule such as "CET-1CEST,M3.5.0,M10.5.0/3".
func fromTZValue(v string) (Zone, error) {
	name := strings.TrimPrefix(v, ":")
	if loc, err := Load(name); err == nil {
		return Zone{Loc: loc, Name: name}, nil
	}
	loc, err := LoadPOSIX(v)
	if err != nil {
		return Zone{}, err
	}
	return Zone{Loc: loc, Name: v}, nil
}

var posixRule = regexp.MustCompile(`^(?:[A-Za-z]{3,}|<[A-Za-z0-9+-]{3,}>)[+-]?\d{1,2}(?::\d{2}){0,2}(?:(?:[A-Za-z]{3,}|<[A-Za-z0-9+-]{3,}>)(?:[+-]?\d{1,2}(?::\d{2}){0,2})?(?:,(?:M\d{1,2}\.\d\.\d|J?\d{1,3})(?:/[+-]?\d{1,3}(?::\d{2}){0,2})?,(?:M\d{1,2}\.\d\.\d|J?\d{1,3})(?:/[+-]?\d{1,3}(?::\d{2}){0,2})?)?)?$`)

// LoadPOSIX turns a POSIX TZ rule (what OpenWrt writes to /etc/TZ) into a
// Location. Go has no public parser for these rules, but it honours the
// footer of a TZif version 2+ file for instants after the last transition;
// so this builds a minimal TZif file with no transitions whose footer is the
// rule, and lets the standard library do the calendar arithmetic.
func LoadPOSIX(rule string) (*time.Location, error) {
	if !posixRule.MatchString(rule) {
		return nil, fmt.Errorf("%q is not a POSIX TZ rule like CET-1CEST,M3.5.0,M10.5.0/3", rule)
	}
	loc, err := time.LoadLocationFromTZData(rule, tzif.Entry{Footer: rule}.TZif())
	if err != nil {
		return nil, fmt.Errorf("POSIX TZ rule %q: %w", rule, err)
	}
	return loc, nil
}
