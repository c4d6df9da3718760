package rules

import (
	"go/ast"
	"go/parser"
	"go/token"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// TestProfileTextCannotChangeRules: child names, device names and reasons
// come from files a parent or an operator writes. Whatever they contain,
// they end up only inside a quoted, escaped comment: the rules famguard
// writes are the same rules, with the same verdicts, as for a plain name.
func TestProfileTextCannotChangeRules(t *testing.T) {
	hostile := []string{
		`x" -j ACCEPT`,
		"a\n-A FORWARD -j ACCEPT\nCOMMIT\n*filter",
		"$(reboot)", "`id`", "'; rm -rf / #", `\" \\ \n`,
		"\x00nul", "tab\there", "‮rtl override", strings.Repeat("long ", 4000),
		"--comment x -j DROP", "-A FAMGUARD -j ACCEPT",
	}
	alice := netip.MustParseAddr("192.0.2.11")
	inet := netip.MustParseAddr("198.51.100.10")
	render := func(name string) string {
		text, err := Render(Desired{DNSPort: 5354, Devices: []Device{
			{ID: 1, MAC: "02:00:00:00:00:11", Child: name, Name: name, Offline: true, Reason: name, Addrs: []netip.Addr{alice}},
			{ID: 2, MAC: "02:00:00:00:00:21", Child: "bob", Name: name, BypassPrevention: true},
		}}, IPv4)
		if err != nil {
			t.Fatalf("%q: %v", name, err)
		}
		return text
	}
	shape := func(text string) string { // the rules with comments blanked
		var out []string
		for _, line := range strings.Split(text, "\n") {
			args, err := Tokenize(line)
			if err != nil {
				t.Fatalf("line does not tokenize: %q: %v", line, err)
			}
			for i := range args {
				if i > 0 && args[i-1] == "--comment" {
					args[i] = "C"
				}
			}
			out = append(out, strings.Join(args, " "))
		}
		// Devices are ordered by child name, and a hostile name sorts
		// differently from "plain": compare the rules as a set.
		sort.Strings(out)
		return strings.Join(out, "\n")
	}
	plain := shape(render("plain"))
	for _, name := range hostile {
		text := render(name)
		if got := shape(text); got != plain {
			t.Errorf("name %q changed the rules:\n%s\nwant the shape of:\n%s", name, got, plain)
			continue
		}
		f := NewFake()
		if err := f.Apply(IPv4, text); err != nil {
			t.Errorf("name %q: restore input rejected: %v", name, err)
			continue
		}
		save := f.Save(IPv4)
		for _, p := range []struct {
			p    Packet
			want string
		}{
			{Packet{InMAC: "02:00:00:00:00:11", Src: alice, Dst: inet, Proto: "tcp", CtState: "NEW", DstPort: 443}, "REJECT"},
			{Packet{InMAC: "02:00:00:00:00:21", Src: netip.MustParseAddr("192.0.2.21"), Dst: inet, Proto: "tcp", CtState: "NEW", DstPort: 443}, "ACCEPT"},
		} {
			if v, err := Trace(save, p.p); err != nil || v.Action != p.want {
				t.Errorf("name %q: %s → %+v %v, want %s", name, p.p.InMAC, v, err, p.want)
			}
		}
	}
}

func TestMACIsValidatedBeforeRendering(t *testing.T) {
	for _, mac := range []string{"02:00:00:00:00:11 -j ACCEPT", "02:00:00:00:00:11\n-A FORWARD -j ACCEPT", "$(id)", "", "02:00:00:00:00:11:22:33"} {
		if _, err := Render(Desired{Devices: []Device{{MAC: mac, Child: "x", Offline: true}}}, IPv4); err == nil {
			t.Errorf("MAC %q accepted", mac)
		}
	}
}

// TestNoShell: the agent never runs a shell, so nothing from a profile can
// be interpreted as a command. Every exec.Command in non-test code of the
// agent and the rules package names a fixed program (a literal or a path
// looked up for a fixed name) and its arguments never include "-c".
func TestNoShell(t *testing.T) {
	root, _ := filepath.Abs("..")
	fset := token.NewFileSet()
	found := 0
	for _, dir := range []string{"agent", "rules"} {
		err := filepath.Walk(filepath.Join(root, dir), func(path string, info os.FileInfo, err error) error {
			if err != nil || info.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			file, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				return err
			}
			ast.Inspect(file, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || (sel.Sel.Name != "Command" && sel.Sel.Name != "CommandContext") {
					return true
				}
				if id, ok := sel.X.(*ast.Ident); !ok || id.Name != "exec" {
					return true
				}
				found++
				for _, a := range call.Args {
					if lit, ok := a.(*ast.BasicLit); ok && lit.Kind == token.STRING {
						v, _ := strconv.Unquote(lit.Value)
						if v == "sh" || v == "bash" || v == "-c" || strings.HasSuffix(v, "/sh") || strings.HasSuffix(v, "/bash") {
							t.Errorf("%s: runs a shell: %s", fset.Position(call.Pos()), v)
						}
					}
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if found == 0 {
		t.Fatal("found no exec.Command at all: the scan is broken")
	}
}
