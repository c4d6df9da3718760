package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/famguard/famguard/agent/clock"
	"github.com/famguard/famguard/agent/control"
)

// cmdNotify is what OpenWrt's hooks call: the ntp hotplug script
// (clock-synced) and the fw4 firewall include (firewall). Both exit 0 when no
// agent runs, so they never fail a hotplug run or a firewall reload; a clock
// sync is then remembered for the agent's start.
func cmdNotify(args []string) error {
	fs := newFlagSet("notify")
	state := fs.String("state", defaultState, "the agent's --state directory")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || (pos[0] != "clock-synced" && pos[0] != "firewall") {
		return fmt.Errorf("expected clock-synced or firewall (usage: famguard notify clock-synced|firewall [--state DIR])")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req := map[string]string{"clock-synced": "clock-synced", "firewall": "heal"}[pos[0]]
	err = control.Call(ctx, *state, req, nil)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, control.ErrNotRunning) && pos[0] == "clock-synced":
		if err := clock.MarkSynced(*state); err != nil {
			return fmt.Errorf("no agent is running and the sync cannot be remembered in %s: %w", *state, err)
		}
		fmt.Fprintln(os.Stderr, "no famguard agent is running; the clock sync is remembered for when it starts")
		return nil
	case errors.Is(err, control.ErrNotRunning):
		fmt.Fprintln(os.Stderr, "no famguard agent is running; nothing to restore")
		return nil
	}
	return err
}
