package virt

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// State is a qube's power state as qvm ls shows it (spec: Halted, Running,
// Paused, Halting, Dying, Crashed, Suspended, Transient).
type State string

const (
	Halted    State = "Halted"
	Running   State = "Running"
	Paused    State = "Paused"
	Halting   State = "Halting"
	Dying     State = "Dying"
	Crashed   State = "Crashed"
	Suspended State = "Suspended"
	Transient State = "Transient"
)

// Active reports whether the domain exists in the hypervisor (any state but
// Halted): is_running() in the reference.
func (s State) Active() bool { return s != Halted && s != "" }

// NotRunningError: the domain is not active in the hypervisor.
type NotRunningError struct{ Name string }

func (e *NotRunningError) Error() string { return fmt.Sprintf("Domain is powered off: '%s'", e.Name) }

// Error is an error libvirt reported, with its code and domain numbers
// (virErrorNumber, virErrorDomain). Its text is the Go binding's.
type Error struct {
	Code    int    `json:"code"`
	Domain  int    `json:"domain"`
	Message string `json:"message"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("virError(Code=%d, Domain=%d, Message='%s')", e.Code, e.Domain, e.Message)
}

// Message is libvirt's own message of an error (without the code prefix the
// bindings add), for one-line user messages.
func Message(err error) string {
	var le *Error
	if errors.As(err, &le) {
		return le.Message
	}
	return err.Error()
}

// WireError is an error as it crosses the helper's pipe: its text and,
// where a caller may test for them, its typed parts.
type WireError struct {
	Msg        string       `json:"msg"`
	NotRunning string       `json:"not_running,omitempty"` // NotRunningError.Name
	Lock       *LockTimeout `json:"lock,omitempty"`
	Libvirt    *Error       `json:"libvirt,omitempty"`
	Context    string       `json:"context,omitempty"` // "canceled", "deadline"
}

// LockTimeout is LockTimeoutError on the wire.
type LockTimeout struct {
	Root    string        `json:"root"`
	Timeout time.Duration `json:"timeout"`
	Holder  int           `json:"holder,omitempty"`
}

// EncodeError turns err into its wire form (nil for nil).
func EncodeError(err error) *WireError {
	if err == nil {
		return nil
	}
	w := &WireError{Msg: err.Error()}
	var nr *NotRunningError
	var lt *LockTimeoutError
	var le *Error
	switch {
	case errors.As(err, &nr):
		w.NotRunning = nr.Name
	case errors.As(err, &lt):
		w.Lock = &LockTimeout{Root: lt.Root, Timeout: lt.Timeout, Holder: lt.Holder}
	case errors.As(err, &le):
		w.Libvirt = le
	case errors.Is(err, context.Canceled):
		w.Context = "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		w.Context = "deadline"
	}
	return w
}

// Err is the error again, with the same text and typed parts.
func (w *WireError) Err() error {
	if w == nil {
		return nil
	}
	var inner error
	switch {
	case w.NotRunning != "":
		inner = &NotRunningError{Name: w.NotRunning}
	case w.Lock != nil:
		inner = &LockTimeoutError{Root: w.Lock.Root, Timeout: w.Lock.Timeout, Holder: w.Lock.Holder}
	case w.Libvirt != nil:
		inner = w.Libvirt
	case w.Context == "canceled":
		inner = context.Canceled
	case w.Context == "deadline":
		inner = context.DeadlineExceeded
	default:
		return errors.New(w.Msg)
	}
	if inner.Error() == w.Msg {
		return inner
	}
	return &remoteError{msg: w.Msg, err: inner}
}

// remoteError is a wrapped error from the helper: its full text, and the
// typed error it wrapped.
type remoteError struct {
	msg string
	err error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.err }
