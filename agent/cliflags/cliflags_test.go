package cliflags

import (
	"flag"
	"reflect"
	"testing"
)

func TestParseInterleaved(t *testing.T) {
	for _, args := range [][]string{{"--json", "DIR", "X"}, {"DIR", "--json", "X"}, {"DIR", "X", "--json"}} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		asJSON := fs.Bool("json", false, "")
		pos, err := ParseInterleaved(fs, args)
		if err != nil || !*asJSON || !reflect.DeepEqual(pos, []string{"DIR", "X"}) {
			t.Errorf("%v: pos %v json %v err %v", args, pos, *asJSON, err)
		}
	}
}
