package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/famguard/famguard/agent/categories"
	"github.com/famguard/famguard/agent/policy"
	"github.com/famguard/famguard/agent/tz"
)

func cmdCheck(args []string, out io.Writer) error {
	fs := newFlagSet("check")
	catDir := fs.String("categories", "", "also report categories that have no list in this directory")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	dir, err := oneDir("check", pos)
	if err != nil {
		return err
	}
	pol, err := policy.LoadDir(dir)
	if err != nil {
		var probs policy.Problems
		if errors.As(err, &probs) {
			for _, p := range probs {
				fmt.Fprintln(out, p.String())
			}
			return exitError(1)
		}
		return err
	}
	if _, err := tz.Resolve(pol.Timezone, tz.Env{}); err != nil {
		return err
	}
	if *catDir != "" {
		avail, err := categories.Available(*catDir)
		if err != nil {
			return fmt.Errorf("--categories: %w", err)
		}
		for _, p := range pol.MissingCategories(avail) {
			fmt.Fprintln(out, "warning: "+p.String())
		}
	}
	children, devices := len(pol.Children), 0
	for _, c := range pol.Children {
		devices += len(c.Devices)
	}
	fmt.Fprintf(os.Stderr, "%s: valid (%d children, %d devices, %d trusted, unknown devices: %s, policy %s)\n",
		dir, children, devices, len(pol.Trusted), unknownSummary(pol), pol.Digest)
	return nil
}

// unknownSummary says in a few words what applies to unknown devices.
func unknownSummary(pol *policy.Policy) string {
	u, r := pol.UnknownDevices(), pol.RandomizedDevices()
	s := u.String()
	if u.Default {
		s += " (default)"
	}
	if r != u {
		s += ", randomised MACs: " + r.String()
	}
	return s
}
