package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/famguard/famguard/agent/daemon"
)

func TestReloadLineKeepsTheLastChange(t *testing.T) {
	loaded := daemon.ReloadResult{At: time.Date(2026, 11, 26, 20, 14, 9, 0, time.UTC), Trigger: "profile directory changed", OK: true,
		Message: "policy 22ff0f9ca1ed loaded: 2 children, 3 devices, zone Europe/Berlin (profile timezone)"}
	reread := daemon.ReloadResult{At: time.Date(2026, 11, 26, 21, 0, 0, 0, time.UTC), Trigger: "SIGHUP", OK: true,
		Message: "profiles unchanged (policy 22ff0f9ca1ed)"}
	tests := []struct {
		name         string
		last, change daemon.ReloadResult
		want         string
	}{
		{"loaded", loaded, loaded, "Reload:   policy 22ff0f9ca1ed loaded: 2 children, 3 devices, zone Europe/Berlin (profile timezone) at 2026-11-26T20:14:09Z (profile directory changed)\n"},
		{"re-read unchanged", reread, loaded, "Reload:   policy 22ff0f9ca1ed loaded: 2 children, 3 devices, zone Europe/Berlin (profile timezone) at 2026-11-26T20:14:09Z (profile directory changed)\n" +
			"          since then re-read at 2026-11-26T21:00:00Z (SIGHUP): profiles unchanged (policy 22ff0f9ca1ed)\n"},
		// An agent older than last_change: the last reload as before.
		{"no last_change", reread, daemon.ReloadResult{}, "Reload:   profiles unchanged (policy 22ff0f9ca1ed) at 2026-11-26T21:00:00Z (SIGHUP)\n"},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		printReload(&out, tt.last, tt.change)
		if out.String() != tt.want {
			t.Errorf("%s:\n%s\nwant\n%s", tt.name, out.String(), tt.want)
		}
	}
}
