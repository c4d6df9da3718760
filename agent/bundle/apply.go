package bundle

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/famguard/famguard/agent/categories"
	"github.com/famguard/famguard/agent/policy"
)

// staging is a bundle's files written beside their target directories,
// not yet in force.
type staging struct {
	m       *Manifest
	targets []string          // in apply order
	real    map[string]string // target → its directory (symlinks resolved)
	dirs    map[string]string // target → staging directory
	swapped []string          // targets exchanged so far (undone on failure)
	created map[string]bool   // targets that did not exist before the swap
	warn    []string
}

// lockName is a lock file beside the target directories: one import at a
// time (a pull and a manual import cannot interleave their serial checks
// and swaps).
const lockName = ".famguard-import.lock"

// lock takes the import lock in the directory holding the targets.
func lock(cfg *Config) (*os.File, error) {
	dir := cfg.OperatorDir
	if dir == "" {
		dir = cfg.CategoriesDir
	}
	parent := filepath.Dir(filepath.Clean(dir))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(parent, lockName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	cleanStale(parent)
	return f, nil
}

func newStaging(cfg *Config, m *Manifest, manifest, sig []byte) (*staging, error) {
	st := &staging{m: m, targets: m.Targets(), real: map[string]string{}, dirs: map[string]string{}, created: map[string]bool{}}
	for _, t := range st.targets {
		dir := filepath.Clean(cfg.dir(t))
		if r, err := filepath.EvalSymlinks(dir); err == nil {
			dir = r
		} else if !errors.Is(err, os.ErrNotExist) {
			return st, err
		}
		parent := filepath.Dir(dir)
		if err := os.MkdirAll(parent, 0o755); err != nil {
			return st, err
		}
		var rnd [6]byte
		rand.Read(rnd[:])
		sd := filepath.Join(parent, "."+filepath.Base(dir)+".staging-"+hex.EncodeToString(rnd[:]))
		if err := os.Mkdir(sd, 0o755); err != nil {
			return st, err
		}
		st.real[t], st.dirs[t] = dir, sd
		if err := writeSynced(filepath.Join(sd, InstalledName), manifest); err != nil {
			return st, err
		}
		if err := writeSynced(filepath.Join(sd, InstalledSigName), sig); err != nil {
			return st, err
		}
	}
	return st, nil
}

// cleanStale removes staging directories an interrupted import left.
func cleanStale(parent string) {
	entries, _ := os.ReadDir(parent)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") && strings.Contains(e.Name(), ".staging-") {
			os.RemoveAll(filepath.Join(parent, e.Name()))
		}
	}
}

func writeSynced(name string, data []byte) error {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// write streams one payload file into its staging directory through its
// hash.
func (st *staging) write(f File, r io.Reader, raw *countingReader) *Rejection {
	name := filepath.Join(st.dirs[f.Target()], f.Name())
	out, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return reject(CodeApply, "cannot stage %s: %v", f.Path, err)
	}
	sum, err := hashingCopy(out, r, f.Size)
	if err == nil {
		err = out.Sync()
	}
	out.Close()
	if err != nil {
		return corrupt(raw, err)
	}
	if sum != f.SHA256 {
		return reject(CodeHash, "%s: SHA-256 %s does not match the manifest's %s (corrupted or altered after signing)", f.Path, sum, f.SHA256)
	}
	return nil
}

func (st *staging) finish() error {
	for _, d := range st.dirs {
		if err := syncDir(d); err != nil {
			return err
		}
	}
	return nil
}

func syncDir(d string) error {
	f, err := os.Open(d)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// validate checks the staged content exactly like hand-edited files: the
// whole policy (staged operator layer, or the installed one, with the
// parents' profiles) and every staged category list.
func (st *staging) validate(cfg *Config, res *Result) *Rejection {
	catDir := cfg.CategoriesDir
	if d, ok := st.dirs[TargetCategories]; ok {
		catDir = d
		var probs []string
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			if _, ok := categories.ListFile(e.Name()); !ok {
				continue
			}
			if p := checkList(filepath.Join(d, e.Name())); p != "" {
				probs = append(probs, "categories/"+e.Name()+": "+p)
			}
		}
		if len(probs) > 0 {
			return &Rejection{Code: CodeInvalid, Msg: "category lists are not valid; the lists in force stay", Problems: probs}
		}
	}
	opDir := cfg.OperatorDir
	if d, ok := st.dirs[TargetOperator]; ok {
		opDir = d
	}
	if cfg.ProfilesDir == "" && opDir == "" {
		return nil
	}
	pol, err := policy.Load(opDir, cfg.ProfilesDir)
	if err != nil && opDir != "" {
		// The parents' own files may be broken independently of this
		// bundle (the daemon then keeps its last good policy): that must
		// not block the operator's push, so judge the operator layer alone.
		if _, perr := policy.Load("", cfg.ProfilesDir); perr != nil {
			if _, oerr := policy.LoadDir(opDir); oerr == nil {
				res.Warnings = append(res.Warnings, "the parents' profiles have problems of their own (famguard check "+cfg.ProfilesDir+"); the operator layer was validated alone and the daemon keeps its last good policy until the parents' files are fixed")
				return nil
			}
		}
	}
	if err != nil {
		rej := &Rejection{Code: CodeInvalid, Msg: "the policy with this bundle is not valid; the policy in force stays"}
		var probs policy.Problems
		if errors.As(err, &probs) {
			for _, p := range probs {
				rej.Problems = append(rej.Problems, st.bundlePath(p.String()))
			}
		} else {
			rej.Problems = []string{st.bundlePath(err.Error())}
		}
		return rej
	}
	res.Policy = pol.Digest
	for _, w := range pol.Warnings {
		res.Warnings = append(res.Warnings, st.bundlePath(w.String()))
	}
	if avail, err := categories.Available(catDir); err == nil {
		for _, p := range pol.MissingCategories(catDir, avail) {
			res.Warnings = append(res.Warnings, st.bundlePath(p.String()))
		}
	} else if len(pol.Categories()) > 0 {
		res.Warnings = append(res.Warnings, fmt.Sprintf("categories %v are named but there is no list directory (%v): they block nothing until lists arrive", pol.Categories(), err))
	}
	return nil
}

// bundlePath rewrites staging paths in a message to bundle paths.
func (st *staging) bundlePath(s string) string {
	for t, d := range st.dirs {
		s = strings.ReplaceAll(s, d+string(filepath.Separator), "bundle:"+t+"/")
		s = strings.ReplaceAll(s, d, "bundle:"+t)
	}
	return s
}

// checkList says what is wrong with a category list, or "".
func checkList(name string) string {
	f, err := os.Open(name)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	good := 0
	bad, err := categories.ReadList(f, func(string) { good++ })
	switch {
	case err != nil:
		return err.Error()
	case good == 0:
		return fmt.Sprintf("no domain in it (%d lines that are not domains): a list must name at least one domain", bad)
	case bad > good:
		return fmt.Sprintf("%d lines are not domains and only %d are: is this the right file (an HTML error page)?", bad, good)
	}
	return ""
}

// swap puts every staged directory in place with an atomic exchange; if a
// later target fails, the earlier ones are exchanged back.
func (st *staging) swap() *Rejection {
	for _, t := range st.targets {
		if _, err := os.Lstat(st.real[t]); errors.Is(err, os.ErrNotExist) {
			st.created[t] = true
		}
		if err := st.exchange(t); err != nil {
			st.undo()
			return reject(CodeApply, "cannot put %s in place: %v; nothing changed", st.real[t], err)
		}
		st.swapped = append(st.swapped, t)
	}
	for _, t := range st.targets {
		old := st.dirs[t]
		if _, err := os.Stat(old); err != nil {
			continue // the target did not exist before
		}
		prev := filepath.Join(filepath.Dir(st.real[t]), "."+filepath.Base(st.real[t])+".prev")
		os.RemoveAll(prev)
		if err := os.Rename(old, prev); err != nil {
			st.warn = append(st.warn, fmt.Sprintf("the replaced %s could not be kept as %s: %v", st.real[t], prev, err))
		}
		syncDir(filepath.Dir(st.real[t]))
	}
	st.swapped = nil
	return nil
}

func (st *staging) undo() {
	for i := len(st.swapped) - 1; i >= 0; i-- {
		t := st.swapped[i]
		if st.created[t] {
			os.Rename(st.real[t], st.dirs[t])
		} else {
			st.exchange(t)
		}
	}
	st.swapped = nil
}

// exchange swaps a target's staged and live directories atomically
// (renameat2 RENAME_EXCHANGE): at every instant the target is either all old
// or all new. A target that does not exist yet is created by a plain
// rename. On a filesystem without RENAME_EXCHANGE it falls back to two
// renames, with a moment without the directory (warned: the loaders then
// read no operator layer, or no lists, until the second rename).
func (st *staging) exchange(t string) error {
	staged, target := st.dirs[t], st.real[t]
	if st.created[t] {
		return os.Rename(staged, target)
	}
	err := unix.Renameat2(unix.AT_FDCWD, staged, unix.AT_FDCWD, target, unix.RENAME_EXCHANGE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		st.warn = append(st.warn, fmt.Sprintf("%s: the filesystem has no atomic exchange (%v); swapped with two renames", target, err))
		tmp := staged + ".swap"
		if err := os.Rename(target, tmp); err != nil {
			return err
		}
		if err := os.Rename(staged, target); err != nil {
			os.Rename(tmp, target)
			return err
		}
		return os.Rename(tmp, staged)
	}
	return err
}

func (st *staging) discard() {
	if st == nil {
		return
	}
	for _, d := range st.dirs {
		os.RemoveAll(d)
	}
}
