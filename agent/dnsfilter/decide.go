// Package dnsfilter decides, per protected device and per query, whether a
// DNS name is answered normally, blocked, or rewritten to a safe-search
// host — and (server.go) answers queries accordingly.
//
// The decision is pure: the daemon publishes an immutable Snapshot (which
// child each device belongs to, what is blocked for that child right now,
// which address belongs to which MAC) and the DNS handlers, running
// concurrently, only read it. So a query never waits for the dataplane
// loop, and a reload swaps the whole snapshot at once.
//
// Precedence, from the profile semantics in the README:
//  1. bypass prevention (on by default): Firefox's DoH canary
//     use-application-dns.net, iCloud Private Relay's mask hosts and known
//     DNS-over-HTTPS resolvers answer NXDOMAIN, so those products fall back
//     to the router's DNS;
//  2. the child's allow list beats everything below;
//  3. the child's deny list;
//  4. categories blocked now (always-on and active windows);
//  5. safe search rewrites for Google, YouTube, Bing and DuckDuckGo;
//  6. otherwise the query is forwarded unchanged.
//
// A listed domain covers its subdomains everywhere.
//
// At start the daemon installs its DNS redirects before the category lists
// are read; a snapshot published meanwhile is marked lists-pending, and a
// query that steps 4–6 would decide for a class blocking categories is
// REFUSED (the filter fails closed) until the first load has finished.
// Without lists (none installed, or the load failed) categories are simply
// not enforced, as status says: refusing then would break all DNS.
//
// The UDP path is built for CPU per query, most of which went to system
// calls: datagrams move in batches (recvmmsg/sendmmsg, batch.go), a query
// the filter answers alone (blocked, refused) is answered on the reading
// goroutine and only forwarded ones go to workers (listen.go), and
// forwarded queries share one upstream socket, their answers read in
// batches (upstream.go). Measured with scripts/dns-bench: CPU per query
// from a median 2.07× the bare Go UDP echo's to 1.35× (figures in
// scripts/dns-bench/README.md).
package dnsfilter

import (
	"regexp"
	"strings"

	"github.com/famguard/famguard/agent/categories"
)

// Rules is what applies to one device at this instant.
type Rules struct {
	Child            string
	Device           string
	Categories       []string // blocked now, sorted
	Allow, Deny      []string // domains, lower-case
	SafeSearch       bool
	BypassPrevention bool
	DoHNames         []string // DNS-over-HTTPS resolver names refused with bypass prevention
	// Strict: every address answered to the class is opened in its strict
	// sets (StrictSet+"4", StrictSet+"6", see agent/egress) before the
	// answer leaves; an answer whose addresses cannot be opened is not sent
	// (SERVFAIL). strict.go.
	Strict    bool
	StrictSet string
}

// Action is what to do with a query.
type Action int

const (
	Forward Action = iota // ask the upstream, return its answer
	Block                 // answer as blocked
	Rewrite               // answer with a CNAME to SafeHost
	Refuse                // NXDOMAIN (bypass-prevention names)
)

// Decision is the outcome for one name, with the reason in words.
type Decision struct {
	Action   Action
	Category string // the category that blocked it, if any
	Listed   string // the listed domain that matched (a parent of the name, or the name)
	SafeHost string // for Rewrite
	Reason   string // "casino.example: gambling", "deny list", "safe search", ...
}

// bypassNames answer NXDOMAIN for protected devices.
var bypassNames = map[string]string{
	"use-application-dns.net": "Firefox DoH canary",
	"mask.icloud.com":         "iCloud Private Relay",
	"mask-h2.icloud.com":      "iCloud Private Relay",
}

var googleHost = regexp.MustCompile(`^(www\.)?google\.([a-z]{2,3}|com?\.[a-z]{2})$`)

// safeSearchHost returns the enforced safe-search host for a search engine
// name, or "".
func safeSearchHost(name string) string {
	switch name {
	case "www.youtube.com", "m.youtube.com", "youtube.com", "youtubei.googleapis.com",
		"youtube.googleapis.com", "www.youtube-nocookie.com":
		return "restrict.youtube.com"
	case "www.bing.com", "bing.com":
		return "strict.bing.com"
	case "duckduckgo.com", "www.duckduckgo.com", "start.duckduckgo.com":
		return "safe.duckduckgo.com"
	}
	if googleHost.MatchString(name) {
		return "forcesafesearch.google.com"
	}
	return ""
}

// Normalize lower-cases a query name and drops the root dot.
func Normalize(name string) string {
	return strings.TrimSuffix(strings.ToLower(name), ".")
}

// matchList returns the entry of list that is name or a parent of it.
func matchList(list []string, name string) (string, bool) {
	for _, d := range list {
		if name == d || strings.HasSuffix(name, "."+d) {
			return d, true
		}
	}
	return "", false
}

// Decide applies the precedence above. store may be nil (no lists loaded:
// categories cannot block, everything else still applies).
func Decide(name string, r Rules, store *categories.Store) Decision {
	name = Normalize(name)
	if r.BypassPrevention {
		if why, ok := bypassNames[name]; ok {
			return Decision{Action: Refuse, Listed: name, Reason: name + ": " + why + " (bypass prevention)"}
		}
		if d, ok := matchList(r.DoHNames, name); ok {
			return Decision{Action: Refuse, Listed: d, Reason: name + ": DNS-over-HTTPS resolver " + d + " (bypass prevention)"}
		}
	}
	if d, ok := matchList(r.Allow, name); ok {
		return Decision{Action: Forward, Listed: d, Reason: name + ": allow list (" + d + ")"}
	}
	if d, ok := matchList(r.Deny, name); ok {
		return Decision{Action: Block, Listed: d, Reason: name + ": deny list (" + d + ")"}
	}
	if store != nil && len(r.Categories) > 0 {
		if cats, listed := store.Match(name, r.Categories); len(cats) > 0 {
			return Decision{Action: Block, Category: cats[0], Listed: listed,
				Reason: name + ": " + strings.Join(cats, ", ") + " (" + listed + ")"}
		}
	}
	if r.SafeSearch {
		if host := safeSearchHost(name); host != "" && host != name {
			return Decision{Action: Rewrite, SafeHost: host, Listed: name, Reason: name + ": safe search → " + host}
		}
	}
	return Decision{Action: Forward}
}
