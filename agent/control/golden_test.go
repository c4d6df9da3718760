package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"github.com/famguard/famguard/scripts/fuzzseed"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/envelope.golden")

// echoHandler answers "echo" with its args, "fail" with an error of each
// kind, and refuses everything else as an unknown command.
func echoHandler(_ context.Context, req Request) (any, error) {
	switch req.Cmd {
	case "echo":
		var a map[string]string
		if err := DecodeArgs(req.Args, &a); err != nil {
			return nil, err
		}
		return map[string]any{"args": a}, nil
	case "typed":
		var a struct {
			Child string `json:"child"`
		}
		if err := DecodeArgs(req.Args, &a); err != nil {
			return nil, err
		}
		return a, nil
	case "status":
		return map[string]bool{"ok": true}, nil
	case "clock-step":
		var a struct {
			By string `json:"by"`
		}
		if err := DecodeArgs(req.Args, &a); err != nil {
			return nil, err
		}
		return "stepped " + a.By, nil
	case "fail":
		return nil, errors.New("plain errors become code failed")
	case "coded":
		return nil, codedErr{}
	}
	return nil, Errorf(CodeUnknownCommand, "unknown command %s", req.Cmd)
}

type codedErr struct{}

func (codedErr) Error() string      { return "there is no child named \"carol\"" }
func (codedErr) ErrorCode() string  { return "unknown-child" }
func (codedErr) ErrorField() string { return "child" }

// TestEnvelopeGolden pins the protocol's envelope: each request line in
// testdata/envelope.golden ("> ...") is answered exactly as the "< ..."
// line after it says. Run with -update after a deliberate change, and
// update PROTOCOL.md with it: clients depend on these bytes.
func TestEnvelopeGolden(t *testing.T) {
	path := "testdata/envelope.golden"
	requests := []string{
		`{"v":1,"cmd":"status"}`,
		`{"v":1,"cmd":"echo","args":{"a":"b"}}`,
		`{"v":1,"cmd":"typed","args":{"child":"alice","colour":"red"}}`,
		`{"v":1,"cmd":"typed","args":{"child":7}}`,
		`{"v":1,"cmd":"typed","args":["alice"]}`,
		`{"v":1,"cmd":"nope"}`,
		`{"v":1,"cmd":"fail"}`,
		`{"v":1,"cmd":"coded"}`,
		`{"v":2,"cmd":"status"}`,
		`{"cmd":"status"}`,
		`{"v":1}`,
		`{"v":1,"cmd":"status","extra":1}`,
		`{"v":1,"cmd":`,
		``,
		`status`,
		`clock-step 3h`,
		`clock-step 3h 4h`,
		`nope`,
	}
	srv := &Server{handler: echoHandler}
	var b strings.Builder
	for _, req := range requests {
		out, err := json.Marshal(srv.Answer(context.Background(), []byte(req)))
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("> " + req + "\n< " + string(out) + "\n")
	}
	if *update {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if b.String() != string(want) {
		t.Errorf("answers differ from %s (run with -update if the change is deliberate, and update PROTOCOL.md):\n%s", path, diffLines(string(want), b.String()))
	}
}

func diffLines(want, got string) string {
	w := bufio.NewScanner(strings.NewReader(want))
	g := bufio.NewScanner(strings.NewReader(got))
	var out strings.Builder
	for {
		wok, gok := w.Scan(), g.Scan()
		if !wok && !gok {
			return out.String()
		}
		if w.Text() != g.Text() {
			out.WriteString("want: " + w.Text() + "\ngot:  " + g.Text() + "\n")
		}
	}
}

// FuzzControlRequest: any request line gets exactly one JSON answer, never a
// panic; a JSON line gets a version-1 envelope that is either ok with a
// result or refused with a code and a message.
func FuzzControlRequest(f *testing.F) {
	for _, s := range []string{`{"v":1,"cmd":"echo","args":{"a":"b"}}`, `{"v":1,"cmd":"typed","args":{"child":7}}`, `status`, `clock-step 3h`, `{"v":2}`, `{`, ""} {
		f.Add([]byte(s))
	}
	fuzzseed.Add(f, "FuzzControlRequest", fuzzseed.Bytes)
	f.Fuzz(func(t *testing.T, line []byte) {
		ans := Answer(context.Background(), echoHandler, line)
		b, err := json.Marshal(ans)
		if err != nil {
			t.Fatalf("answer does not encode: %v", err)
		}
		if r, ok := ans.(Response); ok {
			if r.V != Version || r.OK == (r.Error != nil) || (r.Error != nil && (r.Error.Code == "" || r.Error.Message == "")) {
				t.Fatalf("malformed response %s", b)
			}
		}
	})
}
