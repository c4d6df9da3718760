// Package fetch downloads URLs through the router's own fetcher program:
// uclient-fetch (OpenWrt's), else wget (busybox's or GNU), else curl.
//
// Why exec and not net/http: the router binary's size budget cannot carry
// Go's HTTP and TLS stacks (about 9 MB on mipsle), and the router already
// has a fetcher linked against the system's TLS library and CA store, kept
// up to date by the distribution. famguard only reads what the program
// writes to standard output, through a byte bound: when a download exceeds
// it, the program is killed, so a 100 MB answer costs at most the bound.
//
// Authenticity does not depend on the transport: bundles are signed
// (agent/bundle), so plain HTTP, a broken CA store or a captive portal can
// delay an update but never change the policy.
package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Fetcher is one fetcher program and how it is called.
type Fetcher struct {
	Prog string // path or name
	Kind string // uclient-fetch, wget or curl: decides the arguments
	// Timeout bounds one download (the whole of it).
	Timeout time.Duration
}

// Programs is the search order.
var Programs = []string{"uclient-fetch", "wget", "curl"}

// ErrTooLarge is returned when a download exceeds its bound.
var ErrTooLarge = errors.New("download larger than its bound")

// Detect finds the first fetcher on PATH (lookPath is exec.LookPath in
// production). prog, when set, names the program to use (--fetcher).
func Detect(prog string, lookPath func(string) (string, error)) (Fetcher, error) {
	if prog != "" {
		p, err := lookPath(prog)
		if err != nil {
			return Fetcher{}, fmt.Errorf("fetcher %q: %v", prog, err)
		}
		return Fetcher{Prog: p, Kind: kindOf(prog), Timeout: 5 * time.Minute}, nil
	}
	for _, name := range Programs {
		if p, err := lookPath(name); err == nil {
			return Fetcher{Prog: p, Kind: name, Timeout: 5 * time.Minute}, nil
		}
	}
	return Fetcher{}, fmt.Errorf("no fetcher: install uclient-fetch (opkg install uclient-fetch, and libustream-* for https), wget or curl")
}

func kindOf(prog string) string {
	base := prog[strings.LastIndex(prog, "/")+1:]
	for _, k := range Programs {
		if strings.HasPrefix(base, k) {
			return k
		}
	}
	if strings.HasPrefix(base, "busybox") {
		return "wget" // `--fetcher busybox` is not a fetcher; but busybox-wget links are
	}
	return "curl"
}

// Args are the program's arguments to write url to standard output, quiet,
// failing on HTTP errors.
func (f Fetcher) Args(url string, max int64) []string {
	secs := strconv.Itoa(int(f.Timeout.Seconds()))
	switch f.Kind {
	case "uclient-fetch":
		return []string{"-q", "-T", secs, "-O", "-", url}
	case "wget":
		// No -T: Debian's busybox 1.35 wget crashes (SIGSEGV) with it
		// (seen in the pull lab); Fetch's own deadline kills a stuck
		// download instead.
		return []string{"-q", "-O", "-", url}
	}
	return []string{"-fsS", "--max-time", secs, "--max-filesize", strconv.FormatInt(max, 10), "-o", "-", url}
}

// Fetch writes url to w, at most max bytes; more kills the program and
// returns ErrTooLarge.
func (f Fetcher) Fetch(ctx context.Context, url string, w io.Writer, max int64) error {
	ctx, cancel := context.WithTimeout(ctx, f.Timeout+10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, f.Prog, f.Args(url, max)...)
	var stderr bytes.Buffer
	cmd.Stderr = &limitedBuffer{b: &stderr, max: 2048}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %v", f.Prog, err)
	}
	n, cerr := io.Copy(w, io.LimitReader(out, max+1))
	if cerr == nil && n > max {
		cerr = ErrTooLarge
	}
	if cerr != nil {
		cancel() // kill the program: nothing more is read
		cmd.Wait()
		if cerr == ErrTooLarge {
			return fmt.Errorf("%s: more than %d bytes: %w", url, max, ErrTooLarge)
		}
		return cerr
	}
	if err := cmd.Wait(); err != nil {
		var ee *exec.ExitError
		if f.Kind == "curl" && errors.As(err, &ee) && ee.ExitCode() == 63 { // --max-filesize
			return fmt.Errorf("%s: more than %d bytes (curl: %s): %w", url, max, strings.TrimSpace(stderr.String()), ErrTooLarge)
		}
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = "no message"
		}
		return fmt.Errorf("%s %s failed (%v): %s", f.Kind, url, err, msg)
	}
	return nil
}

// limitedBuffer keeps the first max bytes of a program's error output.
type limitedBuffer struct {
	b   *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.b.Len(); room > 0 {
		if len(p) > room {
			l.b.Write(p[:room])
		} else {
			l.b.Write(p)
		}
	}
	return len(p), nil
}
