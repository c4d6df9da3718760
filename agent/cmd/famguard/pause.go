package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/famguard/famguard/agent/control"
)

// pause and resume: a child (all their devices) or one device offline now,
// and back. The agent does the work; these only speak the control protocol
// (PROTOCOL.md), so a page or a script can do exactly the same.

func cmdPause(args []string, out io.Writer) error {
	fs := newFlagSet("pause")
	state := fs.String("state", defaultState, "the running agent's --state directory")
	asJSON := fs.Bool("json", false, "print the agent's answer (protocol version 1) as JSON")
	forD := fs.String("for", "", "how long, like 30m or 1h30m (at most 7 days)")
	until := fs.String("until", "", "until when, in the family's zone: 19:30, \"tomorrow 07:00\" or \"2026-11-27 07:00\"")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("name one child or device (usage: famguard pause CHILD|DEVICE [--for 30m | --until 19:30])")
	}
	var res struct{ Message string }
	return agentCall(out, *state, *asJSON, "pause", map[string]string{"target": pos[0], "for": *forD, "until": *until, "by": commandLine()}, &res,
		func() string { return res.Message })
}

func cmdResume(args []string, out io.Writer) error {
	fs := newFlagSet("resume")
	state := fs.String("state", defaultState, "the running agent's --state directory")
	asJSON := fs.Bool("json", false, "print the agent's answer (protocol version 1) as JSON")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("name one child or device (usage: famguard resume CHILD|DEVICE)")
	}
	var res struct{ Message string }
	return agentCall(out, *state, *asJSON, "resume", map[string]string{"target": pos[0], "by": commandLine()}, &res,
		func() string { return res.Message })
}

// agentCall sends one request. With asJSON it prints the protocol response
// as it came (also a refusal, then exiting 1); otherwise the result is
// decoded into res and text() printed.
func agentCall(out io.Writer, state string, asJSON bool, cmd string, args any, res any, text func() string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	args = dropEmpty(args)
	if asJSON {
		b, _ := json.Marshal(args)
		resp, err := control.Send(ctx, state, control.Request{V: control.Version, Cmd: cmd, Args: b})
		if err != nil {
			return err
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(resp); err != nil {
			return err
		}
		if !resp.OK {
			return exitError(1)
		}
		return nil
	}
	if err := control.Do(ctx, state, cmd, args, res); err != nil {
		var e *control.Error
		if errors.As(err, &e) {
			return errors.New(e.Message)
		}
		return err
	}
	if text != nil {
		if s := text(); s != "" {
			fmt.Fprintln(out, s)
		}
	}
	return nil
}

// dropEmpty leaves out empty string arguments, so that "no --for" is "no
// for" on the wire.
func dropEmpty(args any) any {
	m, ok := args.(map[string]string)
	if !ok {
		return args
	}
	out := map[string]string{}
	for k, v := range m {
		if v != "" {
			out[k] = v
		}
	}
	return out
}

// commandLine is what "by" records: the command as the parent typed it,
// less the flags that only say how to reach the agent or print (--state,
// --json).
func commandLine() string {
	parts := []string{"famguard"}
	args := os.Args[1:]
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--json" || a == "-json" || strings.HasPrefix(a, "--json=") || strings.HasPrefix(a, "--state=") || strings.HasPrefix(a, "-state="):
			continue
		case a == "--state" || a == "-state":
			i++
			continue
		}
		if strings.ContainsAny(a, " \t'\"") || a == "" {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}
