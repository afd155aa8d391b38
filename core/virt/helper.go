package virt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// The hypervisor helper (cmd/qvm-virt) holds the libvirt connection for a
// qvm process, so that qvm itself never links libvirt: loading libvirt.so
// alone costs every process about 15 ms and 15 MiB, and the embedded
// driver, once loaded, stays in its process until that exits.
//
// The pipe protocol is one JSON object a line on the helper's stdin and
// stdout. The first request is {"op":"open","config":{...}}; the helper
// connects (for the embedded driver: under the lock beside the root, held
// until it exits) and answers {"uri": ...} or an error. Then it answers
// each request in order until its stdin ends, and exits.

// EnvHelperChild is set in the helper's environment; a test binary that
// serves as its own helper looks for it.
const EnvHelperChild = "QVM_VIRT_HELPER_CHILD"

// HelperName is the helper binary's name, installed next to qvm.
const HelperName = "qvm-virt"

// Request is one line to the helper.
type Request struct {
	Op     string  `json:"op"`
	Name   string  `json:"name,omitempty"`
	XML    string  `json:"xml,omitempty"`
	Config *Config `json:"config,omitempty"`
}

// Response is one line back.
type Response struct {
	Err    *WireError       `json:"error,omitempty"`
	URI    string           `json:"uri,omitempty"`
	Name   string           `json:"name,omitempty"`
	XML    string           `json:"xml,omitempty"`
	State  State            `json:"state,omitempty"`
	States map[string]State `json:"states,omitempty"`
}

// Hypervisor is what the helper serves: the libvirt connection
// (core/virt/lvconn).
type Hypervisor interface {
	States(ctx context.Context) (map[string]State, error)
	State(name string) (State, error)
	CreatePaused(domXML string) (string, error)
	Resume(name string) error
	Suspend(name string) error
	Shutdown(name string) error
	Destroy(name string) error
	Undefine(name string) error
	XMLDesc(name string) (string, error)
	AttachDevice(name, devXML string) error
	DetachDevice(name, devXML string) error
	Close() error
}

// Opener connects to the hypervisor cfg names (cfg.URI is set).
type Opener func(ctx context.Context, cfg Config) (Hypervisor, error)

// handle runs one request on h.
func handle(ctx context.Context, h Hypervisor, req Request) Response {
	var r Response
	var err error
	switch req.Op {
	case "states":
		r.States, err = h.States(ctx)
	case "state":
		r.State, err = h.State(req.Name)
	case "create":
		r.Name, err = h.CreatePaused(req.XML)
	case "resume":
		err = h.Resume(req.Name)
	case "suspend":
		err = h.Suspend(req.Name)
	case "shutdown":
		err = h.Shutdown(req.Name)
	case "destroy":
		err = h.Destroy(req.Name)
	case "undefine":
		err = h.Undefine(req.Name)
	case "xml":
		r.XML, err = h.XMLDesc(req.Name)
	case "attach":
		err = h.AttachDevice(req.Name, req.XML)
	case "detach":
		err = h.DetachDevice(req.Name, req.XML)
	default:
		err = fmt.Errorf("%s: unknown request %q", HelperName, req.Op)
	}
	if err != nil {
		r.Err = EncodeError(err)
	}
	return r
}

// Serve is the helper's whole job: read the open request, connect with
// open, answer requests until r ends, then close the connection.
func Serve(ctx context.Context, r io.Reader, w io.Writer, open Opener) error {
	dec := json.NewDecoder(r)
	enc := json.NewEncoder(w)
	var req Request
	if err := dec.Decode(&req); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return err
	}
	if req.Op != "open" || req.Config == nil || req.Config.URI == "" {
		err := fmt.Errorf("%s: the first request must open a URI (started by qvm only)", HelperName)
		_ = enc.Encode(Response{Err: EncodeError(err)})
		return err
	}
	h, err := open(ctx, *req.Config)
	if err != nil {
		return enc.Encode(Response{Err: EncodeError(err)})
	}
	defer h.Close()
	if err := enc.Encode(Response{URI: req.Config.URI}); err != nil {
		return err
	}
	for {
		var req Request
		if err := dec.Decode(&req); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := enc.Encode(handle(ctx, h, req)); err != nil {
			return err
		}
	}
}
