package openwrt

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestInitCommandLineRunsTheRealAgent: the command lines the init script
// declares (shipped defaults and every option changed) are accepted by the
// real agent, which starts, applies the shipped default profile and reports
// the options it was given. The stand-in tests above prove what the script
// declares; this proves the agent understands it. The router's paths are
// moved into a temporary directory and the agent runs in a private network
// namespace (unshare -n): nothing of the host is touched. procd logs the
// agent's stdout at info and its stderr at err (the init script sets both):
// routine lines must go to the first and warnings and errors to the second,
// or every line shows as daemon.err in logread.
func TestInitCommandLineRunsTheRealAgent(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root (a private network namespace with iptables); CI runs as root")
		}
		t.Skip("needs root: runs the agent in a private network namespace")
	}
	bin, err := filepath.Abs(filepath.Join("..", "bin", "famguard"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s not built: run `make build` first (make test does)", bin)
	}
	for _, tc := range []struct {
		name    string
		command string
		logs    []string // what the agent's log must show it took from the flags
		errs    []string // warnings it must give (on stderr: procd's err)
	}{
		{"defaults", defaultCommand, []string{"boot_policy=saved", "DNS filter listening", "port=5354", "memory limit set"}, nil},
		{"changed options", changedCommand, []string{"boot_policy=offline", "DNS filtering is off", "MiB=48"}, []string{"DNS filtering is off"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			argv := strings.Split(strings.TrimSuffix(strings.TrimPrefix(tc.command, "procd_set_param [command]["), "]"), "][")
			for i, a := range argv {
				switch {
				case a == "/usr/sbin/famguard":
					argv[i] = bin
				case strings.HasPrefix(a, "/"): // a router path: the same path under root
					argv[i] = filepath.Join(root, a)
				}
			}
			for i := 0; i+1 < len(argv); i++ {
				switch argv[i] {
				case "--profiles":
					if err := os.MkdirAll(argv[i+1], 0o755); err != nil {
						t.Fatal(err)
					}
					data, err := os.ReadFile(filepath.Join(files, "family.yaml"))
					if err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(filepath.Join(argv[i+1], "family.yaml"), data, 0o644); err != nil {
						t.Fatal(err)
					}
				case "--saved-state":
					if err := os.MkdirAll(filepath.Dir(argv[i+1]), 0o755); err != nil {
						t.Fatal(err)
					}
				}
			}
			cmd := exec.Command("unshare", append([]string{"-n", "--"}, argv...)...)
			var mu sync.Mutex
			var log, info, errs bytes.Buffer // both streams; stdout (procd: info); stderr (procd: err)
			cmd.Stdout = writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); info.Write(p); return log.Write(p) })
			cmd.Stderr = writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); errs.Write(p); return log.Write(p) })
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			defer func() {
				_ = cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-done:
				case <-time.After(5 * time.Second):
					_ = cmd.Process.Kill()
					<-done
				}
			}()
			text := func() string { mu.Lock(); defer mu.Unlock(); return log.String() }
			deadline := time.Now().Add(10 * time.Second)
			for !strings.Contains(text(), "policy ") || !strings.Contains(text(), " loaded: ") {
				select {
				case err := <-done:
					done <- err
					t.Fatalf("the agent exited (%v) with the init script's command line:\n%s", err, text())
				default:
				}
				if time.Now().After(deadline) {
					t.Fatalf("no policy applied within 10 s:\n%s", text())
				}
				time.Sleep(20 * time.Millisecond)
			}
			for _, want := range tc.logs {
				if !strings.Contains(text(), want) {
					t.Errorf("the agent's log does not show %q:\n%s", want, text())
				}
			}
			mu.Lock()
			infoText, errText := info.String(), errs.String()
			mu.Unlock()
			if !strings.Contains(infoText, " loaded: ") {
				t.Errorf("the policy load (info) is not on stdout, which procd logs at info:\n%s", infoText)
			}
			for _, l := range strings.Split(strings.TrimSpace(infoText), "\n") {
				if !strings.Contains(l, "level=INFO") && !strings.Contains(l, "level=DEBUG") {
					t.Errorf("stdout (procd: info) has a line that is not info or debug: %q", l)
				}
			}
			for _, l := range strings.Split(strings.TrimSpace(errText), "\n") {
				if l != "" && !strings.Contains(l, "level=WARN") && !strings.Contains(l, "level=ERROR") {
					t.Errorf("stderr (procd: err) has a routine line: %q", l)
				}
			}
			for _, want := range tc.errs {
				if !strings.Contains(errText, want) {
					t.Errorf("the warning %q is not on stderr (procd: err):\nstderr:\n%s", want, errText)
				}
			}
		})
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
