package dnsfilter

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/famguard/famguard/agent/categories"
)

func store(t testing.TB) *categories.Store {
	t.Helper()
	dir := t.TempDir()
	for name, body := range map[string]string{
		"gambling.txt": "casino.example\npoker.example\n",
		"games.txt":    "game.example\nkhanacademy.org\n", // an over-broad list, as real ones are
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, _, err := categories.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDecidePrecedence(t *testing.T) {
	s := store(t)
	alice := Rules{Child: "alice", Categories: []string{"gambling", "games"},
		Allow: []string{"khanacademy.org", "ok.casino.example"}, Deny: []string{"example-game.com"},
		SafeSearch: true, BypassPrevention: true, DoHNames: []string{"dns.google", "cloudflare-dns.com"}}
	parentLike := Rules{Child: "bob"} // no categories, no safe search, no bypass prevention
	for _, tc := range []struct {
		name     string
		rules    Rules
		action   Action
		category string
		safe     string
	}{
		{"casino.example", alice, Block, "gambling", ""},
		{"www.Casino.Example.", alice, Block, "gambling", ""}, // subdomain, case, root dot
		{"ok.casino.example", alice, Forward, "", ""},         // allow-listed subdomain beats the category
		{"a.ok.casino.example", alice, Forward, "", ""},       // and covers its own subdomains
		{"www.khanacademy.org", alice, Forward, "", ""},       // allow beats a category listing
		{"example-game.com", alice, Block, "", ""},            // deny list
		{"cdn.example-game.com", alice, Block, "", ""},        // deny covers subdomains
		{"notcasino.example", alice, Forward, "", ""},         // label suffix is not a parent
		{"www.google.com", alice, Rewrite, "", "forcesafesearch.google.com"},
		{"google.de", alice, Rewrite, "", "forcesafesearch.google.com"},
		{"www.google.co.uk", alice, Rewrite, "", "forcesafesearch.google.com"},
		{"www.youtube.com", alice, Rewrite, "", "restrict.youtube.com"},
		{"www.bing.com", alice, Rewrite, "", "strict.bing.com"},
		{"duckduckgo.com", alice, Rewrite, "", "safe.duckduckgo.com"},
		{"mail.google.com", alice, Forward, "", ""},
		{"use-application-dns.net", alice, Refuse, "", ""},
		{"mask.icloud.com", alice, Refuse, "", ""},
		{"mask-h2.icloud.com", alice, Refuse, "", ""},
		{"dns.google", alice, Refuse, "", ""},
		{"mozilla.cloudflare-dns.com", alice, Refuse, "", ""},
		{"dns.google", parentLike, Forward, "", ""},
		{"casino.example", parentLike, Forward, "", ""},
		{"www.google.com", parentLike, Forward, "", ""},
		{"use-application-dns.net", parentLike, Forward, "", ""},
	} {
		d := Decide(tc.name, tc.rules, s)
		if d.Action != tc.action || d.Category != tc.category || d.SafeHost != tc.safe {
			t.Errorf("%s for %s: %+v; want action %d category %q safe %q", tc.name, tc.rules.Child, d, tc.action, tc.category, tc.safe)
		}
		if d.Action != Forward && d.Reason == "" {
			t.Errorf("%s: a block without a reason", tc.name)
		}
	}
	if d := Decide("casino.example", alice, nil); d.Action != Forward {
		t.Errorf("without lists a category cannot block: %+v", d)
	}
	if d := Decide("casino.example", alice, s); d.Reason != "casino.example: gambling (casino.example)" {
		t.Errorf("reason = %q", d.Reason)
	}
}

func TestLoadDoH(t *testing.T) {
	l, err := LoadDoH(filepath.Join(t.TempDir(), "missing.txt"))
	if err != nil || l.Source != "built-in" || len(l.Names) < 10 || len(l.Addrs) < 10 {
		t.Fatalf("built-in list: %+v %v", l, err)
	}
	path := filepath.Join(t.TempDir(), "doh.txt")
	if err := os.WriteFile(path, []byte("# mine\ndoh.example # comment\n192.0.2.53\n2001:db8::53\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err = LoadDoH(path)
	if err != nil || len(l.Names) != 1 || l.Names[0] != "doh.example" || len(l.Addrs) != 2 {
		t.Errorf("edited list: %+v %v", l, err)
	}
	if err := os.WriteFile(path, []byte("ok.example\nnot a name\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadDoH(path); err == nil || !strings.Contains(err.Error(), path+":2:") {
		t.Errorf("bad line error = %v, want it to name %s:2", err, path)
	}
}
