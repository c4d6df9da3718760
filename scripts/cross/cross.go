// Package cross builds famguard's static router binaries exactly as `make
// cross` does and runs them under qemu-user (Debian's qemu-user-static), so
// the tests can run the mips, mipsle, arm and arm64 builds on an amd64
// machine: the comparison test in this package, and the lab scenario in
// scripts/e2e that runs the mipsle build as the agent.
//
// The qemu binaries are run directly (`qemu-mipsel-static ./famguard ...`);
// nothing depends on binfmt_misc being registered on the machine.
package cross

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// Target is one router build.
type Target struct {
	GOARCH string   // also the suffix of dist/famguard-linux-<GOARCH>
	Env    []string // extra build environment (GOMIPS, GOARM), as in the Makefile's CROSS
	Qemu   string   // the qemu-user-static binary that runs it
}

// Routers are the router builds, with the settings of the Makefile's CROSS
// list (keep the two in step).
var Routers = []Target{
	{GOARCH: "mips", Env: []string{"GOMIPS=softfloat"}, Qemu: "qemu-mips-static"},
	{GOARCH: "mipsle", Env: []string{"GOMIPS=softfloat"}, Qemu: "qemu-mipsel-static"},
	{GOARCH: "arm", Env: []string{"GOARM=7"}, Qemu: "qemu-arm-static"},
	{GOARCH: "arm64", Qemu: "qemu-aarch64-static"},
}

// Router returns the router target for goarch.
func Router(goarch string) Target {
	for _, t := range Routers {
		if t.GOARCH == goarch {
			return t
		}
	}
	panic("cross: no router target " + goarch)
}

// Host is the machine's own build, the reference the router builds are
// compared with.
var Host = Target{GOARCH: runtime.GOARCH}

// RepoRoot is the repository root (found from the working directory, which
// is the package directory under `go test`).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cross: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Version is the version stamp of the build: FAMGUARD_VERSION when set (the
// Makefile passes its own $(VERSION)), else what the Makefile computes,
// `git describe --tags --always --dirty`, else "dev".
func Version(root string) string {
	if v := os.Getenv("FAMGUARD_VERSION"); v != "" {
		return v
	}
	cmd := exec.Command("git", "describe", "--tags", "--always", "--dirty")
	cmd.Dir = root
	out, err := cmd.Output()
	if v := strings.TrimSpace(string(out)); err == nil && v != "" {
		return v
	}
	return "dev"
}

func goTool() string {
	if g := os.Getenv("GO"); g != "" {
		return g
	}
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// Build builds ./agent/cmd/famguard for t into dir/famguard-linux-<GOARCH>
// with the Makefile's flags (CGO_ENABLED=0, -trimpath, -s -w, the version
// stamp) and returns its path. The go build cache makes a rebuild of
// unchanged sources a matter of milliseconds, so "reuse if fresh" is the
// build cache's job, not ours.
func Build(ctx context.Context, root, version, dir string, t Target) (string, error) {
	out := filepath.Join(dir, "famguard-linux-"+t.GOARCH)
	cmd := exec.CommandContext(ctx, goTool(), "build", "-trimpath", "-ldflags", "-s -w -X main.version="+version,
		"-o", out, "./agent/cmd/famguard")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+t.GOARCH)
	cmd.Env = append(cmd.Env, t.Env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building for %s (%s): %v\n%s", t.GOARCH, strings.Join(t.Env, " "), err, b)
	}
	return out, nil
}

// BuildAll builds every target, two at a time, and returns their paths by
// GOARCH.
func BuildAll(ctx context.Context, root, version, dir string, targets []Target) (map[string]string, error) {
	paths := map[string]string{}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	sem := make(chan struct{}, 2)
	for _, t := range targets {
		wg.Add(1)
		go func(t Target) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			p, err := Build(ctx, root, version, dir, t)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			paths[t.GOARCH] = p
		}(t)
	}
	wg.Wait()
	return paths, errors.Join(errs...)
}

// RequireQemu returns the path of t's qemu-user binary. When it is missing
// the test is skipped with a message naming the package to install, or,
// with CI=true, fails: CI must run the router builds, not skip them.
func RequireQemu(tb testing.TB, t Target) string {
	tb.Helper()
	if p, err := exec.LookPath(t.Qemu); err == nil {
		return p
	}
	msg := fmt.Sprintf("%s not found: the %s build cannot run here (install Debian's qemu-user-static: scripts/install-deps.sh)", t.Qemu, t.GOARCH)
	if os.Getenv("CI") == "true" {
		tb.Fatal(msg + "; CI must run the router builds, not skip them")
	}
	tb.Skip(msg)
	return ""
}

// Command returns the argv that runs bin with args: under qemu when t has a
// qemu binary (qemu path given), directly otherwise.
func Command(qemu, bin string, args ...string) []string {
	if qemu == "" {
		return append([]string{bin}, args...)
	}
	return append([]string{qemu, bin}, args...)
}

// Result is what one run printed and how it ended.
type Result struct {
	Stdout, Stderr []byte
	Exit           int
}

// Run runs argv in dir with exactly env (nothing inherited) and returns its
// output and exit status; err is set only when it could not be run at all.
func Run(ctx context.Context, dir string, env []string, argv []string) (Result, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = env
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	r := Result{Stdout: out.Bytes(), Stderr: stderr.Bytes()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Exited():
		r.Exit = ee.ExitCode()
	default:
		return r, fmt.Errorf("%s: %v (stderr: %s)", strings.Join(argv, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return r, nil
}
