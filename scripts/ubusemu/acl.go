package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
)

// aclGroup is one access group of an rpcd acl.d file; only the "ubus" scope
// matters to the page.
type aclGroup struct {
	Description string `json:"description"`
	Read        struct {
		Ubus map[string][]string `json:"ubus"`
	} `json:"read"`
	Write struct {
		Ubus map[string][]string `json:"ubus"`
	} `json:"write"`
}

// loadACLs reads every *.json file of an acl.d directory, as rpcd does.
func loadACLs(dir string) (map[string]aclGroup, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	groups := map[string]aclGroup{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var m map[string]aclGroup
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		for k, v := range m {
			groups[k] = v
		}
	}
	return groups, nil
}

// grants is what a session may call: object → method patterns.
type grants map[string][]string

// grantsFor computes a login's ubus grants the way rpcd does: a group named
// by one of the login's `read` patterns contributes its read permissions; one
// named by a `write` pattern contributes its read and its write permissions.
// Every session may use session.login and session.access (rpcd's
// "unauthenticated" group); session.destroy (logging out) only where an ACL
// grants it, as famguard's does.
func grantsFor(l login, groups map[string]aclGroup) (grants, map[string][]string) {
	g := grants{"session": {"access", "login"}}
	access := map[string][]string{}
	add := func(m map[string][]string) {
		for obj, fns := range m {
			g[obj] = append(g[obj], fns...)
		}
	}
	names := make([]string, 0, len(groups))
	for n := range groups {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		grp := groups[name]
		if matchAny(l.Read, name) || matchAny(l.Write, name) {
			add(grp.Read.Ubus)
			access[name] = append(access[name], "read")
		}
		if matchAny(l.Write, name) {
			add(grp.Write.Ubus)
			access[name] = append(access[name], "write")
		}
	}
	return g, access
}

func matchAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

// allowed reports whether object.method is granted.
func (g grants) allowed(object, method string) bool {
	for obj, fns := range g {
		if ok, _ := path.Match(obj, object); !ok {
			continue
		}
		if matchAny(fns, method) {
			return true
		}
	}
	return false
}
