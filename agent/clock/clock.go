// Package clock is the agent's notion of "now" and of the wall clock being
// stepped.
//
// Schedules are wall-clock rules, but Go timers run on the monotonic clock:
// if NTP steps the clock by an hour (routers boot with a wrong clock), a
// timer armed for "21:00" fires an hour off. So the daemon sleeps on a
// monotonic timer until the next transition AND listens to WallJumps, which
// uses a Linux timerfd with TFD_TIMER_CANCEL_ON_SET: the kernel wakes it the
// moment anyone sets CLOCK_REALTIME, with no polling.
package clock

import (
	"context"
	"errors"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Clock tells the time.
type Clock interface{ Now() time.Time }

type system struct{}

func (system) Now() time.Time { return time.Now() }

// System is the real clock.
func System() Clock { return system{} }

// Simulated is the --clock clock: it shows a given instant at start and
// then runs in real time. Step moves it, as NTP or `date -s` would move the
// real clock (lab tests use it; the host's clock is never touched).
type Simulated struct {
	mu    sync.Mutex
	start time.Time
	real  time.Time // carries Go's monotonic reading
}

// Now is the simulated instant.
func (s *Simulated) Now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.start.Add(time.Since(s.real))
}

// Step moves the clock by d (negative: back).
func (s *Simulated) Step(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.start = s.start.Add(d)
}

// StartingAt is a clock that shows start now and then runs in real time
// (the --clock flag, for labs, demos and tests).
func StartingAt(start time.Time) *Simulated { return &Simulated{start: start, real: time.Now()} }

// WallJumps signals (coalescing, never blocking) every time the wall clock is
// set. The channel closes when ctx ends. On systems without timerfd support
// it stays silent; the daemon's hourly safety wake-up still corrects.
func WallJumps(ctx context.Context) <-chan struct{} {
	out := make(chan struct{}, 1)
	fd, err := unix.TimerfdCreate(unix.CLOCK_REALTIME, unix.TFD_CLOEXEC|unix.TFD_NONBLOCK)
	if err != nil {
		close(out)
		return out
	}
	go func() {
		defer close(out)
		defer unix.Close(fd)
		watchCancelOnSet(ctx, timerfd(fd), out)
	}()
	return out
}

// timerSource is the part of a timerfd the watcher needs; a fake drives it
// in tests (setting the host's real clock in a test is not acceptable).
type timerSource interface {
	arm() error
	// wait blocks up to timeout; it returns errClockSet when the wall clock
	// was set, errExpired when the (distant) timer itself expired, and nil
	// on timeout.
	wait(timeout time.Duration) error
}

var (
	errClockSet = errors.New("wall clock was set")
	errExpired  = errors.New("timer expired")
)

func watchCancelOnSet(ctx context.Context, src timerSource, out chan<- struct{}) {
	if err := src.arm(); err != nil {
		return
	}
	for ctx.Err() == nil {
		// A short wait keeps ctx cancellation prompt without a second fd.
		err := src.wait(500 * time.Millisecond)
		if errors.Is(err, errClockSet) {
			select {
			case out <- struct{}{}:
			default: // one pending signal is enough: the daemon re-reads the clock
			}
		}
		// A cancelled or expired timer must be re-armed to be told again.
		if err != nil && src.arm() != nil {
			return
		}
	}
}

type timerfd int

// arm sets an absolute expiry a year ahead with CANCEL_ON_SET, so what
// wakes the fd is a change of the wall clock (or, once a year, the expiry,
// after which it is re-armed). A year rather than "forever" because 32-bit
// routers (MIPS, ARMv7) have a 32-bit time_t here.
func (fd timerfd) arm() error {
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(time.Now().AddDate(1, 0, 0).UnixNano())}
	return unix.TimerfdSettime(int(fd), unix.TFD_TIMER_ABSTIME|unix.TFD_TIMER_CANCEL_ON_SET, &spec, nil)
}

func (fd timerfd) wait(timeout time.Duration) error {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, int(timeout.Milliseconds()))
	if err != nil || n == 0 {
		return nil
	}
	var buf [8]byte
	_, err = unix.Read(int(fd), buf[:])
	switch {
	case errors.Is(err, unix.ECANCELED):
		return errClockSet
	case err == nil:
		return errExpired
	}
	return nil
}
