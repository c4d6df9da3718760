package main

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// The "$1$" hash as `openssl passwd -1 -salt abcdefgh secret` prints it.
func TestMD5CryptMatchesOpenSSL(t *testing.T) {
	const want = "$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1"
	if got := md5Crypt("secret", "abcdefgh$"); got != want {
		t.Fatalf("md5Crypt = %s, want %s", got, want)
	}
	if !checkPassword(want, "secret") || checkPassword(want, "Secret") {
		t.Fatal("checkPassword does not tell the right password from a wrong one")
	}
	if checkPassword("$p$parent", "anything") {
		t.Fatal("a $p$ (shadow) entry must refuse: the emulator cannot check it")
	}
}

func repoRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// The package's real acl.d file: a parent login (read + write on "famguard")
// may call every method; a read-only login only status and devices; a login
// without famguard's groups nothing of famguard.
func TestGrantsFromThePackagesACL(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "openwrt/famguard/files/rpcd-acl.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "famguard.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	groups, err := loadACLs(dir)
	if err != nil {
		t.Fatal(err)
	}
	conf := `
config login
	option username 'parent'
	option password '$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1'
	list read 'famguard'
	list write 'famguard'

config login
	option username 'viewer'
	option password 'view'
	list read 'famguard-read'

config login
	option username 'other'
	option password 'other'
	list read 'luci-*'
	list write 'luci-*'
`
	logins, err := parseRPCDConfig(strings.NewReader(conf))
	if err != nil || len(logins) != 3 {
		t.Fatalf("parse: %v, %d logins", err, len(logins))
	}
	writes := []string{"pause", "resume", "grant", "budget", "assign"}
	for _, tc := range []struct {
		login       login
		read, write bool
	}{{logins[0], true, true}, {logins[1], true, false}, {logins[2], false, false}} {
		g, _ := grantsFor(tc.login, groups)
		for _, m := range []string{"status", "devices"} {
			if g.allowed("famguard", m) != tc.read {
				t.Errorf("%s: famguard.%s allowed = %v, want %v", tc.login.Username, m, !tc.read, tc.read)
			}
		}
		for _, m := range writes {
			if g.allowed("famguard", m) != tc.write {
				t.Errorf("%s: famguard.%s allowed = %v, want %v", tc.login.Username, m, !tc.write, tc.write)
			}
		}
		if g.allowed("session", "destroy") != tc.read {
			t.Errorf("%s: session.destroy (log out) allowed = %v, want %v", tc.login.Username, !tc.read, tc.read)
		}
		if g.allowed("famguard", "cleanup") {
			t.Errorf("%s: a method outside the ACL is allowed", tc.login.Username)
		}
	}
}
