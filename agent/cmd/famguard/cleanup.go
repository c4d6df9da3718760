package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/famguard/famguard/agent/control"
	"github.com/famguard/famguard/agent/egress"
	"github.com/famguard/famguard/rules"
)

func cmdCleanup(args []string) error {
	fs := newFlagSet("cleanup")
	state := fs.String("state", defaultState, "the agent's --state directory")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	// A running agent would restore its rules within seconds: ask it to
	// exit first (it leaves its rules, which we then remove).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := control.Call(ctx, *state, "shutdown", nil); err == nil {
		fmt.Fprintln(os.Stderr, "asked the running agent to stop")
		waitGone(*state, 5*time.Second)
	}
	dp, err := rules.NewKernel()
	if err != nil {
		return err
	}
	var errs []error
	for _, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
		if err := dp.Cleanup(fam); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", fam, err))
		}
	}
	// Then the agent's ipsets (strict and inbound guard), which the
	// kernel destroys only once no rule names them: after the rules.
	removed, err := removeSets()
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "famguard rules removed (IPv4 and IPv6), and %d famguard ipsets; devices are no longer protected\n", removed)
	return nil
}

// removeSets destroys every ipset of famguard's (egress.Ours).
func removeSets() (int, error) {
	k, err := egress.NewNetlink()
	if err != nil {
		return 0, err
	}
	defer k.Close()
	return egress.RemoveOurs(k)
}

// waitGone waits until nobody answers on the control socket any more.
func waitGone(stateDir string, max time.Duration) {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := control.Call(ctx, stateDir, "status", nil)
		cancel()
		if errors.Is(err, control.ErrNotRunning) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
