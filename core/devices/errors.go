package devices

import "fmt"

// ArgError is a malformed device argument (a usage error, exit 2).
type ArgError struct{ Msg string }

func (e *ArgError) Error() string { return e.Msg }

// Error is a refused device operation; Msg is what the user sees.
type Error struct{ Msg string }

func (e *Error) Error() string { return e.Msg }

func errorf(format string, args ...any) error { return &Error{Msg: fmt.Sprintf(format, args...)} }
