package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/famguard/famguard/agent/policy"
)

// operatorFlag adds --operator to a verb that reads profiles: the operator
// layer's directory. The default is operator.d beside the profile
// directory, so check and plan see what the daemon sees; "none" reads the
// parents' layer alone.
func operatorFlag(fs *flag.FlagSet) *string {
	return fs.String("operator", "", "operator layer directory (default: operator.d beside the profile directory; none: no operator layer)")
}

// operatorDir resolves --operator for a profile directory.
func operatorDir(flagValue, profilesDir string) string {
	switch flagValue {
	case "":
		return policy.OperatorDirFor(profilesDir)
	case "none":
		return ""
	}
	return flagValue
}

// loadPolicy loads both layers; on problems it prints them to w, one per
// line, and returns a Problems error.
func loadPolicy(opDir, profilesDir string, w io.Writer) (*policy.Policy, error) {
	pol, err := policy.Load(opDir, profilesDir)
	var probs policy.Problems
	if errors.As(err, &probs) {
		for _, p := range probs {
			fmt.Fprintln(w, p.String())
		}
	}
	return pol, err
}

// printLayers renders the layers and, per child, which layer decided each
// setting (shared by plan and status). Nothing for a plain version-1 set.
func printLayers(out io.Writer, layers []policy.LayerInfo, floors policy.Settings, states []policy.DeviceState) {
	if len(layers) < 2 && floors.Block == nil && floors.SafeSearch == nil && floors.BypassPrevention == nil && !anyDecided(states) {
		return
	}
	fmt.Fprintln(out)
	for _, l := range layers {
		fmt.Fprintf(out, "Layer %-9s %s: %d files, digest %s\n", l.Name, l.Dir, l.Files, l.Digest)
	}
	var fl []string
	if len(floors.Block) > 0 {
		fl = append(fl, "always blocked: "+strings.Join(floors.Block, ", "))
	}
	if floors.SafeSearch != nil {
		fl = append(fl, "safe search forced")
	}
	if floors.BypassPrevention != nil {
		fl = append(fl, "bypass prevention forced")
	}
	if len(fl) > 0 {
		fmt.Fprintf(out, "Floors (no parent can lower): %s\n", strings.Join(fl, "; "))
	}
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	header := false
	seen := map[string]bool{}
	for _, s := range states {
		if seen[s.Child] || len(s.Decided) == 0 {
			continue
		}
		seen[s.Child] = true
		if !header {
			fmt.Fprintln(tw, "CHILD\tSETTING\tDECIDED BY")
			header = true
		}
		keys := make([]string, 0, len(s.Decided))
		for k := range s.Decided {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Child, k, s.Decided[k])
		}
	}
	tw.Flush()
}

func anyDecided(states []policy.DeviceState) bool {
	for _, s := range states {
		if len(s.Decided) > 0 {
			return true
		}
	}
	return false
}
