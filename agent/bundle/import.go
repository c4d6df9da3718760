package bundle

import (
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Config says where a bundle goes and what it is checked against.
type Config struct {
	OperatorDir   string // target "operator"
	CategoriesDir string // target "categories"
	ProfilesDir   string // the parents' layer: the whole policy is validated
	KeysDir       string // trusted public keys (*.pub)
	Limits        Limits
	Force         bool // accept a serial not above the installed one (root, locally)
	Now           func() time.Time
}

func (c *Config) dir(target string) string {
	if target == TargetOperator {
		return c.OperatorDir
	}
	return c.CategoriesDir
}

// Result is what an import did, for the log, status and the caller.
type Result struct {
	At       time.Time  `json:"at"`
	Source   string     `json:"source"` // file or URL
	OK       bool       `json:"ok"`
	Serial   uint64     `json:"serial,omitempty"`
	Targets  []string   `json:"targets,omitempty"`
	KeyID    string     `json:"key_id,omitempty"`
	Files    int        `json:"files,omitempty"`
	Forced   bool       `json:"forced,omitempty"`
	Policy   string     `json:"policy,omitempty"` // digest of the policy with the bundle applied
	Warnings []string   `json:"warnings,omitempty"`
	Error    *Rejection `json:"error,omitempty"`
}

// LoadKeys reads every *.pub in dir. A key file that cannot be parsed is
// reported (and skipped) rather than silently ignored.
func LoadKeys(dir string) ([]PublicKey, []string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	var keys []PublicKey
	var bad []string
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".pub") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := readBounded(filepath.Join(dir, e.Name()), maxKeyFile)
		if err == nil {
			var k PublicKey
			if k, err = ParsePublicKey(b); err == nil {
				keys = append(keys, k)
				continue
			}
		}
		bad = append(bad, fmt.Sprintf("%s: %v (skipped)", filepath.Join(dir, e.Name()), err))
	}
	return keys, bad, nil
}

func readBounded(name string, max int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err == nil && int64(len(b)) > max {
		err = fmt.Errorf("larger than %d bytes", max)
	}
	return b, err
}

// Installed reads the manifest installed in a target directory; ok is
// false when none is (the directory was never written by a bundle).
func Installed(dir string) (*Manifest, bool) {
	b, err := readBounded(filepath.Join(dir, InstalledName), 1<<20)
	if err != nil {
		return nil, false
	}
	m, rej := ParseManifest(b, Limits{MaxUnpacked: 1 << 62, MaxFiles: 1 << 30, MaxProfileFile: 1 << 62, MaxListFile: 1 << 62})
	if rej != nil {
		return nil, false
	}
	return m, true
}

// ImportFile imports the bundle at path; its size is checked before
// anything is read.
func ImportFile(path string, cfg Config) Result {
	if cfg.Limits == (Limits{}) {
		cfg.Limits = DefaultLimits
	}
	res := Result{At: cfg.now(), Source: path}
	f, err := os.Open(path)
	if err != nil {
		res.Error = reject(CodeCorrupt, "cannot open the bundle: %v", err)
		return res
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		res.Error = reject(CodeCorrupt, "%s is not a regular file", path)
		return res
	}
	if fi.Size() > cfg.Limits.MaxArchive {
		res.Error = reject(CodeTooLarge, "the bundle is %d bytes; at most %d are accepted (raise the limit only if your lists really need it)", fi.Size(), cfg.Limits.MaxArchive)
		return res
	}
	return Import(f, path, cfg)
}

func (c *Config) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Import verifies and applies a bundle read from r (at most
// Limits.MaxArchive bytes are read). Nothing changes unless the result is
// OK.
func Import(r io.Reader, source string, cfg Config) Result {
	res := Result{At: cfg.now(), Source: source, Forced: cfg.Force}
	if cfg.Limits == (Limits{}) {
		cfg.Limits = DefaultLimits
	}
	lk, err := lock(&cfg)
	if err != nil {
		res.Error = reject(CodeApply, "cannot take the import lock: %v", err)
		return res
	}
	defer lk.Close()
	st, rej := verifyAndStage(r, &cfg, &res)
	if rej != nil {
		if st != nil {
			st.discard()
		}
		res.Error = rej
		return res
	}
	defer st.discard()
	if rej := st.validate(&cfg, &res); rej != nil {
		res.Error = rej
		return res
	}
	rej = st.swap()
	res.Warnings = append(res.Warnings, st.warn...)
	if rej != nil {
		res.Error = rej
		return res
	}
	res.OK = true
	return res
}

// countingReader fails once more than max bytes were read.
type countingReader struct {
	r    io.Reader
	n    int64
	max  int64
	what string
}

var errTooLarge = errors.New("too large")

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.max {
		return n, errTooLarge
	}
	return n, err
}

// verifyAndStage reads the archive: the manifest and its signature first
// (verified before any payload is written), then the payload into staging
// directories, each file through its hash.
func verifyAndStage(r io.Reader, cfg *Config, res *Result) (*staging, *Rejection) {
	lim := cfg.Limits
	raw := &countingReader{r: r, max: lim.MaxArchive}
	br := bufio.NewReader(raw)
	var in io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, corrupt(raw, err)
		}
		zr.Multistream(false)
		// The unpacked tar holds the payload plus headers and padding:
		// bound it a little above the payload bound (a gzip bomb stops here).
		in = &countingReader{r: zr, max: lim.MaxUnpacked + int64(lim.MaxFiles+2)*2048 + 2<<20}
	}
	tr := newTarReader(in)
	manifestBytes, rej := readSmallEntry(tr, raw, ManifestName, 1<<20)
	if rej != nil {
		return nil, rej
	}
	sigBytes, rej := readSmallEntry(tr, raw, SignatureName, maxKeyFile)
	if rej != nil {
		return nil, rej
	}
	sig, err := ParseSignature(sigBytes)
	if err != nil {
		return nil, reject(CodeSignature, "%s: %v", SignatureName, err)
	}
	keys, badKeys, err := LoadKeys(cfg.KeysDir)
	if err != nil {
		return nil, reject(CodeNoKeys, "trusted keys: %v (put the operator's usign/signify public key, *.pub, in %s)", err, cfg.KeysDir)
	}
	res.Warnings = append(res.Warnings, badKeys...)
	key, err := Verify(keys, sig, manifestBytes)
	if err != nil {
		code := CodeSignature
		if strings.HasPrefix(err.Error(), "unknown key") {
			code = CodeUnknownKey
		}
		return nil, reject(code, "%v", err)
	}
	res.KeyID = key.ID.String()
	m, rej := ParseManifest(manifestBytes, lim)
	if rej != nil {
		return nil, rej
	}
	res.Serial, res.Targets, res.Files = m.Serial, m.Targets(), len(m.Files)
	for _, t := range m.Targets() {
		dir := cfg.dir(t)
		if dir == "" {
			return nil, reject(CodeUnsafePath, "the bundle writes %s/, which this router does not configure", t)
		}
		if inst, ok := Installed(dir); ok && m.Serial <= inst.Serial {
			if !cfg.Force {
				return nil, reject(CodeReplay, "serial %d is not above the installed %d in %s: a replayed or older bundle is refused (a newer one needs a higher serial; root can go back on purpose with famguard import --force)", m.Serial, inst.Serial, dir)
			}
			res.Warnings = append(res.Warnings, fmt.Sprintf("forced: serial %d replaces the installed %d in %s", m.Serial, inst.Serial, dir))
		}
	}
	st, err := newStaging(cfg, m, manifestBytes, sigBytes)
	if err != nil {
		return st, reject(CodeApply, "cannot stage the files: %v", err)
	}
	want := map[string]File{}
	for _, f := range m.Files {
		want[filesPrefix+f.Path] = f
	}
	got := map[string]bool{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return st, corrupt(raw, err)
		}
		name := strings.TrimPrefix(h.Name, "./")
		if h.Typeflag == tarDir {
			// Directory entries that tar adds for files/ and files/<target>/
			// are harmless; any other directory is not.
			d := strings.TrimSuffix(name, "/")
			if d == "files" || (strings.HasPrefix(d, filesPrefix) && !strings.Contains(strings.TrimPrefix(d, filesPrefix), "/") && st.dirs[strings.TrimPrefix(d, filesPrefix)] != "") {
				continue
			}
			return st, reject(CodeUnsafePath, "archive entry %q is a directory not in the manifest", h.Name)
		}
		if h.Typeflag != tarReg {
			return st, reject(CodeUnsafePath, "archive entry %q is %s; bundles hold only regular files", h.Name, typeName(h.Typeflag))
		}
		f, ok := want[name]
		if !ok {
			if rej := checkPath(strings.TrimPrefix(name, filesPrefix)); rej != nil && !strings.HasPrefix(name, filesPrefix) {
				rej.Msg = fmt.Sprintf("archive entry %q is outside files/", h.Name)
				return st, rej
			} else if rej != nil {
				return st, rej
			}
			return st, reject(CodeManifest, "archive entry %q is not in the manifest", h.Name)
		}
		if got[name] {
			return st, reject(CodeManifest, "archive entry %q appears twice", h.Name)
		}
		got[name] = true
		if h.Size != f.Size {
			return st, reject(CodeHash, "%s is %d bytes, the manifest says %d", f.Path, h.Size, f.Size)
		}
		if rej := st.write(f, tr, raw); rej != nil {
			return st, rej
		}
	}
	// After the archive's end: only tar's zero padding may follow (tar
	// pads to its record size), then the end of the stream. Junk after a
	// valid bundle, or a valid bundle padded to 100 MB, is refused rather
	// than accepted with the rest unread.
	if rej := trailing(in, raw, true); rej != nil {
		return st, rej
	}
	if in != io.Reader(br) {
		// gzip has no padding: its stream ends and so must the input.
		if rej := trailing(br, raw, false); rej != nil {
			return st, rej
		}
	}
	var missing []string
	for n, f := range want {
		if !got[n] {
			missing = append(missing, f.Path)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return st, reject(CodeCorrupt, "the archive lacks %s listed in the manifest (truncated?)", strings.Join(missing, ", "))
	}
	if err := st.finish(); err != nil {
		return st, reject(CodeApply, "cannot write the staged files: %v", err)
	}
	return st, nil
}

// trailing reads what follows the archive: zeros up to the bounds, then
// the end.
func trailing(r io.Reader, raw *countingReader, zerosOK bool) *Rejection {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		for _, b := range buf[:n] {
			if b != 0 || !zerosOK {
				return reject(CodeCorrupt, "data after the end of the archive (%d bytes read): a bundle is one tar archive, optionally gzip-compressed, and nothing else", raw.n)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return corrupt(raw, err)
		}
	}
}

// readSmallEntry reads the next entry, which must be name, regular, and at
// most max bytes.
func readSmallEntry(tr *tarReader, raw *countingReader, name string, max int64) ([]byte, *Rejection) {
	h, err := tr.Next()
	if err != nil {
		if err == io.EOF {
			return nil, reject(CodeCorrupt, "the archive ends before %s (a bundle starts with manifest.json and manifest.json.sig)", name)
		}
		return nil, corrupt(raw, err)
	}
	if strings.TrimPrefix(h.Name, "./") != name {
		return nil, reject(CodeCorrupt, "archive entry %q where %s was expected (a bundle starts with manifest.json and manifest.json.sig; build it with famguard-bundle)", h.Name, name)
	}
	if h.Typeflag != tarReg {
		return nil, reject(CodeUnsafePath, "%s is %s; it must be a regular file", name, typeName(h.Typeflag))
	}
	if h.Size > max {
		return nil, reject(CodeTooLarge, "%s is %d bytes; at most %d", name, h.Size, max)
	}
	b, err := io.ReadAll(tr)
	if err != nil {
		return nil, corrupt(raw, err)
	}
	return b, nil
}

func corrupt(raw *countingReader, err error) *Rejection {
	if errors.Is(err, errTooLarge) {
		return reject(CodeTooLarge, "the bundle is larger than %d bytes (packed) or its contents larger than the unpacked bound; refused while reading", raw.max)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return reject(CodeCorrupt, "truncated archive: it ends in the middle of an entry (an interrupted download?)")
	}
	return reject(CodeCorrupt, "corrupt archive: %v", err)
}

func typeName(t byte) string {
	switch t {
	case tarSymlink:
		return "a symbolic link"
	case tarLink:
		return "a hard link"
	case tarChar, tarBlock:
		return "a device"
	case tarFifo:
		return "a named pipe"
	case tarDir:
		return "a directory"
	}
	return fmt.Sprintf("of tar type %q", t)
}

// hashingCopy copies exactly n bytes and returns their SHA-256.
func hashingCopy(w io.Writer, r io.Reader, n int64) (string, error) {
	h := sha256.New()
	c, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(r, n))
	if err == nil && c != n {
		err = io.ErrUnexpectedEOF
	}
	return hex.EncodeToString(h.Sum(nil)), err
}

// Sum is the SHA-256 of b in manifest form.
func Sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
