// Package firewall owns a qube's outgoing-traffic rules: the rule model and
// its validation (the reference server's rules and messages), the three rule
// string forms, firewall.xml (version 2 read and write, version 1 import),
// expiry, and what the rules become for the netvm that applies them (the
// QubesDB key layout and an nftables ruleset).
//
// It works on a qube's directory and plain values; it does not take the
// state lock (callers hold it) and never resolves host names itself (the
// caller passes a Resolver).
package firewall
