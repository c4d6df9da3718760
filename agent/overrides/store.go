package overrides

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/famguard/famguard/agent/savedstate"
)

// Store keeps the overrides durable, and kind to flash.
//
// Two copies of the same file:
//   - on flash (default /etc/famguard/overrides.json), surviving reboots;
//   - in RAM (the state directory, /var/run/famguard on tmpfs), surviving a
//     crash, kill -9 or restart of the agent, but not a reboot.
//
// Pauses, grants and budget changes are rare (a few a day) and a parent
// expects them to hold: both copies are written at once. Usage changes
// every minute the child uses the internet: the RAM copy is written each
// minute, the flash copy at most every FlushEvery (default 5 minutes) and
// only when usage changed since it was last written; on SIGTERM it is
// written once more. So flash sees at most 12 usage writes an hour
// (in-use hours only; none at night) and a power cut loses at most
// FlushEvery of counted usage, plus the minute being counted.
//
// Loading takes the newer copy (a sequence number, not a clock, decides:
// clocks on routers are not to be trusted) and, for usage, the larger
// count of the same day, so a restart can only keep or add minutes, never
// give a child back time.
type Store struct {
	flash, ram string
	flushEvery time.Duration

	seq        uint64
	lastFlash  []byte    // state as last written to flash
	flashedAt  time.Time // monotonic, when flash was last written
	flashWrite int
	ramWrite   int
	now        func() time.Time // the monotonic clock of the flush bound (tests replace it)
}

// DefaultFlushEvery bounds how often usage is written to flash.
const DefaultFlushEvery = 5 * time.Minute

// FormatVersion is the overrides file's schema version.
const FormatVersion = 1

type file struct {
	Version int    `json:"version"`
	Seq     uint64 `json:"seq"`
	State   State  `json:"state"`
}

// NewStore returns a store writing flashPath (may be "": no flash copy) and
// ramPath (may be "": no RAM copy).
func NewStore(flashPath, ramPath string, flushEvery time.Duration) *Store {
	if flushEvery <= 0 {
		flushEvery = DefaultFlushEvery
	}
	return &Store{flash: flashPath, ram: ramPath, flushEvery: flushEvery, now: time.Now}
}

// Paths are the two copies' locations (for status).
func (s *Store) Paths() (flash, ram string) { return s.flash, s.ram }

// Writes counts this store's writes to flash and to RAM since it was made.
func (s *Store) Writes() (flash, ram int) { return s.flashWrite, s.ramWrite }

// FlushEvery is the bound on usage writes to flash.
func (s *Store) FlushEvery() time.Duration { return s.flushEvery }

func readFile(path string) (file, bool, error) {
	if path == "" {
		return file{}, false, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return file{}, false, nil
	}
	if err != nil {
		return file{}, false, err
	}
	if len(b) > 1<<20 {
		return file{}, false, fmt.Errorf("%s: %d bytes, more than an overrides file can hold; delete it", path, len(b))
	}
	var f file
	if err := json.Unmarshal(b, &f); err != nil {
		return file{}, false, fmt.Errorf("%s: damaged (%v); it is rewritten at the next change", path, err)
	}
	if f.Version != FormatVersion {
		return file{}, false, fmt.Errorf("%s: format version %d, this agent reads %d", path, f.Version, FormatVersion)
	}
	return f, true, nil
}

// Load reads both copies and merges them. A damaged copy is reported and
// the other used; with neither, the state is empty.
func (s *Store) Load() (State, error) {
	fl, okF, errF := readFile(s.flash)
	rm, okR, errR := readFile(s.ram)
	err := errors.Join(errF, errR)
	var st State
	switch {
	case okF && okR:
		newer, older := fl, rm
		if rm.Seq > fl.Seq {
			newer, older = rm, fl
		}
		st = newer.State
		for child, u := range older.State.Usage {
			cur, ok := st.Usage[child]
			if !ok || u.Day > cur.Day || (u.Day == cur.Day && u.Minutes > cur.Minutes) {
				if st.Usage == nil {
					st.Usage = map[string]Usage{}
				}
				st.Usage[child] = u
			}
		}
		s.seq = max(fl.Seq, rm.Seq)
	case okF:
		st, s.seq = fl.State, fl.Seq
	case okR:
		st, s.seq = rm.State, rm.Seq
	}
	if okF {
		s.lastFlash, _ = json.Marshal(fl.State)
	}
	s.flashedAt = s.now()
	return st, err
}

// SaveNow writes both copies (a pause, grant or budget change).
func (s *Store) SaveNow(st State) error {
	return errors.Join(s.writeRAM(st), s.writeFlash(st, true))
}

// SaveUsage is called every accounting minute: it writes the RAM copy when
// usage changed, and the flash copy when FlushEvery has passed since it was
// last written and it differs from what flash holds.
func (s *Store) SaveUsage(st State, changed bool) error {
	var errRAM error
	if changed {
		errRAM = s.writeRAM(st)
	}
	return errors.Join(errRAM, s.writeFlash(st, s.now().Sub(s.flashedAt) >= s.flushEvery))
}

// Flush writes the flash copy if it is not up to date (on SIGTERM).
func (s *Store) Flush(st State) error { return s.writeFlash(st, true) }

func (s *Store) encode(st State) ([]byte, []byte, error) {
	key, err := json.Marshal(st)
	if err != nil {
		return nil, nil, err
	}
	s.seq++
	data, err := json.MarshalIndent(file{Version: FormatVersion, Seq: s.seq, State: st}, "", " ")
	return key, append(data, '\n'), err
}

func (s *Store) writeRAM(st State) error {
	if s.ram == "" {
		return nil
	}
	_, data, err := s.encode(st)
	if err == nil {
		err = writeFile(s.ram, data)
	}
	if err != nil {
		return fmt.Errorf("saving overrides to %s: %w", s.ram, err)
	}
	s.ramWrite++
	return nil
}

func (s *Store) writeFlash(st State, due bool) error {
	if s.flash == "" || !due {
		return nil
	}
	key, data, err := s.encode(st)
	if err != nil {
		return err
	}
	if bytes.Equal(key, s.lastFlash) {
		return nil
	}
	if err := writeFile(s.flash, data); err != nil {
		return fmt.Errorf("saving overrides to %s: %w (pauses, extra time and today's usage would not survive a reboot until this works)", s.flash, err)
	}
	s.lastFlash, s.flashedAt = key, s.now()
	s.flashWrite++
	return nil
}

// writeFile replaces path atomically, creating its directory (0700: the
// file names children and their devices) if needed.
func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return savedstate.WriteAtomic(path, data)
}
