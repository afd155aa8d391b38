package memd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"strconv"
)

// AlgoInput is the document `qmemmand algo` reads (sizes in bytes; field
// names of the reference's DomainState).
type AlgoInput struct {
	XenFreeMem   *json.Number  `json:"xen_free_mem"`
	Domains      []AlgoDomain  `json:"domains"`
	BalloonSizes []json.Number `json:"balloon_sizes"`
}

// AlgoDomain is one domain of AlgoInput; mem_used null = no meminfo.
type AlgoDomain struct {
	DomID           *string      `json:"domid"`
	MemCurrent      json.Number  `json:"mem_current"`
	MemActual       *json.Number `json:"mem_actual"`
	MemMax          *json.Number `json:"mem_max"`
	MemUsed         *json.Number `json:"mem_used"`
	LastTarget      json.Number  `json:"last_target"`
	UseHotplug      bool         `json:"use_hotplug"`
	NoProgress      bool         `json:"no_progress"`
	SlowMemsetReact bool         `json:"slow_memset_react"`
}

// InputError is a malformed algo input document.
type InputError struct{ Msg string }

func (e *InputError) Error() string { return "algo input: " + e.Msg }

func inputErr(format string, a ...any) error { return &InputError{fmt.Sprintf(format, a...)} }

// exactInt reads a JSON integer within ±2^53, where float and integer
// arithmetic agree with the reference's Python ints.
func exactInt(n json.Number, what string) (int64, error) {
	if n == "" {
		return 0, nil
	}
	v, err := strconv.ParseInt(string(n), 10, 64)
	if err != nil {
		if _, ok := new(big.Int).SetString(string(n), 10); ok {
			return 0, inputErr("%s: %s is too large (limit ±2^53)", what, n)
		}
		return 0, inputErr("%s: %s is not an integer", what, n)
	}
	if v > maxExactInt || v < -maxExactInt {
		return 0, inputErr("%s: %s is too large (limit ±2^53)", what, n)
	}
	return v, nil
}

// DecodeAlgoInput parses and checks an algo input document.
func DecodeAlgoInput(r io.Reader) (int64, []*Domain, []int64, error) {
	dec := json.NewDecoder(r)
	dec.UseNumber()
	dec.DisallowUnknownFields()
	var in AlgoInput
	if err := dec.Decode(&in); err != nil {
		return 0, nil, nil, inputErr("%v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return 0, nil, nil, inputErr("unexpected data after the JSON document")
	}
	if in.XenFreeMem == nil {
		return 0, nil, nil, inputErr("xen_free_mem is missing")
	}
	xenFree, err := exactInt(*in.XenFreeMem, "xen_free_mem")
	if err != nil {
		return 0, nil, nil, err
	}
	if in.Domains == nil {
		return 0, nil, nil, inputErr("domains is missing")
	}
	seen := map[string]bool{}
	var doms []*Domain
	for i, ad := range in.Domains {
		if ad.DomID == nil || *ad.DomID == "" {
			return 0, nil, nil, inputErr("domains[%d]: domid is missing or empty", i)
		}
		id := *ad.DomID
		if seen[id] {
			return 0, nil, nil, inputErr("domains[%d]: domid %q appears twice", i, id)
		}
		seen[id] = true
		where := func(f string) string { return fmt.Sprintf("domains[%d] (%s): %s", i, id, f) }
		if ad.MemActual == nil {
			return 0, nil, nil, inputErr("%s is missing", where("mem_actual"))
		}
		if ad.MemMax == nil {
			return 0, nil, nil, inputErr("%s is missing", where("mem_max"))
		}
		d := &Domain{ID: id, UseHotplug: ad.UseHotplug, NoProgress: ad.NoProgress, SlowMemsetReact: ad.SlowMemsetReact}
		for _, f := range []struct {
			n    json.Number
			name string
			dst  *int64
		}{{ad.MemCurrent, "mem_current", &d.MemCurrent}, {*ad.MemActual, "mem_actual", &d.MemActual},
			{*ad.MemMax, "mem_max", &d.MemMax}, {ad.LastTarget, "last_target", &d.LastTarget}} {
			if *f.dst, err = exactInt(f.n, where(f.name)); err != nil {
				return 0, nil, nil, err
			}
		}
		if ad.MemUsed != nil {
			if d.MemUsed, err = exactInt(*ad.MemUsed, where("mem_used")); err != nil {
				return 0, nil, nil, err
			}
			d.HasMeminfo = true
		}
		doms = append(doms, d)
	}
	var sizes []int64
	for i, n := range in.BalloonSizes {
		v, err := exactInt(n, fmt.Sprintf("balloon_sizes[%d]", i))
		if err != nil {
			return 0, nil, nil, err
		}
		sizes = append(sizes, v)
	}
	return xenFree, doms, sizes, nil
}

// RunAlgo computes the algo output document. Where the reference raises,
// that entry is {"error": "..."}.
func (p Params) RunAlgo(xenFree int64, doms []*Domain, sizes []int64) []byte {
	var b bytes.Buffer
	b.WriteString(`{"per_domain": {`)
	for i, d := range doms {
		if i > 0 {
			b.WriteString(", ")
		}
		writeJSON(&b, d.ID)
		if !d.HasMeminfo {
			b.WriteString(`: {"error": "mem_used is null: the reference's pref_mem raises TypeError"}`)
			continue
		}
		fmt.Fprintf(&b, `: {"pref_mem": %d, "needed_mem": %d}`, p.PrefMem(d), p.NeededMem(d))
	}
	m := p.MemInfo(xenFree, doms)
	fmt.Fprintf(&b, `}, "mem_info": {"total_available_mem": %d, "xen_free_mem": %d, "total_mem_pref": %d, "total_mem_pref_acceptors": %d, "donors": `,
		m.TotalAvailableMem, m.XenFreeMem, m.TotalMemPref, m.TotalMemPrefAcceptors)
	writeIDs(&b, m.Donors)
	b.WriteString(`, "acceptors": `)
	writeIDs(&b, m.Acceptors)
	b.WriteString(`}, "balance": `)
	reqs, branch, err := p.Balance(xenFree, doms)
	writeTargets(&b, reqs, err)
	fmt.Fprintf(&b, `, "balance_branch": %q, "balloon": [`, branch)
	for i, size := range sizes {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, `{"mem_size": %d, `, size)
		res, err := p.Balloon(size, doms)
		if err != nil {
			b.WriteString(`"error": `)
			writeJSON(&b, err.Error())
		} else {
			b.WriteString(`"result": `)
			writeTargets(&b, res, nil)
		}
		b.WriteString("}")
	}
	b.WriteString(`], "significant": `)
	if err != nil {
		b.WriteString(`{"error": "no balance result"}`)
	} else {
		byID := make(map[string]*Domain, len(doms))
		for _, d := range doms {
			byID[d.ID] = d
		}
		sig := p.IsBalanceReqSignificant(reqs, xenFree+XenFreeMemLeft, func(id string) *Domain { return byID[id] })
		b.WriteString(strconv.FormatBool(sig))
	}
	b.WriteString("}\n")
	return b.Bytes()
}

func writeTargets(b *bytes.Buffer, ts []Target, err error) {
	if err != nil {
		b.WriteString(`{"error": `)
		writeJSON(b, err.Error())
		b.WriteString("}")
		return
	}
	b.WriteString("[")
	for i, t := range ts {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("[")
		writeJSON(b, t.ID)
		fmt.Fprintf(b, ", %d]", t.Mem)
	}
	b.WriteString("]")
}

func writeJSON(b *bytes.Buffer, v any) {
	data, _ := json.Marshal(v) // only strings and string slices: cannot fail
	b.Write(data)
}

func writeIDs(b *bytes.Buffer, ids []string) {
	b.WriteString("[")
	for i, id := range ids {
		if i > 0 {
			b.WriteString(", ")
		}
		writeJSON(b, id)
	}
	b.WriteString("]")
}
