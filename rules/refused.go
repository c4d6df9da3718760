package rules

import (
	"fmt"
	"strconv"
	"strings"
)

// Connections strict egress refused, per device ID: the packet counters of
// the strict reject rules (renderStrict), which the kernel keeps anyway, so
// counting costs no packet anything and no userspace work until someone
// asks. Each of those rules sees only the first packet of a new connection
// (established traffic returns earlier), so a packet is a refused
// connection attempt (a UDP datagram that is refused never becomes a
// connection, so each one counts).
//
// A restore that rewrites the strict chain sets its counters back to zero,
// so the Kernel reads them just before and just after each of its writes
// and keeps the difference: the counts run from the agent's start. Packets
// refused in the few milliseconds between a read and the restore are the
// only ones that can go uncounted.

// RefusedCounter reports the strict refusals per device ID, both families
// together (the Kernel; the daemon's status asks it only when someone asks
// for the status).
type RefusedCounter interface {
	Refused() (map[uint16]uint64, error)
}

// parseRefused reads iptables-save -c output: the packet counter of every
// strict reject rule, by the device ID in its connmark match.
func parseRefused(save string) map[uint16]uint64 {
	// "[PKTS:BYTES] -A FAMGUARD-STRICT -m connmark --mark ID/MASK ... -j FAMGUARD-REJECT"
	out := map[uint16]uint64{}
	for _, line := range strings.Split(save, "\n") {
		f := strings.Fields(line)
		if len(f) < 7 || f[2] != StrictChain || f[5] != "--mark" || f[len(f)-1] != RejectChain {
			continue
		}
		pkts, _, _ := strings.Cut(strings.TrimPrefix(f[0], "["), ":")
		n, err := strconv.ParseUint(pkts, 10, 64)
		val, ok := strings.CutSuffix(f[6], deviceMaskSuffix)
		id, verr := strconv.ParseUint(val, 0, 32)
		if err == nil && ok && verr == nil {
			out[MarkDevice(uint32(id))] += n
		}
	}
	return out
}

// deviceMaskSuffix ends the --mark of a rule that matches one device.
var deviceMaskSuffix = fmt.Sprintf("/%#x", MarkDeviceMask)

// strictCounters reads the strict reject rules' counters of the runner's
// family.
func (r *Runner) strictCounters() (map[uint16]uint64, error) {
	out, err := r.runSave("-c", "-t", "filter")
	return parseRefused(out), err
}

// hasStrict says whether a restore input holds strict reject rules.
func hasStrict(restore string) bool {
	return strings.Contains(restore, "-A "+StrictChain+" -m connmark")
}

// keepRefused wraps a write of the family: when the kernel holds strict
// rules, their counters are read before and after it and what the write
// reset is kept in k.refused.
func (k *Kernel) keepRefused(fam Family, write func() error) error {
	if !k.strict[fam] {
		return write()
	}
	before, berr := k.r[fam].strictCounters()
	err := write()
	if berr != nil {
		return err
	}
	after, aerr := k.r[fam].strictCounters()
	if aerr != nil {
		return err // what the write reset is lost: counts are never above the truth
	}
	if k.refused[fam] == nil {
		k.refused[fam] = map[uint16]int64{}
	}
	for id, n := range before {
		k.refused[fam][id] += int64(n) - int64(after[id])
	}
	return err
}

// Refused implements RefusedCounter: what the kernel's counters say now,
// plus what earlier writes reset.
func (k *Kernel) Refused() (map[uint16]uint64, error) {
	sum := map[uint16]int64{}
	for fam := range k.r {
		for id, n := range k.refused[fam] {
			sum[id] += n
		}
		if !k.strict[fam] {
			continue
		}
		now, err := k.r[fam].strictCounters()
		if err != nil {
			return nil, err
		}
		for id, n := range now {
			sum[id] += int64(n)
		}
	}
	out := make(map[uint16]uint64, len(sum))
	for id, n := range sum {
		out[id] = uint64(max(n, 0))
	}
	return out, nil
}
