package dnsfilter

import (
	"bufio"
	_ "embed"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strings"

	"github.com/famguard/famguard/agent/categories"
)

//go:embed doh.txt
var defaultDoH string

// DoHList is the list of DNS-over-HTTPS resolvers protected devices may not
// use: their names answer NXDOMAIN, their addresses refuse HTTPS.
type DoHList struct {
	Names  []string
	Addrs  []netip.Addr
	Source string // the file, or "built-in"
}

// LoadDoH reads path, or the built-in list when path does not exist. A line
// that is neither a host name nor an address is an error naming the line.
func LoadDoH(path string) (DoHList, error) {
	text, source := defaultDoH, "built-in"
	if path != "" {
		b, err := os.ReadFile(path)
		switch {
		case err == nil:
			text, source = string(b), path
		case !os.IsNotExist(err):
			return DoHList{}, fmt.Errorf("DoH list %s: %w", path, err)
		}
	}
	l := DoHList{Source: source}
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if a, err := netip.ParseAddr(line); err == nil {
			l.Addrs = append(l.Addrs, a.Unmap())
			continue
		}
		d, ok, err := categories.ParseLine(line)
		if err != nil || !ok {
			return DoHList{}, fmt.Errorf("%s:%d: %q is neither a host name nor an address", source, n, line)
		}
		l.Names = append(l.Names, d)
	}
	sort.Strings(l.Names)
	sort.Slice(l.Addrs, func(i, j int) bool { return l.Addrs[i].Less(l.Addrs[j]) })
	return l, nil
}
