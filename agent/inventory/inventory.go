// Package inventory remembers every device seen on the LAN: its MAC, whether
// that MAC is randomised, when it was first and last seen, its current
// addresses and the name it gave the DHCP server. `famguard devices` lists
// it, and the daemon uses it to tell parents which unknown devices the
// unknown-device policy restricts and which command assigns them.
//
// What it never holds: anything about what a device does. No names looked
// up, no sites, no traffic counts — a MAC, times, addresses and the DHCP
// host name, nothing else.
//
// Where it lives: in memory (the daemon loop owns it; no locks), and in a
// small JSON file in the state directory (/var/run/famguard, tmpfs), so a
// restarted agent still knows when a device was first seen. Never on flash:
// the file is rewritten as devices come and go, and flash wears.
//
// Bounded: at most MaxDevices entries; when full, the device seen least
// recently is forgotten (a guest phone from last month), never one seen now.
package inventory

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/famguard/famguard/agent/policy"
)

// MaxDevices bounds the inventory. A home LAN has tens of devices; a
// café-sized guest network a few hundred.
const MaxDevices = 1024

// Device is one device seen on the LAN.
type Device struct {
	MAC        string    `json:"mac"`
	Randomized bool      `json:"randomized"` // locally administered MAC ("private Wi-Fi address")
	FirstSeen  time.Time `json:"first_seen"`
	LastSeen   time.Time `json:"last_seen"`
	Addresses  []string  `json:"addresses"`      // now, from the neighbour table (empty: not on the LAN now)
	Name       string    `json:"name,omitempty"` // host name from the DHCP leases
}

// Inventory is the set of devices seen. Not safe for concurrent use: the
// daemon loop owns it.
type Inventory struct {
	devs map[string]*Device
}

// New returns an empty inventory.
func New() *Inventory { return &Inventory{devs: map[string]*Device{}} }

// Observe records the devices on the LAN now (MAC → current addresses, as
// the neighbour table says). Devices not in now keep their entry with no
// addresses. It returns the MACs seen for the first time, sorted.
func (inv *Inventory) Observe(now map[string][]netip.Addr, at time.Time) (added []string) {
	for _, d := range inv.devs {
		if _, ok := now[d.MAC]; !ok {
			d.Addresses = nil
		}
	}
	for mac, addrs := range now {
		d, ok := inv.devs[mac]
		if !ok {
			d = &Device{MAC: mac, Randomized: policy.IsRandomized(mac), FirstSeen: at}
			inv.devs[mac] = d
			added = append(added, mac)
		}
		d.LastSeen = at
		d.Addresses = d.Addresses[:0]
		for _, a := range addrs {
			d.Addresses = append(d.Addresses, a.String())
		}
	}
	inv.evict()
	sort.Strings(added)
	return added
}

// evict forgets the devices seen least recently beyond MaxDevices.
func (inv *Inventory) evict() {
	if len(inv.devs) <= MaxDevices {
		return
	}
	all := inv.List()
	sort.SliceStable(all, func(i, j int) bool { return all[i].LastSeen.Before(all[j].LastSeen) })
	for _, d := range all[:len(all)-MaxDevices] {
		delete(inv.devs, d.MAC)
	}
}

// SetNames sets each device's name from the DHCP leases (MAC → host name).
// A device without a lease keeps the name it had.
func (inv *Inventory) SetNames(names map[string]string) {
	for mac, name := range names {
		if d, ok := inv.devs[mac]; ok {
			d.Name = name
		}
	}
}

// List is every device, sorted by MAC (copies).
func (inv *Inventory) List() []Device {
	out := make([]Device, 0, len(inv.devs))
	for _, d := range inv.devs {
		c := *d
		c.Addresses = append([]string{}, d.Addresses...)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].MAC < out[j].MAC })
	return out
}

// Present lists the MACs on the LAN now (with addresses), sorted.
func (inv *Inventory) Present() []string {
	var out []string
	for _, d := range inv.devs {
		if len(d.Addresses) > 0 {
			out = append(out, d.MAC)
		}
	}
	sort.Strings(out)
	return out
}

// Name is the device's DHCP host name ("" if none).
func (inv *Inventory) Name(mac string) string {
	if d, ok := inv.devs[mac]; ok {
		return d.Name
	}
	return ""
}

// fileFormat is the state file: a version and the devices (addresses are
// not kept: they are only true now).
type fileFormat struct {
	Version int      `json:"version"`
	Devices []Device `json:"devices"`
}

const formatVersion = 1

// Save writes the inventory to path atomically (temp file + rename).
func (inv *Inventory) Save(path string) error {
	f := fileFormat{Version: formatVersion, Devices: inv.List()}
	for i := range f.Devices {
		f.Devices[i].Addresses = nil
	}
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	return policy.WriteAtomic(path, append(b, '\n'))
}

// Load reads a file Save wrote. A missing file is an empty inventory; an
// unreadable or foreign one is an error (and an empty inventory).
func Load(path string) (*Inventory, error) {
	inv := New()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return inv, nil
	}
	if err != nil {
		return inv, err
	}
	var f fileFormat
	if err := json.Unmarshal(b, &f); err != nil || f.Version != formatVersion {
		return inv, fmt.Errorf("%s: not a famguard device inventory (version %d, %v); starting afresh", path, f.Version, err)
	}
	for _, d := range f.Devices {
		mac, err := policy.NormalizeMAC(d.MAC)
		if err != nil {
			continue
		}
		d.MAC, d.Addresses, d.Randomized = mac, nil, policy.IsRandomized(mac)
		c := d
		inv.devs[mac] = &c
	}
	inv.evict()
	return inv, nil
}

// DefaultLeases is where dnsmasq keeps its DHCP leases on OpenWrt.
const DefaultLeases = "/tmp/dhcp.leases"

// ParseLeases reads a dnsmasq lease file ("EXPIRY MAC IP HOSTNAME
// CLIENT-ID" per line; HOSTNAME "*" when the client sent none, IPv6 lines
// and the "duid" line have no MAC) into MAC → host name.
func ParseLeases(r io.Reader) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || f[3] == "*" {
			continue
		}
		mac, err := policy.NormalizeMAC(f[1])
		if err != nil {
			continue
		}
		if name := hostName(f[3]); name != "" {
			out[mac] = name
		}
	}
	return out
}

// hostName keeps what a host name may hold (letters, digits, - _ .), at
// most 63 bytes: the client chooses it, and it ends up on a parent's
// terminal.
func hostName(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= 63 {
			break
		}
		if r < 128 && (r == '-' || r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			b.WriteRune(r)
		}
	}
	return b.String()
}
