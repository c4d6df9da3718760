package opstatus

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/famguard/famguard/agent/daemon"
	"github.com/famguard/famguard/agent/dnsfilter"
	"github.com/famguard/famguard/agent/policy"
)

func sample() daemon.Status {
	until := time.Date(2026, 11, 30, 7, 0, 0, 0, time.UTC)
	st := daemon.Status{Version: "v1", Started: time.Unix(1_800_000_000, 0).UTC(),
		Clock:     daemon.ClockStatus{Trusted: true, TrustSource: "ntp", BootPolicy: "saved"},
		Zone:      daemon.ZoneStatus{Name: "Europe/Berlin", Source: "profile timezone"},
		Policy:    &daemon.PolicyStatus{Digest: "abc123abc123", Layers: []policy.LayerInfo{{Name: "operator", Digest: "x", Serial: 7}, {Name: "parents", Digest: "y"}}},
		Dataplane: daemon.DataplaneStatus{Backend: "nf_tables", Applies: 3},
		DNS: &daemon.DNSStatus{Port: 5354, Categories: 2, Domains: 10, Stats: dnsfilter.Stats{
			Recent:        []dnsfilter.Recent{{Child: "alice", MAC: "02:00:00:00:00:11", Name: "secret-site.example", Reason: "secret-site.example is listed in adult"}},
			Counters:      map[string]map[string]uint64{"02:00:00:00:00:11": {"adult": 4}},
			RateLimitedBy: map[string]uint64{"02:00:00:00:00:11": 2},
		}},
	}
	for _, d := range []struct{ mac, name string }{{"02:00:00:00:00:11", "phone"}, {"02:00:00:00:00:12", "laptop"}} {
		st.Devices = append(st.Devices, daemon.DeviceStatus{DeviceState: policy.DeviceState{MAC: d.mac, Child: "alice", Device: d.name,
			Online: false, Reason: "offline: bedtime", Until: &until, BlockedCategories: []string{"adult"}, ActiveWindows: []string{"bedtime"}},
			Seen: d.name == "phone", Addresses: []string{"192.0.2.10", "2001:db8:1::10"}})
	}
	return st
}

// TestReportHoldsNoBrowsing: what the DNS filter saw (names, counters,
// per-device rates) and the devices' addresses never reach status.json.
func TestReportHoldsNoBrowsing(t *testing.T) {
	b, _ := json.Marshal(Build(sample(), t.TempDir(), t.TempDir()))
	for _, leak := range []string{"secret-site", "192.0.2.10", "2001:db8", "rate_limited", "blocked_by_device", "recent"} {
		if strings.Contains(string(b), leak) {
			t.Errorf("status.json holds %q: %s", leak, b)
		}
	}
	var r Report
	json.Unmarshal(b, &r)
	if len(r.Children) != 1 || len(r.Children[0].Devices) != 2 || r.Children[0].Online || !r.Children[0].Devices[0].Seen ||
		r.Policy.Digest != "abc123abc123" || r.Layers[0].Serial != 7 || !r.Health.OK || !r.Clock.Trusted {
		t.Errorf("report %+v", r)
	}
}

// TestWriterOnlyOnChange: the file is rewritten when the content changes,
// not on every event.
func TestWriterOnlyOnChange(t *testing.T) {
	dir := t.TempDir()
	w := &Writer{Path: filepath.Join(dir, FileName), StateDir: dir}
	st := sample()
	if !w.Update(st, time.Now()) {
		t.Fatal("first update not written")
	}
	if w.Update(st, time.Now()) {
		t.Error("unchanged status rewritten")
	}
	st.Runtime.Goroutines = 99 // not in the report
	st.DNS.Queries = 12345
	if w.Update(st, time.Now()) {
		t.Error("volatile counters caused a rewrite")
	}
	st.Devices[0].Online = true
	if !w.Update(st, time.Now()) {
		t.Error("a child's change not written")
	}
	os.WriteFile(filepath.Join(dir, "last-import.json"), []byte(`{"ok":false,"source":"x","error":{"code":"replay","message":"m"}}`), 0o644)
	if !w.Update(st, time.Now()) {
		t.Error("a new import result not written")
	}
	var r Report
	b, _ := os.ReadFile(w.Path)
	if json.Unmarshal(b, &r) != nil || r.LastImport == nil || r.LastImport.Error.Code != "replay" {
		t.Errorf("status.json: %s", b)
	}
}
