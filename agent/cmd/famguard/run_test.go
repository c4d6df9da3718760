package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestLogSplitBySeverity(t *testing.T) {
	var out, errs bytes.Buffer
	log := slog.New(newSplitHandler(&out, &errs, slog.LevelDebug)).With("agent", "famguard")
	log.Debug("rules compared")
	log.Info("policy loaded")
	log.Warn("no list for social")
	log.Error("iptables-restore failed")
	if o := out.String(); !strings.Contains(o, `level=DEBUG msg="rules compared"`) || !strings.Contains(o, `level=INFO msg="policy loaded"`) ||
		strings.Contains(o, "WARN") || strings.Contains(o, "ERROR") || strings.Count(o, "agent=famguard") != 2 {
		t.Errorf("stdout (info for procd):\n%s", o)
	}
	if e := errs.String(); !strings.Contains(e, "level=WARN") || !strings.Contains(e, "level=ERROR") || strings.Contains(e, "INFO") || strings.Count(e, "agent=famguard") != 2 {
		t.Errorf("stderr (err for procd):\n%s", e)
	}
	out.Reset()
	quiet := slog.New(newSplitHandler(&out, &out, slog.LevelWarn))
	quiet.Info("hidden")
	if out.Len() != 0 {
		t.Errorf("--log-level warn printed an info line: %q", out.String())
	}
}
