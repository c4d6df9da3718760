package rules

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/famguard/famguard/scripts/fuzzseed"
)

// saveString quotes a string the way iptables-save prints a comment
// (libxtables xtables_save_string): bare when it is only letters, digits,
// '_' and '-', otherwise in double quotes with double quotes, backslashes
// and apostrophes escaped by a backslash.
func saveString(s string) string {
	bare := s != ""
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			bare = false
			break
		}
	}
	if bare {
		return s
	}
	return quoted(s)
}

// goldenSeeds are the committed iptables-save outputs (testdata/rules).
func goldenSeeds(f *testing.F) []string {
	files, err := filepath.Glob(filepath.Join("..", "testdata", "rules", "*.golden"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no golden files: %v", err)
	}
	var out []string
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

// FuzzTokenize: Tokenize splits a rule line as iptables-restore does. Its
// tokens, quoted again (the way iptables-save quotes, and the way the fake
// prints a rule), tokenize to the same tokens; it fails exactly when a quote
// is left open.
func FuzzTokenize(f *testing.F) {
	for _, g := range goldenSeeds(f) {
		for _, l := range strings.Split(g, "\n") {
			f.Add(l)
		}
	}
	fuzzseed.AddLines(f, "FuzzTokenize")
	f.Fuzz(func(t *testing.T, line string) {
		toks, err := Tokenize(line)
		open, esc := false, false
		for i := 0; i < len(line); i++ {
			switch {
			case esc:
				esc = false
			case line[i] == '\\' && i+1 < len(line):
				esc = true
			case line[i] == '"':
				open = !open
			}
		}
		if (err != nil) != open {
			t.Fatalf("Tokenize(%q) error %v, but quote left open: %v", line, err, open)
		}
		if err != nil {
			return
		}
		for _, tok := range toks {
			if tok == "" && !strings.Contains(line, `"`) {
				t.Fatalf("Tokenize(%q): empty token %q without quotes", line, toks)
			}
		}
		quoted := make([]string, len(toks))
		for i, tok := range toks {
			quoted[i] = saveString(tok)
		}
		for _, again := range []string{strings.Join(quoted, " "), quoteRule(toks)} {
			back, err := Tokenize(again)
			if err != nil || !reflect.DeepEqual(back, toks) && !(len(back) == 0 && len(toks) == 0) {
				t.Fatalf("Tokenize(%q) = %q; quoted again %q tokenizes to %q, %v", line, toks, again, back, err)
			}
		}
	})
}

// fuzzDesired builds a desired state with two devices whose names and
// reasons, and one MAC, come from the fuzzer.
func fuzzDesired(child, name, reason, mac string, flags uint8, port uint16, addr []byte) (Desired, Family) {
	var addrs []netip.Addr
	for len(addr) >= 4 {
		n := 4
		if addr[0]&1 == 1 && len(addr) >= 16 {
			n = 16
		}
		a, _ := netip.AddrFromSlice(addr[:n])
		addrs = append(addrs, a)
		addr = addr[n:]
	}
	d := Desired{Devices: []Device{
		{ID: 1, MAC: mac, Child: child, Name: name, Reason: reason, Offline: flags&1 != 0, BypassPrevention: flags&2 != 0, Addrs: addrs},
		{ID: 2, MAC: "02:00:00:00:00:21", Child: "bob", Name: reason, Reason: name, Offline: flags&4 != 0, BypassPrevention: flags&8 != 0,
			Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.21"), netip.MustParseAddr("2001:db8:1::21")}},
	}}
	if flags&32 != 0 {
		d.DNSPort = int(port)
		d.DoHAddrs = []netip.Addr{netip.MustParseAddr("9.9.9.9"), netip.MustParseAddr("2620:fe::fe")}
	}
	fam := IPv4
	if flags&16 != 0 {
		fam = IPv6
	}
	return d, fam
}

// commentSafe is what Comment lets through.
func commentSafe(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(" _.,:;()/+=@-", r)) {
			return false
		}
	}
	return len(s) <= maxComment
}

// maskComments tokenizes the -A lines of a restore input and replaces each
// comment with a placeholder, checking on the way that every comment is
// one token of safe characters.
func maskComments(t *testing.T, restore string) [][]string {
	t.Helper()
	var out [][]string
	tbl := ""
	for _, line := range strings.Split(restore, "\n") {
		switch {
		case strings.HasPrefix(line, "*"):
			tbl = line[1:]
			out = append(out, []string{line})
			continue
		case !strings.HasPrefix(line, "-A "):
			out = append(out, []string{line})
			continue
		}
		toks, err := Tokenize(line)
		if err != nil {
			t.Fatalf("rule line does not tokenize: %q: %v", line, err)
		}
		known := false
		for _, c := range ourChains[tbl] {
			known = known || toks[1] == c
		}
		if !known {
			t.Fatalf("rule in a chain famguard does not own: %q", line)
		}
		comments := 0
		for i, tok := range toks {
			if tok == "--comment" {
				comments++
				if i+1 >= len(toks) || !commentSafe(toks[i+1]) {
					t.Fatalf("comment is not one safe token: %q", line)
				}
				toks[i+1] = "COMMENT"
			} else if strings.ContainsAny(tok, "\"\\'\n\r") {
				t.Fatalf("a token outside the comment holds a quote or escape: %q", line)
			}
		}
		if comments > 1 || strings.Count(line, `"`) != 2*comments {
			t.Fatalf("%d comments, %d quotes: %q", comments, strings.Count(line, `"`), line)
		}
		out = append(out, toks)
	}
	return out
}

// FuzzRender: whatever names and reasons a profile holds, Render's output
// has exactly the structure it has with plain names (names only ever reach
// the quoted comment), every rule tokenizes, the stateful fake accepts it,
// and the snapshot read back from the fake holds it.
func FuzzRender(f *testing.F) {
	f.Add("alice", "Alice's phone", "offline: bedtime (Sun–Thu 21:00–07:00)", "02:00:00:00:00:11", uint8(0x3f), uint16(5354),
		[]byte{192, 0, 2, 11, 0x21, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11})
	f.Add("eve", "\"quoted\" \\ back\nslash ünïcode "+strings.Repeat("long ", 80), "x", "02-00-00-00-00-41", uint8(0x01), uint16(0), []byte(nil))
	f.Add("zed", `" -j ACCEPT -A FAMGUARD -j ACCEPT "`, "\" \\\" ' COMMIT\n*filter\n-F FAMGUARD", "02:00:00:00:00:99", uint8(0x35), uint16(53), []byte{10, 0, 0, 1})
	f.Add("bob", "", "", "02:00:00:00:00:21", uint8(0xff), uint16(65535), []byte{})
	fuzzseed.Add(f, "FuzzRender", nil)
	f.Fuzz(func(t *testing.T, child, name, reason, mac string, flags uint8, port uint16, addr []byte) {
		d, fam := fuzzDesired(child, name, reason, mac, flags, port, addr)
		text, err := Render(d, fam)
		if _, macErr := canonicalMAC(mac); macErr != nil {
			if err == nil {
				t.Fatalf("Render accepted MAC %q", mac)
			}
			return
		}
		if err != nil {
			t.Fatalf("Render: %v", err)
		}
		// The same state with plain names, sorted the same way.
		plain := "bob"
		if child < "bob" {
			plain = "a"
		} else if child > "bob" {
			plain = "c"
		}
		pd, _ := fuzzDesired(plain, "n", "r", mac, flags, port, addr)
		ptext, err := Render(pd, fam)
		if err != nil {
			t.Fatal(err)
		}
		got, want := maskComments(t, text), maskComments(t, ptext)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("names changed the rules:\n%s\nwith plain names:\n%s", text, ptext)
		}
		fake := NewFake()
		if err := fake.Apply(fam, text); err != nil {
			t.Fatalf("the fake refuses Render's output: %v\n%s", err, text)
		}
		snap, _ := fake.Snapshot(fam)
		if !Holds(text, snap) {
			t.Fatalf("the snapshot does not hold what was applied:\n%s\nsnapshot:\n%s", text, snap)
		}
		// The fake's iptables-save text gives back the same rules.
		var applied, saved [][]string
		for _, l := range strings.Split(text, "\n") {
			if strings.HasPrefix(l, "-A ") {
				toks, _ := Tokenize(l)
				applied = append(applied, toks)
			}
		}
		for _, l := range strings.Split(fake.Save(fam), "\n") {
			if toks, _ := Tokenize(l); len(toks) > 1 && toks[0] == "-A" && strings.HasPrefix(toks[1], "FAMGUARD") {
				saved = append(saved, toks)
			}
		}
		if len(applied) != len(saved) {
			t.Fatalf("%d rules applied, %d saved", len(applied), len(saved))
		}
	})
}

// FuzzSnapshot: ourLines reads iptables-save output back. On any text it
// reports only famguard's lines, well formed, each taken verbatim from the
// input. And on a real table into which another program put a rule with any
// comment at any position, Holds sees exactly whether famguard's state is
// intact: a comment can neither hide nor fake famguard's jump.
func FuzzSnapshot(f *testing.F) {
	for _, g := range goldenSeeds(f) {
		f.Add(g, "famguard: enforce per-device schedules", uint8(0))
		f.Add(g, "x -j FAMGUARD", uint8(1))
	}
	f.Add("*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -m comment --comment \"a -j FAMGUARD\" -j ACCEPT\nCOMMIT\n", "-j", uint8(2))
	fuzzseed.Add(f, "FuzzSnapshot", nil)
	base := Desired{DNSPort: 5354, Devices: []Device{alicePhone, withBypass(bobTablet)},
		DoHAddrs: []netip.Addr{netip.MustParseAddr("9.9.9.9")}}
	restore, err := Render(base, IPv4)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, save, comment string, op uint8) {
		// Any text.
		snap := ourLines(save)
		inSave := map[string]bool{} // the input's rules, as ourLines writes them
		for _, l := range saveLines(save) {
			inSave[strings.ReplaceAll(l, "\n", `\n`)] = true
		}
		for _, l := range strings.Split(strings.TrimSuffix(snap, "\n"), "\n") {
			if l == "" {
				continue
			}
			tbl, rest, ok := strings.Cut(l, ":")
			if !ok || ourChains[tbl] == nil {
				t.Fatalf("snapshot line %q names no table of ours", l)
			}
			switch {
			case strings.HasPrefix(rest, ":"):
				found := false
				for _, c := range ourChains[tbl] {
					found = found || rest[1:] == c
				}
				if !found {
					t.Fatalf("snapshot declares a chain not ours: %q", l)
				}
			case strings.HasPrefix(rest, "-A "):
				if !inSave[rest] {
					t.Fatalf("snapshot line %q is not in the input", l)
				}
			default:
				_, rule, _ := strings.Cut(rest, " ")
				if !inSave[rule] || !strings.Contains(rest, "#") {
					t.Fatalf("snapshot jump line %q is not in the input", l)
				}
			}
		}
		_ = Holds(restore, snap) // must not panic on anything ourLines gives

		// A real table, and another program's rule with this comment, put
		// in by the fake's restore parser and, as iptables-save prints it
		// (newlines in a comment print raw), written into the save text.
		fake := NewFake()
		if err := fake.Apply(IPv4, restore); err != nil {
			t.Fatal(err)
		}
		fresh := fake.Save(IPv4)
		if s, _ := fake.Snapshot(IPv4); !Holds(restore, s) {
			t.Fatalf("fresh state does not hold:\n%s", s)
		}
		c := saveString(comment)
		foreign := "-A FORWARD -m comment --comment " + c + " -j ACCEPT"
		var cmd, anchor string
		before, intact := false, false
		switch op % 7 {
		case 0: // in front of our jump
			cmd, anchor, before = "-I FORWARD 1 -m comment --comment "+c+" -j ACCEPT", "-A FORWARD ", true
		case 1: // behind it: harmless
			cmd, anchor, intact = foreign, "-A FORWARD ", true
		case 2: // in our chain
			cmd, anchor = "-A FAMGUARD -m comment --comment "+c+" -j ACCEPT", "-A FAMGUARD "
		case 3: // our jump deleted, the foreign rule in its place
			cmd, anchor = "-D FORWARD "+quoteRule(hooks[0].spec), "-A FORWARD "
		case 4: // in front of the nat jump
			cmd, anchor, before = "-I PREROUTING 1 -m comment --comment "+c+" -j ACCEPT", "-A PREROUTING ", true
		case 5: // behind the INPUT jump: harmless
			cmd, anchor, intact = "-A INPUT -m comment --comment "+c+" -j ACCEPT", "-A INPUT ", true
		case 6: // a log rule behind our jump, with this prefix: harmless
			cmd, anchor, intact = "-A FORWARD -j LOG --log-prefix "+c, "-A FORWARD ", true
		}
		// The save text: the rule written next to the anchor line.
		rule := strings.Replace(strings.Replace(cmd, "-I FORWARD 1 ", "-A FORWARD ", 1), "-I PREROUTING 1 ", "-A PREROUTING ", 1)
		var lines []string
		done := false
		for _, l := range strings.Split(fresh, "\n") {
			switch {
			case done || !strings.HasPrefix(l, anchor):
				lines = append(lines, l)
			case op%7 == 3:
				lines = append(lines, foreign)
			case before:
				lines = append(lines, rule, l)
			default:
				lines = append(lines, l, rule)
			}
			done = done || strings.HasPrefix(l, anchor)
		}
		text := strings.Join(lines, "\n")
		if got := Holds(restore, ourLines(text)); got != intact {
			t.Fatalf("after %q, Holds = %v, want %v\nsave:\n%s\nsnapshot:\n%s", cmd, got, intact, text, ourLines(text))
		}
		if strings.ContainsAny(comment, "\n") {
			return // iptables-restore reads lines: no such rule goes in by restore
		}
		var runErr error
		if op%7 == 3 {
			runErr = fake.Run(IPv4, foreign)
		}
		if runErr == nil && op%7 == 4 {
			runErr = fake.runIn(IPv4, "nat", cmd)
		} else if runErr == nil {
			runErr = fake.Run(IPv4, cmd)
		}
		if runErr != nil {
			t.Fatalf("%q refused: %v", cmd, runErr)
		}
		s, _ := fake.Snapshot(IPv4)
		if Holds(restore, s) != intact {
			t.Fatalf("after %q, Holds = %v, want %v\nsave:\n%s\nsnapshot:\n%s", cmd, !intact, intact, fake.Save(IPv4), s)
		}
	})
}

// FuzzFakeRestore: the stateful fake applies any restore input all or
// nothing, and what it prints (its iptables-save text) restores to exactly
// the same tables.
func FuzzFakeRestore(f *testing.F) {
	for _, g := range goldenSeeds(f) {
		f.Add(g)
	}
	for _, tc := range goldenCases {
		text, err := Render(tc.d, IPv6)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(text)
	}
	f.Add(RenderCleanup("filter", "nat"))
	f.Add("*filter\n-N X\n-A X -j ACCEPT\n-I X 1 -p tcp -j DROP\n-D X -j ACCEPT\n-F X\n-X X\nCOMMIT\n")
	fuzzseed.Add(f, "FuzzFakeRestore", fuzzseed.String)
	start, err := Render(Desired{DNSPort: 53, Devices: []Device{alicePhone, withBypass(bobTablet)}}, IPv4)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, input string) {
		fake := NewFake()
		if err := fake.Apply(IPv4, start); err != nil {
			t.Fatal(err)
		}
		before := fake.Save(IPv4)
		if err := fake.Apply(IPv4, input); err != nil {
			if after := fake.Save(IPv4); after != before {
				t.Fatalf("failed input (%v) changed the table:\n%s\nwas\n%s", err, after, before)
			}
			return
		}
		saved := fake.Save(IPv4)
		again := &Fake{t: [2]tables{newTables(), newTables()}}
		if err := again.t[IPv4].restore(saved); err != nil {
			t.Fatalf("the fake's own save text does not restore: %v\n%s", err, saved)
		}
		if got := again.Save(IPv4); got != saved {
			t.Fatalf("save → restore → save differs:\n%s\nwas\n%s", got, saved)
		}
	})
}
