package daemon

import "time"

// PassStep is one step of a pass and how long it took.
type PassStep struct {
	Step string  `json:"step"`
	MS   float64 `json:"ms"`
}

// passTimer times the steps of one pass of the loop (a reload: load,
// evaluate, desired state, DNS snapshot, render and write per family,
// read-back). Cheap enough to run always: a clock read per step.
type passTimer struct {
	last  time.Time
	steps []PassStep
}

// begin starts a new pass.
func (p *passTimer) begin() {
	p.last, p.steps = time.Now(), p.steps[:0]
}

// mark ends the step named: the time since the previous mark (or begin).
func (p *passTimer) mark(step string) {
	now := time.Now()
	if p.last.IsZero() {
		p.last = now
	}
	p.steps = append(p.steps, PassStep{Step: step, MS: float64(now.Sub(p.last).Microseconds()) / 1000})
	p.last = now
}

// result is a copy of the steps so far.
func (p *passTimer) result() []PassStep { return append([]PassStep(nil), p.steps...) }
