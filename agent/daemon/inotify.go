package daemon

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// dirWatcher is the small part of inotify the profile and category watch
// needs: watch directories, report events on them and on their entries.
//
// It replaces github.com/fsnotify/fsnotify, whose inotify reader casts a
// byte array on its goroutine's stack to *unix.InotifyEvent. Go gives a
// byte array no alignment, so on mips/mipsle the array can start at an odd
// address and every event field is an unaligned 32-bit load: a real MIPS
// kernel traps and emulates each one (while its unaligned-access fixup is on),
// and qemu-user delivers SIGBUS, killing the agent at the first profile
// edit. Here events are decoded byte by byte, so alignment never matters.
type dirWatcher struct {
	fd     int      // the inotify descriptor (os.File.Fd would make it blocking)
	f      *os.File // the same descriptor, non-blocking, read through the poller
	done   chan struct{}
	Events chan dirEvent
	Errors chan error

	mu    sync.Mutex
	paths map[int32]string // watch descriptor -> watched path
	wds   map[string]int32
}

// dirEvent is one inotify event: Name is the watched path, or the entry's
// path inside it; Mask is the raw inotify mask.
type dirEvent struct {
	Name string
	Mask uint32
}

// attribOnly reports an event that only changed metadata (chmod, touch).
func (e dirEvent) attribOnly() bool {
	return e.Mask&^(unix.IN_ATTRIB|unix.IN_ISDIR) == 0
}

// watchMask is what fsnotify watched for: entries created, removed, written,
// renamed in or out, metadata changed, and the directory itself removed or
// renamed; and entries closed after writing (a write is complete).
const watchMask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MODIFY | unix.IN_MOVED_FROM | unix.IN_MOVED_TO |
	unix.IN_ATTRIB | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_CLOSE_WRITE

func newDirWatcher() (*dirWatcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify_init1: %w", err)
	}
	w := &dirWatcher{
		fd:     fd,
		f:      os.NewFile(uintptr(fd), "inotify"),
		done:   make(chan struct{}),
		Events: make(chan dirEvent, 64),
		Errors: make(chan error, 1),
		paths:  map[int32]string{},
		wds:    map[string]int32{},
	}
	go w.read()
	return w, nil
}

// Add watches path (a directory).
func (w *dirWatcher) Add(path string) error {
	path = filepath.Clean(path)
	w.mu.Lock()
	defer w.mu.Unlock()
	wd, err := unix.InotifyAddWatch(w.fd, path, watchMask)
	if err != nil {
		return &os.PathError{Op: "inotify_add_watch", Path: path, Err: err}
	}
	w.paths[int32(wd)] = path
	w.wds[path] = int32(wd)
	return nil
}

// Remove stops watching path.
func (w *dirWatcher) Remove(path string) error {
	path = filepath.Clean(path)
	w.mu.Lock()
	defer w.mu.Unlock()
	wd, ok := w.wds[path]
	if !ok {
		return nil
	}
	delete(w.wds, path)
	delete(w.paths, wd)
	_, err := unix.InotifyRmWatch(w.fd, uint32(wd))
	return err
}

// Close stops the watcher; Events and Errors are closed when the reader ends.
func (w *dirWatcher) Close() error {
	close(w.done)
	return w.f.Close()
}

func (w *dirWatcher) read() {
	defer close(w.Events)
	defer close(w.Errors)
	buf := make([]byte, 64*1024)
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrClosed) || errors.Is(err, io.EOF) {
				return
			}
			select {
			case w.Errors <- err:
			case <-w.done:
			}
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			// struct inotify_event {s32 wd; u32 mask; u32 cookie; u32 len; char name[len];}
			wd := int32(binary.NativeEndian.Uint32(buf[off:]))
			mask := binary.NativeEndian.Uint32(buf[off+4:])
			nameLen := int(binary.NativeEndian.Uint32(buf[off+12:]))
			nameStart := off + unix.SizeofInotifyEvent
			off = nameStart + nameLen
			if off > n {
				break // cannot happen: the kernel returns whole events
			}
			if mask&unix.IN_Q_OVERFLOW != 0 {
				select {
				case w.Errors <- errors.New("inotify queue overflow: events were lost"):
				default:
				}
				continue
			}
			w.mu.Lock()
			path, ok := w.paths[wd]
			if mask&unix.IN_IGNORED != 0 && ok { // the watch is gone (removed, or its directory deleted)
				delete(w.paths, wd)
				if w.wds[path] == wd {
					delete(w.wds, path)
				}
			}
			w.mu.Unlock()
			if !ok || mask&unix.IN_IGNORED != 0 {
				continue
			}
			name := path
			if nameLen > 0 {
				entry := buf[nameStart:off]
				for i, c := range entry { // the name is NUL-padded
					if c == 0 {
						entry = entry[:i]
						break
					}
				}
				name = filepath.Join(path, string(entry))
			}
			select {
			case w.Events <- dirEvent{Name: name, Mask: mask}:
			case <-w.done:
				return
			}
		}
	}
}
