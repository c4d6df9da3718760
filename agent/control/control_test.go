package control

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestRoundTripAndPermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := Listen(dir, echoHandler)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ctx)

	fi, err := os.Stat(SocketPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("socket mode %o, want 600 (root-only)", perm)
	}
	di, _ := os.Stat(dir)
	if perm := di.Mode().Perm(); perm != 0o700 {
		t.Errorf("state dir mode %o, want 700", perm)
	}

	cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
	defer ccancel()
	var got struct{ Args map[string]string }
	if err := Do(cctx, dir, "echo", map[string]string{"a": "b"}, &got); err != nil {
		t.Fatal(err)
	}
	if got.Args["a"] != "b" {
		t.Errorf("echo returned %v", got.Args)
	}
	var e *Error
	if err := Call(cctx, dir, "nope", nil); !errors.As(err, &e) || e.Code != CodeUnknownCommand || e.Message != "unknown command nope" {
		t.Errorf("unknown command error = %#v", err)
	}

	// A second agent on the same state directory must refuse to start.
	if _, err := Listen(dir, nil); err == nil {
		t.Error("second Listen on a live socket succeeded; want an error")
	}
}

func TestCallWithoutAgent(t *testing.T) {
	err := Call(context.Background(), t.TempDir(), "status", nil)
	if !errors.Is(err, ErrNotRunning) {
		t.Fatalf("err = %v, want ErrNotRunning", err)
	}
}

func TestStaleSocketIsReplaced(t *testing.T) {
	dir := t.TempDir()
	// A regular file where the socket should be, as a killed agent may leave.
	if err := os.WriteFile(SocketPath(dir), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := Listen(dir, func(context.Context, Request) (any, error) { return "ok", nil })
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go srv.Serve(ctx)
	var s string
	if err := Call(ctx, dir, "x", &s); err != nil || s != "ok" {
		t.Fatalf("Call = %q, %v", s, err)
	}
	cancel()
}

// TestOthersCannotConnect: a process that is not root cannot talk to the
// agent, even when the state directory itself was left open to everyone
// (pre-created by someone else with mode 0755): the socket is 0600 from the
// moment it exists. The attempt is made as user nobody: on one locked OS
// thread the file-system user ID (what a unix socket's connect checks) is
// switched, which also drops CAP_DAC_OVERRIDE for that thread.
func TestOthersCannotConnect(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root (to act as another user); CI runs as root")
		}
		t.Skip("needs root to act as user nobody")
	}
	// Every directory on the way must be traversable by others, or the
	// test would only show that nobody cannot reach the path at all.
	base, err := os.MkdirTemp("/tmp", "famguard-control-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "state")
	if err := os.Mkdir(dir, 0o755); err != nil { // lax, as someone else left it
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := Listen(dir, func(context.Context, Request) (any, error) { return "secret family data", nil })
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ctx)

	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		unix.Setfsuid(65534)
		unix.Setfsgid(65534)
		c, err := net.Dial("unix", SocketPath(dir))
		if err == nil {
			c.Close()
		}
		errc <- err
	}()
	if err := <-errc; err == nil || !errors.Is(err, syscall.EACCES) {
		t.Errorf("user nobody connecting: %v; want permission denied", err)
	}
	// Root still can.
	cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
	defer ccancel()
	var got string
	if err := Call(cctx, dir, "status", &got); err != nil || got != "secret family data" {
		t.Errorf("root's call: %q, %v", got, err)
	}
}
