package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// IsProfileFile says whether a directory entry is a profile: *.yaml or
// *.yml, not hidden. Editors' and tools' temporary files (.x.swp, x~, .#x,
// x.yaml.tmp, x.yaml.dpkg-new, x.yaml.bak) do not match, so a half-saved
// file is never read.
func IsProfileFile(name string) bool {
	if strings.HasPrefix(name, ".") {
		return false
	}
	ext := filepath.Ext(name)
	return ext == ".yaml" || ext == ".yml"
}

// MaxFiles bounds how many profile files one directory may hold.
const MaxFiles = 1000

// MaxTotalSize bounds the bytes read from one directory, so that a push of
// many large files costs bounded time and memory (files are parsed one at a
// time; each is bounded by MaxFileSize and MaxSeparators).
const MaxTotalSize = 4 << 20

// LoadDir reads every profile file in dir (not recursively) and merges them.
// It returns Problems when the set is invalid, and a plain error when the
// directory itself cannot be read.
// The parents' own defaults: and floors: apply (Load, layer.go).
func LoadDir(dir string) (*Policy, error) { return Load("", dir) }

// loadDir is LoadDir with overlay: file names in dir whose content is taken
// from the map instead of the disk (new or replaced files), so a candidate
// file is validated with the whole set before it is written (assign.go).
func loadDir(dir string, overlay map[string][]byte) (*Policy, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("profile directory %s does not exist: create it and put the family's profiles (*.yaml) in it", dir)
		}
		return nil, fmt.Errorf("profile directory %s: %w", dir, err)
	}
	var names []string
	for _, e := range entries {
		if _, over := overlay[e.Name()]; IsProfileFile(e.Name()) && !over {
			names = append(names, e.Name())
		}
	}
	for name := range overlay {
		names = append(names, name)
	}
	sort.Strings(names)
	return loadFiles(dir, names, overlay)
}

// LoadFile reads one profile file on its own, as if it were the only file of
// its directory (`famguard check FILE`, before copying a file into place).
// Problems between files (a MAC in two files) show only with LoadDir.
func LoadFile(path string) (*Policy, error) {
	return loadFiles(filepath.Dir(path), []string{filepath.Base(path)}, nil)
}

// loadFiles reads and merges the named files of dir, taking those in
// overlay from it instead of the disk.
func loadFiles(dir string, names []string, overlay map[string][]byte) (*Policy, error) {
	if len(names) == 0 {
		// An empty directory is what a push looks like between deleting the
		// old files and writing the new ones: never read it as "no rules".
		return nil, Problems{{File: dir, Msg: "no profile files (*.yaml) here; to remove all protection on purpose, keep one file with just `version: 1`, or run famguard cleanup"}}
	}
	if len(names) > MaxFiles {
		return nil, Problems{{File: dir, Msg: fmt.Sprintf("%d profile files; at most %d are read (merge them)", len(names), MaxFiles)}}
	}
	var parsers []*parser
	var srcs []Source
	total := 0
	for _, name := range names {
		path := filepath.Join(dir, name)
		p := &parser{file: path}
		data, over := overlay[name]
		var err error
		if !over {
			data, err = readProfile(path)
		}
		total += len(data)
		switch {
		case err != nil:
			p.problems = append(p.problems, Problem{File: path, Msg: err.Error()})
		case total > MaxTotalSize:
			p.problems = append(p.problems, Problem{File: path, Msg: fmt.Sprintf("the profiles read so far, with this one, hold more than %d bytes; real households need a few kilobytes (is a wrong directory or file pushed?)", MaxTotalSize)})
			// Stop reading: report what was found so far, and this.
			_, probs := merge(append(parsers, p))
			return nil, probs
		default:
			p.parse(data)
			sum := sha256.Sum256(data)
			srcs = append(srcs, Source{Path: path, SHA256: hex.EncodeToString(sum[:])})
		}
		parsers = append(parsers, p)
	}
	pol, probs := merge(parsers)
	if len(probs) > 0 {
		return nil, probs
	}
	pol.Sources = srcs
	pol.Digest = digest(srcs)
	return pol, nil
}

// readProfile reads a file through symlinks, bounded in size. It opens
// without blocking: a named pipe given a profile's name (a botched push, or
// mischief) would otherwise block the open, and with it every reload, until
// someone writes to it.
func readProfile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		var pe *os.PathError
		switch {
		case errors.Is(err, os.ErrNotExist):
			return nil, errors.New("cannot be read: it is a symbolic link to a file that does not exist")
		case errors.As(err, &pe) && strings.Contains(pe.Err.Error(), "too many levels of symbolic links"):
			return nil, errors.New("cannot be read: symbolic link loop")
		case errors.Is(err, os.ErrPermission):
			return nil, errors.New("cannot be read: permission denied (famguard runs as root; check the file's mode)")
		}
		return nil, fmt.Errorf("cannot be read: %v", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("cannot be read: %v", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("is not a regular file (%s): profiles are plain files", fileKind(fi.Mode()))
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("cannot be read: %v", err)
	}
	return data, nil
}

func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a named pipe"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeDevice != 0:
		return "a device"
	}
	return "not a plain file"
}

// merge combines parsed files and checks what spans files: a child defined
// twice, a MAC listed twice (for children, trusted or assigned), conflicting
// time zones, the unknown-device policy set twice or naming a missing child,
// an assignment to a missing child.
func merge(parsers []*parser) (*Policy, Problems) {
	var probs Problems
	pol := &Policy{}
	childAt := map[string]position{}
	var zone *zoneRef
	for _, p := range parsers {
		probs = append(probs, p.problems...)
		if p.tz != nil {
			if zone != nil && zone.name != p.tz.name {
				probs = append(probs, Problem{File: p.file, Line: p.tz.pos.line, Col: p.tz.pos.col, Field: "timezone",
					Msg: fmt.Sprintf("%q conflicts with %q set at %s:%d; set the zone in one file only", p.tz.name, zone.name, zone.pos.file, zone.pos.line)})
			} else if zone == nil {
				zone = p.tz
			}
		}
		for _, c := range p.children {
			if prev, dup := childAt[c.child.Name]; dup {
				probs = append(probs, Problem{File: c.pos.file, Line: c.pos.line, Col: c.pos.col, Field: c.pos.field,
					Msg: fmt.Sprintf("child %q is already defined at %s:%d; keep each child in one place", c.child.Name, prev.file, prev.line)})
				continue
			}
			childAt[c.child.Name] = c.pos
			pol.Children = append(pol.Children, c.child)
		}
		pol.refs = append(pol.refs, p.refs...)
	}
	probs = append(probs, checkMACs(parsers)...)
	probs = append(probs, mergeDevices(pol, parsers, childAt)...)
	probs = append(probs, mergeLayerSettings(pol, parsers)...)
	if len(probs) > 0 {
		probs.sort()
		return nil, probs
	}
	if zone != nil {
		pol.Timezone = zone.name
	}
	sort.Slice(pol.Children, func(i, j int) bool { return pol.Children[i].Name < pol.Children[j].Name })
	return pol, nil
}
