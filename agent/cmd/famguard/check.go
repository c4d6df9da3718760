package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/famguard/famguard/agent/categories"
	"github.com/famguard/famguard/agent/policy"
	"github.com/famguard/famguard/agent/tz"
)

func cmdCheck(args []string, out io.Writer) error {
	fs := newFlagSet("check")
	catDir := fs.String("categories", defaultCategories, `the category lists to check the profiles' blocks against ("": do not check)`)
	opFlag := operatorFlag(fs)
	digestOnly := fs.Bool("digest", false, "print only the policy digest (what status reports once the set is live)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	path, err := oneProfileSet("check", pos)
	if err != nil {
		return err
	}
	pol, err := loadLayered(path, *opFlag)
	if printProblems(out, err) {
		return exitError(1)
	}
	if err != nil {
		return err
	}
	if _, err := tz.Resolve(pol.Timezone, tz.Env{}); err != nil {
		return err
	}
	if *catDir != "" {
		for _, w := range categoryWarnings(pol, *catDir) {
			fmt.Fprintln(out, "warning: "+w)
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
	fmt.Fprintf(os.Stderr, "%s: valid (%d children, %d devices, %d trusted, unknown devices: %s, policy %s)\n",
		path, children, devices, len(pol.Trusted), unknownSummary(pol), pol.Digest)
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

// oneProfileSet is the one positional argument of check and plan: a profile
// directory, or a single profile file.
func oneProfileSet(name string, pos []string) (string, error) {
	if len(pos) != 1 {
		return "", fmt.Errorf("expected one profile directory or file, got %d arguments (usage: famguard %s [flags] DIR|FILE)", len(pos), name)
	}
	return pos[0], nil
}

// loadProfiles loads a profile directory with the operator layer beside it,
// or one file on its own (checking a file before copying it into the
// profile directory).
func loadProfiles(path string) (*policy.Policy, error) { return loadLayered(path, "") }

// loadLayered is loadProfiles with --operator (default: operator.d beside
// the directory; none: no operator layer).
func loadLayered(path, opFlag string) (*policy.Policy, error) {
	if fi, err := os.Stat(path); err == nil && !fi.IsDir() {
		return policy.LoadFile(path)
	}
	return policy.Load(operatorDir(opFlag, path), path)
}

// listedCategories is the set of categories with a list in dir; a missing
// directory is an empty set (a fresh install has none).
func listedCategories(dir string) (map[string]bool, error) {
	avail, err := categories.Available(dir)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]bool{}, nil
	}
	return avail, err
}

// categoryWarnings says, loudly, where a block names a category that has no
// list in dir — such a block blocks nothing — and how lists get there.
func categoryWarnings(pol *policy.Policy, dir string) []string {
	avail, err := listedCategories(dir)
	if err != nil {
		return []string{fmt.Sprintf("category lists in %s cannot be read (%v): category blocks are not checked", dir, err)}
	}
	var out []string
	for _, p := range pol.MissingCategories(dir, avail) {
		out = append(out, p.String())
	}
	if len(out) > 0 {
		out = append(out, listsHint(dir))
	}
	return out
}

// listsHint is how category lists get installed.
func listsHint(dir string) string {
	return fmt.Sprintf("a category list is a text file of domains, one a line, named %s; "+
		"a running agent loads it within a second (README: \"A parent's quick start\", step 4)", filepath.Join(dir, "<category>.txt"))
}

// printProblems prints each problem of an invalid profile set, one
// FILE:LINE:COL line each, and says whether err was such a set.
func printProblems(w io.Writer, err error) bool {
	var probs policy.Problems
	if !errors.As(err, &probs) {
		return false
	}
	for _, p := range probs {
		fmt.Fprintln(w, p.String())
	}
	return true
}
