package openwrt

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// harness stands in for /etc/rc.common, /lib/functions.sh (UCI) and
// /lib/functions/procd.sh: every procd call is recorded in $FG_LOG with its
// arguments as [arg][arg]..., so argv boundaries are exact. The fake UCI
// config $FG_UCI has lines "section.option=value". After sourcing the init
// script it defines start/stop/reload the way rc.common does for procd
// services, then runs the actions given as arguments.
const harness = `
rec() { printf '%s\n' "$*" >>"$FG_LOG"; }
args() { _a=; for _x in "$@"; do _a="$_a[$_x]"; done; printf '%s' "$_a"; }
uci_lookup() {
	while IFS= read -r _l; do
		case "$_l" in "$1.$2="*) printf '%s' "${_l#*=}"; return 0 ;; esac
	done <"$FG_UCI"
	return 1
}
config_load() { rec "config_load $(args "$@")"; }
config_get() { _v=$(uci_lookup "$2" "$3") || _v=$4; eval "$1=\$_v"; }
config_get_bool() {
	config_get _b "$2" "$3" "$4"
	case "$_b" in 1|on|true|yes|enabled) _b=1 ;; 0|off|false|no|disabled) _b=0 ;; *) _b=$4 ;; esac
	eval "$1=\$_b"
}
procd_open_service() { rec "procd_open_service $(args "$@")"; }
procd_close_service() { rec "procd_close_service"; }
procd_open_instance() { rec "procd_open_instance $(args "$@")"; }
procd_set_param() { rec "procd_set_param $(args "$@")"; }
procd_append_param() { rec "procd_append_param $(args "$@")"; }
procd_close_instance() { rec "procd_close_instance"; }
procd_send_signal() { rec "procd_send_signal $(args "$@")"; }
procd_add_reload_trigger() { rec "procd_add_reload_trigger $(args "$@")"; }
procd_add_config_trigger() { rec "procd_add_config_trigger $(args "$@")"; }
procd_kill() { rec "procd_kill $(args "$@")"; }
procd_lock() { :; }

. "$FG_INIT"

# rc.common, procd flavour (defined after sourcing, as rc.common does).
start() { rec "rc start"; procd_open_service famguard; start_service "$@"; service_triggers; procd_close_service; }
stop() { rec "rc stop"; if type stop_service >/dev/null 2>&1; then stop_service "$@"; fi; procd_kill famguard; }
reload() { rec "rc reload"; if type reload_service >/dev/null 2>&1; then reload_service "$@"; else start; fi; }

[ -n "$FG_PROG" ] && PROG=$FG_PROG
for action in "$@"; do
	if [ "${action#uci=}" != "$action" ]; then FG_UCI=${action#uci=}; continue; fi
	"$action"
done
`

type initRun struct {
	log    string // recorded procd/UCI calls
	binLog string // calls of the famguard stand-in (when used)
}

// runInit sources famguard.init in sh with the fake UCI config uci and runs
// actions (start, stop, reload, service_triggers, or uci=FILE to switch the
// config between actions). With stubProg, PROG (and a "famguard" on PATH)
// is a recording stand-in, to prove the script never runs the binary.
func runInit(t *testing.T, sh shell, uci string, stubProg bool, actions ...string) initRun {
	t.Helper()
	dir := t.TempDir()
	write(t, filepath.Join(dir, "uci"), uci, 0o644)
	write(t, filepath.Join(dir, "harness.sh"), harness, 0o644)
	env := []string{
		"FG_LOG=" + filepath.Join(dir, "log"),
		"FG_UCI=" + filepath.Join(dir, "uci"),
		"FG_INIT=" + filepath.Join(files, "famguard.init"),
	}
	binLog := filepath.Join(dir, "bin.log")
	if stubProg {
		stub(t, filepath.Join(dir, "bin", "famguard"), binLog, 0, "")
		env = append(env, "FG_PROG="+filepath.Join(dir, "bin", "famguard"))
		env = append(env, "PATH="+filepath.Join(dir, "bin")+":"+os.Getenv("PATH"))
	}
	argv := append(append([]string{}, sh.argv...), filepath.Join(dir, "harness.sh"))
	argv = append(argv, actions...)
	out, _ := run(t, argv, env, false)
	if out != "" {
		t.Errorf("%s: unexpected output: %s", sh.name, out)
	}
	return initRun{log: read(t, filepath.Join(dir, "log")), binLog: read(t, binLog)}
}

func argvLine(args ...string) string {
	return "procd_set_param [command][" + strings.Join(args, "][") + "]"
}

var defaultCommand = argvLine("/usr/sbin/famguard", "run",
	"--profiles", "/etc/famguard/profiles.d",
	"--categories", "/etc/famguard/categories.d",
	"--state", "/var/run/famguard",
	"--saved-state", "/etc/famguard/device-state.json",
	"--boot-policy", "saved",
	"--memory-limit", "0",
	"--dns-port", "5354",
	"--upstream", "127.0.0.1:53",
	"--blocked-answer", "null",
	"--doh-list", "/etc/famguard/doh.txt",
	"--log-level", "info")

// startLog is everything a start records, for a given command line.
func startLog(command string) string {
	return strings.Join([]string{
		"rc start",
		"procd_open_service [famguard]",
		"config_load [famguard]",
		"procd_open_instance [agent]",
		command,
		"procd_set_param [respawn][3600][10][0]",
		"procd_set_param [stdout][1]",
		"procd_set_param [stderr][1]",
		"procd_close_instance",
		"procd_add_reload_trigger [famguard]",
		"procd_close_service",
	}, "\n") + "\n"
}

// uciFromConfig turns the shipped /etc/config/famguard into the fake UCI
// format, so the test also proves the shipped file says what the defaults say.
func uciFromConfig(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	section := ""
	for _, l := range strings.Split(read(t, filepath.Join(files, "famguard.config")), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) == 3 && f[0] == "config":
			section = strings.Trim(f[2], "'")
		case len(f) == 3 && f[0] == "option":
			b.WriteString(section + "." + f[1] + "=" + strings.Trim(f[2], "'") + "\n")
		}
	}
	return b.String()
}

func TestInitStartDefaults(t *testing.T) {
	for _, sh := range shells(t) {
		// No options at all (a missing or emptied /etc/config/famguard).
		if got := runInit(t, sh, "", false, "start").log; got != startLog(defaultCommand) {
			t.Errorf("%s, empty config:\n got: %s\nwant: %s", sh.name, got, startLog(defaultCommand))
		}
		// The shipped config spells out the same defaults.
		cfg := uciFromConfig(t)
		if !strings.Contains(cfg, "main.enabled=1") || !strings.Contains(cfg, "main.dns_port=5354") {
			t.Fatalf("shipped config not parsed: %q", cfg)
		}
		if got := runInit(t, sh, cfg, false, "start").log; got != startLog(defaultCommand) {
			t.Errorf("%s, shipped config:\n got: %s\nwant: %s", sh.name, got, startLog(defaultCommand))
		}
	}
}

const changedUCI = `main.enabled=yes
main.profiles=/mnt/usb/family profiles
main.categories=/mnt/usb/lists
main.saved_state=/tmp/famguard-state.json
main.boot_policy=offline
main.memory_limit=48
main.dns_port=0
main.upstream=192.0.2.53:5353
main.blocked_answer=nxdomain
main.doh_list=/etc/famguard/my-doh.txt
main.log_level=debug
`

var changedCommand = argvLine("/usr/sbin/famguard", "run",
	"--profiles", "/mnt/usb/family profiles",
	"--categories", "/mnt/usb/lists",
	"--state", "/var/run/famguard",
	"--saved-state", "/tmp/famguard-state.json",
	"--boot-policy", "offline",
	"--memory-limit", "48",
	"--dns-port", "0",
	"--upstream", "192.0.2.53:5353",
	"--blocked-answer", "nxdomain",
	"--doh-list", "/etc/famguard/my-doh.txt",
	"--log-level", "debug")

func TestInitStartChangedOptions(t *testing.T) {
	for _, sh := range shells(t) {
		if got := runInit(t, sh, changedUCI, false, "start").log; got != startLog(changedCommand) {
			t.Errorf("%s:\n got: %s\nwant: %s", sh.name, got, startLog(changedCommand))
		}
	}
}

func TestInitDisabledStartsNothing(t *testing.T) {
	for _, sh := range shells(t) {
		for _, v := range []string{"0", "off", "false", "no"} {
			r := runInit(t, sh, "main.enabled="+v+"\nmain.dns_port=53\n", true, "start")
			if strings.Contains(r.log, "procd_open_instance") || r.binLog != "" {
				t.Errorf("%s, enabled=%s: started something:\n%s%s", sh.name, v, r.log, r.binLog)
			}
			// procd is still told about the service (with no instance, which
			// also stops one that ran before) and its reload trigger.
			if !strings.Contains(r.log, "procd_add_reload_trigger [famguard]") {
				t.Errorf("%s, enabled=%s: no reload trigger:\n%s", sh.name, v, r.log)
			}
		}
	}
}

func TestInitReloadSendsHUPWithoutRestart(t *testing.T) {
	for _, sh := range shells(t) {
		r := runInit(t, sh, "", true, "start", "reload")
		i := strings.Index(r.log, "rc reload\n")
		if i < 0 {
			t.Fatalf("%s: no reload:\n%s", sh.name, r.log)
		}
		started, reloaded := r.log[:i], r.log[i:]
		const hup = "rc reload\nprocd_send_signal [famguard][*][HUP]\n"
		if !strings.HasPrefix(reloaded, hup) {
			t.Fatalf("%s: reload must start by sending HUP to every instance:\n%s", sh.name, reloaded)
		}
		// Then the instance is declared again, identical to what start
		// declared: procd treats that as "no change" (no restart).
		if got := strings.TrimPrefix(reloaded, hup); got != started {
			t.Errorf("%s: reload's declaration differs from start's (procd would restart):\n got: %s\nwant: %s", sh.name, got, started)
		}
		for _, bad := range []string{"procd_kill", "rc stop"} {
			if strings.Contains(r.log, bad) {
				t.Errorf("%s: reload ran %s:\n%s", sh.name, bad, r.log)
			}
		}
		if r.binLog != "" {
			t.Errorf("%s: reload ran famguard itself (cleanup?): %s", sh.name, r.binLog)
		}
	}
}

// A UCI change that alters the command line: the reload trigger runs
// reload; the re-declared instance carries the new command line, so procd
// restarts the agent with it (SIGTERM keeps the rules; no cleanup).
func TestInitReloadAfterOptionChangeRedeclares(t *testing.T) {
	for _, sh := range shells(t) {
		dir := t.TempDir()
		write(t, filepath.Join(dir, "changed"), changedUCI, 0o644)
		r := runInit(t, sh, "", false, "start", "uci="+filepath.Join(dir, "changed"), "reload")
		want := startLog(defaultCommand) + "rc reload\nprocd_send_signal [famguard][*][HUP]\n" + startLog(changedCommand)
		if r.log != want {
			t.Errorf("%s:\n got: %s\nwant: %s", sh.name, r.log, want)
		}
		// Disabling through UCI: the re-declaration has no instance, so procd
		// stops the agent (its rules stay; removal is famguard cleanup).
		write(t, filepath.Join(dir, "off"), "main.enabled=0\n", 0o644)
		r = runInit(t, sh, "", true, "start", "uci="+filepath.Join(dir, "off"), "reload")
		after := r.log[strings.Index(r.log, "rc reload"):]
		if strings.Contains(after, "procd_open_instance") || r.binLog != "" {
			t.Errorf("%s: reload with enabled=0 declared an instance or ran famguard:\n%s%s", sh.name, after, r.binLog)
		}
	}
}

func TestInitStopKeepsEnforcement(t *testing.T) {
	for _, sh := range shells(t) {
		r := runInit(t, sh, "", true, "start", "stop")
		after := r.log[strings.Index(r.log, "rc stop"):]
		if after != "rc stop\nprocd_kill [famguard]\n" {
			t.Errorf("%s: stop did more than end the instance:\n%s", sh.name, after)
		}
		if r.binLog != "" {
			t.Errorf("%s: stop ran famguard (cleanup must not run on stop): %s", sh.name, r.binLog)
		}
	}
}

func TestInitServiceTriggers(t *testing.T) {
	for _, sh := range shells(t) {
		if got := runInit(t, sh, "", false, "service_triggers").log; got != "procd_add_reload_trigger [famguard]\n" {
			t.Errorf("%s: service_triggers recorded %q", sh.name, got)
		}
	}
}

// The init script's header: rc.common shebang, procd, a start priority
// after network (20) and firewall (19).
func TestInitHeader(t *testing.T) {
	s := read(t, filepath.Join(files, "famguard.init"))
	for _, want := range []string{"#!/bin/sh /etc/rc.common\n", "\nUSE_PROCD=1\n", "\nSTART=21\n", "\n# shellcheck shell=sh\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("famguard.init lacks %q", want)
		}
	}
}

// TestInitLAN: the lan option becomes --lan; unset, no flag (the agent
// reads /etc/config/network itself).
func TestInitLAN(t *testing.T) {
	for _, sh := range shells(t) {
		got := runInit(t, sh, "main.lan=br-lan,wlan1\n", false, "start").log
		want := strings.Replace(startLog(defaultCommand), defaultCommand, defaultCommand+"\nprocd_append_param [command][--lan][br-lan,wlan1]", 1)
		if got != want {
			t.Errorf("%s, lan set:\n got: %s\nwant: %s", sh.name, got, want)
		}
	}
}

// TestInitPullInstance: pull_url adds a second instance polling the
// operator's server with the agent's directories; without it, none.
func TestInitPullInstance(t *testing.T) {
	for _, sh := range shells(t) {
		got := runInit(t, sh, "main.pull_url=https://cpe.example.net/fg/default\nmain.pull_interval=2h\n", false, "start").log
		want := argvLine("/usr/sbin/famguard", "pull", "--url", "https://cpe.example.net/fg/default", "--interval", "2h",
			"--profiles", "/etc/famguard/profiles.d", "--categories", "/etc/famguard/categories.d", "--state", "/var/run/famguard")
		if !strings.Contains(got, "procd_open_instance [pull]\n"+want+"\nprocd_set_param [respawn][3600][60][0]") {
			t.Errorf("%s: no pull instance:\n%s\nwant:\n%s", sh.name, got, want)
		}
	}
}
