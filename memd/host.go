package memd

import "context"

// Host is the hypervisor side of the balancer. Open gives a Session valid
// for one balancing pass or one client request; with libvirt's embedded
// driver only one process may hold the connection, so the implementation
// connects (and takes qvm's lock file) in Open and lets go in Close.
type Host interface {
	Open(ctx context.Context) (Session, error)
}

// Watcher is implemented by a Host that can report domain lifecycle events
// (a held connection to Xen or libvirtd). notify is called after a domain
// appeared or went away; Watch returns when ctx ends.
type Watcher interface {
	Watch(ctx context.Context, notify func()) error
}

// Session reads memory facts and sets targets. Sizes are bytes.
type Session interface {
	// HostMem returns the host's total and free memory as the hypervisor
	// reports them (before the overhead factor).
	HostMem(ctx context.Context) (total, free int64, err error)
	// Domains lists the running domains in a stable order.
	Domains(ctx context.Context) ([]DomainFacts, error)
	// SetTarget asks a domain to balloon to bytes.
	SetTarget(ctx context.Context, id string, bytes int64, hotplug bool) error
	Close() error
}

// DomainFacts is what the hypervisor says about one running domain.
type DomainFacts struct {
	ID         string
	MemCurrent int64 // current allocation
	MemMax     int64 // 0: unknown (dom0), all assignable host memory
	UseHotplug bool
	// HasMeminfo is false when the guest reports no usage (no balloon
	// statistics); then MemUsed is meaningless.
	HasMeminfo bool
	MemUsed    int64
	// Target is the balloon target already set, 0 when unknown; it seeds
	// last_target when the domain is first seen.
	Target int64
}

// RootHolder is implemented by a Host on libvirt's embedded driver: it
// tells whether process pid keeps the driver's root loaded (a qvm command
// does so until it exits), in which case no session can be opened until
// that process is done.
type RootHolder interface {
	RootHeldBy(pid int) bool
	// RootLockedBy: process pid holds the lock beside the root (qvm's
	// libvirt.lock) but has not loaded the driver: qvm start, which lets
	// the driver go before it asks for memory and waits for the answer,
	// so the request's sessions may use its lock (see WithLentLock).
	RootLockedBy(pid int) bool
	// RootBusy: another process has the root, or its lock, now.
	RootBusy() bool
}

type lentLockKey struct{}

// WithLentLock marks a request's context: the requester holds the lock
// beside the embedded root for the sessions opened with it.
func WithLentLock(ctx context.Context) context.Context {
	return context.WithValue(ctx, lentLockKey{}, true)
}

// LentLock reports whether ctx carries the requester's lock.
func LentLock(ctx context.Context) bool {
	v, _ := ctx.Value(lentLockKey{}).(bool)
	return v
}
