package control

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestRoundTripAndPermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := Listen(dir, func(_ context.Context, cmd string, args []string) (any, error) {
		switch cmd {
		case "echo":
			return map[string]any{"args": args}, nil
		default:
			return nil, errors.New("unknown command " + cmd)
		}
	})
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
	var got struct{ Args []string }
	if err := Call(cctx, dir, "echo a b", &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Args) != 2 || got.Args[0] != "a" || got.Args[1] != "b" {
		t.Errorf("echo returned %v", got.Args)
	}
	if err := Call(cctx, dir, "nope", nil); err == nil || err.Error() != "agent: unknown command nope" {
		t.Errorf("unknown command error = %v", err)
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
	srv, err := Listen(dir, func(context.Context, string, []string) (any, error) { return "ok", nil })
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
