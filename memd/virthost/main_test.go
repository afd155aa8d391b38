package virthost

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/qvm-dev/qvm/core/virt"
	"github.com/qvm-dev/qvm/core/virt/lvconn"
	"github.com/qvm-dev/qvm/memd"
	"github.com/qvm-dev/qvm/memd/virtclient"
)

// TestMain lets the test binary be its own libvirt helper (qmemmand-virt).
func TestMain(m *testing.M) {
	if os.Getenv("MEMD_TEST_HELPER") == "1" {
		os.Exit(ServeHelperMain(os.Args[len(os.Args)-1]))
	}
	if uri := os.Getenv("MEMD_TEST_HOLDER_URI"); uri != "" {
		// As qvm start: load the embedded driver (kept until exit), then
		// ask qmemmand for memory; with MEMD_TEST_LOCK_ONLY=1 as qvm start
		// does now: hold the lock beside the root, not the driver.
		if os.Getenv("MEMD_TEST_LOCK_ONLY") == "1" {
			if _, err := virt.LockRoot(context.Background(), virt.EmbedRoot(uri), time.Minute); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		} else {
			c, err := lvconn.Open(context.Background(), virt.Config{URI: uri, LockTimeout: time.Minute})
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			c.Close()
		}
		for _, a := range os.Args[2:] {
			n, _ := strconv.ParseInt(a, 10, 64)
			g, err := memd.RequestMemory(context.Background(), os.Args[1], n)
			if err != nil {
				fmt.Println(a, "refused:", err)
				continue
			}
			fmt.Println(a, "OK")
			g.Close()
		}
		os.Exit(0)
	}
	if uri := os.Getenv("MEMD_TEST_GUESTS_URI"); uri != "" {
		// The embedded driver stays loaded in a process that connected
		// once, so the test makes and removes its guests in children.
		if err := guestsChild(uri, os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// guestsChild creates a transient domain from each XML file argument, or
// with "destroy" destroys every domain.
func guestsChild(uri string, args []string) error {
	c, err := lvconn.Open(context.Background(), virt.Config{URI: uri, LockTimeout: time.Minute})
	if err != nil {
		return err
	}
	defer c.Close()
	if len(args) == 1 && args[0] == "destroy" {
		doms, err := c.Libvirt().ListAllDomains(0)
		if err != nil {
			return err
		}
		for _, d := range doms {
			d.Destroy()
			d.Free()
		}
		return nil
	}
	for _, f := range args {
		xml, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		d, err := c.Libvirt().DomainCreateXML(string(xml), 0)
		if err != nil {
			return fmt.Errorf("create from %s: %w", f, err)
		}
		d.Free()
	}
	return nil
}

// helperHost runs sessions in a helper child, as qmemmand does.
func helperHost(cfg virt.Config, budget int64) *virtclient.Host {
	return virtclient.New(virtclient.Options{Argv: []string{os.Args[0]}, Env: []string{"MEMD_TEST_HELPER=1"},
		URI: cfg.URI, StateDir: cfg.StateDir, Budget: budget, LockTimeout: cfg.LockTimeout})
}
