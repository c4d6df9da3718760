package policy

import (
	"fmt"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/famguard/famguard/agent/schedule"
)

// Budget is a child's daily time budget: minutes of real use per local day,
// per weekday. A weekday the profile does not list has no budget.
//
//	budget: {mon-fri: 2h, sat-sun: 4h}
//	budget: 90m                       # every day
//
// Keys are day specs as in schedules (a day, a range, weekdays, weekends,
// daily), each day at most once; values are durations from 0 (no use that
// day) to 24h, written like 2h, 90m or 1h30m.
type Budget struct {
	PerDay [7]time.Duration // index time.Weekday
	Set    [7]bool
	spec   [7]string // the key that set each day, for messages
}

// For is the budget of a weekday, and whether there is one.
func (b *Budget) For(w time.Weekday) (time.Duration, bool) {
	if b == nil || !b.Set[w] {
		return 0, false
	}
	return b.PerDay[w], true
}

// Describe names where a weekday's budget comes from: "mon-fri: 2h".
func (b *Budget) Describe(w time.Weekday) string {
	if b == nil || !b.Set[w] {
		return "no budget"
	}
	return fmt.Sprintf("%s: %s", b.spec[w], FormatMinutes(b.PerDay[w]))
}

// FormatMinutes prints a duration as parents write it: 2h, 45m, 1h30m.
func FormatMinutes(d time.Duration) string {
	neg := d < 0
	if neg {
		d = -d
	}
	m := int(d / time.Minute)
	var s string
	switch {
	case m >= 60 && m%60 == 0:
		s = fmt.Sprintf("%dh", m/60)
	case m >= 60:
		s = fmt.Sprintf("%dh%02dm", m/60, m%60)
	default:
		s = fmt.Sprintf("%dm", m)
	}
	if neg {
		return "-" + s
	}
	return s
}

// ParseBudgetDuration reads a budget value: 2h, 90m, 1h30m, 0; whole
// minutes from 0 to 24h.
func ParseBudgetDuration(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	if t == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(t)
	switch {
	case err != nil:
		return 0, fmt.Errorf("%q is not a budget: write a duration like 2h, 90m or 1h30m", s)
	case d < 0:
		return 0, fmt.Errorf("%s: a budget cannot be negative; 0 means no use that day", s)
	case d > 24*time.Hour:
		return 0, fmt.Errorf("%s is more than a day has; at most 24h (or leave the day out for no limit)", s)
	case d%time.Minute != 0:
		return 0, fmt.Errorf("%s: a budget counts whole minutes; write it like 1h30m", s)
	}
	return d, nil
}

// budget parses a child's `budget:` value.
func (p *parser) budget(n *yaml.Node, path string) *Budget {
	b := &Budget{}
	set := func(days schedule.Days, spec string, valNode *yaml.Node, keyNode *yaml.Node, field string) {
		s, ok := p.str(valNode, field)
		if !ok {
			return
		}
		d, err := ParseBudgetDuration(s)
		if err != nil {
			p.problem(valNode, field, "%v", err)
			return
		}
		for w := time.Sunday; w <= time.Saturday; w++ {
			if !days.Has(w) {
				continue
			}
			if b.Set[w] {
				p.problem(keyNode, field, "%s is already given by %q; give each day one budget", w, b.spec[w])
				return
			}
			b.Set[w], b.PerDay[w], b.spec[w] = true, d, spec
		}
	}
	switch n.Kind {
	case yaml.ScalarNode:
		set(schedule.AllDays, "daily", n, n, path)
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			field := join(path, k.Value)
			if k.Kind != yaml.ScalarNode {
				p.problem(k, path, "expected a day like mon-fri as the key, got %s", kindName(k))
				continue
			}
			days, err := schedule.ParseDays([]string{k.Value})
			if err != nil {
				p.problem(k, field, "%v", err)
				continue
			}
			set(days, strings.ToLower(k.Value), v, k, field)
		}
		if len(n.Content) == 0 {
			p.problem(n, path, "empty budget: write it like {mon-fri: 2h, sat-sun: 4h}, or remove the key")
		}
	default:
		p.problem(n, path, "expected a budget like {mon-fri: 2h, sat-sun: 4h} or 90m, got %s", kindName(n))
	}
	return b
}
