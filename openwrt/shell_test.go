package openwrt

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// repo is the repository root, seen from this package's directory.
const repo = ".."

// files is where the package's files are.
var files = filepath.Join(repo, "openwrt", "famguard", "files")

// need reports a missing tool: a skip normally, a failure in CI, where
// scripts/install-deps.sh must have installed it.
func need(t *testing.T, tool, debianPackage string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not installed (Debian package %s; scripts/install-deps.sh installs it)", tool, debianPackage)
	}
	t.Skipf("%s not installed (apt-get install %s)", tool, debianPackage)
}

// shell is one POSIX shell to run the scripts under: argv prefix.
type shell struct {
	name string
	argv []string
}

// shells are busybox sh (OpenWrt's /bin/sh is busybox ash) and, when
// installed, dash. busybox is required.
func shells(t *testing.T) []shell {
	t.Helper()
	var sh []shell
	if p, err := exec.LookPath("busybox"); err == nil {
		sh = append(sh, shell{"busybox", []string{p, "sh"}})
	} else {
		need(t, "busybox", "busybox")
	}
	if p, err := exec.LookPath("dash"); err == nil {
		sh = append(sh, shell{"dash", []string{p}})
	}
	return sh
}

// busybox is the busybox sh argv (the shell OpenWrt runs these scripts in).
func busybox(t *testing.T) []string {
	t.Helper()
	p, err := exec.LookPath("busybox")
	if err != nil {
		need(t, "busybox", "busybox")
	}
	return []string{p, "sh"}
}

// run runs argv with env added to a minimal environment and returns its
// combined output; it fails the test on a non-zero exit unless allowFail.
func run(t *testing.T, argv []string, env []string, allowFail bool) (string, int) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "LC_ALL=C"}, env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("%v: %v", argv, err)
		}
		code = ee.ExitCode()
		if !allowFail {
			t.Fatalf("%v: exit %d\n%s", argv, code, out.String())
		}
	}
	return out.String(), code
}

// write creates a file (and its directory) with the given mode.
func write(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// read returns a file's content ("" when it does not exist).
func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// stub writes an executable that appends "NAME ARGS" to log and exits with
// code (after sleeping, when sleep is not "").
func stub(t *testing.T, path, log string, code int, sleep string) {
	t.Helper()
	body := "#!/bin/sh\nprintf '%s\\n' \"" + filepath.Base(path) + " $*\" >>'" + log + "'\n"
	if sleep != "" {
		body += "sleep " + sleep + "\n"
	}
	body += "exit " + strconv.Itoa(code) + "\n"
	write(t, path, body, 0o755)
}

// waitFor polls until path's content contains want, or fails after 5 s.
func waitFor(t *testing.T, path, want string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := read(t, path)
		if strings.Contains(got, want) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: waited 5s for %q, have %q", path, want, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// copyReplacing copies a shipped script to dir, with each old string
// replaced by its new one (absolute router paths → test stand-ins).
func copyReplacing(t *testing.T, src, dst string, oldNew ...string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.NewReplacer(oldNew...).Replace(string(b))
	write(t, dst, s, 0o755)
}
