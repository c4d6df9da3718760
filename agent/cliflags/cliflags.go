// Package cliflags holds what famguard's two command lines (famguard on the
// router, famguard-bundle on the operator's side) share about parsing their
// arguments.
package cliflags

import "flag"

// ParseInterleaved lets flags and positional arguments come in any order
// (`famguard plan DIR --json` as well as `famguard plan --json DIR`): the
// standard flag package stops at the first positional argument.
func ParseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
