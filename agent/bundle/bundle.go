// Package bundle imports signed profile and category-list bundles: the way
// an operator (an ISP's ACS, a USP controller, a file server with cron)
// changes the operator layer and the category lists of many routers at
// once, without SSH.
//
// A bundle is a tar archive (optionally gzip-compressed) of
//
//	manifest.json         first entry: format, serial, each file's path, size, SHA-256
//	manifest.json.sig     second entry: a usign/signify ed25519 signature of manifest.json
//	files/<target>/<name> the payload, e.g. files/operator/isp.yaml, files/categories/adult.txt
//
// Why this shape: the signature covers only the small manifest, and the
// manifest pins every file by SHA-256, so a router verifies the signature
// before it writes a single byte of payload to flash, streams the payload
// through a hash, and the pull mode can fetch the manifest alone to learn
// whether anything changed. The signature format is OpenWrt's usign (which
// is OpenBSD's signify's), so operators sign with tools they already run
// for opkg feeds, and a Debian/OpenBSD signify makes the same signatures.
// Tar keeps bundles inspectable with standard tools (tar tzf).
//
// Applying is all or nothing (apply.go): each target directory named by
// the bundle is replaced as a whole by the bundle's files. The files are
// staged beside the target, validated exactly like hand-edited files (the
// whole policy: the staged operator layer with the parents' profiles), then
// swapped in with one atomic rename exchange; the replaced directory is kept
// as the last good one. Any failure before the swap leaves everything as it
// was. The installed manifest is kept inside the target directory (hidden,
// so the loaders skip it) and so changes in the same rename as the files.
//
// Replay and downgrade: a bundle's serial must be greater than the serial
// installed in every target it names; root may force an older one locally
// (import --force), never the pull mode.
//
// Bounds: the archive's size (checked before reading when the size is
// known, and while reading), the unpacked size (a gzip bomb stops at the
// bound), the file count, each file's size, and the paths: only regular
// files under files/<known target>/ with plain names; "..", absolute paths,
// links, devices, pipes and nested directories are refused.
//
// Every refusal is a *Rejection with a short code (for machines: status,
// tests) and a message naming what is wrong and what to do (for people).
package bundle

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/famguard/famguard/agent/policy"
)

// Targets a bundle can write.
const (
	TargetOperator   = "operator"   // profile files of the operator layer (operator.d)
	TargetCategories = "categories" // category lists (categories.d)
)

// Format is the manifest's format tag.
const Format = "famguard-bundle/1"

// Archive entry names.
const (
	ManifestName  = "manifest.json"
	SignatureName = "manifest.json.sig"
	filesPrefix   = "files/"
	// PublishedBundle is the bundle's name beside manifest.json on a pull
	// server (famguard-bundle build --publish).
	PublishedBundle = "bundle.tar.gz"
)

// InstalledName is the installed manifest's name inside a target directory
// (hidden: the profile and list loaders skip it); InstalledSigName its
// signature, kept for audits.
const (
	InstalledName    = policy.BundleManifestName
	InstalledSigName = policy.BundleManifestName + ".sig"
)

// Manifest is manifest.json.
type Manifest struct {
	Format  string    `json:"format"`
	Serial  uint64    `json:"serial"`
	Created time.Time `json:"created"`
	Comment string    `json:"comment,omitempty"`
	Files   []File    `json:"files"`
}

// File is one payload file.
type File struct {
	Path   string `json:"path"` // <target>/<name>
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Target is the file's target directory name.
func (f File) Target() string { t, _, _ := strings.Cut(f.Path, "/"); return t }

// Name is the file's name in its target directory.
func (f File) Name() string { _, n, _ := strings.Cut(f.Path, "/"); return n }

// Targets lists the targets the manifest names, in a fixed order
// (categories before operator: lists first, then the profiles naming them).
func (m *Manifest) Targets() []string {
	var out []string
	for _, t := range []string{TargetCategories, TargetOperator} {
		for _, f := range m.Files {
			if f.Target() == t {
				out = append(out, t)
				break
			}
		}
	}
	return out
}

// Limits bound what one bundle may hold.
type Limits struct {
	MaxArchive     int64 // bytes of the archive as received (compressed or not)
	MaxUnpacked    int64 // bytes of all payload files
	MaxFiles       int
	MaxProfileFile int64 // one operator profile file
	MaxListFile    int64 // one category list
}

// DefaultLimits fit a router: profiles are kilobytes; real category lists
// are up to ~25 MB uncompressed (1.4 M domains), ~6 MB gzip-compressed.
var DefaultLimits = Limits{
	MaxArchive:     32 << 20,
	MaxUnpacked:    64 << 20,
	MaxFiles:       1000,
	MaxProfileFile: 256 << 10, // policy.MaxFileSize
	MaxListFile:    48 << 20,
}

// Rejection is why a bundle was refused; nothing was changed.
type Rejection struct {
	Code     string   `json:"code"`
	Msg      string   `json:"message"`
	Problems []string `json:"problems,omitempty"`
}

// Rejection codes.
const (
	CodeTooLarge   = "too-large"
	CodeCorrupt    = "corrupt"
	CodeManifest   = "bad-manifest"
	CodeSignature  = "bad-signature"
	CodeUnknownKey = "unknown-key"
	CodeReplay     = "replay"
	CodeUnsafePath = "unsafe-path"
	CodeTooMany    = "too-many-files"
	CodeHash       = "hash-mismatch"
	CodeInvalid    = "invalid-content"
	CodeApply      = "apply-failed"
	CodeNoKeys     = "no-trusted-keys"
	CodeFetch      = "fetch-failed"
)

func (r *Rejection) Error() string {
	s := "bundle refused (" + r.Code + "): " + r.Msg
	if len(r.Problems) > 0 {
		s += "\n  " + strings.Join(r.Problems, "\n  ")
	}
	return s
}

func reject(code, format string, args ...any) *Rejection {
	return &Rejection{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// fileName is what a payload file may be called: a plain name, no
// directories, not hidden (the loaders would skip it), nothing a shell or a
// terminal could misread.
var fileName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}$`)

// ParseManifest reads and checks a manifest against the limits. Unknown
// fields are refused: a newer format must say so in Format, not be half
// understood.
func ParseManifest(data []byte, lim Limits) (*Manifest, *Rejection) {
	var m Manifest
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, reject(CodeManifest, "manifest.json is not a valid manifest: %v", err)
	}
	if m.Format != Format {
		return nil, reject(CodeManifest, "manifest format %q, this famguard reads %q (upgrade famguard, or build the bundle for this version)", m.Format, Format)
	}
	if m.Serial == 0 {
		return nil, reject(CodeManifest, "manifest serial is 0 or missing; serials start at 1 and only grow")
	}
	if len(m.Files) == 0 {
		return nil, reject(CodeManifest, "the manifest lists no files; a bundle replaces whole directories, so an empty one would erase them (send a file with `version: 1` to clear the operator layer)")
	}
	if len(m.Files) > lim.MaxFiles {
		return nil, reject(CodeTooMany, "%d files; at most %d", len(m.Files), lim.MaxFiles)
	}
	seen := map[string]bool{}
	var total int64
	for _, f := range m.Files {
		if err := checkPath(f.Path); err != nil {
			return nil, err
		}
		if seen[f.Path] {
			return nil, reject(CodeManifest, "%s is listed twice", f.Path)
		}
		seen[f.Path] = true
		max := lim.MaxListFile
		if f.Target() == TargetOperator {
			max = lim.MaxProfileFile
		}
		if f.Size < 0 || f.Size > max {
			return nil, reject(CodeTooLarge, "%s is %d bytes; a %s file may be at most %d", f.Path, f.Size, f.Target(), max)
		}
		total += f.Size
		if b, err := hex.DecodeString(f.SHA256); err != nil || len(b) != 32 || f.SHA256 != strings.ToLower(f.SHA256) {
			return nil, reject(CodeManifest, "%s: sha256 %q is not 64 lower-case hex digits", f.Path, f.SHA256)
		}
	}
	if total > lim.MaxUnpacked {
		return nil, reject(CodeTooLarge, "the files add up to %d bytes; at most %d", total, lim.MaxUnpacked)
	}
	return &m, nil
}

// checkPath accepts <target>/<name> with a known target and a plain name.
func checkPath(p string) *Rejection {
	switch {
	case strings.HasPrefix(p, "/"):
		return reject(CodeUnsafePath, "%q is an absolute path; bundle paths are <target>/<name>", p)
	case p != path.Clean(p) || strings.Contains(p, ".."):
		return reject(CodeUnsafePath, "%q leaves its directory or is not a clean path; bundle paths are <target>/<name>", p)
	}
	t, name, ok := strings.Cut(p, "/")
	if !ok || strings.Contains(name, "/") {
		return reject(CodeUnsafePath, "%q: bundle paths are <target>/<name> with no further directories", p)
	}
	if !fileName.MatchString(name) {
		return reject(CodeUnsafePath, "%q: file names are letters, digits, '.', '_' and '-', at most 100, not starting with '.'", p)
	}
	switch t {
	case TargetOperator:
		if e := path.Ext(name); e != ".yaml" && e != ".yml" {
			return reject(CodeUnsafePath, "%q: operator files are profiles (*.yaml)", p)
		}
	case TargetCategories:
		if path.Ext(name) != ".txt" {
			return reject(CodeUnsafePath, "%q: category lists are <category>.txt", p)
		}
	default:
		return reject(CodeUnsafePath, "%q: unknown target %q; a bundle writes %s/ or %s/", p, t, TargetOperator, TargetCategories)
	}
	return nil
}
