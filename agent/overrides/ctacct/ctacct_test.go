package ctacct

import (
	"net"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/famguard/famguard/rules"
)

// fakeTable is a conntrack table the test edits between samples.
type fakeTable map[string]*netlink.ConntrackFlow

func (ft fakeTable) list(fam netlink.InetFamily) ([]*netlink.ConntrackFlow, error) {
	var out []*netlink.ConntrackFlow
	for _, f := range ft {
		if (fam == unix.AF_INET6) == (f.Forward.SrcIP.To4() == nil) {
			out = append(out, f)
		}
	}
	return out, nil
}

func flow(src string, sport uint16, id uint16, up, down uint64) *netlink.ConntrackFlow {
	return &netlink.ConntrackFlow{
		Mark:    rules.DeviceMark(id),
		Forward: netlink.IPTuple{Protocol: 6, SrcIP: net.ParseIP(src), DstIP: net.ParseIP("198.51.100.10"), SrcPort: sport, DstPort: 443, Bytes: up},
		Reverse: netlink.IPTuple{Protocol: 6, SrcIP: net.ParseIP("198.51.100.10"), DstIP: net.ParseIP(src), SrcPort: 443, DstPort: sport, Bytes: down},
	}
}

func TestSampleDeltas(t *testing.T) {
	ft := fakeTable{}
	r := New(ft.list)
	ft["a1"] = flow("192.0.2.11", 40000, 1, 1000, 5000)
	ft["x"] = flow("192.0.2.99", 40000, 0, 1<<20, 1<<20) // unmarked: nobody's
	if _, err := r.Sample(); err != nil {                // baseline
		t.Fatal(err)
	}
	for i, step := range []struct {
		edit func()
		want map[uint16]uint64
	}{
		{func() {}, map[uint16]uint64{}}, // idle: nothing moved
		{func() { ft["a1"].Reverse.Bytes += 300_000 }, map[uint16]uint64{1: 300_000}},
		{func() { // a new flow of device 2 (IPv6) and more on device 1
			ft["b1"] = flow("2001:db8:1::12", 50000, 2, 100, 900)
			ft["a1"].Forward.Bytes += 10
		}, map[uint16]uint64{1: 10, 2: 1000}},
		{func() { // device 2 goes offline: the mark changes, the flow does not
			ft["b1"].Mark |= rules.MarkOffline
			ft["b1"].Reverse.Bytes += 50
		}, map[uint16]uint64{2: 50}},
		{func() { delete(ft, "a1"); delete(ft, "b1") }, map[uint16]uint64{}},
		{func() { ft["a2"] = flow("192.0.2.11", 40000, 1, 7, 3) }, map[uint16]uint64{1: 10}}, // tuple reused
	} {
		step.edit()
		got, err := r.Sample()
		if err != nil {
			t.Fatal(err)
		}
		for id := range got {
			if got[id] == 0 {
				delete(got, id)
			}
		}
		if len(got) != len(step.want) {
			t.Errorf("step %d: %v, want %v", i, got, step.want)
			continue
		}
		for id, w := range step.want {
			if got[id] != w {
				t.Errorf("step %d: device %d moved %d, want %d", i, id, got[id], w)
			}
		}
	}
}
