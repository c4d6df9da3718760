package daemon

// Devices seen on the LAN, and what applies to them.
//
// The loop keeps an inventory (agent/inventory) of every device the
// LAN-only neighbour table shows. Devices on the LAN now that no child lists
// and that are not trusted are evaluated under the unknown-device policy
// (policy.EvaluateSeen) like any other device: they are rows of status, the
// DNS filter and the dataplane see them. After every load of the profiles,
// and when a new device appears, each unknown device the policy restricts
// is logged (warn) and shown in status with the one command that trusts or
// assigns it — so an upgrade to the offline default never cuts a household
// off without saying how to undo it.
//
// Without a known LAN (no --lan, no OpenWrt lan interface, no br-lan) no
// device is taken for unknown: the WAN gateway must never be "a device".

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/famguard/famguard/agent/inventory"
	"github.com/famguard/famguard/agent/netwatch"
	"github.com/famguard/famguard/agent/policy"
)

// inventoryFile is the inventory's file in the state directory (tmpfs).
const inventoryFile = "devices.json"

// inventorySaveEvery bounds how often last-seen times are written back
// (new devices are written at once).
const inventorySaveEvery = time.Minute

// devicesState is the loop's inventory bookkeeping.
type devicesState struct {
	inv        *inventory.Inventory
	savedAt    time.Time
	leasesMod  time.Time
	restricted []string // the last upgrade notice (status warnings)
}

// DevicesStatus is what `famguard devices --json` prints.
type DevicesStatus struct {
	// LAN are the interfaces devices are seen on, and where that came from;
	// empty: the LAN is unknown and no device counts as unknown.
	LAN       []string `json:"lan"`
	LANSource string   `json:"lan_source"`
	// The unknown-device policy in force (resolved; default true when no
	// profile set it). Null before a policy is loaded.
	Unknown    *policy.UnknownRule `json:"unknown_devices"`
	Randomized *policy.UnknownRule `json:"randomized_devices"`
	Devices    []DeviceEntry       `json:"devices"`
}

// DeviceEntry is one device seen on the LAN and what applies to it.
type DeviceEntry struct {
	inventory.Device
	// Applies: "child alice", "trusted", "unknown: offline",
	// "unknown: like alice" or "unknown: allow" ("" before a policy is
	// loaded).
	Applies    string `json:"applies"`
	Child      string `json:"child,omitempty"`  // whose rules apply (a child's device, or unknown like CHILD)
	DeviceName string `json:"device,omitempty"` // the name the profiles give it
	Online     bool   `json:"online"`
	Reason     string `json:"reason"`
}

// inventoryPath is where the inventory is kept ("" : nowhere).
func (d *Daemon) inventoryPath() string {
	if d.cfg.StateDir == "" {
		return ""
	}
	return filepath.Join(d.cfg.StateDir, inventoryFile)
}

// loadInventory reads the inventory a previous agent of this boot kept.
func (d *Daemon) loadInventory() {
	d.devs.inv = inventory.New()
	if p := d.inventoryPath(); p != "" {
		inv, err := inventory.Load(p)
		if err != nil {
			d.log.Warn("device inventory unusable; starting afresh", "err", err)
		}
		d.devs.inv = inv
	}
	if len(d.cfg.LAN) == 0 {
		d.log.Warn("no LAN interface known: no device is treated as unknown (the unknown-device policy is not applied); use famguard run --lan IFACES",
			"lan_source", d.cfg.LANSource)
	} else {
		d.log.Info("LAN interfaces", "lan", d.cfg.LAN, "source", d.cfg.LANSource)
	}
}

// observe records the LAN-only neighbour table in the inventory.
func (d *Daemon) observe(t netwatch.Table) {
	if len(d.cfg.LAN) == 0 {
		return
	}
	now := time.Now()
	added := d.devs.inv.Observe(t, now)
	d.readLeases()
	if len(added) > 0 || now.Sub(d.devs.savedAt) >= inventorySaveEvery {
		d.saveInventory(now)
	}
	if len(added) > 0 && d.pol != nil {
		for _, mac := range added {
			d.log.Info("new device on the LAN", "mac", mac, "name", d.devs.inv.Name(mac), "randomized", policy.IsRandomized(mac), "applies", d.applies(mac))
		}
	}
}

// readLeases takes host names from the DHCP leases when the file changed.
func (d *Daemon) readLeases() {
	if d.cfg.Leases == "" {
		return
	}
	f, err := os.Open(d.cfg.Leases)
	if err != nil {
		return // no DHCP server here, or not yet: names are optional
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.ModTime().Equal(d.devs.leasesMod) {
		return // unchanged since the last read
	}
	d.devs.leasesMod = fi.ModTime()
	d.devs.inv.SetNames(inventory.ParseLeases(f))
}

func (d *Daemon) saveInventory(now time.Time) {
	p := d.inventoryPath()
	if p == "" {
		return
	}
	if err := d.devs.inv.Save(p); err != nil {
		d.log.Warn("cannot save the device inventory (it stays in memory)", "path", p, "err", err)
		return
	}
	d.devs.savedAt = now
}

// seen are the MACs on the LAN now (none while the LAN is unknown).
func (d *Daemon) seen() []string {
	if len(d.cfg.LAN) == 0 || d.devs.inv == nil {
		return nil
	}
	return d.devs.inv.Present()
}

// withSeen evaluates the children's devices with eval, and trusted and
// unknown devices on the LAN; unknown devices get their DHCP names.
func (d *Daemon) withSeen(macs []string, eval policy.Evaluator) []policy.DeviceState {
	states := d.pol.EvaluateSeen(macs, eval)
	for i := range states {
		if states[i].Kind == policy.KindUnknown && states[i].Device == "" && d.devs.inv != nil {
			states[i].Device = d.devs.inv.Name(states[i].MAC)
		}
	}
	return states
}

// evaluator is the evaluator of the moment: the schedule when the clock is
// trusted, the boot policy otherwise.
func (d *Daemon) evaluator() policy.Evaluator {
	// Pauses, extra time and budgets (overrides.go) apply on top, also to
	// unknown devices evaluated like a child and to the unknown class.
	if d.trusted {
		at := policy.At(d.cfg.Clock.Now(), d.zone.Loc)
		return func(p *policy.Policy) []policy.DeviceState { return d.applyOverrides(at(p)) }
	}
	return func(p *policy.Policy) []policy.DeviceState {
		return d.applyOverrides(p.EvaluateUnsynced(d.cfg.BootPolicy, d.saved.Devices, d.saved.SavedAt))
	}
}

// enforced says whether a row is a device the dataplane restricts: not a
// trusted device, not an unknown device the policy allows.
func enforced(s policy.DeviceState) bool {
	switch s.Kind {
	case policy.KindTrusted:
		return false
	case policy.KindUnknown:
		return s.Child != "" || !s.Online
	}
	return true
}

// noticeRestricted logs every unknown device on the LAN that the
// unknown-device policy restricts, with the command that undoes it: all of
// them after a load (all is true), else only those not named before.
func (d *Daemon) noticeRestricted(all bool) {
	if d.pol == nil {
		return
	}
	before := map[string]bool{}
	for _, l := range d.devs.restricted {
		before[l] = !all
	}
	d.devs.restricted = policy.Restricted(d.states, d.pol.Children)
	for _, line := range d.devs.restricted {
		if !before[line] {
			d.log.Warn(line)
		}
	}
}

// applies says in a few words what applies to a MAC under the policy.
func (d *Daemon) applies(mac string) string {
	if d.pol == nil {
		return ""
	}
	switch owner := d.pol.Owner(mac); owner {
	case "":
		return "unknown: " + d.pol.UnknownRuleFor(mac).String()
	case policy.AssignTrusted:
		return "trusted"
	default:
		return "child " + owner
	}
}

// devices answers `famguard devices`: every device in the inventory, with
// what applies to it now.
func (d *Daemon) devices() DevicesStatus {
	st := DevicesStatus{LAN: append([]string{}, d.cfg.LAN...), LANSource: d.cfg.LANSource, Devices: []DeviceEntry{}}
	list := d.devs.inv.List()
	byMAC := map[string]policy.DeviceState{}
	if d.pol != nil {
		u, r := d.pol.UnknownDevices(), d.pol.RandomizedDevices()
		st.Unknown, st.Randomized = &u, &r
		macs := make([]string, len(list))
		for i, dev := range list {
			macs[i] = dev.MAC
		}
		for _, s := range d.withSeen(macs, d.evaluator()) {
			byMAC[s.MAC] = s
		}
	}
	for _, dev := range list {
		e := DeviceEntry{Device: dev, Applies: d.applies(dev.MAC)}
		if s, ok := byMAC[dev.MAC]; ok {
			e.Child, e.Online, e.Reason = s.Child, s.Online, s.Reason
			if s.Kind != policy.KindUnknown {
				e.DeviceName = s.Device
			}
		}
		st.Devices = append(st.Devices, e)
	}
	return st
}

// restrictedWarnings are the status warnings of the upgrade notice.
func (d *Daemon) restrictedWarnings() []string {
	if len(d.devs.restricted) == 0 {
		return nil
	}
	return append([]string{fmt.Sprintf("%d unknown device(s) on the LAN restricted by the unknown-device policy:", len(d.devs.restricted))}, d.devs.restricted...)
}
