package memd

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"
)

// RunOptions configure Daemon.Run.
type RunOptions struct {
	// Interval between balancing passes; domain events trigger one early.
	Interval time.Duration
	// Ready is called once the socket answers (systemd notification).
	Ready func()
}

// Run serves requests on l and balances until ctx ends, then stops both
// and returns nil (a clean SIGTERM). Lifecycle events come from the host
// when it is a Watcher that can hold its connection.
func (d *Daemon) Run(ctx context.Context, l net.Listener, o RunOptions) error {
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	serveErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		serveErr <- d.Serve(ctx, l)
		cancel()
	}()
	kick := make(chan struct{}, 1)
	if w, ok := d.host.(Watcher); ok {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := w.Watch(ctx, func() {
				select {
				case kick <- struct{}{}:
				default:
				}
			})
			if err != nil && ctx.Err() == nil {
				d.log.Info("no domain events; listing domains every pass", "reason", err)
			}
		}()
	}
	if o.Ready != nil {
		o.Ready()
	}
	d.log.Info("ready")
	t := time.NewTicker(o.Interval)
	defer t.Stop()
	for {
		if err := d.Balance(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("balancing pass failed", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-t.C:
			continue
		case <-kick:
			continue
		}
		break
	}
	d.log.Info("shutting down")
	_ = SdNotify("STOPPING=1")
	wg.Wait()
	if err := <-serveErr; err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}
