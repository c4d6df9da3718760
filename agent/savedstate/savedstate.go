// Package savedstate persists each protected device's last state (online or
// offline, blocked categories) so that after a reboot, before the router's
// clock is synchronised, the agent can keep every device as it was instead
// of trusting a clock that may be hours off (see policy.EvaluateUnsynced).
//
// Why it is written the way it is:
//   - Router flash wears out and its file systems (jffs2, ubifs) rewrite
//     whole blocks: the file is written only when a device's state actually
//     changes (a few times a day: bedtime, morning, homework), never on a
//     timer, and a restart that finds the same state writes nothing.
//   - Power is cut without warning: the new content goes to a temporary file
//     that is synced and then renamed over the old one, so the file is always
//     either the old or the new version, never half of each.
//   - It holds MAC addresses and children's names: mode 0600, on the router
//     only, nothing about browsing.
package savedstate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/famguard/famguard/agent/policy"
)

// FormatVersion is the file's schema version.
const FormatVersion = 1

// maxSize bounds what Load reads: a few hundred devices fit in far less.
const maxSize = 1 << 20

// File is the persisted content.
type File struct {
	Version int                     `json:"version"`
	SavedAt time.Time               `json:"saved_at"`
	Devices map[string]policy.Saved `json:"devices"` // MAC → state
}

// Store reads and writes one state file.
type Store struct {
	path   string
	last   []byte       // the devices as last written or read: the change detector
	writes atomic.Int64 // read by status and tests while the owner writes
}

// New returns a store for path (nothing is read or written yet).
func New(path string) *Store { return &Store{path: path} }

// Path is the file's location.
func (s *Store) Path() string { return s.path }

// Writes counts the file writes this store made (status, tests).
func (s *Store) Writes() int { return int(s.writes.Load()) }

// Load reads the file. A missing file is not an error (first boot): it
// returns an empty File. A damaged one is an error naming the file; callers
// then proceed as if nothing was saved (the protective default).
func (s *Store) Load() (File, error) {
	data, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return File{Version: FormatVersion, Devices: map[string]policy.Saved{}}, nil
	}
	if err != nil {
		return File{}, fmt.Errorf("saved device states %s: %w", s.path, err)
	}
	if len(data) > maxSize {
		return File{}, fmt.Errorf("saved device states %s: %d bytes, more than the %d a state file can hold; delete it", s.path, len(data), maxSize)
	}
	var f File
	if err := json.Unmarshal(data, &f); err != nil {
		return File{}, fmt.Errorf("saved device states %s: %v (damaged; it is rewritten at the next change)", s.path, err)
	}
	if f.Version != FormatVersion {
		return File{}, fmt.Errorf("saved device states %s: format version %d, this agent reads %d", s.path, f.Version, FormatVersion)
	}
	if f.Devices == nil {
		f.Devices = map[string]policy.Saved{}
	}
	s.last, _ = json.Marshal(f.Devices)
	return f, nil
}

// Save writes devices if they differ from what was last written or read,
// and reports whether it wrote.
func (s *Store) Save(devices map[string]policy.Saved, now time.Time) (bool, error) {
	key, err := json.Marshal(devices) // map keys are sorted: stable bytes
	if err != nil {
		return false, err
	}
	if s.last != nil && bytes.Equal(key, s.last) {
		return false, nil
	}
	data, err := json.MarshalIndent(File{Version: FormatVersion, SavedAt: now.UTC(), Devices: devices}, "", " ")
	if err != nil {
		return false, err
	}
	if err := WriteAtomic(s.path, append(data, '\n')); err != nil {
		return false, fmt.Errorf("saving device states to %s: %w (the state before a reboot cannot be restored until this works)", s.path, err)
	}
	s.last = key
	s.writes.Add(1)
	return true, nil
}

// WriteAtomic replaces path with data: temporary file, fsync, rename, fsync
// of the directory.
func WriteAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
