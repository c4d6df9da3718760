package openwrt

import (
	"bytes"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// parentLogin is famguard-parent-login in a fake router: the recording uci
// (over an /etc/config/rpcd that has root's login), a recording uhttpd whose
// -m prints "$1$fake$" and the password in hex (so the test sees exactly what
// reached it), and a recording /etc/init.d/rpcd.
type parentLogin struct {
	script, log string
	uci         uciEnv
}

// rootLogin is /etc/config/rpcd's own login, which must never change.
const rootLogin = `rpcd.cfg01=login
rpcd.cfg01.password=$p$root
rpcd.cfg01.read=*
rpcd.cfg01.username=root
rpcd.cfg01.write=*
`

func newParentLogin(t *testing.T) parentLogin {
	t.Helper()
	p := parentLogin{uci: newUCI(t, rootLogin)}
	p.log = filepath.Join(p.uci.dir, "calls.log")
	write(t, filepath.Join(p.uci.dir, "bin", "uhttpd"), `#!/bin/sh
printf '%s\n' "uhttpd $*" >>'`+p.log+`'
[ "$1" = -m ] || exit 1
[ -n "$FG_UHTTPD_FAIL" ] && exit 1
printf '$1$fake$%s\n' "$(printf '%s' "$2" | od -An -tx1 | tr -d ' \n')"
`, 0o755)
	rpcd := filepath.Join(p.uci.dir, "rpcd.init")
	stub(t, rpcd, p.log, 0, "")
	p.script = filepath.Join(p.uci.dir, "famguard-parent-login")
	copyReplacing(t, filepath.Join(files, "famguard-parent-login"), p.script, "/etc/init.d/rpcd", rpcd)
	return p
}

// run runs the script under sh with stdin, and returns its output and exit code.
func (p parentLogin) run(t *testing.T, sh []string, stdin string, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(sh[0], append(append(append([]string{}, sh[1:]...), p.script), args...)...)
	cmd.Env = append(append([]string{"LC_ALL=C"}, p.uci.env...), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), 0
}

// sortLines sorts a state file's lines: the fake uci keeps them sorted, so a
// comparison does not depend on where a key sorts.
func sortLines(s string) string {
	l := strings.SplitAfter(s, "\n")
	sort.Strings(l)
	return strings.Join(l, "")
}

// parentState is the rpcd config after a login USER with password PW.
func parentState(user, pw string) string {
	sec := "rpcd.famguard_" + user
	return sec + "=login\n" +
		sec + ".password=$1$fake$" + hex.EncodeToString([]byte(pw)) + "\n" +
		sec + ".read=famguard\n" +
		sec + ".username=" + user + "\n" +
		sec + ".write=famguard\n"
}

func TestParentLogin(t *testing.T) {
	for _, sh := range shells(t) {
		p := newParentLogin(t)
		pw := "  correct horse \\battery $HOME 'x'  " // spaces, a backslash, $ and quotes kept as typed
		out, code := p.run(t, sh.argv, pw+"\n", nil, "parent")
		if code != 0 || !strings.Contains(out, `"parent" may now log in`) {
			t.Fatalf("%s: exit %d:\n%s", sh.name, code, out)
		}
		if got, want := sortLines(read(t, p.uci.state)), sortLines(rootLogin+parentState("parent", pw)); got != want {
			t.Errorf("%s: /etc/config/rpcd:\n%s\nwant:\n%s", sh.name, got, want)
		}
		if got := read(t, p.log); got != "uhttpd -m "+pw+"\nrpcd.init reload\n" {
			t.Errorf("%s: calls:\n%q", sh.name, got)
		}
		// The password reaches uhttpd only, never uci (or the configuration).
		if ulog := read(t, p.uci.log); strings.Contains(ulog, "correct horse") || !strings.HasSuffix(ulog, "uci commit rpcd\n") {
			t.Errorf("%s: uci calls:\n%s", sh.name, ulog)
		}

		// Again: a new password for the same login, not a second login; the
		// last line needs no newline; the default user name is "parent".
		pw2 := "another long passphrase"
		if out, code := p.run(t, sh.argv, pw2, nil); code != 0 {
			t.Fatalf("%s: second run: exit %d:\n%s", sh.name, code, out)
		}
		if got, want := sortLines(read(t, p.uci.state)), sortLines(rootLogin+parentState("parent", pw2)); got != want {
			t.Errorf("%s: after a password change:\n%s\nwant:\n%s", sh.name, got, want)
		}
		// A second parent beside the first.
		if out, code := p.run(t, sh.argv, pw+"\n", nil, "mum_2"); code != 0 {
			t.Fatalf("%s: mum_2: exit %d:\n%s", sh.name, code, out)
		}
		if got := read(t, p.uci.state); sortLines(got) != sortLines(rootLogin+parentState("mum_2", pw)+parentState("parent", pw2)) {
			t.Errorf("%s: two parents:\n%s", sh.name, got)
		}
	}
}

// Refused: nothing written, nothing reloaded, a message that says what to do.
func TestParentLoginRefuses(t *testing.T) {
	for _, sh := range shells(t) {
		for _, tc := range []struct {
			name, stdin string
			args, env   []string
			want        string
		}{
			{"short password", "elevenchars\n", []string{"parent"}, nil, "at least 12 characters"},
			{"empty stdin", "", []string{"parent"}, nil, "at least 12 characters"},
			{"root", "a long enough password\n", []string{"root"}, nil, "router's own login"},
			{"bad name", "a long enough password\n", []string{"Mum Smith"}, nil, "lowercase letters"},
			{"dotted name", "a long enough password\n", []string{"x.read"}, nil, "lowercase letters"},
			{"password as argument", "", []string{"parent", "hunter2hunter2"}, nil, "read from standard input"},
			{"uhttpd fails", "a long enough password\n", []string{"parent"}, []string{"FG_UHTTPD_FAIL=1"}, "uhttpd -m failed"},
		} {
			p := newParentLogin(t)
			out, code := p.run(t, sh.argv, tc.stdin, tc.env, tc.args...)
			if code == 0 || !strings.Contains(out, tc.want) || !strings.Contains(out, "famguard-parent-login: ") {
				t.Errorf("%s, %s: exit %d, output %q; want a failure saying %q", sh.name, tc.name, code, out, tc.want)
			}
			if got := read(t, p.uci.state); sortLines(got) != sortLines(rootLogin) {
				t.Errorf("%s, %s: /etc/config/rpcd changed:\n%s", sh.name, tc.name, got)
			}
			if strings.Contains(read(t, p.log), "reload") || read(t, p.uci.log) != "" {
				t.Errorf("%s, %s: ran %q and uci %q", sh.name, tc.name, read(t, p.log), read(t, p.uci.log))
			}
		}
	}
}

// famguard-www's postinst and postrm (as the .ipk ships them, which is the
// feed's block): reload rpcd (so it loads, or drops, the famguard object and
// ACL) and LuCI's menu cache; say how to make the parents' login; nothing
// when building an image.
func TestWWWMaintainerScripts(t *testing.T) {
	sh := busybox(t)
	for _, wrapped := range []bool{false, true} {
		root := t.TempDir()
		scripts, log := filepath.Join(root, "scripts"), filepath.Join(root, "calls.log")
		run(t, []string{"bash", filepath.Join(repo, "scripts", "ipk.sh"), "maintainer-scripts", scripts, "famguard-www"}, nil, false)
		if _, err := os.Stat(filepath.Join(scripts, "prerm")); !os.IsNotExist(err) {
			t.Errorf("famguard-www has a prerm: %v", err)
		}
		stub(t, filepath.Join(root, "rpcd.init"), log, 0, "")
		for _, s := range []string{"postinst", "postrm"} {
			p := filepath.Join(scripts, s)
			copyReplacing(t, p, p, "/etc/init.d/rpcd", root+"/rpcd.init", "/tmp/luci-", root+"/tmp/luci-")
		}
		for _, tc := range []struct {
			script, action, want string
		}{
			{"postinst", "configure", "famguard-parent-login parent"},
			{"postrm", "remove", ""},
		} {
			write(t, filepath.Join(root, "tmp", "luci-indexcache.abc.json"), "{}", 0o644)
			write(t, filepath.Join(root, "tmp", "luci-modulecache", "x"), "", 0o644)
			if err := os.Remove(log); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			argv := append(append([]string{}, sh...), filepath.Join(scripts, tc.script), tc.action)
			var env []string
			if wrapped {
				argv = append(append([]string{}, sh...), "-c", `default_x() { ( . "$FG_SCRIPT" ); }; default_x "$@"`, "sh", "/usr/lib/opkg/info/famguard-www."+tc.script, tc.action)
				env = []string{"FG_SCRIPT=" + filepath.Join(scripts, tc.script)}
			}
			out, _ := run(t, argv, env, false)
			if tc.want == "" && out != "" || !strings.Contains(out, tc.want) {
				t.Errorf("wrapped=%v: %s output %q, want %q", wrapped, tc.script, out, tc.want)
			}
			if got := read(t, log); got != "rpcd.init reload\n" {
				t.Errorf("wrapped=%v: %s ran %q", wrapped, tc.script, got)
			}
			if m, _ := filepath.Glob(filepath.Join(root, "tmp", "luci-*")); len(m) != 0 {
				t.Errorf("wrapped=%v: %s left LuCI's caches: %v", wrapped, tc.script, m)
			}
			// Building an image: nothing runs, nothing printed.
			if err := os.Remove(log); err != nil {
				t.Fatal(err)
			}
			if out, _ := run(t, argv, append(env, "IPKG_INSTROOT="+t.TempDir()), false); out != "" || read(t, log) != "" {
				t.Errorf("wrapped=%v: %s in an image build: output %q, ran %q", wrapped, tc.script, out, read(t, log))
			}
		}
	}
}
