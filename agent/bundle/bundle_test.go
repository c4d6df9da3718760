package bundle

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

const parentsProfile = "version: 1\nchildren:\n  alice:\n    devices: [{mac: \"02:00:00:00:00:11\"}]\n"

// env is a router's /etc/famguard with a trusted key.
type env struct {
	root string
	cfg  Config
	key  SecretKey
}

func newEnv(t *testing.T) *env {
	t.Helper()
	root := t.TempDir()
	e := &env{root: root}
	sec, pub, _, err := GenerateKey("test")
	if err != nil {
		t.Fatal(err)
	}
	if e.key, err = ParseSecretKey(sec); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"keys.d", "profiles.d"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	os.WriteFile(filepath.Join(root, "keys.d", "operator.pub"), pub, 0o644)
	os.WriteFile(filepath.Join(root, "profiles.d", "family.yaml"), []byte(parentsProfile), 0o644)
	e.cfg = Config{
		OperatorDir:   filepath.Join(root, "operator.d"),
		CategoriesDir: filepath.Join(root, "categories.d"),
		ProfilesDir:   filepath.Join(root, "profiles.d"),
		KeysDir:       filepath.Join(root, "keys.d"),
		Limits:        DefaultLimits,
	}
	return e
}

// snapshot is every file under root (except the lock), for "nothing
// changed" assertions.
func snapshot(t *testing.T, root string) string {
	var lines []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == lockName {
			return nil
		}
		b, _ := os.ReadFile(p)
		rel, _ := filepath.Rel(root, p)
		lines = append(lines, fmt.Sprintf("%s %x", rel, sha256.Sum256(b)))
		return nil
	})
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func (e *env) build(t *testing.T, serial uint64, srcs ...Source) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, _, err := Build(&buf, e.key, serial, "test", time.Unix(1_800_000_000, 0), srcs); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func (e *env) importBytes(b []byte) Result {
	return Import(bytes.NewReader(b), "test", e.cfg)
}

func isp(body string) Source {
	return Source{Path: "operator/isp.yaml", Data: []byte("version: 1\n" + body)}
}

// entry is one raw tar entry for hand-made archives.
type entry struct {
	name string
	typ  byte
	data []byte
	size int64 // -1: len(data)
}

func rawTar(t *testing.T, entries []entry) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, en := range entries {
		size := int64(len(en.data))
		if en.size >= 0 && en.typ == tar.TypeReg {
			size = en.size
		}
		h := &tar.Header{Name: en.name, Typeflag: en.typ, Mode: 0o644, Size: size, Linkname: "/etc/shadow"}
		if en.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if en.typ == tar.TypeReg {
			tw.Write(en.data)
		}
	}
	tw.Close()
	return buf.Bytes()
}

// signed makes a correctly signed manifest (JSON as given) plus payload
// entries, as an attacker holding no key cannot, but a buggy or
// compromised build pipeline could.
func (e *env) signed(t *testing.T, files []File, payload ...entry) []byte {
	m := Manifest{Format: Format, Serial: 7, Created: time.Unix(1_800_000_000, 0).UTC(), Files: files}
	mb, _ := json.Marshal(m)
	return rawTar(t, append([]entry{{ManifestName, tar.TypeReg, mb, -1}, {SignatureName, tar.TypeReg, e.key.Sign(mb), -1}}, payload...))
}

func TestImportApplies(t *testing.T) {
	e := newEnv(t)
	r := e.importBytes(e.build(t, 1, isp("floors: {block: [security]}\n"), Source{Path: "categories/security.txt", Data: []byte("malware.example\n")}))
	if !r.OK {
		t.Fatalf("refused: %v", r.Error)
	}
	if r.Serial != 1 || r.Policy == "" || r.KeyID != e.key.ID.String() || strings.Join(r.Targets, ",") != "categories,operator" {
		t.Errorf("result %+v", r)
	}
	if b, _ := os.ReadFile(filepath.Join(e.cfg.OperatorDir, "isp.yaml")); !strings.Contains(string(b), "security") {
		t.Errorf("operator.d/isp.yaml = %q", b)
	}
	if m, ok := Installed(e.cfg.OperatorDir); !ok || m.Serial != 1 {
		t.Errorf("installed manifest %+v %v", m, ok)
	}
	// A newer bundle replaces the whole directory; the old one is kept.
	r = e.importBytes(e.build(t, 2, isp(""), Source{Path: "operator/other.yaml", Data: []byte("version: 1\n")}))
	if !r.OK {
		t.Fatalf("refused: %v", r.Error)
	}
	names, _ := filepath.Glob(filepath.Join(e.cfg.OperatorDir, "*.yaml"))
	if len(names) != 2 {
		t.Errorf("operator.d holds %v", names)
	}
	if m, ok := Installed(filepath.Join(e.root, ".operator.d.prev")); !ok || m.Serial != 1 {
		t.Errorf("last good not kept: %+v", m)
	}
	if left, _ := filepath.Glob(filepath.Join(e.root, ".*staging*")); len(left) != 0 {
		t.Errorf("staging left behind: %v", left)
	}
}

// TestImportRefuses: every bad input of issue 11 is refused with its code
// and a reason, and nothing under /etc/famguard changes.
func TestImportRefuses(t *testing.T) {
	e := newEnv(t)
	if r := e.importBytes(e.build(t, 5, isp(""))); !r.OK {
		t.Fatalf("setup: %v", r.Error)
	}
	good := e.build(t, 6, isp("defaults: {safe_search: true}\n"))
	other := newEnv(t) // a key the router does not trust
	yaml := []byte("version: 1\n")
	fileFor := func(p string, data []byte) File {
		return File{Path: p, Size: int64(len(data)), SHA256: Sum(data)}
	}
	var bomb bytes.Buffer
	zw := gzip.NewWriter(&bomb)
	zw.Write(rawTar(t, []entry{{ManifestName, tar.TypeReg, bytes.Repeat([]byte(" "), 100<<20), -1}}))
	zw.Close()

	cases := []struct {
		name   string
		bundle func() []byte
		code   string
		msg    string
	}{
		{"bad signature (manifest altered after signing)", func() []byte {
			return bytes.Replace(good, []byte(`"serial": 6`), []byte(`"serial": 9`), 1) // uncompressed? see below
		}, "", ""},
		{"unknown key", func() []byte { return other.build(t, 6, isp("")) }, CodeUnknownKey, "not trusted"},
		{"replayed serial", func() []byte { return e.build(t, 5, isp("")) }, CodeReplay, "not above the installed 5"},
		{"older serial", func() []byte { return e.build(t, 4, isp("")) }, CodeReplay, "replayed or older"},
		{"truncated archive", func() []byte { return good[:len(good)*2/3] }, CodeCorrupt, ""},
		{"junk after a valid bundle", func() []byte { return append(append([]byte(nil), good...), []byte("#!/bin/sh\nrm -rf /\n")...) }, CodeCorrupt, "data after the end"},
		{"a valid bundle padded with zeros", func() []byte { return append(append([]byte(nil), good...), make([]byte, 1<<20)...) }, CodeCorrupt, "data after the end"},
		{"not an archive", func() []byte { return []byte("<html>502 Bad Gateway</html>") }, CodeCorrupt, ""},
		{"empty file", func() []byte { return nil }, CodeCorrupt, "ends before manifest.json"},
		{"manifest hash mismatch", func() []byte {
			return e.signed(t, []File{fileFor("operator/isp.yaml", yaml)}, entry{"files/operator/isp.yaml", tar.TypeReg, []byte("version: 2\n"), -1})
		}, CodeHash, "does not match the manifest"},
		{"file missing from the archive", func() []byte {
			return e.signed(t, []File{fileFor("operator/isp.yaml", yaml)})
		}, CodeCorrupt, "lacks operator/isp.yaml"},
		{"extra file not in the manifest", func() []byte {
			return e.signed(t, []File{fileFor("operator/isp.yaml", yaml)}, entry{"files/operator/isp.yaml", tar.TypeReg, yaml, -1}, entry{"files/operator/x.yaml", tar.TypeReg, yaml, -1})
		}, CodeManifest, "not in the manifest"},
		{"../ in the manifest", func() []byte { return e.signed(t, []File{fileFor("operator/../../etc/passwd.yaml", yaml)}) }, CodeUnsafePath, "leaves its directory"},
		{"absolute path in the manifest", func() []byte { return e.signed(t, []File{fileFor("/etc/famguard/operator.d/x.yaml", yaml)}) }, CodeUnsafePath, "absolute"},
		{"nested directory in the manifest", func() []byte { return e.signed(t, []File{fileFor("operator/sub/x.yaml", yaml)}) }, CodeUnsafePath, "no further directories"},
		{"hidden file in the manifest", func() []byte { return e.signed(t, []File{fileFor("operator/.x.yaml", yaml)}) }, CodeUnsafePath, "not starting with '.'"},
		{"unknown target", func() []byte { return e.signed(t, []File{fileFor("keys/evil.pub", yaml)}) }, CodeUnsafePath, "unknown target"},
		{"../ in the archive", func() []byte {
			return e.signed(t, []File{fileFor("operator/isp.yaml", yaml)}, entry{"files/operator/../../../tmp/x.yaml", tar.TypeReg, yaml, -1})
		}, CodeUnsafePath, ""},
		{"absolute path in the archive", func() []byte {
			return e.signed(t, []File{fileFor("operator/isp.yaml", yaml)}, entry{"/etc/famguard/operator.d/isp.yaml", tar.TypeReg, yaml, -1})
		}, CodeUnsafePath, ""},
		{"symlink in the archive", func() []byte {
			return e.signed(t, []File{fileFor("operator/isp.yaml", yaml)}, entry{"files/operator/isp.yaml", tar.TypeSymlink, nil, -1})
		}, CodeUnsafePath, "symbolic link"},
		{"hard link in the archive", func() []byte {
			return e.signed(t, []File{fileFor("operator/isp.yaml", yaml)}, entry{"files/operator/isp.yaml", tar.TypeLink, nil, -1})
		}, CodeUnsafePath, "hard link"},
		{"device in the archive", func() []byte {
			return e.signed(t, []File{fileFor("operator/isp.yaml", yaml)}, entry{"files/operator/isp.yaml", tar.TypeChar, nil, -1})
		}, CodeUnsafePath, "a device"},
		{"fifo in the archive", func() []byte {
			return e.signed(t, []File{fileFor("operator/isp.yaml", yaml)}, entry{"files/operator/isp.yaml", tar.TypeFifo, nil, -1})
		}, CodeUnsafePath, "named pipe"},
		{"symlink manifest", func() []byte {
			return rawTar(t, []entry{{ManifestName, tar.TypeSymlink, nil, -1}})
		}, CodeUnsafePath, "must be a regular file"},
		{"manifest not first", func() []byte { return rawTar(t, []entry{{"files/operator/isp.yaml", tar.TypeReg, yaml, -1}}) }, CodeCorrupt, "where manifest.json was expected"},
		{"too many files", func() []byte {
			var fs []File
			for i := 0; i <= DefaultLimits.MaxFiles; i++ {
				fs = append(fs, fileFor(fmt.Sprintf("operator/f%d.yaml", i), yaml))
			}
			return e.signed(t, fs)
		}, CodeTooMany, "at most 1000"},
		{"a file over its bound", func() []byte {
			return e.signed(t, []File{{Path: "operator/isp.yaml", Size: DefaultLimits.MaxProfileFile + 1, SHA256: strings.Repeat("0", 64)}})
		}, CodeTooLarge, "at most 262144"},
		{"gzip bomb", func() []byte { return bomb.Bytes() }, CodeTooLarge, ""},
		{"signed, but the profile is invalid", func() []byte {
			return e.build(t, 6, isp("defaults: {safe_search: yes}\nfloors: {block: [Not A Category]}\n"))
		}, CodeInvalid, "bundle:operator/isp.yaml:2:"},
		{"signed, but the list is an HTML page", func() []byte {
			return e.build(t, 6, Source{Path: "categories/adult.txt", Data: []byte("<html>\n<body>\nerror\n</body>\n</html>\n")})
		}, CodeInvalid, "categories/adult.txt: 4 lines are not domains"},
	}
	before := snapshot(t, e.root)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.bundle()
			if tc.code == "" && tc.name == cases[0].name {
				// good is gzip-compressed: alter the manifest inside.
				b = alterManifest(t, good)
				tc.code, tc.msg = CodeSignature, "does not match its signature"
			}
			r := e.importBytes(b)
			if r.OK || r.Error == nil {
				t.Fatalf("accepted: %+v", r)
			}
			if r.Error.Code != tc.code || !strings.Contains(r.Error.Error(), tc.msg) {
				t.Errorf("refused with %q, want code %s containing %q", r.Error.Error(), tc.code, tc.msg)
			}
			if after := snapshot(t, e.root); after != before {
				t.Errorf("something changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

// alterManifest re-packs a built bundle with one byte of the manifest
// changed and the original signature.
func alterManifest(t *testing.T, bundle []byte) []byte {
	zr, err := gzip.NewReader(bytes.NewReader(bundle))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var out []entry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		b, _ := io.ReadAll(tr)
		if h.Name == ManifestName {
			b = bytes.Replace(b, []byte(`"serial": 6`), []byte(`"serial": 9`), 1)
		}
		out = append(out, entry{h.Name, tar.TypeReg, b, -1})
	}
	return rawTar(t, out)
}

// TestForce: root may go back to an older serial on purpose.
func TestForce(t *testing.T) {
	e := newEnv(t)
	e.importBytes(e.build(t, 5, isp("")))
	e.cfg.Force = true
	r := e.importBytes(e.build(t, 3, isp("defaults: {safe_search: true}\n")))
	if !r.OK || !r.Forced || len(r.Warnings) == 0 {
		t.Fatalf("forced import: %+v %v", r, r.Error)
	}
	if m, _ := Installed(e.cfg.OperatorDir); m.Serial != 3 {
		t.Errorf("installed serial %d", m.Serial)
	}
}

// TestLargeBundleRefusedEarly: a 100 MB bundle is refused from its size
// alone (a sparse file: nothing is read), and a 100 MB stream after at
// most the bound.
func TestLargeBundleRefusedEarly(t *testing.T) {
	e := newEnv(t)
	name := filepath.Join(t.TempDir(), "big.tar")
	f, _ := os.Create(name)
	f.Truncate(100 << 20)
	f.Close()
	r := ImportFile(name, e.cfg)
	if r.OK || r.Error.Code != CodeTooLarge || !strings.Contains(r.Error.Msg, "104857600 bytes") {
		t.Errorf("100 MB file: %+v", r.Error)
	}
	cr := &countingSource{n: 100 << 20}
	r = Import(cr, "stream", e.cfg)
	if r.OK || r.Error.Code != CodeTooLarge && r.Error.Code != CodeCorrupt {
		t.Errorf("100 MB stream: %+v", r.Error)
	}
	if cr.read > DefaultLimits.MaxArchive+1<<20 {
		t.Errorf("read %d bytes of a 100 MB stream; the bound is %d", cr.read, DefaultLimits.MaxArchive)
	}
}

// countingSource yields n bytes of a valid-looking tar stream start: a
// huge manifest entry, so the reader keeps reading.
type countingSource struct {
	n, read int64
	hdr     []byte
}

func (c *countingSource) Read(p []byte) (int, error) {
	if c.hdr == nil {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Name: ManifestName, Typeflag: tar.TypeReg, Size: 1 << 19, Mode: 0o644})
		c.hdr = buf.Bytes()
	}
	if c.read >= c.n {
		return 0, io.EOF
	}
	n := len(p)
	if int64(n) > c.n-c.read {
		n = int(c.n - c.read)
	}
	for i := 0; i < n; i++ {
		off := c.read + int64(i)
		if off < int64(len(c.hdr)) {
			p[i] = c.hdr[off]
		} else {
			p[i] = ' '
		}
	}
	c.read += int64(n)
	return n, nil
}

// TestParentsBrokenDoesNotBlockOperator: a push is judged on the operator
// layer when the parents' own files are broken.
func TestParentsBrokenDoesNotBlockOperator(t *testing.T) {
	e := newEnv(t)
	os.WriteFile(filepath.Join(e.cfg.ProfilesDir, "broken.yaml"), []byte("version: 2\n"), 0o644)
	r := e.importBytes(e.build(t, 1, isp("floors: {block: [security]}\n")))
	if !r.OK || len(r.Warnings) == 0 || !strings.Contains(strings.Join(r.Warnings, "\n"), "parents' profiles have problems") {
		t.Errorf("%+v %v", r, r.Error)
	}
}

// TestUsignRoundTrip: keys and signatures survive their text form, and a
// key id mismatch is reported as an unknown key.
func TestUsignRoundTrip(t *testing.T) {
	sec, pub, id, err := GenerateKey("x")
	if err != nil {
		t.Fatal(err)
	}
	sk, err := ParseSecretKey(sec)
	if err != nil || sk.ID != id {
		t.Fatal(err)
	}
	pk, err := ParsePublicKey(pub)
	if err != nil || pk.ID != id {
		t.Fatal(err)
	}
	sig, err := ParseSignature(sk.Sign([]byte("hello")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify([]PublicKey{pk}, sig, []byte("hello")); err != nil {
		t.Error(err)
	}
	if _, err := Verify([]PublicKey{pk}, sig, []byte("hellO")); err == nil || !strings.Contains(err.Error(), "bad signature") {
		t.Errorf("altered message: %v", err)
	}
	sig.KeyID[0] ^= 1
	if _, err := Verify([]PublicKey{pk}, sig, []byte("hello")); err == nil || !strings.Contains(err.Error(), "unknown key") {
		t.Errorf("other key id: %v", err)
	}
	for _, bad := range []string{"", "untrusted comment: x\n", "comment\nRWQ=\n", "untrusted comment: x\n!!!\n", "untrusted comment: x\nRWQ=\n"} {
		if _, err := ParsePublicKey([]byte(bad)); err == nil {
			t.Errorf("ParsePublicKey(%q) accepted", bad)
		}
	}
}
