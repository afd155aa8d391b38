// Package memd is the memory balancer: the qmemman algorithm as pure
// functions, the daemon loop that applies it, and the Unix socket protocol
// that lets a starting qube ask for memory.
package memd
