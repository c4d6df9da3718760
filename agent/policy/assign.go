package policy

// famguard assign: the one profile file the agent writes.
//
// `famguard assign MAC CHILD|trusted [--name N]` adds (or moves) a device in
// AssignedFile, in the profile directory, so a parent never has to edit YAML
// to let their own phone back online or to give a child's new randomised
// MAC the child's rules. What makes it safe:
//
//   - The candidate file is validated with the whole directory (an in-memory
//     overlay of LoadDir) before anything is written: a missing child, a
//     malformed MAC or a MAC some other file already lists is refused with
//     the same FILE:LINE:COL problems `famguard check` prints, and the old
//     file stays as it was.
//   - It is written atomically: a hidden temporary file in the same
//     directory (IsProfileFile ignores it, so the watcher never reads it
//     half-written), synced, then renamed over the old one.
//   - Two assigns at once do not lose one another's entry: a lock file
//     (hidden, in the profile directory) serialises them.
//
// The file is plain YAML a parent may also edit by hand; assign rewrites it
// whole, keeping every entry it holds (comments in it are not kept, which
// its header says).

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// AssignedFile is the file `famguard assign` manages in the profile
// directory.
const AssignedFile = "famguard-assigned.yaml"

const assignedHeader = `# Managed by famguard: ` + "`famguard assign MAC CHILD|trusted [--name NAME]`" + ` writes this file.
# Each entry gives a device (by MAC) to a child, or marks it trusted (a
# parent's device: never restricted). Hand edits are kept, comments are not.
`

// AssignError is a refused assignment: what is wrong with the arguments, or
// the problems the directory would have with the assignment (nothing was
// written either way).
type AssignError struct {
	Msg      string
	Problems Problems
}

func (e *AssignError) Error() string {
	if len(e.Problems) == 0 {
		return e.Msg
	}
	return e.Msg + "\n" + e.Problems.Error()
}

// Assign gives the device mac to `to` (a child's name or AssignTrusted) in
// dir's AssignedFile, validated with the whole directory first. It returns
// the file written and the policy the directory now holds. An existing
// assignment of the same MAC in that file is replaced (a device moves).
func Assign(dir, mac, to, name string) (string, *Policy, error) {
	canon, err := parseMAC(mac)
	if err != nil {
		return "", nil, &AssignError{Msg: "MAC " + err.Error()}
	}
	if to != AssignTrusted && !childName.MatchString(to) {
		return "", nil, &AssignError{Msg: fmt.Sprintf("%q: assign to a child's name (as in the profiles) or to trusted", to)}
	}
	if strings.ContainsAny(name, "\n\r") || len(name) > 128 {
		return "", nil, &AssignError{Msg: "--name: one line of at most 128 bytes"}
	}
	if _, err := os.Stat(dir); err != nil {
		return "", nil, fmt.Errorf("profile directory %s: %w", dir, err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return "", nil, err
	}
	defer unlock()

	path := filepath.Join(dir, AssignedFile)
	var entries []Assignment
	switch old, err := os.ReadFile(path); {
	case err == nil:
		p := &parser{file: path}
		p.parse(old)
		if len(p.problems) > 0 {
			return "", nil, &AssignError{Msg: fmt.Sprintf("%s has problems of its own; fix or remove it first (nothing was written)", path), Problems: p.problems}
		}
		for _, a := range p.assigned {
			if a.a.MAC != canon {
				entries = append(entries, a.a)
			}
		}
	case !errors.Is(err, os.ErrNotExist):
		return "", nil, fmt.Errorf("%s: %w", path, err)
	}
	entries = append(entries, Assignment{MAC: canon, To: to, Name: name})
	data := renderAssigned(entries)

	pol, err := loadDir(dir, map[string][]byte{AssignedFile: data})
	if err != nil {
		var probs Problems
		if !errors.As(err, &probs) {
			return "", nil, err
		}
		// A problem on the new entry's line is about the arguments: say so
		// without a position in a file that was never written.
		newLine := strings.Count(string(data), "\n")
		var mine []string
		var others Problems
		for _, p := range probs {
			if p.File == path && p.Line == newLine {
				mine = append(mine, p.Msg)
			} else {
				others = append(others, p)
			}
		}
		if len(mine) > 0 {
			return "", nil, &AssignError{Msg: fmt.Sprintf("not assigned (nothing was written): %s", strings.Join(mine, "; ")), Problems: others}
		}
		return "", nil, &AssignError{Msg: fmt.Sprintf("not assigned: the profiles in %s would have these problems with it (nothing was written)", dir), Problems: others}
	}
	if err := WriteAtomic(path, data); err != nil {
		return "", nil, err
	}
	return path, pol, nil
}

// renderAssigned is the file's text: the header, then one line per entry.
func renderAssigned(entries []Assignment) []byte {
	var b strings.Builder
	b.WriteString(assignedHeader)
	b.WriteString("version: 1\nassigned:\n")
	for _, a := range entries {
		fmt.Fprintf(&b, "  - {mac: %q, to: %s", a.MAC, yamlString(a.To))
		if a.Name != "" {
			fmt.Fprintf(&b, ", name: %s", yamlString(a.Name))
		}
		b.WriteString("}\n")
	}
	return []byte(b.String())
}

// yamlString is s as a YAML double-quoted scalar. Go's quoting escapes (\",
// \\, \n, \t, \xNN, \uNNNN, \UNNNNNNNN) are all YAML escapes too.
func yamlString(s string) string { return strconv.Quote(s) }

// WriteAtomic replaces path with data (mode 0644): a hidden temporary file
// in the same directory, synced, then renamed, so a reader sees the old
// file or the new one, never half of one.
func WriteAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// lockDir takes an exclusive lock on a hidden file in dir.
func lockDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, ".famguard-assign.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("locking %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", dir, err)
	}
	return func() { f.Close() }, nil
}
