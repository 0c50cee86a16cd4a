package projections

import (
	"context"
	"fmt"
	"sync"

	ledger "github.com/stanceledger/ledger"
)

// LagError says a view had not applied a position in time. It unwraps to the
// context's error (context.DeadlineExceeded, which the server maps to
// DeadlineExceeded) or, when the projection has stopped, to its failure, and says
// how far the view is.
type LagError struct {
	// View is the projection's name, e.g. "positions".
	View string
	// Want is the position asked for; Applied is where the view stood.
	Want, Applied ledger.Position
	// Cause is why waiting ended: the context's error or the projection's failure.
	Cause error
}

// Error says what was asked for and how far the view is.
func (e *LagError) Error() string {
	return fmt.Sprintf("%s view has applied the log up to position %s, not yet %s: %v", e.View, e.Applied, e.Want, e.Cause)
}

// Unwrap returns Cause.
func (e *LagError) Unwrap() error { return e.Cause }

// Progress tracks the applied position of one projection and lets readers wait for
// it. The zero value is not usable; call NewProgress.
type Progress struct {
	name string

	mu      sync.Mutex
	applied ledger.Position
	failure error
	moved   chan struct{} // closed and replaced whenever applied or failure changes
}

// NewProgress returns a tracker for projection name starting at applied.
func NewProgress(name string, applied ledger.Position) *Progress {
	return &Progress{name: name, applied: applied, moved: make(chan struct{})}
}

// Applied returns the last applied position.
func (p *Progress) Applied() ledger.Position {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.applied
}

// Advance records that the projection has applied everything up to pos. Positions
// only grow; a smaller pos is ignored.
func (p *Progress) Advance(pos ledger.Position) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.applied.Less(pos) {
		p.applied = pos
		close(p.moved)
		p.moved = make(chan struct{})
	}
}

// Fail records that the projection has stopped with err (nil clears it, when the
// projection runs again). While it is set, WaitFor for a position not yet applied
// returns at once with a *LagError whose Cause is err.
func (p *Progress) Fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failure = err
	close(p.moved)
	p.moved = make(chan struct{})
}

// Failure returns the error the projection stopped with, or nil.
func (p *Progress) Failure() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failure
}

// WaitFor blocks until the applied position is at least pos. It returns nil at once
// for the zero position. When ctx ends first, or the projection has failed, it
// returns a *LagError naming the applied position.
func (p *Progress) WaitFor(ctx context.Context, pos ledger.Position) error {
	for {
		p.mu.Lock()
		applied, failure, moved := p.applied, p.failure, p.moved
		p.mu.Unlock()
		if !applied.Less(pos) {
			return nil
		}
		if failure != nil {
			return &LagError{View: p.name, Want: pos, Applied: applied, Cause: failure}
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return &LagError{View: p.name, Want: pos, Applied: p.Applied(), Cause: ctx.Err()}
		}
	}
}
