package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/famguard/famguard/agent/bundle"
	"github.com/famguard/famguard/agent/fetch"
)

const (
	defaultOperator = "/etc/famguard/operator.d"
	defaultKeys     = "/etc/famguard/keys.d"
	// lastImportName is the last import's result in the state directory
	// (tmpfs): status and status.json show it.
	lastImportName = "last-import.json"
)

// bundleFlags are the paths import and pull share.
type bundleFlags struct {
	operator, categories, profiles, keys, state *string
	maxSize                                     *int64
}

func addBundleFlags(fs interface {
	String(name, value, usage string) *string
	Int64(name string, value int64, usage string) *int64
}) bundleFlags {
	return bundleFlags{
		operator:   fs.String("operator", defaultOperator, "the operator layer directory (target operator/)"),
		categories: fs.String("categories", defaultCategories, "the category lists directory (target categories/)"),
		profiles:   fs.String("profiles", defaultProfiles, "the parents' profiles: the whole policy is validated with the bundle"),
		keys:       fs.String("keys", defaultKeys, "directory of trusted usign/signify public keys (*.pub)"),
		state:      fs.String("state", defaultState, "the agent's --state directory (the result is kept there for status)"),
		maxSize:    fs.Int64("max-size", bundle.DefaultLimits.MaxArchive, "largest bundle accepted, in bytes"),
	}
}

func (f bundleFlags) config() bundle.Config {
	lim := bundle.DefaultLimits
	lim.MaxArchive = *f.maxSize
	return bundle.Config{OperatorDir: *f.operator, CategoriesDir: *f.categories, ProfilesDir: *f.profiles, KeysDir: *f.keys, Limits: lim}
}

func cmdImport(args []string, out io.Writer) error {
	fs := newFlagSet("import")
	bf := addBundleFlags(fs)
	force := fs.Bool("force", false, "accept a serial not above the installed one (root only: a deliberate rollback)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("expected one bundle file or - for standard input (usage: famguard import [flags] BUNDLE)")
	}
	cfg := bf.config()
	if *force {
		if os.Geteuid() != 0 {
			return errors.New("--force is for root only: it lets an older bundle replace a newer one")
		}
		cfg.Force = true
	}
	var res bundle.Result
	if pos[0] == "-" {
		res = bundle.Import(os.Stdin, "stdin", cfg)
	} else {
		res = bundle.ImportFile(pos[0], cfg)
	}
	report(res, *bf.state, "import")
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		enc.Encode(res)
	} else {
		printImport(out, res)
	}
	if !res.OK {
		return exitError(1)
	}
	return nil
}

func printImport(out io.Writer, r bundle.Result) {
	if r.OK {
		fmt.Fprintf(out, "imported %s: serial %d, %d files into %s, signed by key %s; policy %s\n",
			r.Source, r.Serial, r.Files, strings.Join(r.Targets, " and "), r.KeyID, orDash(r.Policy))
	} else {
		fmt.Fprintf(out, "refused %s: %s\nnothing was changed\n", r.Source, r.Error.Error())
	}
	for _, w := range r.Warnings {
		fmt.Fprintln(out, "warning: "+w)
	}
}

// report keeps the result for status (state dir) and logs it to syslog,
// where the router's other logs are (logread): a push that cron or an ACS
// ran is visible without its output.
func report(r bundle.Result, stateDir, verb string) {
	keepJSON(stateDir, lastImportName, r)
	w, err := syslog.New(syslog.LOG_DAEMON|syslog.LOG_INFO, "famguard-"+verb)
	if err != nil {
		return // no syslog (tests, containers): the caller prints the result
	}
	defer w.Close()
	if r.OK {
		w.Info(fmt.Sprintf("bundle %s imported: serial %d, targets %s, key %s, policy %s", r.Source, r.Serial, strings.Join(r.Targets, ","), r.KeyID, orDash(r.Policy)))
		for _, x := range r.Warnings {
			w.Warning("bundle " + r.Source + ": " + x)
		}
		return
	}
	w.Err(fmt.Sprintf("bundle %s refused (%s): %s", r.Source, r.Error.Code, strings.ReplaceAll(r.Error.Error(), "\n", "; ")))
}

// lastPullName is the last poll's outcome in the state directory.
const lastPullName = "last-pull.json"

func cmdPull(args []string, out io.Writer) error {
	fs := newFlagSet("pull")
	bf := addBundleFlags(fs)
	url := fs.String("url", "", "base URL of the operator's bundle server (URL/manifest.json, URL/bundle.tar.gz)")
	interval := fs.Duration("interval", 6*time.Hour, "mean time between polls")
	jitter := fs.Float64("jitter", 0.5, "each wait is interval × (1 ± jitter), and the first poll comes after a random part of the interval, so routers do not poll in step")
	once := fs.Bool("once", false, "poll once now and exit (cron, tests); exit 1 if the poll failed")
	prog := fs.String("fetcher", "", "fetcher program (default: the first of uclient-fetch, wget, curl on PATH)")
	timeout := fs.Duration("timeout", 5*time.Minute, "bound on one download")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *url == "" {
		return errors.New("--url is required (usage: famguard pull --url URL [--interval 6h] [--once])")
	}
	f, err := fetch.Detect(*prog, exec.LookPath)
	if err != nil {
		return err
	}
	f.Timeout = *timeout
	pc := bundle.PullConfig{URL: *url, Interval: *interval, Jitter: *jitter, Get: f, Import: bf.config()}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	pc.Report = func(r bundle.PullResult) {
		keepJSON(*bf.state, lastPullName, r)
		switch {
		case r.Import != nil:
			report(*r.Import, *bf.state, "pull")
			if r.Import.OK {
				log.Info("bundle imported", "url", r.URL, "serial", r.Serial, "policy", r.Import.Policy, "warnings", len(r.Import.Warnings))
			} else {
				log.Error("bundle refused; nothing changed", "url", r.URL, "serial", r.Serial, "reason", r.Error)
			}
		case r.Error != "":
			log.Error("poll failed; the policy in force stays", "url", r.URL, "err", r.Error)
		default:
			log.Debug("nothing new", "url", r.URL, "serial", r.Serial, "installed", r.Installed)
		}
	}
	log.Info("pulling bundles", "url", *url, "fetcher", f.Prog, "interval", *interval, "jitter", *jitter)
	if *once {
		r := bundle.PollOnce(context.Background(), pc)
		pc.Report(r)
		fmt.Fprintf(out, "server serial %d, installed %d, fetched %v, ok %v %s\n", r.Serial, r.Installed, r.Fetched, r.OK, r.Error)
		if !r.OK {
			return exitError(1)
		}
		return nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := bundle.Poll(ctx, pc); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// keepJSON writes v as name in the state directory, atomically.
func keepJSON(stateDir, name string, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil || stateDir == "" || os.MkdirAll(stateDir, 0o755) != nil {
		return
	}
	tmp := filepath.Join(stateDir, "."+name+".tmp")
	if os.WriteFile(tmp, append(b, '\n'), 0o644) == nil {
		os.Rename(tmp, filepath.Join(stateDir, name))
	}
}

// printBundleStatus adds the last import and pull to `famguard status`.
func printBundleStatus(out io.Writer, stateDir string) {
	var imp bundle.Result
	if b, err := os.ReadFile(filepath.Join(stateDir, lastImportName)); err == nil && json.Unmarshal(b, &imp) == nil {
		fmt.Fprintln(out)
		if imp.OK {
			fmt.Fprintf(out, "Import:   %s: serial %d into %s, key %s, at %s\n", imp.Source, imp.Serial, strings.Join(imp.Targets, ","), imp.KeyID, imp.At.Format(time.RFC3339))
		} else if imp.Error != nil {
			fmt.Fprintf(out, "Import:   %s REFUSED at %s (%s): %s\n", imp.Source, imp.At.Format(time.RFC3339), imp.Error.Code, imp.Error.Msg)
			for _, p := range imp.Error.Problems {
				fmt.Fprintf(out, "          %s\n", p)
			}
		}
	}
	var pull bundle.PullResult
	if b, err := os.ReadFile(filepath.Join(stateDir, lastPullName)); err == nil && json.Unmarshal(b, &pull) == nil {
		state := "ok"
		if !pull.OK {
			state = "FAILED: " + pull.Error
		}
		fmt.Fprintf(out, "Pull:     %s at %s: server serial %d, installed %d, %s\n", pull.URL, pull.At.Format(time.RFC3339), pull.Serial, pull.Installed, state)
	}
}
