package openwrt

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The NTP hotplug script, sourced the way hotplug-call does it, with the
// famguard binary replaced by a recording stand-in. "wait" collects the
// backgrounded notify, so nothing is left to chance.
func TestNTPHotplug(t *testing.T) {
	for _, sh := range shells(t) {
		for _, tc := range []struct {
			env    []string
			notify bool
		}{
			{[]string{"ACTION=stratum", "stratum=2"}, true},
			{[]string{"ACTION=stratum"}, true},
			{[]string{"ACTION=stratum", "stratum=16"}, false}, // 16: not synchronised
			{[]string{"ACTION=step"}, false},
			{[]string{"ACTION=unsync"}, false},
			{[]string{"ACTION=periodic", "stratum=2"}, false},
			{nil, false},
		} {
			dir := t.TempDir()
			bin, log := filepath.Join(dir, "famguard"), filepath.Join(dir, "log")
			stub(t, bin, log, 0, "")
			script := filepath.Join(dir, "50-famguard")
			copyReplacing(t, filepath.Join(files, "ntp.hotplug"), script, "/usr/sbin/famguard", bin)
			// hotplug-call sources each script; wait collects the notify.
			argv := append(append([]string{}, sh.argv...), "-c", `. "$1"; wait`, "hotplug-call", script)
			out, _ := run(t, argv, tc.env, false)
			got := read(t, log)
			want := ""
			if tc.notify {
				want = "famguard notify clock-synced\n"
			}
			if got != want || out != "" {
				t.Errorf("%s %v: famguard called with %q (want %q), output %q", sh.name, tc.env, got, want, out)
			}
		}
	}
}

// The firewall include: pokes the agent, exits 0 at once whatever happens,
// and never holds fw4's output open.
func TestFirewallInclude(t *testing.T) {
	for _, sh := range shells(t) {
		for _, tc := range []struct {
			name  string
			code  int
			sleep string
			bin   bool
		}{
			{"agent answers", 0, "", true},
			{"famguard fails", 1, "", true},
			{"famguard hangs", 0, "5", true},
			{"famguard missing", 0, "", false},
		} {
			dir := t.TempDir()
			bin, log := filepath.Join(dir, "famguard"), filepath.Join(dir, "log")
			if tc.bin {
				stub(t, bin, log, tc.code, tc.sleep)
			}
			script := filepath.Join(dir, "firewall.include")
			copyReplacing(t, filepath.Join(files, "firewall.include"), script, "/usr/sbin/famguard", bin)
			begin := time.Now()
			// run() waits for the output pipe too: a poke that kept fw4's
			// stdout open would hold this for the stand-in's whole sleep.
			out, code := run(t, append(append([]string{}, sh.argv...), script), nil, true)
			took := time.Since(begin)
			if code != 0 || out != "" {
				t.Errorf("%s, %s: exit %d, output %q; want 0 and nothing", sh.name, tc.name, code, out)
			}
			if took > 2500*time.Millisecond {
				t.Errorf("%s, %s: the include took %v; fw4 must never wait for famguard", sh.name, tc.name, took)
			}
			if tc.bin {
				waitFor(t, log, "famguard notify firewall\n")
			} else if _, err := os.Stat(log); err == nil {
				t.Errorf("%s, %s: something ran", sh.name, tc.name)
			}
		}
	}
}

// fakeUCI is a stand-in for the uci command over a "key=value" state file,
// enough for the package's scripts: [-q] get/set/delete/add_list/commit
// (a list is one line per item). Every call is logged.
const fakeUCI = `#!/bin/sh
printf '%s\n' "uci $*" >>"$FG_UCI_LOG"
[ "$1" = -q ] && shift
touch "$FG_UCI_STATE"
case "$1" in
get)
	while IFS= read -r line; do
		case "$line" in "$2="*) printf '%s\n' "${line#*=}"; exit 0 ;; esac
	done <"$FG_UCI_STATE"
	exit 1 ;;
set)
	key=${2%%=*}
	grep -v -F -e "$key=" "$FG_UCI_STATE" >"$FG_UCI_STATE.new"
	printf '%s\n' "$2" >>"$FG_UCI_STATE.new"
	sort "$FG_UCI_STATE.new" >"$FG_UCI_STATE"; rm -f "$FG_UCI_STATE.new" ;;
delete)
	grep -q -e "^$2=" -e "^$2\." "$FG_UCI_STATE" || exit 1
	grep -v -e "^$2=" -e "^$2\." "$FG_UCI_STATE" >"$FG_UCI_STATE.new"
	mv "$FG_UCI_STATE.new" "$FG_UCI_STATE" ;;
add_list)
	printf '%s\n' "$2" >>"$FG_UCI_STATE"
	sort "$FG_UCI_STATE" >"$FG_UCI_STATE.new"; mv "$FG_UCI_STATE.new" "$FG_UCI_STATE" ;;
commit) ;;
*) exit 1 ;;
esac
`

type uciEnv struct {
	dir, state, log string
	env             []string
}

func newUCI(t *testing.T, state string) uciEnv {
	t.Helper()
	dir := t.TempDir()
	u := uciEnv{dir: dir, state: filepath.Join(dir, "state"), log: filepath.Join(dir, "uci.log")}
	write(t, filepath.Join(dir, "bin", "uci"), fakeUCI, 0o755)
	write(t, u.state, state, 0o644)
	u.env = []string{"PATH=" + filepath.Join(dir, "bin") + ":" + os.Getenv("PATH"), "FG_UCI_STATE=" + u.state, "FG_UCI_LOG=" + u.log}
	return u
}

// The include on a router with fw4 (OpenWrt 22.03 and later): no `reload`
// option, which fw4 warns about on every start, restart and reload.
const wantInclude = `firewall.famguard.fw4_compatible=1
firewall.famguard.path=/usr/share/famguard/firewall.include
firewall.famguard.type=script
firewall.famguard=include
`

// The include with fw3 (21.02 and older), which runs it on reloads only with
// `reload 1`.
const wantIncludeFW3 = `firewall.famguard.fw4_compatible=1
firewall.famguard.path=/usr/share/famguard/firewall.include
firewall.famguard.reload=1
firewall.famguard.type=script
firewall.famguard=include
`

// uciDefaults is the uci-defaults script as on a router with fw4 (when fw4
// is true: /sbin/fw4 is a stand-in) or fw3 (no fw4 at all).
func uciDefaults(t *testing.T, fw4 bool) string {
	t.Helper()
	dir := t.TempDir()
	stand := filepath.Join(dir, "fw4")
	if fw4 {
		write(t, stand, "#!/bin/sh\nexit 0\n", 0o755)
	}
	script := filepath.Join(dir, "famguard.uci-defaults")
	copyReplacing(t, filepath.Join(files, "famguard.uci-defaults"), script, "fw4=/sbin/fw4", "fw4="+stand)
	return script
}

func TestUCIDefaultsAddsIncludeIdempotently(t *testing.T) {
	for _, fw := range []struct {
		name string
		fw4  bool
		want string
	}{{"fw4", true, wantInclude}, {"fw3", false, wantIncludeFW3}} {
		script := uciDefaults(t, fw.fw4)
		for _, sh := range shells(t) {
			// uci-defaults scripts are sourced in a subshell (by /etc/init.d/boot
			// and by default_postinst): ( . ./script ).
			argv := append(append([]string{}, sh.argv...), "-c", `( . "$1" )`, "uci-defaults", script)
			other := "firewall.lan=zone\n"
			u := newUCI(t, other)
			run(t, argv, u.env, false)
			if got := read(t, u.state); got != fw.want+other {
				t.Errorf("%s, %s: firewall config after first run:\n%s\nwant:\n%s", fw.name, sh.name, got, fw.want+other)
			}
			if !strings.HasSuffix(read(t, u.log), "uci commit firewall\n") {
				t.Errorf("%s, %s: not committed:\n%s", fw.name, sh.name, read(t, u.log))
			}
			// Again: nothing changes, nothing is written or committed.
			before := read(t, u.log)
			run(t, argv, u.env, false)
			if got := read(t, u.state); got != fw.want+other {
				t.Errorf("%s, %s: second run changed the config:\n%s", fw.name, sh.name, got)
			}
			for _, l := range strings.Split(strings.TrimPrefix(read(t, u.log), before), "\n") {
				if l != "" && !strings.HasPrefix(l, "uci -q get ") {
					t.Errorf("%s, %s: second run did more than read: %q", fw.name, sh.name, l)
				}
			}
			// An include left half-written or pointing elsewhere is repaired.
			u = newUCI(t, "firewall.famguard=include\nfirewall.famguard.path=/old/path\n")
			run(t, argv, u.env, false)
			if got := read(t, u.state); got != fw.want {
				t.Errorf("%s, %s: stale include not repaired:\n%s", fw.name, sh.name, got)
			}
		}
	}
	// An older famguard set `reload` under fw4 (the warning on every firewall
	// start): it goes, and nothing else changes.
	script := uciDefaults(t, true)
	for _, sh := range shells(t) {
		u := newUCI(t, wantIncludeFW3)
		run(t, append(append([]string{}, sh.argv...), "-c", `( . "$1" )`, "uci-defaults", script), u.env, false)
		if got := read(t, u.state); got != wantInclude {
			t.Errorf("%s: the fw3-only reload option stays under fw4:\n%s", sh.name, got)
		}
	}
}

// maintainer is a fake router root for the postinst/prerm/postrm blocks of
// the feed Makefile (extracted by scripts/ipk.sh as the .ipk ships them):
// /etc/init.d/famguard and /usr/sbin/famguard are recording stand-ins.
type maintainer struct {
	root, scripts, log string
	uci                uciEnv
}

func newMaintainer(t *testing.T) maintainer {
	t.Helper()
	m := maintainer{root: t.TempDir(), uci: newUCI(t, wantInclude)}
	m.log = filepath.Join(m.root, "calls.log")
	m.scripts = filepath.Join(m.root, "scripts")
	run(t, []string{"bash", filepath.Join(repo, "scripts", "ipk.sh"), "maintainer-scripts", m.scripts}, nil, false)
	// The init script stand-in: `enabled` answers from a marker file.
	write(t, filepath.Join(m.root, "etc", "init.d", "famguard"), `#!/bin/sh
printf '%s\n' "init.d/famguard $*" >>'`+m.log+`'
[ "$1" = enabled ] && { [ -e '`+m.root+`/enabled' ]; exit; }
[ "$1" = enable ] && touch '`+m.root+`/enabled'
[ "$1" = disable ] && rm -f '`+m.root+`/enabled'
exit 0
`, 0o755)
	stub(t, filepath.Join(m.root, "usr", "sbin", "famguard"), m.log, 0, "")
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		p := filepath.Join(m.scripts, s)
		copyReplacing(t, p, p,
			"/etc/init.d/famguard", m.root+"/etc/init.d/famguard",
			"/usr/sbin/famguard", m.root+"/usr/sbin/famguard",
			"/etc/uci-defaults/", m.root+"/etc/uci-defaults/")
	}
	return m
}

// runScript runs a maintainer script as opkg does (sh -c "SCRIPT ARGS"), or,
// with wrapped, the way OpenWrt's default_postinst/default_prerm source the
// feed package's block: inside a function whose first argument is the
// wrapper's path.
func (m maintainer) runScript(t *testing.T, sh []string, name string, wrapped bool, env []string, args ...string) {
	t.Helper()
	argv := append(append([]string{}, sh...), filepath.Join(m.scripts, name))
	if wrapped {
		argv = append(append([]string{}, sh...), "-c", `default_x() { ( . "$FG_SCRIPT" ); }; default_x "$@"`, "sh", "/usr/lib/opkg/info/famguard."+name)
		env = append(env, "FG_SCRIPT="+filepath.Join(m.scripts, name))
	}
	argv = append(argv, args...)
	if out, _ := run(t, argv, append(append([]string{}, m.uci.env...), env...), false); out != "" {
		t.Errorf("%s %v: output %q", name, args, out)
	}
}

func TestMaintainerScriptsRemoveCleansUp(t *testing.T) {
	sh := busybox(t)
	for _, wrapped := range []bool{false, true} {
		m := newMaintainer(t)
		m.runScript(t, sh, "prerm", wrapped, []string{"PKG_UPGRADE=0"}, "remove")
		if got, want := read(t, m.log), "init.d/famguard stop\ninit.d/famguard disable\nfamguard cleanup\n"; got != want {
			t.Errorf("wrapped=%v: prerm remove ran:\n%swant:\n%s", wrapped, got, want)
		}
		m.runScript(t, sh, "postrm", wrapped, []string{"PKG_UPGRADE=0"}, "remove")
		if got := read(t, m.uci.state); got != "" {
			t.Errorf("wrapped=%v: postrm remove left the firewall include:\n%s", wrapped, got)
		}
		if !strings.Contains(read(t, m.uci.log), "uci commit firewall") {
			t.Errorf("wrapped=%v: postrm did not commit the firewall config", wrapped)
		}
	}
}

func TestMaintainerScriptsUpgradeKeepsProtection(t *testing.T) {
	sh := busybox(t)
	for _, wrapped := range []bool{false, true} {
		m := newMaintainer(t)
		write(t, filepath.Join(m.root, "enabled"), "", 0o644)
		// opkg: old prerm "upgrade NEW", old postrm "upgrade NEW", new postinst "configure".
		m.runScript(t, sh, "prerm", wrapped, []string{"PKG_UPGRADE=1"}, "upgrade", "0.2.0-1")
		m.runScript(t, sh, "postrm", wrapped, []string{"PKG_UPGRADE=1"}, "upgrade", "0.2.0-1")
		m.runScript(t, sh, "postinst", wrapped, []string{"PKG_UPGRADE=1"}, "configure")
		if got, want := read(t, m.log), "init.d/famguard stop\ninit.d/famguard enabled\ninit.d/famguard restart\n"; got != want {
			t.Errorf("wrapped=%v: upgrade ran:\n%swant:\n%s", wrapped, got, want)
		}
		if got := read(t, m.uci.state); got != wantInclude {
			t.Errorf("wrapped=%v: upgrade touched the firewall include:\n%s", wrapped, got)
		}
		// "upgrade" alone (no PKG_UPGRADE in the environment) is enough.
		m = newMaintainer(t)
		m.runScript(t, sh, "prerm", wrapped, nil, "upgrade", "0.2.0-1")
		m.runScript(t, sh, "postrm", wrapped, nil, "upgrade", "0.2.0-1")
		if got := read(t, m.log); got != "init.d/famguard stop\n" || read(t, m.uci.state) != wantInclude {
			t.Errorf("wrapped=%v: upgrade without PKG_UPGRADE ran %q", wrapped, got)
		}
	}
	// An upgrade of a service the user disabled leaves it disabled and stopped.
	m := newMaintainer(t)
	m.runScript(t, sh, "postinst", false, []string{"PKG_UPGRADE=1"}, "configure")
	if got := read(t, m.log); got != "init.d/famguard enabled\n" {
		t.Errorf("upgrade of a disabled service ran %q", got)
	}
}

func TestMaintainerScriptsFreshInstall(t *testing.T) {
	sh := busybox(t)
	m := newMaintainer(t)
	u := newUCI(t, "")
	m.uci = u
	copyReplacing(t, uciDefaults(t, true), filepath.Join(m.root, "etc", "uci-defaults", "90-famguard"))
	m.runScript(t, sh, "postinst", false, []string{"PKG_UPGRADE=0"}, "configure")
	if got, want := read(t, m.log), "init.d/famguard enable\ninit.d/famguard enabled\ninit.d/famguard restart\n"; got != want {
		t.Errorf("fresh install ran:\n%swant:\n%s", got, want)
	}
	if got := read(t, u.state); got != wantInclude {
		t.Errorf("fresh install: firewall include:\n%s", got)
	}
	if _, err := os.Stat(filepath.Join(m.root, "etc", "uci-defaults", "90-famguard")); !os.IsNotExist(err) {
		t.Errorf("the uci-defaults script was not removed after running: %v", err)
	}
}

// Building an image (IPKG_INSTROOT): only the boot link, with the init
// script's START; nothing runs.
func TestMaintainerScriptsImageBuild(t *testing.T) {
	sh := busybox(t)
	m := newMaintainer(t)
	// The scripts as shipped: their paths are under $IPKG_INSTROOT here.
	run(t, []string{"bash", filepath.Join(repo, "scripts", "ipk.sh"), "maintainer-scripts", m.scripts}, nil, false)
	img := t.TempDir()
	copyReplacing(t, filepath.Join(files, "famguard.init"), filepath.Join(img, "etc", "init.d", "famguard"))
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		m.runScript(t, sh, s, false, []string{"IPKG_INSTROOT=" + img}, "configure")
	}
	if got := read(t, m.log); got != "" {
		t.Errorf("image build ran %q", got)
	}
	link, err := os.Readlink(filepath.Join(img, "etc", "rc.d", "S21famguard"))
	if err != nil || link != "../init.d/famguard" {
		t.Errorf("boot link: %q, %v", link, err)
	}
}
