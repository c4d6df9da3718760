package netwatch

// The LAN: which interfaces the family's devices are on.
//
// Why it matters: a device that is in no profile is an "unknown device", and
// the unknown-device policy (offline by default) applies to it. The router's
// upstream (the WAN gateway, the ISP's modem) and the router's own traffic
// must never be unknown devices, so only neighbours on LAN interfaces count.
//
// Where it comes from, in order: `famguard run --lan br-lan,wlan1`; else
// OpenWrt's /etc/config/network, the `lan` interface's device (21.02+:
// `option device 'br-lan'`; 19.07: `option type 'bridge'` makes br-lan,
// else `option ifname 'eth0.1'`); else br-lan when it exists. When none of
// them gives an interface the LAN is unknown: the neighbour table is not
// filtered (children's addresses are still learnt) and no device is listed
// as unknown.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strings"
)

// DefaultNetworkConfig is OpenWrt's network configuration.
const DefaultNetworkConfig = "/etc/config/network"

// ifaceName is what Linux accepts as an interface name (IFNAMSIZ 16, no
// slash or blank).
var ifaceName = regexp.MustCompile(`^[A-Za-z0-9_.@:+-]{1,15}$`)

// ParseLANFlag reads --lan: interface names separated by commas.
func ParseLANFlag(s string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !ifaceName.MatchString(f) {
			return nil, fmt.Errorf("--lan: %q is not an interface name (like br-lan or wlan0; separate several with commas)", f)
		}
		if !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--lan %q: give the LAN interfaces, e.g. --lan br-lan", s)
	}
	return out, nil
}

// uciLine matches `config TYPE ['NAME']`, `option KEY 'VALUE'` and
// `list KEY 'VALUE'`, with single, double or no quotes.
var uciLine = regexp.MustCompile(`^\s*(config|option|list)\s+('[^']*'|"[^"]*"|\S+)(?:\s+('[^']*'|"[^"]*"|\S+))?`)

func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '\'' || s[0] == '"') && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1]
	}
	return s
}

// ParseUCINetwork returns the devices of the `lan` interface in an OpenWrt
// network configuration: its `device` (21.02 and later), or for 19.07
// br-lan when it is a bridge, else its `ifname` list. nil when there is no
// lan interface.
func ParseUCINetwork(r io.Reader) []string {
	var (
		inLAN, found, bridge bool
		device               string
		ifnames              []string
	)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.Index(line, "#"); i >= 0 && !strings.ContainsAny(line[:i], `'"`) {
			line = line[:i]
		}
		m := uciLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		kw, key, val := m[1], unquote(m[2]), unquote(m[3])
		if kw == "config" {
			inLAN = key == "interface" && val == "lan"
			found = found || inLAN
			continue
		}
		if !inLAN {
			continue
		}
		switch key {
		case "device":
			device = val
		case "type":
			bridge = val == "bridge"
		case "ifname":
			if kw == "list" {
				ifnames = append(ifnames, val)
			} else {
				ifnames = append(ifnames, strings.Fields(val)...)
			}
		}
	}
	switch {
	case !found:
		return nil
	case device != "":
		ifnames = []string{device}
	case bridge:
		return []string{"br-lan"}
	}
	var out []string // only what can be an interface name: the file is hand-edited
	for _, n := range ifnames {
		if ifaceName.MatchString(n) {
			out = append(out, n)
		}
	}
	return out
}

// DefaultLAN finds the LAN interfaces when --lan is not given, and says
// where they came from. exists says whether an interface exists (nil: the
// system's).
func DefaultLAN(networkConfig string, exists func(string) bool) (ifaces []string, source string) {
	if exists == nil {
		exists = func(name string) bool { _, err := net.InterfaceByName(name); return err == nil }
	}
	if f, err := os.Open(networkConfig); err == nil {
		lan := ParseUCINetwork(f)
		f.Close()
		if len(lan) > 0 {
			return lan, fmt.Sprintf("the lan interface in %s", networkConfig)
		}
	}
	if exists("br-lan") {
		return []string{"br-lan"}, "br-lan exists"
	}
	return nil, fmt.Sprintf("none found (no lan interface in %s, no br-lan); use --lan", networkConfig)
}
