// Command famguard is the agent's single binary: the daemon (`run`) and the
// tools around it (`check`, `plan`, `status`, `devices`, `assign`, `cleanup`).
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

	"github.com/famguard/famguard/agent/cliflags"
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
	// On flash too: pauses and extra time written at once (rare), today's
	// usage at most every --usage-flush; the frequent copy is in --state.
	defaultOverrides = "/etc/famguard/overrides.json"
)

const usage = `famguard — parental-control agent for home routers

Usage:
  famguard run     [--profiles DIR] [--operator DIR] [--categories DIR] [--state DIR] [--clock RFC3339] [--log-level LEVEL]
                   [--dns-port N] [--upstream HOST:PORT] [--blocked-answer null|nxdomain] [--doh-list FILE]
                   [--dns-client-rate N] [--dns-client-burst N] [--dns-client-inflight N]
                   [--saved-state FILE] [--boot-policy saved|offline|schedule] [--clock-trust auto|signal]
                   [--memory-limit MiB] [--restore-timeout DURATION] [--lan IFACES] [--dhcp-leases FILE]
  famguard check   [--categories DIR] [--operator DIR|none] [--digest] DIR|FILE
  famguard plan    [--at TIME] [--json] [--categories DIR] [--operator DIR|none] DIR|FILE
  famguard status  [--json] [--report] [--state DIR]
  famguard devices [--json] [--state DIR]
  famguard assign  MAC CHILD|trusted [--name NAME] [--profiles DIR] [--state DIR]
  famguard pause   CHILD|DEVICE [--for DURATION | --until TIME] [--json] [--state DIR]
  famguard resume  CHILD|DEVICE [--json] [--state DIR]
  famguard grant   CHILD DURATION | CHILD --budget +30m | CHILD --cancel [--json] [--state DIR]
  famguard budget  [CHILD] | CHILD +30m|-15m [--json] [--state DIR]
  famguard rpcd    [--state DIR] [--profiles DIR] list | call METHOD
  famguard notify  clock-synced|firewall [--state DIR]
  famguard cleanup [--state DIR]
  famguard import  [--force] [--json] [--operator DIR] [--categories DIR] [--profiles DIR] [--keys DIR] [--max-size BYTES] BUNDLE|-
  famguard pull    --url URL [--interval DURATION] [--once] [--fetcher PROG] (and import's directory flags)
  famguard tr181   [export] [--operator DIR|none] [--json] [DIR] | import [--operator DIR] [--name FILE.yaml] PARAMS|-
  famguard version

run      enforce the profiles in the foreground, logging to stderr
check    validate a profile directory or file; exit 1 and one FILE:LINE:COL line per problem;
         warn when a blocked category has no list
plan     show what the policy means at an instant, per device (--at "2026-11-30 16:30", "16:30",
         "mon 16:30" in the family's zone, or RFC 3339)
status   show the running agent's view: devices, reasons, policy, last reload
devices  list every device seen on the LAN: MAC, randomised?, first/last seen, addresses, what applies
assign   give a device to a child or trust it (a parent's device), in profiles.d/famguard-assigned.yaml;
         validated with all profiles first, in force at once when the agent runs
pause    take a child (all their devices) or one device offline now: for a while, until a time, or until resumed
resume   lift a pause
grant    extra time that ends by itself, even inside an offline window or past a used-up budget (category blocks still apply)
budget   show today's budget per child (used, left, when it runs out), or change today's only
rpcd     the rpcd plugin behind the "famguard" ubus object (the parents' page); rpcd runs it
notify   tell the agent the clock is synchronised (ntp hotplug) or the firewall was reloaded (fw4 include)
cleanup  stop the agent on --state (if running), remove all its firewall rules and ipsets
import   verify a signed bundle (operator profiles, category lists) and apply it atomically, or refuse it and change nothing
pull     poll an operator's server for new bundles (manifest first) through uclient-fetch, wget or curl, and import them
tr181    export the policy as TR-181 parameters, or import a parameter list into the operator layer (agent/tr181/MAPPING.md)
(bundles are built and signed on the operator's side with famguard-bundle, signify or usign: agent/bundle/OPERATORS.md)
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
	case "devices":
		err = cmdDevices(args, os.Stdout)
	case "assign":
		err = cmdAssign(args, os.Stdout)
	case "pause":
		err = cmdPause(args, os.Stdout)
	case "resume":
		err = cmdResume(args, os.Stdout)
	case "grant":
		err = cmdGrant(args, os.Stdout)
	case "budget":
		err = cmdBudget(args, os.Stdout)
	case "rpcd":
		err = cmdRPCD(args, os.Stdin, os.Stdout)
	case "notify":
		err = cmdNotify(args)
	case "cleanup":
		err = cmdCleanup(args)
	case "import":
		err = cmdImport(args, os.Stdout)
	case "pull":
		err = cmdPull(args, os.Stdout)
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

// parseInterleaved lets flags and positional arguments come in any order.
var parseInterleaved = cliflags.ParseInterleaved

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	return fs
}
