// Command famguard-bundle is the operator's side of signed bundles: make a
// signing key, build and sign a bundle (agent/bundle/OPERATORS.md).
//
// Why a separate binary: it runs on the operator's build host, never on a
// router, and the router binary's size budget (6 MiB on mips) has no room
// for a tar writer and a gzip compressor it would never use. The router
// binary only reads bundles (famguard import, famguard pull).
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/famguard/famguard/agent/bundle"
	"github.com/famguard/famguard/agent/cliflags"
)

const usage = `famguard-bundle — build signed famguard bundles (operator side)

Usage:
  famguard-bundle keygen [--comment TEXT] NAME     writes NAME.sec (keep it off the routers) and NAME.pub
  famguard-bundle build --key NAME.sec [--serial N] [--comment TEXT]
                        [--operator DIR] [--categories DIR] (-o BUNDLE.tar.gz | --publish DIR)

Keys are usign/signify ed25519 keys (signify -G -n and usign -G make them too).
On the router: famguard import BUNDLE, or famguard pull --url URL for --publish.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "keygen":
		err = bundleKeygen(os.Args[2:], os.Stdout)
	case "build":
		err = bundleBuild(os.Args[2:], os.Stdout)
	case "help", "--help", "-h":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "famguard-bundle: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(os.Stderr, "famguard-bundle %s: %v\n", os.Args[1], err)
		}
		os.Exit(1)
	}
}

// parse parses flags and positional arguments in any order.
var parse = cliflags.ParseInterleaved

func bundleKeygen(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	comment := fs.String("comment", "famguard operator", "comment written into the key files")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("expected a name: famguard-bundle keygen NAME writes NAME.sec and NAME.pub")
	}
	sec, pub, id, err := bundle.GenerateKey(*comment)
	if err != nil {
		return err
	}
	if err := writeNew(pos[0]+".sec", sec, 0o600); err != nil {
		return err
	}
	if err := writeNew(pos[0]+".pub", pub, 0o644); err != nil {
		os.Remove(pos[0] + ".sec")
		return err
	}
	fmt.Fprintf(out, "key %s: secret %s.sec (keep it off the routers), public %s.pub (install in /etc/famguard/keys.d/)\n", id, pos[0], pos[0])
	return nil
}

// writeNew refuses to overwrite: a keygen over an existing key would lock
// every router out.
func writeNew(name string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func bundleBuild(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("build", flag.ContinueOnError)
	keyFile := fs.String("key", "", "unencrypted usign/signify secret key (signify -G -n, usign -G, famguard-bundle keygen)")
	serial := fs.String("serial", "", "serial number; must grow with every bundle (default: the current Unix time)")
	comment := fs.String("comment", "", "free text kept in the manifest")
	opDir := fs.String("operator", "", "directory of operator-layer profiles (*.yaml) to ship")
	catDir := fs.String("categories", "", "directory of category lists (<category>.txt) to ship")
	output := fs.String("o", "", "bundle file to write (.tar.gz)")
	publish := fs.String("publish", "", "also write bundle.tar.gz and manifest.json here, for pull mode (famguard pull --url)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *keyFile == "" || (*output == "" && *publish == "") || (*opDir == "" && *catDir == "") {
		return errors.New("usage: famguard-bundle build --key NAME.sec [--serial N] [--operator DIR] [--categories DIR] (-o BUNDLE | --publish DIR)")
	}
	kb, err := os.ReadFile(*keyFile)
	if err != nil {
		return err
	}
	key, err := bundle.ParseSecretKey(kb)
	if err != nil {
		return fmt.Errorf("%s: %w", *keyFile, err)
	}
	now := time.Now()
	n := uint64(now.Unix())
	if *serial != "" {
		if n, err = strconv.ParseUint(*serial, 10, 64); err != nil || n == 0 {
			return fmt.Errorf("--serial %q: expected a positive whole number", *serial)
		}
	}
	var srcs []bundle.Source
	for target, dir := range map[string]string{bundle.TargetOperator: *opDir, bundle.TargetCategories: *catDir} {
		if dir == "" {
			continue
		}
		s, err := bundle.SourcesFromDir(target, dir)
		if err != nil {
			return err
		}
		srcs = append(srcs, s...)
	}
	var buf bytes.Buffer
	manifest, _, err := bundle.Build(&buf, key, n, *comment, now, srcs)
	if err != nil {
		return err
	}
	if *output != "" {
		if err := writeAtomic(*output, buf.Bytes()); err != nil {
			return err
		}
	}
	if *publish != "" {
		// The bundle first, the manifest last: a router polling in between
		// sees the old manifest (and nothing to do), never a new manifest
		// whose bundle is not there yet. The manifest is only a hint of the
		// serial; the router verifies the bundle's own signed copy.
		for _, f := range []struct {
			name string
			data []byte
		}{{bundle.PublishedBundle, buf.Bytes()}, {bundle.ManifestName, manifest}} {
			if err := writeAtomic(filepath.Join(*publish, f.name), f.data); err != nil {
				return err
			}
		}
	}
	fmt.Fprintf(out, "bundle serial %d: %d files, %d bytes, signed by key %s\n", n, len(srcs), buf.Len(), key.ID)
	return nil
}

func writeAtomic(name string, data []byte) error {
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}
