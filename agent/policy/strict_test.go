package policy

import (
	"net/netip"
	"reflect"
	"testing"
)

func TestStrictAndAllowIPs(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		strict     bool
		allow      []string
	}{
		{"default off", "", false, nil},
		{"on with ranges", "\n    strict: true\n    allow_ips: [2001:db8::/32, 203.0.113.7, 198.51.100.0/24, 203.0.113.7/32, \"2001:db8::1\"]",
			true, []string{"198.51.100.0/24", "203.0.113.7/32", "2001:db8::/32", "2001:db8::1/128"}},
		{"allow_ips kept without strict", "\n    strict: false\n    allow_ips: [10.0.0.0/8]", false, []string{"10.0.0.0/8"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol, probs := ParseFile("f.yaml", []byte("version: 1\nchildren:\n  alice:\n    devices: [{mac: \"02:00:00:00:00:11\"}]"+tc.yaml+"\n"))
			if len(probs) > 0 {
				t.Fatal(probs)
			}
			c := pol.Children[0]
			var got []string
			for _, p := range c.AllowIPs {
				got = append(got, p.String())
			}
			if c.Strict != tc.strict || !reflect.DeepEqual(got, tc.allow) {
				t.Errorf("strict %v allow_ips %v, want %v %v", c.Strict, got, tc.strict, tc.allow)
			}
		})
	}
}

func TestParseAllowIP(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.7": "203.0.113.7/32", " 10.0.0.0/8 ": "10.0.0.0/8", "2001:db8::/16": "", "2001::/16": "2001::/16",
		"2001:db8::/32": "2001:db8::/32", "::ffff:1.2.3.4": "", "1.0.0.0/7": "", "fe80::1%eth0": "", "1.2.3.4/33": "",
	} {
		p, err := parseAllowIP(in)
		if want == "" {
			if err == nil {
				t.Errorf("%q accepted as %v", in, p)
			}
			continue
		}
		if err != nil || p != netip.MustParsePrefix(want) {
			t.Errorf("%q = %v, %v; want %s", in, p, err, want)
		}
	}
}
