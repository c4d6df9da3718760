// Command ubusemu stands in for OpenWrt's uhttpd + uhttpd-mod-ubus + rpcd
// when testing famguard's parents' page away from a router. It serves the
// page's static files and a /ubus JSON-RPC 2.0 endpoint (single and batched
// requests) with:
//   - session.login / session.access / session.destroy: logins from a real
//     rpcd UCI file (`config login`, "$1$" crypt or plain passwords), ACL
//     grants computed from the package's real acl.d files the way rpcd
//     computes them (read groups: read permissions; write groups: read and
//     write permissions), sessions that expire;
//   - every other object: an rpcd exec plugin found in --plugins (the file
//     name is the object), called as rpcd calls it: `PLUGIN list` once for
//     the signatures, `PLUGIN call METHOD` with the arguments as JSON on
//     stdin, filtered to the declared names and types; its stdout (a JSON
//     object) is the result.
//
// Replies follow uhttpd-mod-ubus: {"result":[0,{...}]} on success,
// {"result":[CODE]} for a ubus status, {"error":{"code":-32002,"message":
// "Access denied"}} when the session may not call the method.
//
// What it does not emulate (so a router check is still needed): the ubus
// daemon itself, rpcd's "$p$" (/etc/shadow) logins, uhttpd's CGI/Lua and TLS,
// rpcd's exact timeouts.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"
)

const nullSession = "00000000000000000000000000000000"

// ubus status codes (libubus).
const (
	statusOK               = 0
	statusInvalidCommand   = 1
	statusInvalidArgument  = 2
	statusMethodNotFound   = 3
	statusNotFound         = 4
	statusNoData           = 5
	statusPermissionDenied = 6
	statusTimeout          = 7
)

// maxBody bounds a request, as uhttpd bounds its POST data.
const maxBody = 64 << 10

type session struct {
	id      string
	user    string
	grants  grants
	access  map[string][]string
	expires time.Time
	timeout time.Duration
}

type server struct {
	logins  []login
	groups  map[string]aclGroup
	plugins map[string]*plugin
	timeout time.Duration

	mu       sync.Mutex
	sessions map[string]*session
}

type plugin struct {
	path    string
	methods map[string]map[string]any // method → arg → example value (its type)
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to serve on")
	www := flag.String("www", "", "document root (uhttpd's /www)")
	aclDir := flag.String("acl", "", "rpcd acl.d directory")
	rpcdConf := flag.String("rpcd-config", "", "rpcd UCI file with `config login` sections")
	pluginDir := flag.String("plugins", "", "rpcd exec plugin directory (/usr/libexec/rpcd)")
	timeout := flag.Duration("session-timeout", 5*time.Minute, "session timeout (rpcd's default is 300 s)")
	flag.Parse()

	s, err := newServer(*aclDir, *rpcdConf, *pluginDir, *timeout)
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ubus", s)
	mux.Handle("/", http.FileServer(http.Dir(*www)))
	fmt.Printf("ubusemu listening on http://%s\n", ln.Addr())
	log.Fatal(http.Serve(ln, mux))
}

func newServer(aclDir, rpcdConf, pluginDir string, timeout time.Duration) (*server, error) {
	groups, err := loadACLs(aclDir)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(rpcdConf)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	logins, err := parseRPCDConfig(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", rpcdConf, err)
	}
	s := &server{logins: logins, groups: groups, plugins: map[string]*plugin{}, timeout: timeout, sessions: map[string]*session{}}
	entries, _ := os.ReadDir(pluginDir)
	for _, e := range entries {
		p := &plugin{path: filepath.Join(pluginDir, e.Name())}
		out, err := exec.Command(p.path, "list").Output()
		if err != nil {
			return nil, fmt.Errorf("plugin %s list: %w", p.path, err)
		}
		if err := json.Unmarshal(out, &p.methods); err != nil {
			return nil, fmt.Errorf("plugin %s list: not a JSON object of methods: %w", p.path, err)
		}
		s.plugins[e.Name()] = p
	}
	return s, nil
}

type rpcRequest struct {
	JSONRPC string            `json:"jsonrpc"`
	ID      json.RawMessage   `json:"id"`
	Method  string            `json:"method"`
	Params  []json.RawMessage `json:"params"`
}

type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

type rpcReply struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Result  any             `json:"result,omitempty"`
	Error   *rpcError       `json:"error,omitempty"`
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if len(body) > maxBody {
		writeJSON(w, rpcReply{JSONRPC: "2.0", Error: &rpcError{-32600, "Invalid request"}})
		return
	}
	body = bytes.TrimSpace(body)
	if len(body) > 0 && body[0] == '[' {
		var batch []json.RawMessage
		if err := json.Unmarshal(body, &batch); err != nil {
			writeJSON(w, rpcReply{JSONRPC: "2.0", Error: &rpcError{-32700, "Parse error"}})
			return
		}
		out := make([]rpcReply, len(batch))
		for i, raw := range batch {
			out[i] = s.one(r.Context(), raw)
		}
		writeJSON(w, out)
		return
	}
	writeJSON(w, s.one(r.Context(), body))
}

func writeJSON(w io.Writer, v any) { _ = json.NewEncoder(w).Encode(v) }

func (s *server) one(ctx context.Context, raw []byte) rpcReply {
	var req rpcRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		return rpcReply{JSONRPC: "2.0", Error: &rpcError{-32700, "Parse error"}}
	}
	rep := rpcReply{JSONRPC: "2.0", ID: req.ID}
	if req.JSONRPC != "2.0" {
		rep.Error = &rpcError{-32600, "Invalid request"}
		return rep
	}
	if req.Method != "call" {
		rep.Error = &rpcError{-32601, "Method not found"}
		return rep
	}
	var sid, object, method string
	var args map[string]any
	if len(req.Params) != 4 || json.Unmarshal(req.Params[0], &sid) != nil || json.Unmarshal(req.Params[1], &object) != nil ||
		json.Unmarshal(req.Params[2], &method) != nil || json.Unmarshal(req.Params[3], &args) != nil {
		rep.Error = &rpcError{-32602, "Invalid parameters"}
		return rep
	}
	sess := s.session(sid)
	if object == "session" && method == "login" {
		rep.Result = s.login(args)
		return rep
	}
	if sess == nil || !sess.grants.allowed(object, method) {
		rep.Error = &rpcError{-32002, "Access denied"}
		return rep
	}
	if object == "session" {
		rep.Result = s.sessionCall(sess, method, args)
		return rep
	}
	p := s.plugins[object]
	if p == nil {
		rep.Result = []any{statusNotFound}
		return rep
	}
	rep.Result = p.call(ctx, method, args)
	return rep
}

func (s *server) session(sid string) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.sessions[sid]
	if sess == nil {
		return nil
	}
	if time.Now().After(sess.expires) {
		delete(s.sessions, sid)
		return nil
	}
	sess.expires = time.Now().Add(sess.timeout) // every use renews it, as rpcd does
	return sess
}

func (s *server) login(args map[string]any) []any {
	user, _ := args["username"].(string)
	pass, _ := args["password"].(string)
	for _, l := range s.logins {
		if l.Username != user || !checkPassword(l.Password, pass) {
			continue
		}
		var b [16]byte
		_, _ = rand.Read(b[:])
		g, access := grantsFor(l, s.groups)
		sess := &session{id: hex.EncodeToString(b[:]), user: user, grants: g, access: access, timeout: s.timeout, expires: time.Now().Add(s.timeout)}
		s.mu.Lock()
		s.sessions[sess.id] = sess
		s.mu.Unlock()
		return []any{statusOK, sessionInfo(sess)}
	}
	return []any{statusPermissionDenied}
}

func sessionInfo(sess *session) map[string]any {
	return map[string]any{
		"ubus_rpc_session": sess.id,
		"timeout":          int(sess.timeout.Seconds()),
		"expires":          int(time.Until(sess.expires).Seconds()),
		"acls":             map[string]any{"access-group": sess.access, "ubus": sess.grants},
		"data":             map[string]any{"username": sess.user},
	}
}

func (s *server) sessionCall(sess *session, method string, args map[string]any) []any {
	switch method {
	case "access":
		obj, _ := args["object"].(string)
		fn, _ := args["function"].(string)
		return []any{statusOK, map[string]any{"access": sess.grants.allowed(obj, fn)}}
	case "destroy":
		s.mu.Lock()
		delete(s.sessions, sess.id)
		s.mu.Unlock()
		return []any{statusOK}
	}
	return []any{statusMethodNotFound}
}

// call runs `PLUGIN call METHOD` with the declared arguments on stdin.
func (p *plugin) call(ctx context.Context, method string, args map[string]any) []any {
	sig, ok := p.methods[method]
	if !ok {
		return []any{statusMethodNotFound}
	}
	in := map[string]any{}
	for name, example := range sig {
		v, ok := args[name]
		if !ok {
			continue
		}
		if !sameType(example, v) {
			return []any{statusInvalidArgument}
		}
		in[name] = v
	}
	stdin, _ := json.Marshal(in)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.path, "call", method)
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if ctx.Err() != nil {
		return []any{statusTimeout}
	}
	var obj map[string]any
	if err != nil || json.Unmarshal(out, &obj) != nil {
		log.Printf("plugin %s call %s: %v: %q", p.path, method, err, out)
		return []any{statusNoData}
	}
	return []any{statusOK, obj}
}

// sameType is rpcd's blobmsg type check of an argument against the example
// value the plugin's `list` gave: strings, numbers (integers), booleans,
// objects and arrays.
func sameType(example, v any) bool {
	switch example.(type) {
	case string:
		_, ok := v.(string)
		return ok
	case float64:
		f, ok := v.(float64)
		return ok && f == float64(int64(f))
	case bool:
		_, ok := v.(bool)
		return ok
	case map[string]any:
		_, ok := v.(map[string]any)
		return ok
	case []any:
		_, ok := v.([]any)
		return ok
	}
	return true
}
