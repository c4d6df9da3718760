// Package control is the agent's local control channel: a unix socket in the
// state directory through which `famguard status` (and later pause/extra-time
// commands) talk to the running daemon.
//
// Why a socket and not a status file: the answer must be the daemon's view at
// this instant (devices seen a second ago, the reload that just failed), and a
// socket lets the daemon's single owning goroutine answer without anyone else
// touching its state. The socket is created mode 0600 in a 0700 directory, so
// only root can read the family's data or command the agent. The protocol is
// one request line in, one JSON document out, then close: trivial to speak
// from a shell (`socat`) or an ISP's management daemon.
package control

import (
	"bufio"
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

// Handler answers one request. The returned value is encoded as JSON.
type Handler func(ctx context.Context, command string, args []string) (any, error)

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

// maxRequest bounds a request line; requests are tiny commands.
const maxRequest = 4096

func (s *Server) serveConn(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(io.LimitReader(conn, maxRequest)).ReadString('\n')
	if err != nil && line == "" {
		return
	}
	fields := strings.Fields(line)
	if len(fields) == 0 {
		writeReply(conn, nil, errors.New("empty request"))
		return
	}
	v, err := s.handler(ctx, fields[0], fields[1:])
	writeReply(conn, v, err)
}

type reply struct {
	OK    bool            `json:"ok"`
	Error string          `json:"error,omitempty"`
	Data  json.RawMessage `json:"data,omitempty"`
}

func writeReply(w io.Writer, v any, err error) {
	r := reply{OK: err == nil}
	if err != nil {
		r.Error = err.Error()
	} else if v != nil {
		b, merr := json.Marshal(v)
		if merr != nil {
			r.OK, r.Error = false, merr.Error()
		} else {
			r.Data = b
		}
	}
	_ = json.NewEncoder(w).Encode(r)
}

// ErrAlreadyRunning means another agent answers on the socket Listen was
// asked to create.
var ErrAlreadyRunning = errors.New("another famguard agent is already running")

// ErrNotRunning means no agent answers on the socket.
var ErrNotRunning = errors.New("no famguard agent is running")

// Call sends one request and decodes the reply's data into out (may be nil).
func Call(ctx context.Context, stateDir, command string, out any) error {
	path := SocketPath(stateDir)
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return fmt.Errorf("%w with state directory %s (%v); start it with `famguard run`, or pass the --state it uses", ErrNotRunning, stateDir, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := io.WriteString(conn, command+"\n"); err != nil {
		return err
	}
	var r reply
	if err := json.NewDecoder(conn).Decode(&r); err != nil {
		return fmt.Errorf("reading the agent's answer: %w", err)
	}
	if !r.OK {
		return fmt.Errorf("agent: %s", r.Error)
	}
	if out != nil && len(r.Data) > 0 {
		return json.Unmarshal(r.Data, out)
	}
	return nil
}
