// Package control is the agent's local control channel: a unix socket in the
// state directory through which the CLI (`famguard status`, `pause`, `grant`,
// ...), a LuCI page, an ISP's management bridge or a shell script talk to the
// running daemon.
//
// Why a socket and not a status file: the answer must be the daemon's view at
// this instant (devices seen a second ago, the pause that just started), and
// a socket lets the daemon's single owning goroutine answer without anyone
// else touching its state. The socket is created mode 0600 in a 0700
// directory, so only root can read the family's data or command the agent.
//
// The protocol (PROTOCOL.md beside this file is its reference; a golden test
// pins it) is one request line in, one JSON document out, then close:
//
//	{"v":1,"cmd":"pause","args":{"child":"alice","for":"30m"}}
//	{"v":1,"ok":true,"result":{...}}
//	{"v":1,"ok":false,"error":{"code":"unknown-child","message":"..."}}
//
// Versioned so that a program written against version 1 keeps working: new
// commands, new optional arguments and new result fields may be added to
// version 1; a change that would break a client gets version 2 (and the
// agent answers both). Errors carry a stable machine code and a message
// written for a parent. A plain text line (`status`, `clock-step 3h`) is
// still accepted for the commands that existed before version 1 and answered
// in the old shape, so scripts written for it keep working.
package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// SocketName is the file name of the socket inside the state directory.
const SocketName = "famguard.sock"

// SocketPath returns the socket's path for a state directory.
func SocketPath(stateDir string) string { return filepath.Join(stateDir, SocketName) }

// Version is the protocol version this agent speaks.
const Version = 1

// Request is one command. Args is the command's JSON object (absent or null
// for commands without arguments).
type Request struct {
	V    int             `json:"v"`
	Cmd  string          `json:"cmd"`
	Args json.RawMessage `json:"args,omitempty"`
}

// Response is the answer to a Request: Result when OK, Error otherwise.
type Response struct {
	V      int             `json:"v"`
	OK     bool            `json:"ok"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *Error          `json:"error,omitempty"`
}

// Error is a failed request: Code is stable and meant for programs (see
// PROTOCOL.md), Message is meant for a parent, Field names the argument at
// fault when there is one.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

func (e *Error) Error() string { return e.Message }

// ErrorCode lets errors from other packages carry a protocol error code
// without importing this one.
type ErrorCode interface{ ErrorCode() string }

// Error codes every command may answer. Commands add their own (documented
// in PROTOCOL.md); a code is never renamed.
const (
	CodeBadRequest         = "bad-request"         // not JSON, no cmd, args not an object
	CodeUnsupportedVersion = "unsupported-version" // v is not one this agent speaks
	CodeUnknownCommand     = "unknown-command"
	CodeBadArgs            = "bad-args" // an argument is missing, unknown or malformed
	CodeFailed             = "failed"   // anything else: Message says what
)

// Errorf makes a protocol error.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// asError turns a handler's error into a protocol error.
func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	code := CodeFailed
	var c ErrorCode
	if errors.As(err, &c) {
		code = c.ErrorCode()
	}
	var fe interface{ ErrorField() string }
	field := ""
	if errors.As(err, &fe) {
		field = fe.ErrorField()
	}
	return &Error{Code: code, Message: err.Error(), Field: field}
}

// DecodeArgs reads a request's args into v, refusing unknown keys (a typo in
// a script must not be silently ignored). Absent args decode as {}.
func DecodeArgs(raw json.RawMessage, v any) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	if raw[0] != '{' {
		return Errorf(CodeBadArgs, "args must be a JSON object, like {\"child\":\"alice\"}")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		msg := err.Error()
		if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
			return &Error{Code: CodeBadArgs, Message: "unknown argument " + f + " (see PROTOCOL.md for this command's arguments)", Field: strings.Trim(f, `"`)}
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return &Error{Code: CodeBadArgs, Message: fmt.Sprintf("argument %q: expected %s, got %s", te.Field, te.Type, te.Value), Field: te.Field}
		}
		return Errorf(CodeBadArgs, "args: %v", err)
	}
	return nil
}

// Handler answers one request. The returned value is encoded as the result.
type Handler func(ctx context.Context, req Request) (any, error)

// Server accepts requests on the control socket.
type Server struct {
	ln      net.Listener
	path    string
	handler Handler
}

// Listen creates the state directory (0700) and the socket (0600). A stale
// socket left by a killed agent is removed; a live one (another agent using
// the same state directory) is an error, because two agents fighting over the
// same chains would flap.
func Listen(stateDir string, h Handler) (*Server, error) {
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory %s: %w (create it or pass --state DIR)", stateDir, err)
	}
	path := SocketPath(stateDir)
	if c, err := net.DialTimeout("unix", path, 300*time.Millisecond); err == nil {
		c.Close()
		return nil, fmt.Errorf("%w with state directory %s (stop it, or pass a different --state)", ErrAlreadyRunning, stateDir)
	}
	_ = os.Remove(path)
	// The socket is created with the process umask's mode and only then
	// narrowed to 0600: a restrictive umask closes that window, so nobody
	// but root can connect even for an instant. (Umask is process-wide, but
	// this runs once, at start, before anything else creates files.)
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	return &Server{ln: ln, path: path, handler: h}, nil
}

// Serve answers requests until ctx ends; it removes the socket on return.
func (s *Server) Serve(ctx context.Context) {
	go func() {
		<-ctx.Done()
		s.ln.Close()
	}()
	defer os.Remove(s.path)
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		go s.serveConn(ctx, conn)
	}
}

// MaxRequest bounds a request line; requests are small commands.
const MaxRequest = 4096

func (s *Server) serveConn(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(io.LimitReader(conn, MaxRequest)).ReadString('\n')
	if err != nil && line == "" {
		return
	}
	_ = json.NewEncoder(conn).Encode(Answer(ctx, s.handler, []byte(line)))
}

// Answer is the reply to one request line: a Response for a JSON request, the
// old shape (legacyReply) for a text one. Exported for the golden tests and
// for in-process callers.
func (s *Server) Answer(ctx context.Context, line []byte) any {
	return Answer(ctx, s.handler, line)
}

// Answer is h's reply to one request line (what the socket would send).
func Answer(ctx context.Context, h Handler, line []byte) any {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return Response{V: Version, Error: Errorf(CodeBadRequest, "empty request: send one JSON object like {\"v\":1,\"cmd\":\"status\"}")}
	}
	if line[0] != '{' {
		return legacy(ctx, h, string(line))
	}
	var req Request
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return Response{V: Version, Error: Errorf(CodeBadRequest, "request is not a valid JSON request object (%v); send {\"v\":1,\"cmd\":\"...\",\"args\":{...}}", err)}
	}
	if req.V == 0 {
		return Response{V: Version, Error: Errorf(CodeUnsupportedVersion, "request has no \"v\": send \"v\":%d, the protocol version this agent speaks", Version)}
	}
	if req.V != Version {
		return Response{V: Version, Error: Errorf(CodeUnsupportedVersion, "protocol version %d is not supported; this agent speaks version %d (send \"v\":%d)", req.V, Version, Version)}
	}
	if req.Cmd == "" {
		return Response{V: Version, Error: Errorf(CodeBadRequest, "request has no \"cmd\"")}
	}
	v, err := h(ctx, req)
	if err != nil {
		return Response{V: Version, Error: asError(err)}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return Response{V: Version, Error: Errorf(CodeFailed, "encoding the answer: %v", err)}
	}
	return Response{V: Version, OK: true, Result: b}
}

// legacyReply is the answer to a text request, as before version 1.
type legacyReply struct {
	OK    bool            `json:"ok"`
	Error string          `json:"error,omitempty"`
	Data  json.RawMessage `json:"data,omitempty"`
}

// legacyArgs names the positional words of the text commands that took any.
var legacyArgs = map[string][]string{"clock-step": {"by"}}

// textRequest turns a text command line into a version-1 request.
func textRequest(line string) (Request, error) {
	f := strings.Fields(line)
	if len(f) == 0 {
		return Request{}, Errorf(CodeBadRequest, "empty request")
	}
	req := Request{V: Version, Cmd: f[0]}
	names := legacyArgs[f[0]]
	if len(f)-1 > len(names) {
		return req, Errorf(CodeBadArgs, "%s: too many words; send a JSON request (PROTOCOL.md)", f[0])
	}
	if len(f) > 1 {
		args := map[string]string{}
		for i, w := range f[1:] {
			args[names[i]] = w
		}
		req.Args, _ = json.Marshal(args)
	}
	return req, nil
}

func legacy(ctx context.Context, h Handler, line string) legacyReply {
	req, err := textRequest(line)
	if err != nil {
		return legacyReply{Error: err.Error()}
	}
	v, err := h(ctx, req)
	if err != nil {
		return legacyReply{Error: err.Error()}
	}
	r := legacyReply{OK: true}
	if v != nil {
		b, err := json.Marshal(v)
		if err != nil {
			return legacyReply{Error: err.Error()}
		}
		r.Data = b
	}
	return r
}

// ErrAlreadyRunning means another agent answers on the socket Listen was
// asked to create.
var ErrAlreadyRunning = errors.New("another famguard agent is already running")

// ErrNotRunning means no agent answers on the socket.
var ErrNotRunning = errors.New("no famguard agent is running")

// Do sends one version-1 request and decodes its result into out (may be
// nil). A refusal by the agent is returned as *Error.
func Do(ctx context.Context, stateDir, cmd string, args any, out any) error {
	req := Request{V: Version, Cmd: cmd}
	if args != nil {
		b, err := json.Marshal(args)
		if err != nil {
			return err
		}
		req.Args = b
	}
	resp, err := Send(ctx, stateDir, req)
	if err != nil {
		return err
	}
	if !resp.OK {
		if resp.Error == nil {
			return Errorf(CodeFailed, "the agent refused the request without saying why")
		}
		return resp.Error
	}
	if out != nil && len(resp.Result) > 0 {
		return json.Unmarshal(resp.Result, out)
	}
	return nil
}

// Send sends one request and returns the agent's response as it came.
func Send(ctx context.Context, stateDir string, req Request) (Response, error) {
	path := SocketPath(stateDir)
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return Response{}, fmt.Errorf("%w with state directory %s (%v); start it with `famguard run`, or pass the --state it uses", ErrNotRunning, stateDir, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	b, err := json.Marshal(req)
	if err != nil {
		return Response{}, err
	}
	if _, err := conn.Write(append(b, '\n')); err != nil {
		return Response{}, err
	}
	var r Response
	if err := json.NewDecoder(conn).Decode(&r); err != nil {
		return Response{}, fmt.Errorf("reading the agent's answer: %w", err)
	}
	return r, nil
}

// Call sends a command written as text ("status", "clock-step 3h") as a
// version-1 request and decodes the result into out (may be nil).
func Call(ctx context.Context, stateDir, command string, out any) error {
	req, err := textRequest(command)
	if err != nil {
		return err
	}
	var args any
	if req.Args != nil {
		args = req.Args
	}
	return Do(ctx, stateDir, req.Cmd, args, out)
}
