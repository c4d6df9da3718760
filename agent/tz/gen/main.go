// Command gen writes agent/tz/zones_gen.go, famguard's compact zone table,
// from the Go toolchain's zone database. Run it with `go generate ./agent/tz`
// after a Go upgrade that brings newer tzdata.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"strings"

	"github.com/famguard/famguard/agent/tz/internal/gentab"
)

func main() {
	out := flag.String("o", "zones_gen.go", "output file")
	zipPath := flag.String("zip", "", "zoneinfo.zip to read (default: $(go env GOROOT)/lib/time/zoneinfo.zip)")
	flag.Parse()
	if *zipPath == "" {
		p, err := gentab.ZoneinfoZip()
		if err != nil {
			log.Fatal(err)
		}
		*zipPath = p
	}
	src, st, err := gentab.Generate(*zipPath)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*out, src, 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %d zone names, %d distinct entries, %d bytes of source; explicit transitions for %d zones: %s\n",
		*out, st.Names, st.Entries, len(src), len(st.Explicit), strings.Join(st.Explicit, " "))
}
