package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/famguard/famguard/agent/control"
	"github.com/famguard/famguard/agent/daemon"
	"github.com/famguard/famguard/agent/policy"
	"github.com/famguard/famguard/agent/tr181"
	"github.com/famguard/famguard/agent/tz"
)

// cmdTR181 bridges TR-069/USP agents: `famguard tr181` exports the policy
// as TR-181 parameters, `famguard tr181 import` writes a parameter list
// into an operator-layer profile (agent/tr181/MAPPING.md).
func cmdTR181(args []string, out io.Writer) error {
	if len(args) > 0 && args[0] == "import" {
		return tr181Import(args[1:], out)
	}
	if len(args) > 0 && args[0] == "export" {
		args = args[1:]
	}
	fs := newFlagSet("tr181")
	opFlag := operatorFlag(fs)
	state := fs.String("state", defaultState, "the running agent's --state directory: its live per-child state is added when it answers")
	asJSON := fs.Bool("json", false, "a JSON list of {path, value} instead of Path=Value lines")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	dir := defaultProfiles
	if len(pos) > 1 {
		return errors.New("usage: famguard tr181 [export] [--operator DIR|none] [--json] [PROFILE-DIR]")
	} else if len(pos) == 1 {
		dir = pos[0]
	}
	pol, err := loadPolicy(operatorDir(*opFlag, dir), dir, os.Stderr)
	if err != nil {
		return err
	}
	params := tr181.Export(pol, liveStates(pol, *state))
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(params)
	}
	return tr181.Format(out, params)
}

// liveStates asks the running agent for its per-device state; without one
// it evaluates the policy now (what `famguard plan` shows).
func liveStates(pol *policy.Policy, stateDir string) []policy.DeviceState {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var st daemon.Status
	if err := control.Call(ctx, stateDir, "status", &st); err == nil && st.Policy != nil && st.Policy.Digest == pol.Digest {
		out := make([]policy.DeviceState, len(st.Devices))
		for i, d := range st.Devices {
			out[i] = d.DeviceState
		}
		return out
	}
	zone, err := tz.Resolve(pol.Timezone, tz.Env{})
	if err != nil {
		return nil
	}
	return pol.Evaluate(time.Now(), zone.Loc)
}

func tr181Import(args []string, out io.Writer) error {
	fs := newFlagSet("tr181 import")
	opDir := fs.String("operator", defaultOperator, "the operator layer directory the profile is written to")
	profiles := fs.String("profiles", defaultProfiles, "the parents' profiles: the whole policy is validated with the new file")
	name := fs.String("name", "tr181.yaml", "the profile's file name in the operator layer (replaced by each import)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: famguard tr181 import [--operator DIR] [--name FILE.yaml] PARAMS|-  (PARAMS: Device.Path=Value lines)")
	}
	if !policy.IsProfileFile(*name) || filepath.Base(*name) != *name {
		return fmt.Errorf("--name %q: a plain file name ending in .yaml", *name)
	}
	var in io.Reader = os.Stdin
	if pos[0] != "-" {
		f, err := os.Open(pos[0])
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	params, err := tr181.Parse(io.LimitReader(in, 4<<20))
	if err != nil {
		return err
	}
	profile, err := tr181.Import(params)
	if err != nil {
		return fmt.Errorf("the parameters cannot be imported; nothing was written:\n%w", err)
	}
	if err := validateWith(*opDir, *name, profile, *profiles); err != nil {
		return err
	}
	if err := os.MkdirAll(*opDir, 0o755); err != nil {
		return err
	}
	// A hidden temporary name (the loader skips it), then one rename: the
	// daemon reads the old file or the new one, never half of one.
	tmp := filepath.Join(*opDir, "."+*name+".tmp")
	if err := os.WriteFile(tmp, profile, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(*opDir, *name)); err != nil {
		os.Remove(tmp)
		return err
	}
	fmt.Fprintf(out, "wrote %s (%d parameters)\n", filepath.Join(*opDir, *name), len(params))
	return nil
}

// validateWith loads the whole policy as it would be with the candidate
// file in the operator layer, from a scratch copy of that layer.
func validateWith(opDir, name string, candidate []byte, profiles string) error {
	scratch, err := os.MkdirTemp("", "famguard-tr181-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	entries, _ := os.ReadDir(opDir)
	for _, e := range entries {
		if !policy.IsProfileFile(e.Name()) || e.Name() == name {
			continue
		}
		b, err := os.ReadFile(filepath.Join(opDir, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(scratch, e.Name()), b, 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(scratch, name), candidate, 0o644); err != nil {
		return err
	}
	if _, err := policy.Load(scratch, profiles); err != nil {
		var probs policy.Problems
		if errors.As(err, &probs) {
			msg := "the policy with the imported parameters is not valid; nothing was written:"
			for _, p := range probs {
				msg += "\n  " + p.String()
			}
			return errors.New(msg)
		}
		return err
	}
	return nil
}
