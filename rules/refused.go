package rules

import (
	"bytes"
	"context"
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
	out := map[uint16]uint64{}
	prefix := "-A " + StrictChain + " "
	for _, line := range strings.Split(save, "\n") {
		if !strings.HasPrefix(line, "[") {
			continue
		}
		counters, rule, ok := strings.Cut(line, "] ")
		if !ok || !strings.HasPrefix(rule, prefix) || !strings.HasSuffix(rule, "-j "+RejectChain) {
			continue
		}
		pkts, _, _ := strings.Cut(counters[1:], ":")
		n, err := strconv.ParseUint(pkts, 10, 64)
		if err != nil {
			continue
		}
		f := strings.Fields(rule)
		for i := 0; i+1 < len(f); i++ {
			if f[i] != "--mark" {
				continue
			}
			if val, mask, err := parseMark(f[i+1]); err == nil && mask == MarkDeviceMask {
				out[MarkDevice(val)] += n
			}
		}
	}
	return out
}

// strictCounters reads the strict reject rules' counters of the runner's
// family.
func (r *Runner) strictCounters() (map[uint16]uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	cmd := command(ctx, r.save, "-c", "-t", "filter")
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := runBounded(ctx, cmd, r.timeout); err != nil {
		return nil, fmt.Errorf("%s -c: %w", r.save, err)
	}
	return parseRefused(stdout.String()), nil
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
	out := map[uint16]uint64{}
	for _, fam := range []Family{IPv4, IPv6} {
		var now map[uint16]uint64
		if k.strict[fam] {
			var err error
			if now, err = k.r[fam].strictCounters(); err != nil {
				return nil, err
			}
		}
		seen := map[uint16]bool{}
		for id, n := range now {
			seen[id] = true
			out[id] += uint64(max(int64(n)+k.refused[fam][id], 0))
		}
		for id, n := range k.refused[fam] {
			if !seen[id] && n > 0 {
				out[id] += uint64(n)
			}
		}
	}
	return out, nil
}
