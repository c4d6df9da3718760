package schedule

import (
	"testing"
	"time"
)

// Go's Time.ZoneBounds can report an end before the instant on the last
// day of a leap year in a zone served by its POSIX rule, as every zone in
// famguard's table is (golang/go#81583). NextChange must neither hang nor
// miss a change there.
func TestNextChangeLeapYearEnd(t *testing.T) {
	ws := []Window{win(t, "bedtime", "21:00", "07:00", "daily"), win(t, "homework", "16:30", "17:15", "mon-fri")}
	for _, name := range []string{"Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata"} {
		loc := zone(t, name)
		for at := time.Date(2028, 12, 29, 0, 0, 0, 0, time.UTC); at.Before(time.Date(2029, 1, 2, 0, 0, 0, 0, time.UTC)); at = at.Add(50 * time.Minute) {
			at := at.In(loc)
			done := make(chan time.Time)
			go func() {
				c, _ := NextChange(ws, at, 8*24*time.Hour)
				done <- c
			}()
			var got time.Time
			select {
			case got = <-done:
			case <-time.After(5 * time.Second):
				t.Fatalf("%s: NextChange(%s) hangs", name, at)
			}
			// Brute force: the first minute at which the active set changes.
			want := at.Truncate(time.Minute)
			now := Active(ws, at)
			for want = want.Add(time.Minute); sameSet(Active(ws, want), now); want = want.Add(time.Minute) {
			}
			if !got.Equal(want) {
				t.Errorf("%s: NextChange(%s) = %s, want %s", name, at, got, want.In(loc))
			}
		}
	}
}
