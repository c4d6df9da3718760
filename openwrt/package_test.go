package openwrt

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/famguard/famguard/agent/policy"
)

// entry is one member of a tar archive.
type entry struct {
	mode     fs.FileMode
	uid, gid int
	uname    string
	dir      bool
	data     string
}

// untar reads a gzip'd tar completely, keyed by member name.
func untar(t *testing.T, data []byte) (map[string]entry, []string) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	m := map[string]entry{}
	var order []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		m[h.Name] = entry{fs.FileMode(h.Mode).Perm(), h.Uid, h.Gid, h.Uname, h.Typeflag == tar.TypeDir, string(b)}
		order = append(order, h.Name)
	}
	return m, order
}

// buildIPKs runs scripts/ipk.sh over stand-in router binaries.
func buildIPKs(t *testing.T, env ...string) (out string, bins map[string]string) {
	t.Helper()
	dist, out := t.TempDir(), t.TempDir()
	bins = map[string]string{}
	for _, goarch := range []string{"mips", "mipsle", "arm", "arm64", "amd64"} {
		bins[goarch] = "#!/bin/sh\necho famguard stand-in for " + goarch + "\n"
		write(t, filepath.Join(dist, "famguard-linux-"+goarch), bins[goarch], 0o755)
	}
	run(t, []string{"bash", filepath.Join(repo, "scripts", "ipk.sh"), "--dist", dist, "--out", out}, append([]string{"SOURCE_DATE_EPOCH=1700000000"}, env...), false)
	return out, bins
}

// fileTree is path → (mode, content) of a package's data, as the router sees it.
type fileTree map[string]string

func (ft fileTree) String() string {
	var keys []string
	for k := range ft {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s %s\n", k, ft[k])
	}
	return b.String()
}

// controlFields are the "Key: value" lines of a control file (not the
// description's continuation lines).
func controlFields(control string) map[string]string {
	fields := map[string]string{}
	for _, l := range strings.Split(control, "\n") {
		if k, v, ok := strings.Cut(l, ": "); ok && !strings.HasPrefix(l, " ") {
			fields[k] = v
		}
	}
	return fields
}

// dataSize is the bytes of a package's files (its Installed-Size).
func dataSize(data map[string]entry) int {
	size := 0
	for _, e := range data {
		size += len(e.data)
	}
	return size
}

func TestIPKs(t *testing.T) {
	out, bins := buildIPKs(t)
	want := map[string]string{ // a few architecture names per build
		"mips_24kc": "mips", "mipsel_24kc": "mipsle", "mipsel_74kc": "mipsle",
		"arm_cortex-a7_neon-vfpv4": "arm", "arm_cortex-a9": "arm", "arm_cortex-a15_neon-vfpv4": "arm",
		"aarch64_cortex-a53": "arm64", "aarch64_generic": "arm64", "aarch64_cortex-a72": "arm64",
		"x86_64": "amd64",
	}
	conffiles := "/etc/config/famguard\n/etc/famguard/profiles.d/family.yaml\n/etc/famguard/doh.txt\n"
	var reference fileTree
	for arch, goarch := range want {
		path := filepath.Join(out, "famguard_0.1.0-1_"+arch+".ipk")
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%s: %v", arch, err)
		}
		// GNU tar reads it as opkg does: a gzip'd tar.
		if o, _ := run(t, []string{"tar", "-tzf", path}, nil, false); o != "./debian-binary\n./data.tar.gz\n./control.tar.gz\n" {
			t.Errorf("%s: outer members (in this order): %q", arch, o)
		}
		outer, _ := untar(t, raw)
		if e := outer["./debian-binary"]; e.data != "2.0\n" {
			t.Errorf("%s: debian-binary %q", arch, e.data)
		}
		for name, e := range outer {
			if e.uid != 0 || e.gid != 0 || e.mode != 0o644 {
				t.Errorf("%s: %s: owner %d:%d mode %o", arch, name, e.uid, e.gid, e.mode)
			}
		}
		ctl, _ := untar(t, []byte(outer["./control.tar.gz"].data))
		data, _ := untar(t, []byte(outer["./data.tar.gz"].data))
		for part, m := range map[string]map[string]entry{"control": ctl, "data": data} {
			for name, e := range m {
				if e.uid != 0 || e.gid != 0 {
					t.Errorf("%s: %s %s owned by %d:%d", arch, part, name, e.uid, e.gid)
				}
				if !strings.HasPrefix(name, "./") {
					t.Errorf("%s: %s member %q does not start with ./", arch, part, name)
				}
			}
		}
		control := ctl["./control"].data
		fields, size := controlFields(control), dataSize(data)
		for k, v := range map[string]string{
			"Package": "famguard", "Version": "0.1.0-1", "Architecture": arch, "Section": "net",
			"Depends":        "iptables-nft, ip6tables-nft, kmod-nft-compat, kmod-ipt-core, kmod-ip6tables, kmod-ipt-conntrack, kmod-ipt-nat, kmod-nft-nat, kmod-nf-conntrack-netlink, kmod-ipt-ipset",
			"Installed-Size": fmt.Sprint(size),
		} {
			if fields[k] != v {
				t.Errorf("%s: control %s: %q, want %q", arch, k, fields[k], v)
			}
		}
		if fields["Maintainer"] == "" || !strings.Contains(control, "\nDescription: ") || !strings.Contains(control, "\n famguard enforces") {
			t.Errorf("%s: control lacks Maintainer or Description:\n%s", arch, control)
		}
		if ctl["./conffiles"].data != conffiles {
			t.Errorf("%s: conffiles %q", arch, ctl["./conffiles"].data)
		}
		for _, s := range []string{"./postinst", "./prerm", "./postrm"} {
			if e := ctl[s]; e.mode != 0o755 || !strings.HasPrefix(e.data, "#!/bin/sh\n") || strings.Contains(e.data, "$$") {
				t.Errorf("%s: %s mode %o:\n%s", arch, s, e.mode, e.data)
			}
		}
		if e := ctl["./control"]; e.mode != 0o644 {
			t.Errorf("%s: control mode %o", arch, e.mode)
		}
		// Modes that matter on the router.
		for path, mode := range map[string]fs.FileMode{
			"./usr/sbin/famguard": 0o755, "./etc/init.d/famguard": 0o755, "./etc/uci-defaults/90-famguard": 0o755,
			"./usr/share/famguard/firewall.include": 0o755, "./etc/hotplug.d/ntp/50-famguard": 0o755,
			"./etc/config/famguard": 0o600, "./etc/famguard/profiles.d/family.yaml": 0o644,
			"./etc/famguard/doh.txt": 0o644, "./lib/upgrade/keep.d/famguard": 0o644,
			"./etc/famguard/categories.d/": 0o755,
		} {
			e, ok := data[path]
			if !ok || e.mode != mode {
				t.Errorf("%s: %s: present %v, mode %o, want %o", arch, path, ok, e.mode, mode)
			}
		}
		if data["./usr/sbin/famguard"].data != bins[goarch] {
			t.Errorf("%s: carries the wrong binary: %q", arch, data["./usr/sbin/famguard"].data)
		}
		if got := data["./lib/upgrade/keep.d/famguard"].data; got != "/etc/famguard/\n" {
			t.Errorf("%s: keep.d %q", arch, got)
		}
		if got, want := data["./etc/famguard/doh.txt"].data, read(t, filepath.Join(repo, "agent", "dnsfilter", "doh.txt")); got != want {
			t.Errorf("%s: doh.txt is not agent/dnsfilter/doh.txt", arch)
		}
		// Every architecture carries the same files (but the binary).
		tree := fileTree{}
		for name, e := range data {
			if name != "./usr/sbin/famguard" {
				tree[name] = fmt.Sprintf("%o %q", e.mode, e.data)
			}
		}
		if reference == nil {
			reference = tree
		} else if tree.String() != reference.String() {
			t.Errorf("%s: data differs from other architectures", arch)
		}
		// The page is famguard-www's, not the agent's.
		for name := range data {
			if strings.HasPrefix(name, "./www/") || strings.HasPrefix(name, "./usr/libexec/rpcd/") || strings.HasPrefix(name, "./usr/share/rpcd/") {
				t.Errorf("%s: the agent's package carries %s (famguard-www's)", arch, name)
			}
		}
	}
}

// The famguard-www package: one for every architecture, the page, the rpcd
// plugin and ACL, the LuCI menu entry and famguard-parent-login, with the
// modes they need on the router, and the scripts that make rpcd load them.
func TestIPKWWW(t *testing.T) {
	out, _ := buildIPKs(t)
	if m, _ := filepath.Glob(filepath.Join(out, "famguard-www_*")); len(m) != 1 || filepath.Base(m[0]) != "famguard-www_0.1.0-1_all.ipk" {
		t.Fatalf("famguard-www packages: %v; want one, _all", m)
	}
	path := filepath.Join(out, "famguard-www_0.1.0-1_all.ipk")
	if o, _ := run(t, []string{"tar", "-tzf", path}, nil, false); o != "./debian-binary\n./data.tar.gz\n./control.tar.gz\n" {
		t.Errorf("outer members (in this order): %q", o)
	}
	outer, _ := untar(t, []byte(read(t, path)))
	ctl, _ := untar(t, []byte(outer["./control.tar.gz"].data))
	data, _ := untar(t, []byte(outer["./data.tar.gz"].data))
	fields, size := controlFields(ctl["./control"].data), dataSize(data)
	for k, v := range map[string]string{
		"Package": "famguard-www", "Version": "0.1.0-1", "Architecture": "all", "Section": "net",
		"Depends": "famguard, uhttpd, uhttpd-mod-ubus, rpcd", "Installed-Size": fmt.Sprint(size),
	} {
		if fields[k] != v {
			t.Errorf("control %s: %q, want %q", k, fields[k], v)
		}
	}
	// Exactly these files (and their directories), with these modes and
	// the repository's contents.
	www := filepath.Join(repo, "openwrt", "famguard", "www", "famguard")
	want := map[string]struct {
		mode fs.FileMode
		src  string
	}{
		"./www/famguard/index.html":                         {0o644, filepath.Join(www, "index.html")},
		"./www/famguard/app.js":                             {0o644, filepath.Join(www, "app.js")},
		"./www/famguard/app.css":                            {0o644, filepath.Join(www, "app.css")},
		"./www/famguard/i18n.js":                            {0o644, filepath.Join(www, "i18n.js")},
		"./usr/libexec/rpcd/famguard":                       {0o755, filepath.Join(files, "rpcd-plugin")},
		"./usr/share/rpcd/acl.d/famguard.json":              {0o644, filepath.Join(files, "rpcd-acl.json")},
		"./usr/share/luci/menu.d/luci-app-famguard.json":    {0o644, filepath.Join(files, "luci-menu.json")},
		"./www/luci-static/resources/view/famguard/open.js": {0o644, filepath.Join(files, "luci-view.js")},
		"./usr/sbin/famguard-parent-login":                  {0o755, filepath.Join(files, "famguard-parent-login")},
	}
	for name, e := range data {
		if e.uid != 0 || e.gid != 0 || !strings.HasPrefix(name, "./") {
			t.Errorf("%s: owner %d:%d", name, e.uid, e.gid)
		}
		if e.dir {
			if e.mode != 0o755 {
				t.Errorf("directory %s: mode %o", name, e.mode)
			}
			continue
		}
		w, ok := want[name]
		if !ok {
			t.Errorf("unexpected file %s", name)
			continue
		}
		if e.mode != w.mode || e.data != read(t, w.src) || e.data == "" {
			t.Errorf("%s: mode %o (want %o), same content as %s: %v", name, e.mode, w.mode, w.src, e.data == read(t, w.src))
		}
	}
	for name := range want {
		if _, ok := data[name]; !ok {
			t.Errorf("missing %s", name)
		}
	}
	// The menu opens the view the package ships (action path famguard/open).
	if !strings.Contains(data["./usr/share/luci/menu.d/luci-app-famguard.json"].data, `"path": "famguard/open"`) {
		t.Errorf("the LuCI menu entry does not open view/famguard/open.js")
	}
	if _, ok := ctl["./conffiles"]; ok {
		t.Errorf("famguard-www has conffiles: %q", ctl["./conffiles"].data)
	}
	if _, ok := ctl["./prerm"]; ok {
		t.Errorf("famguard-www has a prerm")
	}
	for _, s := range []string{"./postinst", "./postrm"} {
		if e := ctl[s]; e.mode != 0o755 || !strings.HasPrefix(e.data, "#!/bin/sh\n") || !strings.Contains(e.data, "/etc/init.d/rpcd reload") {
			t.Errorf("%s mode %o:\n%s", s, e.mode, e.data)
		}
	}
}

// Builds are reproducible, and the architecture list can be overridden.
func TestIPKOverridesAndReproducible(t *testing.T) {
	env := []string{"IPK_ARCHS_arm64=aarch64_cortex-a53", "IPK_ARCHS_arm=", "IPK_ARCHS_mips=", "IPK_ARCHS_mipsle=", "IPK_ARCHS_amd64="}
	a, _ := buildIPKs(t, env...)
	b, _ := buildIPKs(t, env...)
	names := func(dir string) []string {
		m, _ := filepath.Glob(filepath.Join(dir, "*.ipk"))
		for i := range m {
			m[i] = filepath.Base(m[i])
		}
		return m
	}
	if got := names(a); len(got) != 2 || got[0] != "famguard-www_0.1.0-1_all.ipk" || got[1] != "famguard_0.1.0-1_aarch64_cortex-a53.ipk" {
		t.Fatalf("with overrides built %v", got)
	}
	for _, n := range names(a) {
		if read(t, filepath.Join(a, n)) != read(t, filepath.Join(b, n)) {
			t.Errorf("%s: two builds of the same input differ", n)
		}
	}
}

// fakeSDK is just enough of an OpenWrt build tree to evaluate the feed
// Makefile with real make: rules.mk, package.mk and golang-package.mk
// stand-ins. Like OpenWrt's package-pack.mk, BuildPackage resets the
// package variables, expands Package/NAME/install inside a template that is
// then eval'd (target fake-install-NAME, into $(FAKE_ROOT)/NAME), and it
// exports the metadata and maintainer scripts after one expansion (what
// OpenWrt writes into the package), here to files in $(FAKE_META)/NAME.
var fakeSDK = map[string]string{
	"rules.mk": `INCLUDE_DIR:=$(TOPDIR)/include
BUILD_DIR:=$(TOPDIR)/build
INSTALL_DIR:=install -d -m0755
INSTALL_BIN:=install -m0755
INSTALL_DATA:=install -m0644
INSTALL_CONF:=install -m0600
CP:=cp -fpR
`,
	"include/package.mk": `PKG_BUILD_DIR?=$(BUILD_DIR)/$(PKG_NAME)-$(PKG_VERSION)
define FakeTarget
fake-prepare::
	$(call Build/Prepare)
fake-install-$(1):
	rm -rf $$(FAKE_ROOT)/$(1) && mkdir -p $$(FAKE_ROOT)/$(1)
	$(call Package/$(1)/install,$$(FAKE_ROOT)/$(1))
endef
define BuildPackage
$(foreach v,SECTION CATEGORY SUBMENU TITLE URL PKGARCH DEPENDS,$(eval $(v):=))
$(eval $(Package/$(1)))
$(file >$(FAKE_META)/$(1)/depends,$(DEPENDS))
$(file >$(FAKE_META)/$(1)/title,$(TITLE))
$(file >$(FAKE_META)/$(1)/section,$(SECTION))
$(file >$(FAKE_META)/$(1)/pkgarch,$(PKGARCH))
$(file >$(FAKE_META)/$(1)/conffiles,$(Package/$(1)/conffiles))
$(file >$(FAKE_META)/$(1)/description,$(Package/$(1)/description))
$(foreach s,postinst prerm postrm,$(file >$(FAKE_META)/$(1)/$(s),$(Package/$(1)/$(s))))
$(file >$(FAKE_META)/$(1)/vars,$(PKG_NAME) $(PKG_VERSION) $(PKG_RELEASE) $(PKG_BUILD_DEPENDS) $(GO_PKG) $(GO_PKG_BUILD_PKG) $(GO_PKG_LDFLAGS_X))
$(call FakeTarget,$(1))
endef
`,
	"feeds/packages/lang/golang/golang-package.mk": `GO_ARCH_DEPENDS:=@(fake_go_arch)
GO_PKG_BUILD_BIN_DIR:=$(FAKE_BIN_DIR)
define GoBinPackage
endef
`,
}

// dirTree is path → "mode content" of a directory tree, as fileTree.
func dirTree(t *testing.T, root string) fileTree {
	t.Helper()
	tree := fileTree{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		name := "./" + strings.TrimPrefix(p, root+"/")
		if d.IsDir() {
			tree[name+"/"] = fmt.Sprintf("%o %q", info.Mode().Perm(), "")
			return nil
		}
		tree[name] = fmt.Sprintf("%o %q", info.Mode().Perm(), read(t, p))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

// TestFeedPackageMatchesIPK evaluates the feed Makefile with make and
// compares what it installs and declares with the .ipk files, for each of
// its packages: same files, modes, contents, dependencies, architecture,
// conffiles and maintainer scripts.
func TestFeedPackageMatchesIPK(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		need(t, "make", "make")
	}
	top, meta, bin, root := t.TempDir(), t.TempDir(), t.TempDir(), filepath.Join(t.TempDir(), "root")
	for name, content := range fakeSDK {
		write(t, filepath.Join(top, name), content, 0o644)
	}
	binary := "#!/bin/sh\necho famguard stand-in for amd64\n"
	write(t, filepath.Join(bin, "famguard"), binary, 0o755)
	pkgdir, err := filepath.Abs(filepath.Join(repo, "openwrt", "famguard"))
	if err != nil {
		t.Fatal(err)
	}
	packages := []struct{ name, ipk, arch string }{
		{"famguard", "famguard_0.1.0-1_x86_64.ipk", ""},
		{"famguard-www", "famguard-www_0.1.0-1_all.ipk", "all"},
	}
	args := []string{"make", "-s", "-C", pkgdir, "TOPDIR=" + top, "FAKE_META=" + meta, "FAKE_BIN_DIR=" + bin, "FAKE_ROOT=" + root, "fake-prepare"}
	for _, p := range packages {
		if err := os.MkdirAll(filepath.Join(meta, p.name), 0o755); err != nil {
			t.Fatal(err)
		}
		args = append(args, "fake-install-"+p.name)
	}
	run(t, args, nil, false)
	out, _ := buildIPKs(t, "IPK_ARCHS_mips=", "IPK_ARCHS_mipsle=", "IPK_ARCHS_arm=", "IPK_ARCHS_arm64=")

	for _, p := range packages {
		// $(file >) ends each with a newline; OpenWrt's echo does the same.
		metaf := func(name string) string {
			return strings.TrimSuffix(read(t, filepath.Join(meta, p.name, name)), "\n")
		}
		if got := metaf("vars"); got != "famguard 0.1.0 1 golang/host github.com/famguard/famguard github.com/famguard/famguard/agent/cmd/famguard main.version=0.1.0-1" {
			t.Errorf("%s: package variables: %q", p.name, got)
		}
		if got := metaf("pkgarch"); got != p.arch {
			t.Errorf("%s: PKGARCH %q, want %q", p.name, got, p.arch)
		}
		feedTree := dirTree(t, filepath.Join(root, p.name))
		outer, _ := untar(t, []byte(read(t, filepath.Join(out, p.ipk))))
		data, _ := untar(t, []byte(outer["./data.tar.gz"].data))
		ctl, _ := untar(t, []byte(outer["./control.tar.gz"].data))
		ipkTree := fileTree{}
		for name, e := range data {
			if name != "./" {
				ipkTree[name] = fmt.Sprintf("%o %q", e.mode, e.data)
			}
		}
		if len(feedTree) == 0 || feedTree.String() != ipkTree.String() {
			t.Errorf("%s: the feed package and the .ipk carry different files:\nfeed:\n%s\nipk:\n%s", p.name, feedTree, ipkTree)
		}

		var deps []string
		for _, d := range strings.Fields(metaf("depends")) {
			if strings.HasPrefix(d, "+") {
				deps = append(deps, strings.TrimPrefix(d, "+"))
			} else if !strings.HasPrefix(d, "@") {
				t.Errorf("%s: DEPENDS entry %q is neither +package nor @condition", p.name, d)
			}
		}
		control := ctl["./control"].data
		if !strings.Contains(control, "\nDepends: "+strings.Join(deps, ", ")+"\n") {
			t.Errorf("%s: Depends differ: feed %v, ipk:\n%s", p.name, deps, control)
		}
		if !strings.Contains(control, "\nSection: "+metaf("section")+"\n") {
			t.Errorf("%s: Section differs: feed %q, ipk:\n%s", p.name, metaf("section"), control)
		}
		if p.arch != "" && !strings.Contains(control, "\nArchitecture: "+p.arch+"\n") {
			t.Errorf("%s: PKGARCH %s, ipk:\n%s", p.name, p.arch, control)
		}
		if !strings.Contains(control, "\nDescription: "+metaf("title")+"\n"+metaf("description")+"\n") {
			t.Errorf("%s: description differs from the feed's", p.name)
		}
		// An empty conffiles block: no conffiles member.
		if c, ok := ctl["./conffiles"]; metaf("conffiles") == "" && ok || metaf("conffiles") != "" && c.data != metaf("conffiles")+"\n" {
			t.Errorf("%s: conffiles: ipk %q (present %v), feed %q", p.name, c.data, ok, metaf("conffiles"))
		}
		for _, s := range []string{"postinst", "prerm", "postrm"} {
			got, ok := ctl["./"+s]
			if want := metaf(s); want == "" && ok || want != "" && got.data != want+"\n" {
				t.Errorf("%s: %s: the ipk's differs from the feed's:\nipk:\n%s\nfeed:\n%s", p.name, s, got.data, want)
			}
		}
		// Every conffile is in the package.
		for _, c := range strings.Fields(ctl["./conffiles"].data) {
			if _, ok := data["."+c]; !ok {
				t.Errorf("%s: conffile %s is not in the package", p.name, c)
			}
		}
	}
	// OpenWrt's convention for the Go include, with the fallback for this feed.
	if mk := read(t, filepath.Join(pkgdir, "Makefile")); !strings.Contains(mk, "../../lang/golang/golang-package.mk") ||
		!strings.Contains(mk, "include $(TOPDIR)/rules.mk") ||
		!strings.Contains(mk, "$(eval $(call GoBinPackage,famguard))") ||
		!strings.Contains(mk, "$(eval $(call BuildPackage,famguard))") ||
		!strings.Contains(mk, "$(eval $(call BuildPackage,famguard-www))") {
		t.Errorf("the feed Makefile lacks an OpenWrt convention")
	}
}

// shellcheck on every shell script the package ships (and the ipk builder).
func TestShellcheck(t *testing.T) {
	if _, err := exec.LookPath("shellcheck"); err != nil {
		need(t, "shellcheck", "shellcheck")
	}
	ms, msw := t.TempDir(), t.TempDir()
	run(t, []string{"bash", filepath.Join(repo, "scripts", "ipk.sh"), "maintainer-scripts", ms}, nil, false)
	run(t, []string{"bash", filepath.Join(repo, "scripts", "ipk.sh"), "maintainer-scripts", msw, "famguard-www"}, nil, false)
	args := []string{"shellcheck",
		filepath.Join(files, "famguard.init"), filepath.Join(files, "famguard.uci-defaults"),
		filepath.Join(files, "firewall.include"), filepath.Join(files, "ntp.hotplug"),
		filepath.Join(files, "rpcd-plugin"), filepath.Join(files, "famguard-parent-login"),
		filepath.Join(ms, "postinst"), filepath.Join(ms, "prerm"), filepath.Join(ms, "postrm"),
		filepath.Join(msw, "postinst"), filepath.Join(msw, "postrm"),
		filepath.Join(repo, "scripts", "ipk.sh")}
	if out, code := run(t, args, nil, true); code != 0 {
		t.Errorf("shellcheck:\n%s", out)
	}
}

// The default profile is valid and protects nothing; its commented example,
// once uncommented, is valid too (so the hint in the file is not a trap).
func TestDefaultProfile(t *testing.T) {
	src := read(t, filepath.Join(files, "family.yaml"))
	dir := t.TempDir()
	write(t, filepath.Join(dir, "family.yaml"), src, 0o644)
	pol, err := policy.LoadDir(dir)
	if err != nil {
		t.Fatalf("shipped family.yaml: %v", err)
	}
	if len(pol.Children) != 0 {
		t.Errorf("shipped family.yaml protects %d children; want none", len(pol.Children))
	}
	var b strings.Builder
	example := false
	for _, l := range strings.Split(src, "\n") {
		if strings.HasPrefix(l, "# children:") {
			example = true
		}
		if example {
			l = strings.TrimPrefix(l, "# ")
		}
		b.WriteString(l + "\n")
	}
	write(t, filepath.Join(dir, "family.yaml"), b.String(), 0o644)
	pol, err = policy.LoadDir(dir)
	if err != nil {
		t.Fatalf("the uncommented example:\n%s\n%v", b.String(), err)
	}
	if len(pol.Children) != 1 || pol.Children[0].Name != "alice" || len(pol.Trusted) != 1 {
		t.Errorf("the uncommented example: %+v, trusted %+v", pol.Children, pol.Trusted)
	}
}
