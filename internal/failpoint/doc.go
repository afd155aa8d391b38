// Package failpoint marks the durable steps of qvm (a state file replaced,
// a volume committed, a backup chunk written) where the hardening tests make
// a run fail: with an error, or by ending the process on the spot as a crash
// would. The points exist only in binaries built with `-tags failpoints`;
// in a release build Hit is an empty function the compiler removes.
//
// A test arms points through the environment of the process it starts:
//
//	QVM_FAILPOINTS=qubes.xml.write=exit,volume.commit=error
//
// `error` makes Hit return an *Error; `exit` ends the process at once with
// status 77, running no deferred cleanup, like a power cut at that instant.
package failpoint

import "fmt"

// EnvVar is the environment variable that arms failpoints.
const EnvVar = "QVM_FAILPOINTS"

// ExitStatus is what an `exit` failpoint ends the process with.
const ExitStatus = 77

// Error is what an armed `error` failpoint returns.
type Error struct{ Name string }

func (e *Error) Error() string { return fmt.Sprintf("failpoint %s: injected failure", e.Name) }
