package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/famguard/famguard/agent/control"
	"github.com/famguard/famguard/agent/daemon"
)

// cmdDevices lists every device the running agent has seen on the LAN and
// what applies to it.
func cmdDevices(args []string, out io.Writer) error {
	fs := newFlagSet("devices")
	asJSON := fs.Bool("json", false, "machine-readable output")
	state := fs.String("state", defaultState, "the running agent's --state directory")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	var st daemon.DevicesStatus
	if done, err := askAgent(*state, "devices", *asJSON, out, &st); done || err != nil {
		return err
	}
	printDevicesSeen(out, st, time.Now())
	return nil
}

// askAgent sends a request to the running agent. With asJSON it prints the
// agent's JSON answer as it is and reports done; otherwise it decodes the
// answer into v for the caller to print.
func askAgent(state, command string, asJSON bool, out io.Writer, v any) (done bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var raw json.RawMessage
	if err := control.Call(ctx, state, command, &raw); err != nil {
		return false, err
	}
	if asJSON {
		_, err := out.Write(append(raw, '\n'))
		return true, err
	}
	return false, json.Unmarshal(raw, v)
}

func printDevicesSeen(out io.Writer, st daemon.DevicesStatus, now time.Time) {
	if len(st.LAN) == 0 {
		fmt.Fprintf(out, "LAN:      unknown (%s): no device is treated as unknown\n", st.LANSource)
	} else {
		fmt.Fprintf(out, "LAN:      %s (%s)\n", strings.Join(st.LAN, ", "), st.LANSource)
	}
	if st.Unknown != nil {
		u := st.Unknown.String()
		if st.Unknown.Default {
			u += " (the default)"
		}
		if st.Randomized != nil && *st.Randomized != *st.Unknown {
			u += "; randomised MACs: " + st.Randomized.String()
		}
		fmt.Fprintf(out, "Unknown:  %s\n", u)
	}
	fmt.Fprintln(out)
	if len(st.Devices) == 0 {
		fmt.Fprintln(out, "No device seen on the LAN yet.")
		return
	}
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MAC\tRANDOMISED\tNAME\tFIRST SEEN\tLAST SEEN\tADDRESSES\tAPPLIES\tINTERNET")
	unknown := 0
	for _, d := range st.Devices {
		name := d.DeviceName
		if name == "" {
			name = d.Name
		}
		rnd := "no"
		if d.Randomized {
			rnd = "yes"
		}
		addrs := strings.Join(d.Addresses, " ")
		if addrs == "" {
			addrs = "not on the LAN now"
		}
		internet := "online"
		if !d.Online {
			internet = "OFFLINE"
		}
		if strings.HasPrefix(d.Applies, "unknown") {
			unknown++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.MAC, rnd, orDash(name), seenAt(d.FirstSeen, now), seenAt(d.LastSeen, now), addrs, orDash(d.Applies), internet)
	}
	tw.Flush()
	if unknown > 0 {
		fmt.Fprintf(out, "\n%d unknown device(s): give each to a child or trust it with `famguard assign MAC CHILD|trusted [--name NAME]`\n", unknown)
	}
}

// seenAt is a time in the router's zone, short when it is today.
func seenAt(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return humanUntil(t.In(now.Location()), now)
}
