package bundle

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/famguard/famguard/scripts/fuzzseed"
)

var fixedTime = time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)

// fuzzKey is a fixed key, so that committed seeds carry valid signatures
// and the fuzzer starts past the signature check.
func fuzzKey() (SecretKey, []byte) {
	seed := bytes.Repeat([]byte{7}, ed25519.SeedSize)
	k := SecretKey{ID: KeyID{1, 2, 3, 4, 5, 6, 7, 8}, Key: ed25519.NewKeyFromSeed(seed)}
	pub := encodeFile("fuzz public key", append(append([]byte(pkAlg), k.ID[:]...), k.Key.Public().(ed25519.PublicKey)...))
	return k, pub
}

// fuzzEnv is a fresh /etc/famguard for one input.
func fuzzEnv(t *testing.T, pub []byte) (string, Config) {
	// On tmpfs when there is one: every applied input fsyncs its files,
	// which on a busy disk costs the fuzzer seconds per input.
	base := ""
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		base = "/dev/shm"
	}
	root, err := os.MkdirTemp(base, "fgfuzz")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	os.MkdirAll(filepath.Join(root, "keys.d"), 0o755)
	os.MkdirAll(filepath.Join(root, "profiles.d"), 0o755)
	os.WriteFile(filepath.Join(root, "keys.d", "k.pub"), pub, 0o644)
	os.WriteFile(filepath.Join(root, "profiles.d", "f.yaml"), []byte(parentsProfile), 0o644)
	return root, Config{OperatorDir: filepath.Join(root, "operator.d"), CategoriesDir: filepath.Join(root, "categories.d"),
		ProfilesDir: filepath.Join(root, "profiles.d"), KeysDir: filepath.Join(root, "keys.d"),
		Limits: Limits{MaxArchive: 1 << 20, MaxUnpacked: 1 << 20, MaxFiles: 20, MaxProfileFile: 64 << 10, MaxListFile: 256 << 10}}
}

// checkOutcome: a refusal changed nothing; an import wrote exactly the
// manifest's files; nothing appeared outside the two targets.
func checkOutcome(t *testing.T, root string, cfg Config, r Result) {
	if !r.OK {
		if r.Error == nil || r.Error.Code == "" || r.Error.Msg == "" {
			t.Fatalf("refusal without a reason: %+v", r)
		}
	}
	var installed *Manifest
	if r.OK {
		for _, t2 := range r.Targets {
			m, ok := Installed(cfg.dir(t2))
			if !ok || m.Serial != r.Serial {
				t.Fatalf("imported, but %s has no manifest of serial %d", t2, r.Serial)
			}
			installed = m
		}
		for _, f := range installed.Files {
			b, err := os.ReadFile(filepath.Join(cfg.dir(f.Target()), f.Name()))
			if err != nil || Sum(b) != f.SHA256 {
				t.Fatalf("imported, but %s is missing or differs: %v", f.Path, err)
			}
		}
	}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(root, p)
		top := strings.SplitN(rel, string(filepath.Separator), 2)[0]
		switch top {
		case ".", "keys.d", "profiles.d", lockName:
			return nil
		case "operator.d", "categories.d":
			if !r.OK {
				t.Fatalf("refused, but %s exists", rel)
			}
			return nil
		}
		t.Fatalf("unexpected %s after import (ok %v)", rel, r.OK)
		return nil
	})
}

// FuzzImport: arbitrary archives (plain or gzip) never panic, never write
// outside the targets, and are either refused with a reason or applied
// exactly as their manifest says.
func FuzzImport(f *testing.F) {
	k, pub := fuzzKey()
	var good bytes.Buffer
	Build(&good, k, 1, "seed", fixedTime, []Source{{Path: "operator/isp.yaml", Data: []byte("version: 1\nfloors: {block: [security]}\n")}})
	f.Add(good.Bytes())
	fuzzseed.Add(f, "FuzzImport", fuzzseed.Bytes)
	f.Fuzz(func(t *testing.T, data []byte) {
		root, cfg := fuzzEnv(t, pub)
		checkOutcome(t, root, cfg, Import(bytes.NewReader(data), "fuzz", cfg))
	})
}

// FuzzSignedManifest: manifests a compromised or buggy build pipeline could
// sign (any JSON), with every file they name present in the archive.
func FuzzSignedManifest(f *testing.F) {
	k, pub := fuzzKey()
	f.Add([]byte(`{"format":"famguard-bundle/1","serial":2,"created":"2026-01-01T00:00:00Z","files":[{"path":"operator/a.yaml","size":11,"sha256":"`+Sum([]byte("version: 1\n"))+`"}]}`), []byte("version: 1\n"))
	fuzzseed.Add(f, "FuzzSignedManifest", nil)
	f.Fuzz(func(t *testing.T, manifest, file []byte) {
		root, cfg := fuzzEnv(t, pub)
		var m Manifest
		json.Unmarshal(manifest, &m)
		entries := []entry{{ManifestName, tar.TypeReg, manifest, -1}, {SignatureName, tar.TypeReg, k.Sign(manifest), -1}}
		for i, fl := range m.Files {
			if i >= 30 {
				break
			}
			entries = append(entries, entry{filesPrefix + fl.Path, tar.TypeReg, file, -1})
		}
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, en := range entries {
			if tw.WriteHeader(&tar.Header{Name: en.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(en.data))}) != nil {
				return // a name tar cannot carry
			}
			tw.Write(en.data)
		}
		tw.Close()
		checkOutcome(t, root, cfg, Import(&buf, "fuzz", cfg))
	})
}

// TestFuzzSeedsAreSigned: the committed valid-* seeds import, so the
// fuzzer starts past the signature check rather than only probing it.
func TestFuzzSeedsAreSigned(t *testing.T) {
	_, pub := fuzzKey()
	n := 0
	for name, b := range fuzzseed.Files(t, "FuzzImport") {
		if !strings.HasPrefix(name, "valid-") {
			continue
		}
		n++
		root, cfg := fuzzEnv(t, pub)
		r := Import(bytes.NewReader(b), name, cfg)
		if !r.OK {
			t.Errorf("%s: %v", name, r.Error)
		}
		checkOutcome(t, root, cfg, r)
	}
	if n == 0 {
		t.Fatal("no valid-* seed")
	}
}
