package bundle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/famguard/famguard/agent/fetch"
)

// Pull mode, for setups without an ACS: a router polls a plain file server
// (what `famguard-bundle build --publish DIR` writes):
//
//	URL/manifest.json   small: read every poll
//	URL/bundle.tar.gz   read only when the manifest's serial is above the
//	                    installed one
//
// The published manifest is only a hint: the bundle carries its own signed
// copy, which is what is verified and applied, so a forged or stale hint
// can cost a download but never change the policy. Polls are spread over
// time (a random start offset and a jittered interval) so that a million
// routers booting after a power cut do not hit the server in the same
// second.

// Getter downloads a URL into w, at most max bytes (agent/fetch in
// production, a fake in tests).
type Getter interface {
	Fetch(ctx context.Context, url string, w io.Writer, max int64) error
}

// PullConfig is the pull mode's configuration.
type PullConfig struct {
	URL      string        // base URL (a trailing / is optional)
	Interval time.Duration // mean time between polls
	Jitter   float64       // 0..1: each wait is Interval × (1 ± Jitter)
	Get      Getter
	Import   Config
	// Report receives every poll's outcome (the import result when a
	// bundle was fetched).
	Report func(PullResult)
	// Sleep waits (tests replace it); it returns early with ctx's error.
	Sleep func(ctx context.Context, d time.Duration) error
	Rand  func() float64 // [0,1); default math/rand
}

// PullResult is one poll.
type PullResult struct {
	At        time.Time `json:"at"`
	URL       string    `json:"url"`
	OK        bool      `json:"ok"`
	Serial    uint64    `json:"serial,omitempty"`    // the server's
	Installed uint64    `json:"installed,omitempty"` // ours, before
	Fetched   bool      `json:"fetched"`             // the bundle was downloaded
	Error     string    `json:"error,omitempty"`
	Import    *Result   `json:"import,omitempty"`
}

// errImportDone is how the import stops a download it no longer reads.
var errImportDone = errors.New("the import stopped reading")

// maxManifest bounds the published manifest.
const maxManifest = 1 << 20

// PollOnce reads the manifest and, when its serial is new, fetches and
// imports the bundle.
func PollOnce(ctx context.Context, pc PullConfig) PullResult {
	cfg := pc.Import
	if cfg.Limits == (Limits{}) {
		cfg.Limits = DefaultLimits
	}
	base := strings.TrimSuffix(pc.URL, "/")
	res := PullResult{At: cfg.now(), URL: base}
	var buf bytes.Buffer
	if err := pc.Get.Fetch(ctx, base+"/"+ManifestName, &buf, maxManifest); err != nil {
		res.Error = "manifest: " + err.Error()
		return res
	}
	m, rej := ParseManifest(buf.Bytes(), cfg.Limits)
	if rej != nil {
		res.Error = "manifest: " + rej.Error()
		return res
	}
	res.Serial = m.Serial
	newer := false
	for _, t := range m.Targets() {
		var inst uint64
		if im, ok := Installed(cfg.dir(t)); ok {
			inst = im.Serial
		}
		res.Installed = max(res.Installed, inst)
		if m.Serial > inst {
			newer = true
		}
	}
	if !newer {
		res.OK = true
		return res
	}
	// Stream the download into the import: nothing is buffered whole, and
	// an import that refuses early stops the download.
	pr, pw := io.Pipe()
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ferr := make(chan error, 1)
	go func() {
		err := pc.Get.Fetch(fctx, base+"/"+PublishedBundle, pw, cfg.Limits.MaxArchive)
		pw.CloseWithError(errOr(err, io.EOF))
		ferr <- err
	}()
	r := Import(pr, base+"/"+PublishedBundle, cfg)
	pr.CloseWithError(errImportDone)
	cancel()
	fe := <-ferr
	res.Fetched = true
	res.Import = &r
	switch {
	case r.OK:
		res.OK = true
	case fe != nil && !errors.Is(fe, context.Canceled) && !errors.Is(fe, errImportDone):
		// The import saw a broken stream; the fetcher knows why.
		code := CodeFetch
		if errors.Is(fe, fetch.ErrTooLarge) {
			code = CodeTooLarge
		}
		r.Error = reject(code, "downloading the bundle: %v", fe)
		res.Error = r.Error.Error()
	default:
		res.Error = r.Error.Error()
	}
	return res
}

func errOr(err, def error) error {
	if err != nil {
		return err
	}
	return def
}

// Poll runs PollOnce for ever: after a random share of the interval, then
// every Interval ± Jitter, until ctx ends.
func Poll(ctx context.Context, pc PullConfig) error {
	if pc.Interval <= 0 {
		return fmt.Errorf("pull interval %v: must be positive", pc.Interval)
	}
	if pc.Sleep == nil {
		pc.Sleep = sleepCtx
	}
	if pc.Rand == nil {
		pc.Rand = rand.Float64
	}
	if err := pc.Sleep(ctx, time.Duration(pc.Rand()*float64(pc.Interval))); err != nil {
		return err
	}
	for {
		r := PollOnce(ctx, pc)
		if pc.Report != nil {
			pc.Report(r)
		}
		if err := pc.Sleep(ctx, NextWait(pc.Interval, pc.Jitter, pc.Rand())); err != nil {
			return err
		}
	}
}

// NextWait is interval × (1 ± jitter), with u uniform in [0,1).
func NextWait(interval time.Duration, jitter, u float64) time.Duration {
	jitter = min(max(jitter, 0), 1)
	return time.Duration(float64(interval) * (1 + jitter*(2*u-1)))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
