// Package opstatus keeps the operator's view of the agent in a file,
// /var/run/famguard/status.json, current on every change, so that a TR-069
// or USP agent, a LuCI page or a monitoring script on the router can read it
// without the root-only control socket, and `famguard status --report`
// prints the same.
//
// What it holds: versions; the policy digest, and each layer's digest and
// bundle serial; the category lists' serial and size; the last bundle import
// and pull; clock trust; enforcement health (firewall applies, DNS filter);
// per child: online or not, why, until when, blocked categories, which
// layer decided what, and its devices by MAC with whether they were seen.
//
// What it never holds: anything about which sites anyone visited. The
// daemon's status has recent blocked names and per-device block counters
// for the parents' own `famguard status`; they are left out here by
// construction (Report has no field that could carry them), because this
// file is meant to leave the household through an operator's management
// channel.
//
// "Current on change": the daemon hands its status to Writer.Update after
// every event it handles; Update writes (atomically: temporary file and
// rename) only when the report's content differs from the last one written,
// so a heal tick every few seconds costs no flash or tmpfs churn.
package opstatus

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/famguard/famguard/agent/bundle"
	"github.com/famguard/famguard/agent/daemon"
	"github.com/famguard/famguard/agent/policy"
)

// Format identifies the report's layout; fields are added, never renamed.
const Format = "famguard-status/1"

// FileName is the report's name in the state directory.
const FileName = "status.json"

// Report is status.json.
type Report struct {
	Format     string             `json:"format"`
	Version    string             `json:"version"`
	UpdatedAt  time.Time          `json:"updated_at"` // when the content last changed
	Started    time.Time          `json:"started"`
	Clock      Clock              `json:"clock"`
	Policy     *Policy            `json:"policy"` // null until a valid policy was loaded
	LastReload Reload             `json:"last_reload"`
	Categories *Categories        `json:"categories"` // null when DNS filtering is off
	LastImport *bundle.Result     `json:"last_import"`
	LastPull   *bundle.PullResult `json:"last_pull"`
	Health     Health             `json:"enforcement"`
	Children   []Child            `json:"children"`
	// Devices that are no child\'s, by kind (trusted, unknown): counts only.
	OtherDevices map[string]int     `json:"other_devices"`
	Warnings     []string           `json:"warnings"`
	Floors       policy.Settings    `json:"floors"`
	Layers       []policy.LayerInfo `json:"layers"`
}

// Clock is whether schedules run on a trusted clock.
type Clock struct {
	Trusted     bool   `json:"trusted"`
	TrustSource string `json:"trust_source,omitempty"`
	BootPolicy  string `json:"boot_policy"`
	Zone        string `json:"zone"`
	ZoneSource  string `json:"zone_source"`
}

// Policy is the policy in force.
type Policy struct {
	Digest   string    `json:"digest"`
	LoadedAt time.Time `json:"loaded_at"`
	Files    int       `json:"files"`
}

// Reload is the last attempt to load the profiles.
type Reload struct {
	At       time.Time `json:"at"`
	OK       bool      `json:"ok"`
	Message  string    `json:"message"`
	Problems []string  `json:"problems,omitempty"`
}

// Categories are the category lists in use.
type Categories struct {
	Lists    int       `json:"lists"`
	Domains  int       `json:"domains"`
	LoadedAt time.Time `json:"loaded_at"`
	Error    string    `json:"error,omitempty"`
	Serial   uint64    `json:"serial,omitempty"` // of the bundle that wrote the lists
	Missing  []string  `json:"missing,omitempty"`
}

// Health is whether the rules are enforced.
type Health struct {
	OK                  bool   `json:"ok"`
	FirewallBackend     string `json:"firewall_backend"`
	Applies             int    `json:"applies"`
	Failures            int    `json:"failures"`
	ConsecutiveFailures int    `json:"consecutive_failures"`
	LastError           string `json:"last_error,omitempty"`
	DNSFilter           bool   `json:"dns_filter"`
}

// Child is one child's state.
type Child struct {
	Name              string            `json:"name"`
	Online            bool              `json:"online"`
	Reason            string            `json:"reason"`
	Until             *time.Time        `json:"until"`
	BlockedCategories []string          `json:"blocked_categories"`
	ActiveWindows     []string          `json:"active_windows"`
	Decided           map[string]string `json:"decided,omitempty"`
	Devices           []Device          `json:"devices"`
}

// Device is a child's device: its MAC, name and whether it was seen on the
// LAN (not its addresses, not its traffic).
type Device struct {
	MAC  string `json:"mac"`
	Name string `json:"name,omitempty"`
	Seen bool   `json:"seen"`
}

// Build makes the report from the daemon's status and the files the import
// and pull commands keep in the state directory.
func Build(st daemon.Status, stateDir, categoriesDir string) Report {
	r := Report{Format: Format, Version: st.Version, Started: st.Started,
		Clock: Clock{Trusted: st.Clock.Trusted, TrustSource: st.Clock.TrustSource, BootPolicy: st.Clock.BootPolicy,
			Zone: st.Zone.Name, ZoneSource: st.Zone.Source},
		LastReload: Reload{At: st.LastReload.At, OK: st.LastReload.OK, Message: st.LastReload.Message, Problems: st.LastReload.Problems},
		Health: Health{FirewallBackend: st.Dataplane.Backend, Applies: st.Dataplane.Applies, Failures: st.Dataplane.Failures,
			ConsecutiveFailures: st.Dataplane.ConsecutiveFailures, LastError: st.Dataplane.LastError, DNSFilter: st.DNS != nil},
		Warnings: append([]string{}, st.Warnings...), Children: []Child{}}
	r.Health.OK = st.Dataplane.ConsecutiveFailures == 0 && st.Dataplane.Applies > 0 && st.Policy != nil
	if st.Policy != nil {
		r.Policy = &Policy{Digest: st.Policy.Digest, LoadedAt: st.Policy.LoadedAt, Files: len(st.Policy.Sources)}
		r.Layers, r.Floors = st.Policy.Layers, st.Policy.Floors
		r.Warnings = append(r.Warnings, st.Policy.Warnings...)
	}
	if st.DNS != nil {
		r.Categories = &Categories{Lists: st.DNS.Categories, Domains: st.DNS.Domains, LoadedAt: st.DNS.ListsLoadedAt, Error: st.DNS.ListsError}
		if m, ok := bundle.Installed(categoriesDir); ok {
			r.Categories.Serial = m.Serial
		}
	}
	var imp bundle.Result
	if readJSON(filepath.Join(stateDir, "last-import.json"), &imp) {
		r.LastImport = &imp
	}
	var pull bundle.PullResult
	if readJSON(filepath.Join(stateDir, "last-pull.json"), &pull) {
		r.LastPull = &pull
	}
	byChild := map[string]*Child{}
	r.OtherDevices = map[string]int{}
	for _, d := range st.Devices {
		if d.Kind != policy.KindChild || d.Child == "" {
			r.OtherDevices[d.Kind]++
			continue
		}
		c := byChild[d.Child]
		if c == nil {
			r.Children = append(r.Children, Child{Name: d.Child, Online: d.Online, Reason: d.Reason, Until: d.Until,
				BlockedCategories: d.BlockedCategories, ActiveWindows: d.ActiveWindows, Decided: d.Decided, Devices: []Device{}})
			c = &r.Children[len(r.Children)-1]
			byChild[d.Child] = c
		}
		c.Devices = append(c.Devices, Device{MAC: d.MAC, Name: d.Device, Seen: d.Seen})
	}
	sort.Slice(r.Children, func(i, j int) bool { return r.Children[i].Name < r.Children[j].Name })
	return r
}

func readJSON(name string, v any) bool {
	b, err := os.ReadFile(name)
	if err != nil || len(b) > 1<<20 {
		return false
	}
	return json.Unmarshal(b, v) == nil
}

// Writer keeps status.json current.
type Writer struct {
	Path          string // the report file
	StateDir      string
	CategoriesDir string
	last          []byte // content (without UpdatedAt) last written
	Err           error  // last write error, for the log
}

// Update writes the report if its content changed; it says whether it did.
func (w *Writer) Update(st daemon.Status, now time.Time) bool {
	r := Build(st, w.StateDir, w.CategoriesDir)
	content, err := json.Marshal(r)
	if err != nil || bytes.Equal(content, w.last) {
		return false
	}
	r.UpdatedAt = now
	out, _ := json.MarshalIndent(r, "", "  ")
	tmp := w.Path + ".tmp"
	if err := os.WriteFile(tmp, append(out, '\n'), 0o644); err != nil {
		w.Err = err
		return false
	}
	if err := os.Rename(tmp, w.Path); err != nil {
		w.Err = err
		return false
	}
	w.last, w.Err = content, nil
	return true
}
