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
	opFlag := operatorFlag(fs)
	digestOnly := fs.Bool("digest", false, "print only the policy digest (what status reports once the set is live)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	dir, err := oneDir("check", pos)
	if err != nil {
		return err
	}
	pol, err := loadPolicy(operatorDir(*opFlag, dir), dir, out)
	if err != nil {
		var probs policy.Problems
		if errors.As(err, &probs) {
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
	for _, w := range pol.Warnings {
		fmt.Fprintln(out, "warning: "+w.String())
	}
	if *digestOnly {
		fmt.Fprintln(out, pol.Digest)
		return nil
	}
	for _, l := range pol.Layers {
		fmt.Fprintf(os.Stderr, "%s layer %s: %d files, digest %s\n", l.Name, l.Dir, l.Files, l.Digest)
	}
	children, devices := len(pol.Children), 0
	for _, c := range pol.Children {
		devices += len(c.Devices)
	}
	fmt.Fprintf(os.Stderr, "%s: valid (%d children, %d devices, policy %s)\n", dir, children, devices, pol.Digest)
	return nil
}
