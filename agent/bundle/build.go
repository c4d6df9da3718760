package bundle

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// Source is one file to put in a bundle: its bundle path (<target>/<name>)
// and its content.
type Source struct {
	Path string
	Data []byte
}

// SourcesFromDir reads the files of a directory that belong in a target:
// profiles (*.yaml, *.yml) for the operator layer, <category>.txt for lists.
// Hidden files and editors' leftovers are skipped like the loaders skip them.
func SourcesFromDir(target, dir string) ([]Source, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []Source
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		p := target + "/" + e.Name()
		if checkPath(p) != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, Source{Path: p, Data: b})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s has no %s files", dir, target)
	}
	return out, nil
}

// Build writes a signed bundle (gzip-compressed tar) of srcs to w, and
// returns the manifest and its signature (the pull mode publishes them
// beside the bundle). The manifest is checked with the router's own rules
// (DefaultLimits) so that a bundle the router would refuse is refused here.
func Build(w io.Writer, key SecretKey, serial uint64, comment string, created time.Time, srcs []Source) (manifest, sig []byte, err error) {
	m := Manifest{Format: Format, Serial: serial, Created: created.UTC().Truncate(time.Second), Comment: comment}
	sorted := append([]Source(nil), srcs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	for _, s := range sorted {
		m.Files = append(m.Files, File{Path: s.Path, Size: int64(len(s.Data)), SHA256: Sum(s.Data)})
	}
	manifest, err = json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, nil, err
	}
	manifest = append(manifest, '\n')
	if _, rej := ParseManifest(manifest, DefaultLimits); rej != nil {
		return nil, nil, rej
	}
	sig = key.Sign(manifest)
	zw, _ := gzip.NewWriterLevel(w, gzip.BestCompression)
	tw := tar.NewWriter(zw)
	add := func(name string, data []byte) error {
		h := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: m.Created, Typeflag: tar.TypeReg, Format: tar.FormatUSTAR}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := add(ManifestName, manifest); err != nil {
		return nil, nil, err
	}
	if err := add(SignatureName, sig); err != nil {
		return nil, nil, err
	}
	for _, s := range sorted {
		if err := add(filesPrefix+s.Path, s.Data); err != nil {
			return nil, nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, nil, err
	}
	return manifest, sig, zw.Close()
}
