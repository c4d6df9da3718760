package clock

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// When is the clock right? A router without a battery-backed clock boots with
// the newest file date under /etc as "now" and only learns the time when NTP
// answers. Two signals say the time is known:
//   - the kernel: an NTP client that disciplines the clock (busybox ntpd,
//     chrony, systemd-timesyncd) clears STA_UNSYNC, and adjtimex stops
//     returning TIME_ERROR;
//   - OpenWrt's ntp hotplug event (ACTION=stratum), which the package's
//     hotplug script forwards as `famguard notify clock-synced`.
// The hotplug signal is remembered in a marker file holding the kernel's boot
// ID, so an agent restarted after the sync still trusts the clock, while a
// reboot (new boot ID) makes the marker stale without anyone deleting it.

// timeError is adjtimex's TIME_ERROR state: the clock is not synchronised.
const timeError = 5

// KernelSynced reports whether the kernel considers its clock synchronised.
func KernelSynced() (bool, error) {
	var tx unix.Timex // Modes 0: read only
	state, err := unix.Adjtimex(&tx)
	if err != nil {
		return false, err
	}
	return state != timeError, nil
}

// WhenSynced sends once on the returned channel when check reports the
// clock synchronised, polling every interval (adjtimex is one cheap
// syscall). It stops when ctx ends or check keeps failing.
func WhenSynced(ctx context.Context, interval time.Duration, check func() (bool, error)) <-chan struct{} {
	out := make(chan struct{}, 1)
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		failures := 0
		for {
			ok, err := check()
			switch {
			case ok:
				out <- struct{}{}
				return
			case err != nil:
				if failures++; failures > 3 {
					return // no adjtimex here (or not allowed): the hotplug signal remains
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return out
}

// SyncMarker is the marker's file name in the agent's state directory.
const SyncMarker = "clock-synced"

func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

// MarkSynced records, for this boot, that the clock was synchronised.
func MarkSynced(stateDir string) error {
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(stateDir, SyncMarker), []byte(bootID()+"\n"), 0o600)
}

// SyncedThisBoot reports whether MarkSynced was called since the last boot.
func SyncedThisBoot(stateDir string) bool {
	b, err := os.ReadFile(filepath.Join(stateDir, SyncMarker))
	return err == nil && strings.TrimSpace(string(b)) == bootID()
}
