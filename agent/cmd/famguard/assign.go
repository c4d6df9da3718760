package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/famguard/famguard/agent/control"
	"github.com/famguard/famguard/agent/daemon"
	"github.com/famguard/famguard/agent/policy"
)

// cmdAssign gives a device to a child or marks it trusted, in the profile
// file famguard manages (policy.Assign: validated with the whole directory,
// written atomically). It works without a running agent — it only writes
// the file — and says which: with an agent, it asks it to reload at once
// (the watcher would within a moment anyway) and reports the result.
func cmdAssign(args []string, out io.Writer) error {
	fs := newFlagSet("assign")
	profiles := fs.String("profiles", defaultProfiles, "the profile directory (default: the running agent's, else "+defaultProfiles+")")
	state := fs.String("state", defaultState, "the running agent's --state directory")
	name := fs.String("name", "", "a name for the device, shown in status and plan")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return fmt.Errorf("expected MAC and CHILD or trusted (usage: famguard assign MAC CHILD|trusted [--name NAME])")
	}
	if !flagGiven(fs, "profiles") {
		// The running agent's profile directory, if it runs with another
		// than the default: the file must land where the agent reads.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		var st daemon.Status
		if control.Call(ctx, *state, "status", &st) == nil && st.Policy != nil && st.Policy.Dir != "" {
			*profiles = st.Policy.Dir
		}
		cancel()
	}
	path, pol, err := policy.Assign(*profiles, pos[0], pos[1], *name)
	if err != nil {
		return err
	}
	mac, _ := policy.NormalizeMAC(pos[0])
	who := "child " + pos[1]
	if pos[1] == policy.AssignTrusted {
		who = "trusted (never restricted)"
	}
	fmt.Fprintf(out, "%s assigned to %s in %s (policy %s)\n", mac, who, path, pol.Digest)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var res daemon.ReloadResult
	switch err := control.Call(ctx, *state, "reload", &res); {
	case errors.Is(err, control.ErrNotRunning):
		fmt.Fprintf(out, "no famguard agent is running (state %s): the file is written and applies when the agent starts\n", *state)
	case err != nil:
		return fmt.Errorf("the file is written, but the agent did not answer (%v); it reloads the profiles on its own when it sees the change", err)
	case !res.OK:
		return fmt.Errorf("the file is written, but the agent rejected the profiles: %s", res.Message)
	default:
		fmt.Fprintf(out, "in force now: the running agent reloaded (%s)\n", res.Message)
	}
	return nil
}

// flagGiven says whether a flag was set on the command line.
func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}
