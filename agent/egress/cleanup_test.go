package egress

import (
	"errors"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

func TestOurs(t *testing.T) {
	for name, want := range map[string]bool{
		SetBase("alice") + "4":                             true,
		SetBase("a-very-long-child-name-of-32-chrs") + "6": true,
		"fgin-a4": true,
		"fgin-b6": true,
		"fg":      false,
		"fgin":    false,
		"fgx-a4":  false,
		"other":   false,
		"my-fg-4": false,
		"":        false,
	} {
		if got := Ours(name); got != want {
			t.Errorf("Ours(%q) = %v, want %v", name, got, want)
		}
	}
	for _, gen := range []string{"a", "b"} {
		if !Ours(InboundPrefix + gen + "4") {
			t.Errorf("the inbound generation %q is not famguard's", gen)
		}
	}
}

func TestRemoveOurs(t *testing.T) {
	for _, tc := range []struct {
		name     string
		sets     []string
		inUse    []string
		removed  int
		left     []string
		errParts []string // "" error: none
	}{
		{name: "nothing there", removed: 0},
		{name: "only others", sets: []string{"other", "wan-block"}, left: []string{"other", "wan-block"}},
		{name: "ours and others", sets: []string{"fg-alice4", "fg-alice6", "fgin-a4", "fgin-a6", "other"},
			removed: 4, left: []string{"other"}},
		{name: "one still referenced", sets: []string{"fg-alice4", "fg-alice6", "fgin-b4", "other"}, inUse: []string{"fg-alice6"},
			removed: 2, left: []string{"fg-alice6", "other"},
			errParts: []string{"ipset fg-alice6", "in use by a firewall rule", "iptables-save | grep -w fg-alice6", "famguard cleanup again"}},
		{name: "another's referenced set is not ours to touch", sets: []string{"fg-bob4", "other"}, inUse: []string{"other"},
			removed: 1, left: []string{"other"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &Fake{InUse: map[string]bool{}}
			for _, n := range tc.sets {
				if err := f.Create(n, strings.HasSuffix(n, "6"), 16); err != nil {
					t.Fatal(err)
				}
			}
			for _, n := range tc.inUse {
				f.InUse[n] = true
			}
			f.Calls = nil
			removed, err := RemoveOurs(f)
			if removed != tc.removed {
				t.Errorf("removed %d, want %d", removed, tc.removed)
			}
			if len(tc.errParts) == 0 && err != nil {
				t.Errorf("error %v, want none", err)
			}
			for _, p := range tc.errParts {
				if err == nil || !strings.Contains(err.Error(), p) {
					t.Errorf("error %v, want it to say %q", err, p)
				}
			}
			left, _ := f.List()
			if !slices.Equal(left, tc.left) {
				t.Errorf("sets left %q, want %q", left, tc.left)
			}
			for _, c := range f.Calls {
				if n, ok := strings.CutPrefix(c, "destroy "); ok && !Ours(n) {
					t.Errorf("destroyed %s, not famguard's", n)
				}
			}
		})
	}
}

func TestRemoveOursListFails(t *testing.T) {
	removed, err := RemoveOurs(failingLister{})
	if removed != 0 || err == nil || !strings.Contains(err.Error(), "listing the kernel's ipsets") || !strings.Contains(err.Error(), "ipset destroy") {
		t.Errorf("removed %d, error %v", removed, err)
	}
}

type failingLister struct{}

func (failingLister) List() ([]string, error) { return nil, errors.New("operation not permitted") }
func (failingLister) Destroy(string) error    { panic("Destroy after a failed List") }

// TestNetlinkRemoveOurs runs RemoveOurs on the real kernel in the test's
// private namespace: famguard's sets go (one of them large, so the kernel's
// list of it spans several messages), another's set stays, and a set of
// ours an iptables rule still names is reported, in use, and kept.
func TestNetlinkRemoveOurs(t *testing.T) {
	k, s, base := netlinkSets(t, "alice")
	v4, _ := Names(base)
	// Large: 3000 entries are far more than one netlink message holds.
	var adds []KernelAdd
	for i := range 3000 {
		adds = append(adds, KernelAdd{Set: v4, Addr: netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), Timeout: 60})
	}
	for i := 0; i < len(adds); i += 500 {
		k.AddBatch(adds[i:min(i+500, len(adds))])
	}
	if st, err := s.Stats(base); err != nil || st.Open4 != 3000 {
		t.Fatalf("stats %+v %v", st, err)
	}
	for _, n := range []string{"fgin-a4", "fgin-a6", "fg-ref4", "other"} {
		if err := k.Create(n, strings.HasSuffix(n, "6"), 16); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = k.Destroy("other"); _ = k.Destroy("fg-ref4") })
	rule := []string{"OUTPUT", "-m", "set", "--match-set", "fg-ref4", "dst", "-j", "ACCEPT"}
	if out, err := exec.Command("iptables", append([]string{"-A"}, rule...)...).CombinedOutput(); err != nil {
		t.Fatalf("iptables: %v %s", err, out)
	}
	defer func() { _ = exec.Command("iptables", append([]string{"-D"}, rule...)...).Run() }()

	before, err := k.List()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(before)
	if want := []string{"fg-alice4", "fg-alice6", "fg-ref4", "fgin-a4", "fgin-a6", "other"}; !slices.Equal(before, want) {
		t.Fatalf("kernel lists %q, want %q (each once)", before, want)
	}
	removed, err := RemoveOurs(k)
	if removed != 4 {
		t.Errorf("removed %d sets, want 4", removed)
	}
	if err == nil || !strings.Contains(err.Error(), "ipset fg-ref4: set is in use by a firewall rule") || !errors.Is(err, ErrInUse) {
		t.Errorf("error %v, want fg-ref4 named as in use", err)
	}
	after, err := k.List()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(after)
	if want := []string{"fg-ref4", "other"}; !slices.Equal(after, want) {
		t.Errorf("kernel lists %q after RemoveOurs, want %q", after, want)
	}
}
