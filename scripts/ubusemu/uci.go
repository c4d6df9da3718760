package main

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// login is one `config login` section of /etc/config/rpcd.
type login struct {
	Username, Password string
	Read, Write        []string // ACL group name patterns
}

// parseRPCDConfig reads the `config login` sections of an rpcd UCI file (the
// subset of UCI syntax that file uses: config, option, list, quotes, #).
func parseRPCDConfig(r io.Reader) ([]login, error) {
	var out []login
	var cur *login
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		f := uciFields(sc.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "config":
			cur = nil
			if len(f) >= 2 && f[1] == "login" {
				out = append(out, login{})
				cur = &out[len(out)-1]
			}
		case "option", "list":
			if len(f) != 3 {
				return nil, fmt.Errorf("line %d: want `%s NAME VALUE`", n, f[0])
			}
			if cur == nil {
				continue
			}
			switch f[1] {
			case "username":
				cur.Username = f[2]
			case "password":
				cur.Password = f[2]
			case "read":
				cur.Read = append(cur.Read, f[2])
			case "write":
				cur.Write = append(cur.Write, f[2])
			}
		default:
			return nil, fmt.Errorf("line %d: unknown keyword %q", n, f[0])
		}
	}
	return out, sc.Err()
}

// uciFields splits a UCI line into words, honouring '…' and "…" quoting and
// dropping # comments.
func uciFields(line string) []string {
	var out []string
	var b strings.Builder
	in, quote, have := false, byte(0), false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				b.WriteByte(c)
			}
		case c == '\'' || c == '"':
			quote, have = c, true
		case c == '#' && !in:
			i = len(line)
		case c == ' ' || c == '\t':
			if have {
				out = append(out, b.String())
				b.Reset()
				have = false
			}
			in = false
			continue
		default:
			b.WriteByte(c)
			have = true
		}
		in = have
	}
	if have {
		out = append(out, b.String())
	}
	return out
}
