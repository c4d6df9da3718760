package main

import (
	"fmt"
	"io"
)

// grant: extra time that ends by itself (`grant alice 30m`), minutes added
// to today's budget only (`grant alice --budget +30m`), or cancelling the
// extra time running (`grant alice --cancel`).
func cmdGrant(args []string, out io.Writer) error {
	fs := newFlagSet("grant")
	state := fs.String("state", defaultState, "the running agent's --state directory")
	asJSON := fs.Bool("json", false, "print the agent's answer (protocol version 1) as JSON")
	budget := fs.String("budget", "", "add to (or, with -, take from) today's budget only, like +30m")
	cancel := fs.Bool("cancel", false, "end the child's extra time now")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	usage := "usage: famguard grant CHILD DURATION | famguard grant CHILD --budget +30m | famguard grant CHILD --cancel"
	req := map[string]any{"by": commandLine()}
	switch {
	case len(pos) == 2 && *budget == "" && !*cancel:
		req["for"] = pos[1]
	case len(pos) == 1 && (*budget != "") != *cancel:
		if *budget != "" {
			req["budget"] = *budget
		} else {
			req["cancel"] = true
		}
	default:
		return fmt.Errorf("name the child and how long (%s)", usage)
	}
	req["child"] = pos[0]
	var res struct{ Message string }
	return agentCall(out, *state, *asJSON, "grant", req, &res, func() string { return res.Message })
}
