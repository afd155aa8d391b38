// Package core is the Qubes R4 state model: qubes.xml, VM classes and their
// properties, features, tags, volume config, device assignments as data, and
// the rules that tie them together (names, qids, network topology). It also
// owns locking and the atomic replacement of qubes.xml.
//
// core never imports libvirt, cobra or the on-disk layout of a storage
// driver; it defines the small interfaces it needs and the packages that
// implement them depend on core, not the other way round.
package core
