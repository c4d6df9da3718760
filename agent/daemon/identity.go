package daemon

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/famguard/famguard/rules"
)

// Kernel identities: the device IDs written into connection marks and the
// DNS filter's port per policy class. Both must stay the same for as long as
// the kernel holds famguard's rules — a connection marked with a device's ID
// is cut by that ID, and a redirect sends to a class's port — also across a
// restart of the agent. So the allocation is kept in the state directory
// (tmpfs on a router: a reboot empties it, and the kernel's rules with it).
//
// IDs and ports are never reused while the table has room: a device removed
// from the profiles may still have connections carrying its ID.

// identityFile is the file name in the state directory.
const identityFile = "identity.json"

// identities is the allocation.
type identities struct {
	Version int               `json:"version"`
	Devices map[string]uint16 `json:"devices"` // MAC → ID (1..rules.MaxAllocID)
	Ports   map[string]int    `json:"ports"`   // class → DNS filter port

	path  string
	dirty bool
}

// classPortBase: class ports follow the configured DNS port: base+1 is the
// offline port, classes from base+2.
const (
	offlinePortOffset = 1
	classPortOffset   = 2
	maxClassPorts     = 1000
)

// loadIdentities reads the allocation ("" dir: kept in memory only). An
// unreadable file starts a fresh allocation: the rules written next carry
// the new IDs, and connections marked with old ones age out.
func loadIdentities(dir string) (*identities, error) {
	id := &identities{Version: 1, Devices: map[string]uint16{}, Ports: map[string]int{}}
	if dir == "" {
		return id, nil
	}
	id.path = filepath.Join(dir, identityFile)
	data, err := os.ReadFile(id.path)
	if os.IsNotExist(err) {
		return id, nil
	}
	if err != nil {
		return id, err
	}
	var f identities
	if err := json.Unmarshal(data, &f); err != nil {
		return id, fmt.Errorf("%s: %w (starting a fresh allocation)", id.path, err)
	}
	for mac, n := range f.Devices {
		if n >= 1 && n <= rules.MaxAllocID {
			id.Devices[mac] = n
		}
	}
	for c, p := range f.Ports {
		if p > 0 && p < 65536 {
			id.Ports[c] = p
		}
	}
	return id, nil
}

// device returns the ID of a MAC, allocating the lowest free one. When all
// are taken, those of MACs not in keep are released first.
func (id *identities) device(mac string, keep map[string]bool) (uint16, error) {
	if n, ok := id.Devices[mac]; ok {
		return n, nil
	}
	used := map[uint16]bool{}
	for _, n := range id.Devices {
		used[n] = true
	}
	if len(used) >= rules.MaxAllocID {
		for m, n := range id.Devices {
			if !keep[m] {
				delete(id.Devices, m)
				delete(used, n)
			}
		}
	}
	for n := uint16(1); n <= rules.MaxAllocID; n++ {
		if !used[n] {
			id.Devices[mac] = n
			id.dirty = true
			return n, nil
		}
	}
	return 0, fmt.Errorf("more than %d devices: no device ID left for %s", rules.MaxAllocID, mac)
}

// port returns the DNS filter port of a class, allocating the lowest free
// one from base+classPortOffset.
func (id *identities) port(class string, base int, keep map[string]bool) (int, error) {
	lo, hi := base+classPortOffset, min(base+classPortOffset+maxClassPorts, 65536)
	if p, ok := id.Ports[class]; ok && p >= lo && p < hi {
		return p, nil
	}
	used := map[int]bool{}
	for c, p := range id.Ports {
		if c != class {
			used[p] = true
		}
	}
	if len(used) >= hi-lo {
		for c, p := range id.Ports {
			if !keep[c] {
				delete(id.Ports, c)
				delete(used, p)
			}
		}
	}
	for p := lo; p < hi; p++ {
		if !used[p] {
			id.Ports[class] = p
			id.dirty = true
			return p, nil
		}
	}
	return 0, fmt.Errorf("more than %d policy classes: no DNS port left for %s", hi-lo, class)
}

// save writes the allocation when it changed (atomically: a crash leaves
// the old file or the new one).
func (id *identities) save() error {
	if !id.dirty || id.path == "" {
		return nil
	}
	data, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return err
	}
	tmp := id.path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, id.path); err != nil {
		return err
	}
	id.dirty = false
	return nil
}

// sortedPorts lists the ports of the given classes, sorted.
func sortedPorts(ports map[string]int) []int {
	out := make([]int, 0, len(ports))
	for _, p := range ports {
		out = append(out, p)
	}
	sort.Ints(out)
	return out
}
