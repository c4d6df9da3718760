// Command famguard is the agent's single binary: the daemon (`run`) and the
// tools around it (`check`, `plan`, `status`, `cleanup`).
//
// The sub-commands, their flags and their JSON are a contract that scripts,
// operators' management daemons and the lab tests rely on: add to them, never
// rename. Everything is in one binary because a router's flash is small and a
// second Go binary would cost megabytes.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
)

// version is stamped at build time: -ldflags "-X main.version=...".
var version = "dev"

const (
	defaultProfiles   = "/etc/famguard/profiles.d"
	defaultCategories = "/etc/famguard/categories.d"
	defaultState      = "/var/run/famguard"
	// On flash, so it survives reboots; written only when a device's state
	// changes (a few times a day).
	defaultSavedState = "/etc/famguard/device-state.json"
)

const usage = `famguard — parental-control agent for home routers

Usage:
  famguard run     [--profiles DIR] [--operator DIR] [--categories DIR] [--state DIR] [--clock RFC3339] [--log-level LEVEL]
                   [--dns-port N] [--upstream HOST:PORT] [--blocked-answer null|nxdomain] [--doh-list FILE]
                   [--dns-client-rate N] [--dns-client-burst N] [--dns-client-inflight N]
                   [--saved-state FILE] [--boot-policy saved|offline|schedule] [--clock-trust auto|signal]
                   [--memory-limit MiB] [--restore-timeout DURATION]
  famguard check   [--categories DIR] [--operator DIR|none] [--digest] DIR
  famguard plan    [--at RFC3339] [--json] [--operator DIR|none] DIR
  famguard status  [--json] [--report] [--state DIR]
  famguard notify  clock-synced|firewall [--state DIR]
  famguard cleanup [--state DIR]
  famguard import  [--force] [--json] [--operator DIR] [--categories DIR] [--profiles DIR] [--keys DIR] [--max-size BYTES] BUNDLE|-
  famguard pull    --url URL [--interval DURATION] [--once] [--fetcher PROG] (and import's directory flags)
  famguard bundle  keygen NAME | build --key NAME.sec [--serial N] [--operator DIR] [--categories DIR] (-o BUNDLE | --publish DIR)
  famguard tr181   [export] [--operator DIR|none] [--json] [DIR] | import [--operator DIR] [--name FILE.yaml] PARAMS|-
  famguard version

run      enforce the profiles in the foreground, logging to stderr
check    validate a profile directory; exit 1 and one FILE:LINE:COL line per problem
plan     show what the policy means at an instant, per device
status   show the running agent's view: devices, reasons, policy, last reload
notify   tell the agent the clock is synchronised (ntp hotplug) or the firewall was reloaded (fw4 include)
cleanup  stop the agent on --state (if running) and remove all its firewall rules
import   verify a signed bundle (operator profiles, category lists) and apply it atomically, or refuse it and change nothing
pull     poll an operator's server for new bundles (manifest first) through uclient-fetch, wget or curl, and import them
tr181    export the policy as TR-181 parameters, or import a parameter list into the operator layer (agent/tr181/MAPPING.md)
bundle   operator side: make a signing key, build and sign a bundle (see agent/bundle/OPERATORS.md)
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "run":
		err = cmdRun(args)
	case "check":
		err = cmdCheck(args, os.Stdout)
	case "plan":
		err = cmdPlan(args, os.Stdout)
	case "status":
		err = cmdStatus(args, os.Stdout)
	case "notify":
		err = cmdNotify(args)
	case "cleanup":
		err = cmdCleanup(args)
	case "import":
		err = cmdImport(args, os.Stdout)
	case "pull":
		err = cmdPull(args, os.Stdout)
	case "bundle":
		err = cmdBundle(args, os.Stdout)
	case "tr181":
		err = cmdTR181(args, os.Stdout)
	case "version", "--version", "-v":
		fmt.Println("famguard", version)
	case "help", "--help", "-h":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "famguard: unknown command %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
	var ee exitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		os.Exit(int(ee))
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	default:
		fmt.Fprintf(os.Stderr, "famguard %s: %v\n", cmd, err)
		os.Exit(1)
	}
}

// exitError ends the program with that status after the command has already
// printed what it had to say.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// parseInterleaved lets flags and positional arguments come in any order
// (`famguard plan DIR --json` as well as `famguard plan --json DIR`).
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	return fs
}

func oneDir(name string, pos []string) (string, error) {
	if len(pos) != 1 {
		return "", fmt.Errorf("expected one profile directory, got %d arguments (usage: famguard %s [flags] DIR)", len(pos), name)
	}
	return pos[0], nil
}
